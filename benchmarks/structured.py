"""Graph surgery, measured: structured channel pruning and low-rank factorization.

    python benchmarks/structured.py            # full run (about 20-30 min on 2 idle cores)
    python benchmarks/structured.py --quick    # smoke test (a few minutes, figures meaningless)

Every figure is measured in this run:

1. FMNIST-CNN (tfcompress.models.fmnist_cnn) trained 10 epochs (Adam 1e-3, batch 128) on
   Fashion-MNIST; then 30% and 50% of its channels removed (`prune_channels`, Taylor
   criterion on 1,024 training images, global allocation) and fine-tuned 3 epochs
   (Adam, cosine decay from 1e-3); beside the same pruned architectures trained from
   scratch for 10 epochs like the original, and the half-width FMNIST-CNN from scratch.
   Columns: params, FLOPs (batch 1), float and int8 accuracy on the 10,000 test images,
   int8 .tflite bytes, host latency (LiteRT, XNNPACK, 1 thread, batch 1; the models of a
   section are timed in alternating rounds, so a busy machine slows them alike).
2. MobileNetV2 (weights=None, 224x224, Keras 3 bridged to tf_keras) with 50% of the
   channels of every group removed (uniform, kept counts rounded to multiples of 8):
   int8 size and latency before / after.
3. Low rank on a Dense-heavy MLP (784-1024-1024-10) trained 5 epochs: truncated SVD
   removing 50% / 75% of the parameters (`factorize(reduction=...)`), fine-tuned 2 epochs.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@dataclass
class Row:
    name: str
    params: int
    flops: int
    float_acc: float | None
    int8_acc: float | None
    tflite_bytes: int
    latency_ms: float
    note: str = ""


def fmt_table(rows: list[Row], ref_bytes: int, ref_latency: float) -> str:
    head = (
        f"{'model':44s} {'params':>9s} {'MFLOPs':>8s} {'float acc':>9s} {'int8 acc':>9s} "
        f"{'int8 bytes':>11s} {'x bytes':>7s} {'latency ms':>10s} {'x lat':>6s}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        fa = f"{r.float_acc:.4f}" if r.float_acc is not None else "-"
        ia = f"{r.int8_acc:.4f}" if r.int8_acc is not None else "-"
        lines.append(
            f"{r.name[:44]:44s} {r.params:9,d} {r.flops / 1e6:8.2f} {fa:>9s} {ia:>9s} {r.tflite_bytes:11,d} "
            f"{r.tflite_bytes / ref_bytes:7.2f} {r.latency_ms:10.3f} {r.latency_ms / ref_latency:6.2f}"
        )
    return "\n".join(lines)


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------- helpers


def compile_model(model, lr):
    from tfcompress.keras_compat import tf_keras

    model.compile(
        optimizer=tf_keras.optimizers.Adam(lr),
        loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def train(model, x, y, epochs, *, cosine=False, seed=0, lr=1e-3):
    """Adam, batch 128; constant LR (training from scratch) or cosine decay (fine-tuning)."""
    from tfcompress.keras_compat import tf_keras

    tf_keras.utils.set_random_seed(seed)
    steps = epochs * int(np.ceil(len(x) / 128))
    schedule = tf_keras.optimizers.schedules.CosineDecay(lr, steps) if cosine else lr
    compile_model(model, schedule)
    t0 = time.perf_counter()
    model.fit(x, y, epochs=epochs, batch_size=128, verbose=0)
    return time.perf_counter() - t0


def measure(name, model, calib, test, note=""):
    """Params, FLOPs, float accuracy, and the int8 .tflite's accuracy / size / latency (tfcompress.convert)."""
    import tfcompress
    from tfcompress.surgery import count_flops

    x_test, y_test = test
    compile_model(model, 1e-3)
    float_acc = float(model.evaluate(x_test, y_test, batch_size=512, verbose=0)[1])
    result = tfcompress.convert(
        model, calib, verify_data=test, calib_samples=len(calib[0]), verify_samples=None, latency_runs=200
    )
    table = count_flops(model)
    v = result.report.verify
    return Row(
        name, table.params, table.flops, float_acc, v.accuracy.tflite, result.report.size.tflite_bytes,
        v.latency.median_ms, note,
    ), result.tflite


def interleaved_latency(tflites: list[bytes], x: np.ndarray, rounds: int = 15, runs: int = 20) -> list[float]:
    """Batch-1 latency of each model: the models take turns for `rounds` rounds of `runs` timed runs;
    each model's figure is its best round median (other processes on a shared machine only add time)."""
    from tfcompress.export.verify import TfliteRunner

    runners = [TfliteRunner(t, threads=1) for t in tflites]
    per: list[list[float]] = [[] for _ in tflites]
    for _ in range(rounds):
        for i, r in enumerate(runners):
            per[i].append(r.latency((x,), runs=runs, warmup=3).median_ms)
    return [min(p) for p in per]


def with_interleaved_latency(rows: list[Row], tflites: list[bytes], x: np.ndarray) -> None:
    """Replace each row's latency by an interleaved re-measurement of all the section's models."""
    for row, ms in zip(rows, interleaved_latency(tflites, x)):
        row.latency_ms = ms


