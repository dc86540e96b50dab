"""Block swap + cross-architecture distillation, measured: a plain-conv teacher vs its MobileNet-style student.

    python benchmarks/swap_distill.py            # full run: 4 models x 10 epochs of Fashion-MNIST (~30-40 min, 2 cores)
    python benchmarks/swap_distill.py --quick    # smoke test: a few steps on a slice (figures meaningless)
    python benchmarks/swap_distill.py --cross-arch-only --quick   # only the ResNet -> MBConv+SE demonstration

Teacher: a plain-convolution CNN (five 3x3 convs, 32-64-64-128-128, two stride-2) trained 10 epochs (Adam 1e-3,
batch 128). Student: `swap_blocks(teacher, Params(target=..., mid=...))` (default: every conv of >= 1,024 weights
to depthwise-separable, MobileNetV1 style; the stem stays), trained the same 10 epochs (Adam, cosine decay from
1e-3, batch 128, same seed):
    (a) from its swap initialisation, labels only;
    (b) from its swap initialisation, distilled from the teacher (`distill`: T, alpha, hints);
    (c) the same architecture freshly initialised, labels only.
Every model is converted to full int8 (`tfcompress.convert`, 200 training images calibrate) and evaluated on the
10,000 test images in LiteRT; latency = `tfcompress.hardware.measure.time_tflite`, 1 thread, batch 1.
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


def plain_teacher(seed: int = 0):
    """Plain 3x3 convolutions only: the kind of model a user has before a swap."""
    from tfcompress.keras_compat import tf_keras

    tf_keras.utils.set_random_seed(seed)
    L = tf_keras.layers
    inp = tf_keras.Input((28, 28, 1))
    x = L.Conv2D(32, 3, padding="same", activation="relu", name="stem")(inp)
    x = L.Conv2D(64, 3, strides=2, padding="same", activation="relu", name="conv1")(x)
    x = L.Conv2D(64, 3, padding="same", activation="relu", name="conv2")(x)
    x = L.Conv2D(128, 3, strides=2, padding="same", activation="relu", name="conv3")(x)
    x = L.Conv2D(128, 3, padding="same", activation="relu", name="conv4")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return tf_keras.Model(inp, L.Dense(10, name="logits")(x), name="plain_teacher")


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
    """(name, params, FLOPs, int8 bytes, int8 accuracy, int8 latency ms at 1 thread)."""
    import tfcompress
    from tfcompress.hardware.measure import time_tflite
    from tfcompress.surgery import count_flops

    result = tfcompress.convert(model, calib, verify_data=test, calib_samples=len(calib[0]), verify_samples=None,
                                latency_runs=3, device=None)
    table = count_flops(model)
    latency = time_tflite(result.tflite, threads=1).median_ms
    return (name, table.params, table.flops, len(result.tflite), result.report.verify.accuracy.tflite, latency)


def fmt(rows) -> str:
    head = f"{'model':52s} {'params':>8s} {'MFLOPs':>7s} {'int8 B':>8s} {'int8 acc':>8s} {'ms':>7s} {'x lat':>5s}"
    ref = rows[0]
    lines = [head, "-" * len(head)]
    for name, params, flops, size, acc, ms in rows:
        lines.append(f"{name[:52]:52s} {params:8,d} {flops / 1e6:7.2f} {size:8,d} {acc:8.4f} {ms:7.3f} "
                     f"{ms / ref[5]:5.2f}")
    return "\n".join(lines)


def swap_section(args, data) -> list[str]:
    from tfcompress.keras_compat import tf_keras
    from tfcompress.surgery import count_flops
    from tfcompress.techniques.distill import Params as DistillParams
    from tfcompress.techniques.swap import Params, swap_blocks

    (xtr, ytr), (xte, yte) = data
    calib, test = (xtr[:200], ytr[:200]), (xte, yte)
    epochs, steps = (1, 5) if args.quick else (args.epochs, None)
    teacher = plain_teacher()
    secs = fit(teacher, xtr, ytr, epochs, steps, cosine=False)
    say(f"teacher trained {epochs} epoch(s) in {secs:.0f} s")
    swap = Params(target=args.target, mid=args.mid, expansion=args.expansion, min_params=1024)
    base, plan = swap_blocks(teacher, swap, with_plan=True)
    say("swap plan:\n" + plan.describe())
    ratio = count_flops(teacher).flops / count_flops(base).flops
    kd = DistillParams(temperature=args.temperature, alpha=args.alpha, hints=args.hints, hint_weight=args.hint_weight)
    rows = [measure(f"teacher: plain convs, {epochs} ep", teacher, calib, test)]
    variants = (("a", "swap init, labels", None), ("b", f"swap init, KD T={args.temperature:g} a={args.alpha:g} "
                                                         f"hints={args.hints}", teacher),
                ("c", "same arch from scratch, labels", None))
    for key, label, t in variants:
        student = tf_keras.models.clone_model(base)  # fresh initialisers
        if key != "c":
            student.set_weights(base.get_weights())
        secs = fit(student, xtr, ytr, epochs, steps, teacher=t, distill=kd)
        rows.append(measure(f"({key}) {label}, {epochs} ep", student, calib, test))
        say(f"({key}) trained in {secs:.0f} s: int8 accuracy {rows[-1][4]:.4f}")
    acc = {k: r[4] for k, r in zip("tabc", rows)}
    lat = rows[1][5] / rows[0][5]
    checks = [
        f"teacher FLOPs / student FLOPs = {ratio:.1f} (expected >= 4)",
        f"(b) - (a) = {100 * (acc['b'] - acc['a']):+.2f} pp, (a) - (c) = {100 * (acc['a'] - acc['c']):+.2f} pp "
        "(expected both >= 0)",
        f"(b) - teacher = {100 * (acc['b'] - acc['t']):+.2f} pp (expected >= -1)",
        f"student latency / teacher latency = {lat:.2f} (expected <= 0.5)",
    ]
    return [fmt(rows), *checks]


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


def cross_architecture(x, y, epochs: int = 3, steps: int | None = None, teacher_epochs: int = 1):
    """ResNet-style teacher -> MBConv + SE student (KD + auto hints); returns (teacher, student, KD history)."""
    from tfcompress.keras_compat import tf_keras
    from tfcompress.techniques.distill import Params, distiller

    teacher = resnet_teacher()
    fit(teacher, x, y, teacher_epochs, steps, cosine=False)
    student = mbconv_student()
    d = distiller(student, teacher, Params(temperature=4.0, alpha=0.1, hints="auto", hint_weight=0.5))
    tf_keras.utils.set_random_seed(2)
    compile_model(d, 1e-3)
    history = d.fit(x, y, epochs=epochs, batch_size=128, steps_per_epoch=steps, verbose=0)
    return teacher, student, history.history


def cross_section(args, data) -> list[str]:
    (xtr, ytr), (xte, yte) = data
    epochs, steps = (3, 4) if args.quick else (args.epochs, None)
    teacher, student, hist = cross_architecture(xtr, ytr, epochs, steps, teacher_epochs=1 if args.quick else epochs)
    calib, test = (xtr[:200], ytr[:200]), (xte, yte)
    rows = [measure("ResNet-style teacher", teacher, calib, test),
            measure("MBConv+SE student, KD + auto hints", student, calib, test)]
    kd = " -> ".join(f"{v:.3f}" for v in hist["distill_loss"])
    hint = " -> ".join(f"{v:.3f}" for v in hist["hint_loss"])
    return [fmt(rows), f"KD loss per epoch: {kd}", f"hint loss per epoch: {hint}"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few steps on a slice: proves it runs, figures meaningless")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--target", default="separable", choices=("separable", "inverted_residual", "mbconv", "auto"))
    ap.add_argument("--mid", default="bn", choices=("none", "bn", "bn_relu6"))
    ap.add_argument("--expansion", type=int, default=2)
    ap.add_argument("--temperature", type=float, default=4.0)
    ap.add_argument("--alpha", type=float, default=0.1, help="weight of the label loss in (b)")
    ap.add_argument("--hints", default="off", choices=("off", "auto"))
    ap.add_argument("--hint-weight", type=float, default=0.5)
    ap.add_argument("--cross-arch", action="store_true", help="also run the ResNet -> MBConv+SE demonstration")
    ap.add_argument("--cross-arch-only", action="store_true")
    args = ap.parse_args(argv)

    from tfcompress.demo import fashion_mnist_float

    (xtr, ytr), (xte, yte) = fashion_mnist_float()
    if args.quick:
        xtr, ytr, xte, yte = xtr[:2000], ytr[:2000], xte[:500], yte[:500]
    data = ((xtr, ytr), (xte, yte))
    out = [f"python benchmarks/swap_distill.py {' '.join(sys.argv[1:] if argv is None else argv)}".rstrip()]
    if not args.cross_arch_only:
        out += swap_section(args, data)
    if args.cross_arch or args.cross_arch_only:
        out += ["", "cross-architecture distillation (ResNet-style teacher -> MBConv + SE student):"]
        out += cross_section(args, data)
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
