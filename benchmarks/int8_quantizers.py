"""Per-op precision building blocks, measured: TFLite's int8 quantizer vs ai-edge-quantizer's, and int4 sizes.

    python benchmarks/int8_quantizers.py [--samples 64] [--seed 0]

On an MLP (64-256-256-10, untrained, seeded) and the same calibration samples, prints output SNR against the
float model and the .tflite size for: float32; full int8 by the TFLite converter's quantizer (what
`tfcompress.precision.mixed` uses for int8 / float plans); ai-edge-quantizer 0.10's own default static int8
recipe; and AEQ plans with int4 weights (w4a8 on the hidden layers + float head; weight-only int4 everywhere).
This is the measurement behind docs/precision.md's note on why int8 / float plans do not go through AEQ.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=64, help="calibration samples")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from ai_edge_quantizer import quantizer, recipe

    from tfcompress import data as data_mod
    from tfcompress.export.converter import calibrate, convert_float32, quantize_calibrated
    from tfcompress.export.verify import TfliteRunner
    from tfcompress.keras_compat import tf_keras
    from tfcompress.loading import load_source
    from tfcompress.precision.mixed import PrecisionRule, quantize_mixed
    from tfcompress.precision.sensitivity import quality
    from tfcompress.quiet import captured_output
    from tfcompress.runtime import make_interpreter
    from tfcompress.types import IOType

    tf_keras.utils.set_random_seed(args.seed)
    inp = tf_keras.Input((64,))
    h = tf_keras.layers.Dense(256, activation="relu", name="d1")(inp)
    h = tf_keras.layers.Dense(256, activation="relu", name="d2")(h)
    model = tf_keras.Model(inp, tf_keras.layers.Dense(10, name="head")(h))
    x = np.random.default_rng(args.seed).random((200 + args.samples, 64), dtype=np.float32)
    calib, held = x[: args.samples], x[args.samples :]
    ref = model.predict(held, verbose=0)

    source = load_source(model)
    samples = data_mod.load_samples(calib, source.input_specs())
    rows = []
    flt = convert_float32(source)
    rows.append(("float32 (converter)", flt))
    rows.append(("int8, TFLite quantizer", quantize_calibrated(
        calibrate(source, lambda: data_mod.representative_dataset(samples)), IOType.FLOAT32)))
    qt = quantizer.Quantizer(flt, recipe.static_wi8_ai8())
    key, spec = next(iter(make_interpreter(flt).get_signature_list().items()))
    with captured_output():
        qsv = qt.calibrate({key: [{spec["inputs"][0]: calib[i : i + 1]} for i in range(len(calib))]})
        rows.append(("int8, AEQ default a8w8 recipe", bytes(qt.quantize(qsv, enable_progress_report=False).quantized_model)))
    rows.append(("AEQ: int4 (w4a8) d1, d2; float head", quantize_mixed(
        model, calib, [PrecisionRule.parse("head=float"), PrecisionRule.parse("op:FULLY_CONNECTED=int4")],
        calib_samples=args.samples).tflite))
    rows.append(("AEQ: int4 weights only, all", quantize_mixed(
        model, calib, [PrecisionRule.parse("op:FULLY_CONNECTED=int4w")], calib_samples=args.samples).tflite))

    print(f"$ python benchmarks/int8_quantizers.py --samples {args.samples} --seed {args.seed}")
    print(f"MLP 64-256-256-10 (untrained, seed {args.seed}); {args.samples} calibration samples; SNR on {len(held)} others")
    print(f"{'variant':40s} {'SNR dB':>8s} {'bytes':>9s}")
    for name, tfl in rows:
        snr = quality(ref, TfliteRunner(tfl).run((held,))[0], None).snr_db
        print(f"{name:40s} {snr:8.1f} {len(tfl):9,}")


if __name__ == "__main__":
    main()