# --------------------------------------------------------------------- sections


def fmnist_section(quick: bool) -> list[str]:
    from tfcompress.demo import fashion_mnist_float
    from tfcompress.keras_compat import tf_keras
    from tfcompress.models import fmnist_cnn
    from tfcompress.techniques.structured import plan_pruning, prune_channels

    (xtr, ytr), (xte, yte) = fashion_mnist_float()
    epochs, ft_epochs = (1, 1) if quick else (10, 3)
    if quick:
        xtr, ytr, xte, yte = xtr[:6000], ytr[:6000], xte[:1000], yte[:1000]
    calib = (xtr[:200], ytr[:200])
    test = (xte, yte)
    rows: list[Row] = []
    tflites: list[bytes] = []
    out: list[str] = []

    say(f"FMNIST-CNN: training {epochs} epochs")
    tf_keras.utils.set_random_seed(0)
    base = fmnist_cnn("tf_keras")
    secs = train(base, xtr, ytr, epochs)
    row, tfl = measure("FMNIST-CNN (unpruned)", base, calib, test)
    rows.append(row)
    tflites.append(tfl)
    say(f"  {secs:.0f} s, float acc {row.float_acc:.4f}")

    for ratio in (0.3, 0.5):
        pct = int(ratio * 100)
        say(f"pruning {pct}% of the channels (taylor, global)")
        t0 = time.perf_counter()
        plan = plan_pruning(
            base, ratio=ratio, criterion="taylor", allocation="global", data=(xtr[:1024], ytr[:1024])
        )
        pruned = prune_channels(base, plan=plan, data=(xtr[:1024], ytr[:1024]))
        prune_s = time.perf_counter() - t0
        compile_model(pruned, 1e-3)
        acc0 = float(pruned.evaluate(xte, yte, batch_size=512, verbose=0)[1])
        secs = train(pruned, xtr, ytr, ft_epochs, cosine=True, seed=1)
        row, tfl = measure(
            f"pruned {pct}% + {ft_epochs} ep fine-tune", pruned, calib, test,
            note=f"surgery {prune_s:.1f} s, acc before fine-tune {acc0:.4f}",
        )
        rows.append(row)
        tflites.append(tfl)
        out.append(f"pruned {pct}%: channels per group (before -> after)\n{plan.table()}")
        say(f"  acc right after surgery {acc0:.4f}, after {ft_epochs} ep {row.float_acc:.4f}")

        scratch = tf_keras.models.clone_model(pruned)  # same architecture, fresh initialization
        say(f"  same architecture from scratch, {epochs} epochs")
        train(scratch, xtr, ytr, epochs, seed=2)
        row, tfl = measure(f"same as pruned {pct}%, from scratch {epochs} ep", scratch, calib, test)
        rows.append(row)
        tflites.append(tfl)

    say(f"half-width FMNIST-CNN from scratch, {epochs} epochs")
    tf_keras.utils.set_random_seed(3)
    half = fmnist_cnn("tf_keras", width=0.5)
    train(half, xtr, ytr, epochs, seed=3)
    row, tfl = measure(f"half width (width=0.5), from scratch {epochs} ep", half, calib, test)
    rows.append(row)
    tflites.append(tfl)
    with_interleaved_latency(rows, tflites, xte[:1])

    ref = rows[0]
    lines = [
        f"## FMNIST-CNN on Fashion-MNIST ({len(xtr):,} train / {len(xte):,} test images)",
        "",
        fmt_table(rows, ref.tflite_bytes, ref.latency_ms),
        "",
    ]
    lines += [f"  {r.name}: {r.note}" for r in rows if r.note]
    p50 = next(r for r in rows if r.name.startswith("pruned 50%"))
    s50 = next(r for r in rows if r.name.startswith("same as pruned 50%"))
    lines += [
        "",
        "targets at 50%:",
        f"  int8 bytes {p50.tflite_bytes / ref.tflite_bytes:.2f}x unpruned (target <= 0.55x)",
        f"  float acc {p50.float_acc:.4f} vs same architecture from scratch {s50.float_acc:.4f} "
        f"({(p50.float_acc - s50.float_acc) * 100:+.2f} pp, target >= -0.3 pp)",
        f"  float acc {p50.float_acc:.4f} vs unpruned {ref.float_acc:.4f} "
        f"({(p50.float_acc - ref.float_acc) * 100:+.2f} pp, target >= -2 pp)",
    ]
    return lines + [""] + out


