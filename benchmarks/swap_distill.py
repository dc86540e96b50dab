"""Block swap + cross-architecture distillation, measured: a plain-conv teacher vs its MobileNet-style student.

    python benchmarks/swap_distill.py            # full run: teacher + 2 + len(--kd) students x 10 epochs (~60 min)
    python benchmarks/swap_distill.py --quick    # smoke test: a few steps on a slice (figures meaningless)
    python benchmarks/swap_distill.py --cross-arch-only   # ResNet teacher -> MBConv+SE student, labels vs KD + hints
    python benchmarks/swap_distill.py --latency-only      # the architectures' int8 latency only (untrained), idle

Teacher: a plain-convolution CNN (five 3x3 convs, 48-96-96-192-192, two stride-2; `--widths`) trained 10 epochs
(Adam, cosine decay from 1e-3, batch 128). Student, MobileNetV1 style: `swap_blocks(teacher, Params(target=...,
mid=..., min_params=0))` (every conv, the stem included, to depthwise-separable, initialised from the teacher's
kernels) then `scale_model(..., width=0.625)` (channels x 0.625, the largest-L1 channels kept), trained the same
10 epochs (Adam, cosine decay from 1e-3, batch 128, same seed):
    (a) from its swap initialisation, labels only;
    (b) from its swap initialisation, distilled from the teacher, once per `--kd` setting (T, alpha, hints);
    (c) the same architecture freshly initialised, labels only.
Every model is converted to full int8 (`tfcompress.convert`, 200 training images calibrate) and evaluated on the
10,000 test images in LiteRT; latency: all models timed together at the end, interleaved
(`tfcompress.hardware.measure.time_tflites`, 1 thread, batch 1, the timing protocol), so the ratios come from
one idle stretch; a model timed while the machine was busy is marked "busy".
Why the width multiplier: this host's CPU has AMX int8 units, which run dense 3x3 convolutions so fast that the
swap alone (7.9x fewer FLOPs) gave 0.57-0.70x of the teacher's latency; the depthwise convolutions and the
1-channel stem are the floor. See docs/surgery.md.
Expected (issue 13): (b) >= (a) >= (c) in int8 accuracy, (b) within 1 pp of the teacher, student latency
<= 0.5x the teacher's, teacher FLOPs >= 4x the student's.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from structured import compile_model, say  # noqa: E402


def plain_teacher(seed: int = 0, widths: tuple[int, ...] = (48, 96, 96, 192, 192)):
    """Plain 3x3 convolutions only: the kind of model a user has before a swap (stride 2 at the 2nd and 4th)."""
    from tfcompress.keras_compat import tf_keras

    tf_keras.utils.set_random_seed(seed)
    L = tf_keras.layers
    inp = tf_keras.Input((28, 28, 1))
    x = L.Conv2D(widths[0], 3, padding="same", activation="relu", name="stem")(inp)
    for i, w in enumerate(widths[1:]):
        x = L.Conv2D(w, 3, strides=2 if i in (0, 2) else 1, padding="same", activation="relu", name=f"conv{i + 1}")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return tf_keras.Model(inp, L.Dense(10, name="logits")(x), name="plain_teacher")


def parse_kd(text: str) -> dict:
    """'T=4,a=0.5,hints=auto,hw=0.5' -> distill Params fields."""
    names = {"T": "temperature", "a": "alpha", "hints": "hints", "hw": "hint_weight"}
    out: dict = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, _, value = part.partition("=")
        if key not in names or not value:
            raise SystemExit(f"--kd {text!r}: expected T=..,a=..[,hints=off|auto][,hw=..], got {part!r}")
        out[names[key]] = value if key == "hints" else float(value)
    return out


def fit(model, x, y, epochs, steps, *, teacher=None, distill=None, seed=1, lr=1e-3, cosine=True):
    """Adam (cosine decay from `lr` when `cosine`), batch 128, on labels or distilled from `teacher`; seconds."""
    from tfcompress.keras_compat import tf_keras
    from tfcompress.techniques.distill import distiller

    tf_keras.utils.set_random_seed(seed)
    per_epoch = steps or int(np.ceil(len(x) / 128))
    schedule = tf_keras.optimizers.schedules.CosineDecay(lr, epochs * per_epoch) if cosine else lr
    target = model if teacher is None else distiller(model, teacher, distill)
    compile_model(target, schedule)
    t0 = time.perf_counter()
    target.fit(x, y, epochs=epochs, batch_size=128, steps_per_epoch=steps, verbose=0)
    return time.perf_counter() - t0


def measure(name, model, calib, test):
    """[name, params, FLOPs, int8 bytes, int8 accuracy, int8 .tflite]; `time_all` fills in the latency."""
    import tfcompress
    from tfcompress.surgery import count_flops

    result = tfcompress.convert(model, calib, verify_data=test, calib_samples=len(calib[0]), verify_samples=None,
                                latency_runs=3, device=None)
    table = count_flops(model)
    return [name, table.params, table.flops, len(result.tflite), result.report.verify.accuracy.tflite, result.tflite]


def time_all(rows) -> list[str]:
    """Replace each row's .tflite by its latency (ms), all timed in one interleaved run; notes on busy ones."""
    from tfcompress.hardware.measure import time_tflites

    timings = time_tflites([r[5] for r in rows], threads=1, warmup=20, runs=300, budget_s=3.0)
    notes = []
    for r, t in zip(rows, timings):
        r[5] = t.median_ms
        if t.busy:
            notes.append(f"busy: '{r[0]}' was timed while other processes used the CPU (figure unreliable)")
    spread = ", ".join(f"{100 * t.spread_ms / t.median_ms:.1f}%" for t in timings)
    return [f"latency: {len(rows)} models timed together, 3 interleaved rounds; run-to-run spread {spread}", *notes]


