"""Issue #6 target: predict int8 host latency (1 thread) within ±10% on random architectures.

    python benchmarks/lut_accuracy.py --n 100            # the issue's target
    python benchmarks/lut_accuracy.py --quick            # smoke test: --n 5, 3 LUT-building models

The LUT is built from `--train` random architectures (seed 100) from a cold cache
(a fresh temporary folder unless --cache), then `--n` other random architectures
(seed 1) are converted, measured and predicted.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--train", type=int, default=20)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--cache", default=None)
    ap.add_argument("--png", default="lut_accuracy.png")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.train = 5, 3

    from tfcompress.hardware.lut import build_profile
    from tfcompress.hardware.validate import arch_tflites, scatter_png, validate

    print(f"load average at start: {os.getloadavg()}")
    cache = args.cache or tempfile.mkdtemp(prefix="lut-")
    t0 = time.perf_counter()
    train = arch_tflites(args.train, seed=100)
    profile = build_profile([c for _, c in train], cache_dir=cache, command=" ".join(sys.argv))
    build_s = time.perf_counter() - t0
    v = validate(profile, n=args.n, seed=1)
    errs = v.errors
    print(f"LUT: {len(profile.entries)} kernels, overhead {profile.overhead_ms:.4f} ms, "
          f"built from cold cache in {build_s:.0f} s (target <= 600 s)")
    for r in v.rows:
        print(f"  {r.arch.resolution:3d}px {len(r.arch.blocks)} blocks se={sum(b.se for b in r.arch.blocks)} "
              f"measured {r.measured_ms:7.3f} ms predicted {r.predicted_ms:7.3f} ms err {r.error:+6.1%} "
              f"lut hits {r.lut_hit_rate:.0%}")
    print(f"within ±10%: {v.within(0.10):.0%} (target >= 95%); median |err| {v.median_abs_error:.1%} "
          f"(target <= 5%); mean err {errs.mean():+.1%}")
    print(f"prediction time: max {max(r.predict_s for r in v.rows) * 1e3:.1f} ms (target <= 100 ms)")
    print(f"load average at end: {os.getloadavg()}")
    png = scatter_png(v, args.png)
    print(f"scatter: {png or 'matplotlib not installed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
