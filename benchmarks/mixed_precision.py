"""Mixed precision, measured: full int8 vs the automatic per-op choice vs int4 where it is safe.

    python benchmarks/mixed_precision.py [--mlp-epochs 5] [--max-acc-drop 1.0] [--test-samples 10000]

Two trained Fashion-MNIST models: a Dense-heavy MLP on flattened images (784-512-256-10, trained here for
`--mlp-epochs`, seeded) and the reference FMNIST-CNN (`tfcompress demo`'s cached model, trained if missing).
For each, with the same 200 calibration images (training set) and the next 1,000 training images to choose on:

* full int8: every op int8 (the TFLite converter's quantizer), float input / output;
* automatic mixed: `choose_precision(max_acc_drop=...)`: the most harmful ops stay float until the drop holds;
* int4 where safe: `choose_precision(max_acc_drop=..., size_kb=1)`: after that, the least harmful CONV_2D /
  FULLY_CONNECTED layers get int4 weights one by one, each kept only if the accuracy budget still holds;
* int4 everywhere: every CONV_2D / FULLY_CONNECTED int4 (ai-edge-quantizer), for reference.

Accuracy is on the Fashion-MNIST test set (`--test-samples`), run in LiteRT; bytes raw and gzip -9; host latency
by `tfcompress.hardware.measure.time_tflite` (1 thread, default XNNPACK resolver). "int4 / int8 bytes" compares
the constant inputs (weights, scales, int32 bias) of the layers given int4 with the same layers in full int8.
"""

from __future__ import annotations

import argparse
import gzip
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _mlp(epochs: int, x: np.ndarray, y: np.ndarray) -> object:
    from tfcompress.keras_compat import tf_keras

    tf_keras.utils.set_random_seed(0)
    inp = tf_keras.Input((784,), name="pixels")
    h = tf_keras.layers.Dense(512, activation="relu", name="fc1")(inp)
    h = tf_keras.layers.Dense(256, activation="relu", name="fc2")(h)
    model = tf_keras.Model(inp, tf_keras.layers.Dense(10, name="logits")(h), name="mlp")
    model.compile(optimizer="adam", loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=128, verbose=0)
    return model


def _const_bytes(tflite: bytes, layers: set[str], layer_names: list[str]) -> int:
    """Bytes of the constant inputs of the CONV_2D / FULLY_CONNECTED ops of `layers`."""
    from tfcompress.export.op_layers import layer_names_for_ops
    from tfcompress.export.tflite_file import read_tflite

    tfl = read_tflite(tflite)
    by_op = layer_names_for_ops(tfl, None, layer_names)
    total = 0
    for op in tfl.operators:
        if op.op_type in ("CONV_2D", "FULLY_CONNECTED") and set(by_op.get(op.index, ())) & layers:
            total += sum(tfl.tensors[i].nbytes for i, c in zip(op.inputs, op.constant_inputs) if c and i >= 0)
    return total


def _accuracy(tflite: bytes, x: np.ndarray, y: np.ndarray) -> float:
    from tfcompress.export.verify import TfliteRunner

    out = TfliteRunner(tflite).run((x,))[0]
    return float(np.mean(np.argmax(out, axis=1) == y))