def fmt(rows) -> str:
    head = f"{'model':52s} {'params':>8s} {'MFLOPs':>7s} {'int8 B':>8s} {'int8 acc':>8s} {'ms':>7s} {'x lat':>5s}"
    ref = rows[0]
    lines = [head, "-" * len(head)]
    for name, params, flops, size, acc, ms in rows:
        lines.append(f"{name[:52]:52s} {params:8,d} {flops / 1e6:7.2f} {size:8,d} {acc:8.4f} {ms:7.3f} "
                     f"{ms / ref[5]:5.2f}")
    return "\n".join(lines)


def make_student(teacher, args):
    """The MobileNet-style student: every conv swapped (stem included), then width x args.width."""
    from tfcompress.techniques.scale import Params as ScaleParams, scale_model
    from tfcompress.techniques.swap import Params, swap_blocks

    swap = Params(target=args.target, mid=args.mid, expansion=args.expansion, min_params=args.min_params)
    student, plan = swap_blocks(teacher, swap, with_plan=True)
    say("swap plan:\n" + plan.describe())
    if args.width < 1.0:
        student, details = scale_model(student, ScaleParams(width=args.width))
        shrunk = "; ".join(f"{'+'.join(g['producers'])} {g['channels']}->{g['kept']}" for g in details["shrunk"])
        say(f"width x{args.width:g}: {shrunk}")
    return student


def latency_section(args, data) -> list[str]:
    """Only the architectures' int8 latency (int8 latency does not depend on the weights' values): the teacher,
    its student and the cross-architecture pair, untrained, timed together when the machine is idle."""
    (xtr, ytr), _ = data
    calib = (xtr[:200], ytr[:200])
    models = [("teacher: plain convs", plain_teacher(widths=tuple(args.widths)))]
    models.append(("student: swap + width", make_student(models[0][1], args)))
    models += [("ResNet-style teacher", resnet_teacher()), ("MBConv+SE student", mbconv_student())]
    rows = [measure(name, m, calib, calib) for name, m in models]
    notes = time_all(rows)
    return [fmt(rows), *notes, f"student / teacher = {rows[1][5] / rows[0][5]:.2f}; "
            f"MBConv+SE / ResNet = {rows[3][5] / rows[2][5]:.2f} (accuracy column: 200 training images, untrained)"]


