"""tfcompress.convert (verification off) vs a bare TFLiteConverter call, same model, same run.

    python benchmarks/convert_overhead.py [--repeats 3] [--size 224]

Builds keras.applications.MobileNetV2(weights=None) in Keras 3, then times,
interleaved, `repeats` times each:
  bare        TFLiteConverter.from_keras_model + full-int8 settings + convert()
  tfcompress  tfcompress.convert(model, data, mode="int8", verify=False)
with the same 100 calibration samples. Prints the median of each and the
ratio (goal: <= 1.2x). Timings on a shared 2-core machine are noisy: compare
the ratio, not the seconds.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=224, help="input resolution")
    parser.add_argument("--calib", type=int, default=100, help="calibration samples")
    args = parser.parse_args()

    import tfcompress
    from tfcompress.quiet import captured_output
    from tfcompress.keras_compat import keras3, tf

    model = keras3.applications.MobileNetV2(weights=None, input_shape=(args.size, args.size, 3))
    data = np.random.default_rng(0).uniform(-1, 1, (args.calib, args.size, args.size, 3)).astype(np.float32)

    def bare() -> bytes:
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([data[i : i + 1]] for i in range(len(data)))
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
        with captured_output():
            return conv.convert()

    def ours() -> bytes:
        return tfcompress.convert(model, data, mode="int8", calib_samples=args.calib, verify=False).tflite

    times: dict[str, list[float]] = {"bare TFLiteConverter": [], "tfcompress.convert": []}
    sizes: dict[str, int] = {}
    for _ in range(args.repeats):
        for name, fn in (("bare TFLiteConverter", bare), ("tfcompress.convert", ours)):
            t0 = time.perf_counter()
            out = fn()
            times[name].append(time.perf_counter() - t0)
            sizes[name] = len(out)

    print(f"MobileNetV2 {args.size}x{args.size} (weights=None, {model.count_params():,} params), "
          f"full int8, {args.calib} calibration samples, {args.repeats} interleaved repeats")
    print(f"{'':24s} {'median s':>9s} {'min s':>8s} {'bytes':>11s}")
    for name, ts in times.items():
        print(f"{name:24s} {statistics.median(ts):9.2f} {min(ts):8.2f} {sizes[name]:11,d}")
    ratio = statistics.median(times["tfcompress.convert"]) / statistics.median(times["bare TFLiteConverter"])
    print(f"ratio tfcompress / bare: {ratio:.2f}x (goal <= 1.20x)")


if __name__ == "__main__":
    main()