def bench_model(name: str, model: object, calib_x: np.ndarray, calib_y: np.ndarray, test_x: np.ndarray,
                test_y: np.ndarray, max_acc_drop: float) -> list[str]:
    from tfcompress import data as data_mod
    from tfcompress.hardware.measure import time_tflite
    from tfcompress.loading import load_source
    from tfcompress.precision.auto import choose_precision
    from tfcompress.precision.mixed import PrecisionRule, quantize_source

    source = load_source(model)
    names = source.layer_names()
    samples = data_mod.load_samples((calib_x, calib_y), source.input_specs())
    calib = samples.take(0, 200)
    float_acc = float(np.mean(np.argmax(source.predict((test_x,))[0], axis=1) == test_y))
    t0 = time.perf_counter()
    auto = choose_precision(model, samples, max_acc_drop=max_acc_drop, calib_samples=200, samples=1000)
    safe = choose_precision(model, samples, max_acc_drop=max_acc_drop, size_kb=1, calib_samples=200, samples=1000)
    choose_s = time.perf_counter() - t0
    int8 = quantize_source(source, calib, []).tflite
    int4_layers = set(names)  # `_const_bytes` counts only their CONV_2D / FULLY_CONNECTED ops
    variants = [
        ("full int8", int8, set()),
        (f"automatic mixed (<= {max_acc_drop:g} pp)", quantize_source(source, calib, auto.rules).tflite, set()),
        ("int4 where safe", quantize_source(source, calib, safe.rules).tflite, set(safe.int4_layers)),
        ("int4 everywhere (CONV_2D/FC)", quantize_source(
            source, calib, [PrecisionRule("int4", op="^(CONV_2D|FULLY_CONNECTED)$")]).tflite, int4_layers),
    ]
    lines = [f"{name}: float (Keras) accuracy {100 * float_acc:.2f}% on {len(test_y):,} test images; "
             f"choosing took {choose_s:.0f} s",
             f"  automatic mixed: float layers {', '.join(auto.float_layers) or 'none'}"
             f" ({'met' if auto.met else 'NOT met: ' + '; '.join(auto.unmet)})",
             f"  int4 where safe: float {', '.join(safe.float_layers) or 'none'}; int4 "
             f"{', '.join(safe.int4_layers) or 'none'}; refused: "
             f"{', '.join(', '.join(s.layers) for s in safe.steps if s.precision == 'int4' and not s.kept) or 'none'}",
             f"  {'variant':34s} {'accuracy':>9s} {'vs float':>9s} {'bytes':>9s} {'gzip':>9s} {'host ms':>8s}"
             f" {'int4/int8 bytes':>16s}"]
    for label, tflite, four in variants:
        acc = _accuracy(tflite, test_x, test_y)
        ms = time_tflite(tflite).median_ms
        ratio = "-"
        if four:
            b4, b8 = _const_bytes(tflite, four, names), _const_bytes(int8, four, names)
            ratio = f"{b4 / b8:.3f} ({b4:,}/{b8:,})" if b8 else "-"
        lines.append(f"  {label:34s} {100 * acc:8.2f}% {100 * (acc - float_acc):+8.2f}pp {len(tflite):9,} "
                     f"{len(gzip.compress(tflite, 9)):9,} {ms:8.3f} {ratio:>16s}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mlp-epochs", type=int, default=5)
    parser.add_argument("--max-acc-drop", type=float, default=1.0, help="percentage points")
    parser.add_argument("--test-samples", type=int, default=10_000)
    args = parser.parse_args()

    from tfcompress.demo import DemoConfig, fashion_mnist_float, train_fmnist_cnn

    (xtr, ytr), (xte, yte) = fashion_mnist_float()
    xte, yte = xte[: args.test_samples], yte[: args.test_samples]
    print(f"$ python benchmarks/mixed_precision.py --mlp-epochs {args.mlp_epochs} --max-acc-drop {args.max_acc_drop:g}"
          f" --test-samples {args.test_samples}")
    print("Fashion-MNIST; 200 calibration + 1,000 choice images from the training set; accuracy on the test set")
    mlp = _mlp(args.mlp_epochs, xtr.reshape(len(xtr), -1), ytr)
    flat = xtr.reshape(len(xtr), -1)
    for line in bench_model(f"MLP 784-512-256-10 ({args.mlp_epochs} epochs)", mlp, flat[:1200], ytr[:1200],
                            xte.reshape(len(xte), -1), yte, args.max_acc_drop):
        print(line, flush=True)
    cnn, _, _ = train_fmnist_cnn(DemoConfig())
    for line in bench_model("FMNIST-CNN (demo model, 10 epochs)", cnn, xtr[:1200], ytr[:1200], xte, yte,
                            args.max_acc_drop):
        print(line, flush=True)


if __name__ == "__main__":
    main()