def swap_section(args, data) -> list[str]:
    from tfcompress.keras_compat import tf_keras
    from tfcompress.surgery import count_flops
    from tfcompress.techniques.distill import Params as DistillParams

    (xtr, ytr), (xte, yte) = data
    calib, test = (xtr[:200], ytr[:200]), (xte, yte)
    epochs, steps = (1, 5) if args.quick else (args.epochs, None)
    teacher = plain_teacher(widths=tuple(args.widths))
    if args.teacher_weights and Path(args.teacher_weights).is_file():
        teacher.load_weights(args.teacher_weights)
        say(f"teacher weights loaded from {args.teacher_weights}")
    else:
        secs = fit(teacher, xtr, ytr, epochs, steps)
        say(f"teacher trained {epochs} epoch(s) in {secs:.0f} s")
        if args.teacher_weights:
            teacher.save_weights(args.teacher_weights)
    base = make_student(teacher, args)
    ratio = count_flops(teacher).flops / count_flops(base).flops
    rows = [measure(f"teacher: plain convs, {epochs} ep", teacher, calib, test)]
    say(f"teacher int8 accuracy {rows[0][4]:.4f}")
    variants = [("a", "swap init, labels", None, None)]
    for text in args.kd:
        kd = DistillParams(**parse_kd(text))
        variants.append(("b", f"swap init, KD T={kd.temperature:g} a={kd.alpha:g} hints={kd.hints}", teacher, kd))
    variants.append(("c", "same arch from scratch, labels", None, None))
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    per_seed: list[list[float]] = []
    for key, label, t, kd in variants:
        accs = []
        for seed in seeds:
            tf_keras.utils.set_random_seed(seed)
            student = tf_keras.models.clone_model(base)  # fresh initialisers (seeded)
            if key != "c":
                student.set_weights(base.get_weights())
            secs = fit(student, xtr, ytr, epochs, steps, teacher=t, distill=kd, seed=seed)
            row = measure(f"({key}) {label}, {epochs} ep", student, calib, test)
            accs.append(row[4])
            say(f"({key}) {label}, seed {seed}: trained in {secs:.0f} s, int8 accuracy {row[4]:.4f}")
        row[4] = float(np.mean(accs))
        rows.append(row)
        per_seed.append(accs)
    notes = time_all(rows)
    if len(seeds) > 1:
        notes.append(f"int8 acc = mean over seeds {seeds}; per seed (std):")
        notes += [f"  {r[0][:48]:48s} " + " ".join(f"{a:.4f}" for a in accs) + f"  ({100 * np.std(accs):.2f} pp)"
                  for r, accs in zip(rows[1:], per_seed)]
    acc_t, acc_a, acc_c = rows[0][4], rows[1][4], rows[-1][4]
    best_b = max(rows[2:-1], key=lambda r: r[4])
    checks = [
        f"teacher FLOPs / student FLOPs = {ratio:.1f} (expected >= 4)",
        f"best (b) - (a) = {100 * (best_b[4] - acc_a):+.2f} pp [{best_b[0]}], (a) - (c) = {100 * (acc_a - acc_c):+.2f}"
        " pp (expected both >= 0)",
        f"best (b) - teacher = {100 * (best_b[4] - acc_t):+.2f} pp (expected >= -1)",
        f"student latency / teacher latency = {rows[1][5] / rows[0][5]:.2f} (expected <= 0.5)",
    ]
    return [fmt(rows), *notes, *checks]


def resnet_teacher(seed: int = 0, width: int = 32):
    """A small ResNet: stem, two residual stages of two 3x3 convs each."""
    from tfcompress.keras_compat import tf_keras

    tf_keras.utils.set_random_seed(seed)
    L = tf_keras.layers
    inp = tf_keras.Input((28, 28, 1))
    x = L.Conv2D(width, 3, padding="same", activation="relu", name="stem")(inp)
    for i, (filters, stride) in enumerate(((width, 1), (2 * width, 2))):
        y = L.Conv2D(filters, 3, strides=stride, padding="same", activation="relu", name=f"res{i}_a")(x)
        y = L.Conv2D(filters, 3, padding="same", name=f"res{i}_b")(y)
        short = x if stride == 1 else L.Conv2D(filters, 1, strides=stride, name=f"res{i}_proj")(x)
        x = L.ReLU(name=f"res{i}_out")(L.Add(name=f"res{i}_add")([short, y]))
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return tf_keras.Model(inp, L.Dense(10, name="logits")(x), name="resnet_teacher")


def mbconv_student(seed: int = 1):
    """An EfficientNet-style student: a narrow plain CNN swapped to MBConv + SE (swish) blocks."""
    from tfcompress.keras_compat import tf_keras
    from tfcompress.techniques.swap import Params, swap_blocks

    tf_keras.utils.set_random_seed(seed)
    L = tf_keras.layers
    inp = tf_keras.Input((28, 28, 1))
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="stem")(inp)
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="mb1")(x)
    x = L.Conv2D(24, 3, strides=2, padding="same", activation="relu", name="mb2")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    plain = tf_keras.Model(inp, L.Dense(10, name="logits")(x), name="mbconv_student")
    return swap_blocks(plain, Params(target="mbconv", expansion=4, se_ratio=0.25, min_params=1024))