def mobilenet_section(quick: bool) -> list[str]:
    import tfcompress
    from tfcompress.keras_compat import keras3
    from tfcompress.surgery import count_flops
    from tfcompress.techniques.structured import prune_channels

    size = 96 if quick else 224
    say(f"MobileNetV2 {size}x{size}: bridging, pruning 50% (uniform, round_to=8), converting")
    base = tfcompress.load_model(keras3.applications.MobileNetV2(weights=None, input_shape=(size, size, 3)))
    t0 = time.perf_counter()
    small = prune_channels(base, ratio=0.5, round_to=8, min_fraction=0.0, min_channels=8)
    prune_s = time.perf_counter() - t0
    data = np.random.default_rng(0).uniform(-1, 1, (40, size, size, 3)).astype(np.float32)
    rows, tflites = [], []
    for name, model in (("MobileNetV2 (unpruned)", base), ("MobileNetV2, 50% channels removed", small)):
        result = tfcompress.convert(model, data, calib_samples=32, verify_samples=8, latency_runs=100)
        table = count_flops(model)
        rows.append(
            Row(name, table.params, table.flops, None, None, result.report.size.tflite_bytes,
                result.report.verify.latency.median_ms)
        )
        tflites.append(result.tflite)
    single = [r.latency_ms for r in rows]
    with_interleaved_latency(rows, tflites, data[:1])
    ratio = rows[1].latency_ms / rows[0].latency_ms
    return [
        f"## MobileNetV2 {size}x{size} (weights=None), int8, random calibration data",
        "",
        fmt_table(rows, rows[0].tflite_bytes, rows[0].latency_ms),
        "",
        f"surgery took {prune_s:.1f} s",
        f"latency ratio pruned / unpruned {ratio:.2f}x (target <= 0.6x; alpha=0.5 gives 0.26x); "
        f"measured one after the other inside convert: {single[0]:.2f} ms vs {single[1]:.2f} ms",
    ]


def lowrank_section(quick: bool) -> list[str]:
    from tfcompress.demo import fashion_mnist_float
    from tfcompress.keras_compat import tf_keras
    from tfcompress.techniques.lowrank import factorize, plan_factorization

    (xtr, ytr), (xte, yte) = fashion_mnist_float()
    epochs, ft_epochs = (1, 1) if quick else (5, 2)
    if quick:
        xtr, ytr, xte, yte = xtr[:6000], ytr[:6000], xte[:1000], yte[:1000]
    calib, test = (xtr[:200], ytr[:200]), (xte, yte)
    L = tf_keras.layers
    tf_keras.utils.set_random_seed(0)
    inp = tf_keras.Input((28, 28, 1))
    x = L.Flatten()(inp)
    x = L.Dense(1024, activation="relu", name="fc1")(x)
    x = L.Dense(1024, activation="relu", name="fc2")(x)
    mlp = tf_keras.Model(inp, L.Dense(10, name="logits")(x), name="mlp")
    say(f"low rank: MLP 784-1024-1024-10, training {epochs} epochs")
    train(mlp, xtr, ytr, epochs)
    row, tfl = measure("MLP (dense)", mlp, calib, test)
    rows, tflites = [row], [tfl]
    plans = []
    for reduction in (0.5, 0.75):
        plan = plan_factorization(mlp, reduction=reduction, objective="params")
        plans.append(f"reduction {reduction:.0%} of the parameters:\n{plan.table()}")
        small = factorize(mlp, plan=plan)
        compile_model(small, 1e-3)
        acc0 = float(small.evaluate(xte, yte, batch_size=512, verbose=0)[1])
        train(small, xtr, ytr, ft_epochs, cosine=True, seed=1, lr=5e-4)
        row, tfl = measure(f"SVD -{reduction:.0%} params + {ft_epochs} ep fine-tune", small, calib, test,
                           note=f"acc right after factorizing {acc0:.4f}")
        rows.append(row)
        tflites.append(tfl)
    with_interleaved_latency(rows, tflites, xte[:1])
    lines = [
        "## Low rank: Dense-heavy MLP on Fashion-MNIST",
        "",
        fmt_table(rows, rows[0].tflite_bytes, rows[0].latency_ms),
        "",
    ]
    lines += [f"  {r.name}: {r.note}" for r in rows if r.note]
    return lines + [""] + plans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny run to check the script works")
    parser.add_argument("--only", choices=["fmnist", "mobilenet", "lowrank"], help="run one section")
    args = parser.parse_args()

    from tfcompress.keras_compat import versions
    from tfcompress.runtime import runtime_version

    t0 = time.perf_counter()
    header = [
        "# benchmarks/structured.py" + (" --quick" if args.quick else ""),
        f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, python {platform.python_version()}, "
        + ", ".join(f"{k} {v}" for k, v in versions().items()) + f", {runtime_version()}",
        "int8 = tfcompress.convert full int8 (int8 I/O); latency = LiteRT XNNPACK, 1 thread, batch 1: a section's "
        "models take turns for 15 rounds of 20 runs, best round median (fair on a shared machine); "
        "FLOPs = 2 x MACs + elementwise (batch 1)",
        "",
    ]
    print("\n".join(header), flush=True)
    sections = {"fmnist": fmnist_section, "mobilenet": mobilenet_section, "lowrank": lowrank_section}
    for key, fn in sections.items():
        if args.only and key != args.only:
            continue
        lines = fn(args.quick)
        print("\n" + "\n".join(lines) + "\n", flush=True)
    print(f"total time {(time.perf_counter() - t0) / 60:.1f} min")


if __name__ == "__main__":
    main()