def cross_architecture(x, y, epochs: int = 3, steps: int | None = None, teacher_epochs: int = 1, kd: str = ""):
    """ResNet-style teacher -> MBConv + SE student, on labels and with KD + auto hints.

    Returns (teacher, student on labels, student distilled, the distilled run's history)."""
    from tfcompress.keras_compat import tf_keras
    from tfcompress.techniques.distill import Params, distiller

    teacher = resnet_teacher()
    secs = fit(teacher, x, y, teacher_epochs, steps)
    say(f"ResNet teacher trained {teacher_epochs} epoch(s) in {secs:.0f} s")
    base = mbconv_student()
    labels = tf_keras.models.clone_model(base)
    labels.set_weights(base.get_weights())
    secs = fit(labels, x, y, epochs, steps)
    say(f"MBConv+SE student on labels trained in {secs:.0f} s")
    student = tf_keras.models.clone_model(base)
    student.set_weights(base.get_weights())
    d = distiller(student, teacher, Params(**{"hints": "auto", "hint_weight": 0.5, **parse_kd(kd)}))
    tf_keras.utils.set_random_seed(1)
    per_epoch = steps or int(np.ceil(len(x) / 128))
    compile_model(d, tf_keras.optimizers.schedules.CosineDecay(1e-3, epochs * per_epoch))
    t0 = time.perf_counter()
    history = d.fit(x, y, epochs=epochs, batch_size=128, steps_per_epoch=steps, verbose=0)
    say(f"MBConv+SE student with KD trained in {time.perf_counter() - t0:.0f} s")
    return teacher, labels, student, history.history


def cross_section(args, data) -> list[str]:
    (xtr, ytr), (xte, yte) = data
    epochs, steps = (3, 4) if args.quick else (args.epochs, None)
    kd = args.cross_kd
    teacher, labels, student, hist = cross_architecture(xtr, ytr, epochs, steps,
                                                        teacher_epochs=1 if args.quick else epochs, kd=kd)
    calib, test = (xtr[:200], ytr[:200]), (xte, yte)
    rows = [measure(f"ResNet-style teacher, {epochs} ep", teacher, calib, test),
            measure(f"MBConv+SE student, labels, {epochs} ep", labels, calib, test),
            measure(f"MBConv+SE student, KD {kd} + auto hints, {epochs} ep", student, calib, test)]
    notes = time_all(rows)
    kd_loss = " -> ".join(f"{v:.3f}" for v in hist["distill_loss"])
    hint = " -> ".join(f"{v:.3f}" for v in hist["hint_loss"])
    return [fmt(rows), *notes, f"KD - labels = {100 * (rows[2][4] - rows[1][4]):+.2f} pp",
            f"KD loss per epoch: {kd_loss}", f"hint loss per epoch: {hint}"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few steps on a slice: proves it runs, figures meaningless")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seeds", type=int, default=1, help="train each student with N seeds; accuracy = the mean")
    ap.add_argument("--first-seed", type=int, default=1, help="the students' seeds start here (training is "
                    "deterministic: seed 1 of one run is seed 1 of the next)")
    ap.add_argument("--teacher-weights", default=None, metavar="H5",
                    help="load the trained teacher from this file if it exists, else train it and save it there")
    ap.add_argument("--widths", type=int, nargs=5, default=(48, 96, 96, 192, 192), help="the teacher's 5 conv widths")
    ap.add_argument("--target", default="separable", choices=("separable", "inverted_residual", "mbconv", "auto"))
    ap.add_argument("--min-params", type=int, default=0, help="swap convs with at least this many weights (0: all)")
    ap.add_argument("--width", type=float, default=0.625, help="the student's width multiplier after the swap")
    ap.add_argument("--mid", default="bn", choices=("none", "bn", "bn_relu6"))
    ap.add_argument("--expansion", type=int, default=2)
    ap.add_argument("--kd", action="append", default=None, metavar="T=..,a=..[,hints=auto][,hw=..]",
                    help="one (b) row per setting (a: weight of the label loss); default: T=4,a=0.5  T=2,a=0.5  "
                    "T=4,a=0.1")
    ap.add_argument("--cross-kd", default="T=4,a=0.5", help="the KD setting of the cross-architecture student")
    ap.add_argument("--cross-arch", action="store_true", help="also run the ResNet -> MBConv+SE demonstration")
    ap.add_argument("--cross-arch-only", action="store_true")
    ap.add_argument("--latency-only", action="store_true",
                    help="only time the architectures (untrained) together: re-measure latency on an idle machine")
    args = ap.parse_args(argv)
    args.kd = args.kd or ["T=4,a=0.5", "T=2,a=0.5", "T=4,a=0.1"]

    from tfcompress.demo import fashion_mnist_float

    (xtr, ytr), (xte, yte) = fashion_mnist_float()
    if args.quick:
        xtr, ytr, xte, yte = xtr[:2000], ytr[:2000], xte[:500], yte[:500]
    data = ((xtr, ytr), (xte, yte))
    out = [f"python benchmarks/swap_distill.py {' '.join(sys.argv[1:] if argv is None else argv)}".rstrip()]
    if args.latency_only:
        out += latency_section(args, data)
    elif not args.cross_arch_only:
        out += swap_section(args, data)
    if (args.cross_arch or args.cross_arch_only) and not args.latency_only:
        out += ["", "cross-architecture distillation (ResNet-style teacher -> MBConv + SE student):"]
        out += cross_section(args, data)
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
