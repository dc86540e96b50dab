"""Per-layer int4 in the search, on Fashion-MNIST: benchmarks/search.py's 64x64 reference under a size budget.

    python benchmarks/search_int4.py --reference OUT/reference.keras --size-kb 40

`tfcompress.search.search` with `size_kb`, `int4=True`, `max_acc_drop=1` (pp from the float reference): the
structure is chosen on each genome's int4-estimated size, then the final model's layers take int4 weights one
measured step at a time (ai-edge-quantizer, accuracy in LiteRT) until the written file meets the budget or no
layer can take int4 within the accuracy budget. Prints the Pareto table, the int4 steps and the verdict; the
accuracy printed last is on 5,000 Fashion-MNIST test images (also the search's validation data, as in
benchmarks/search.py). ~12 min on 2 cores.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", required=True, help="trained reference .keras (benchmarks/search.py writes one)")
    ap.add_argument("--size-kb", type=float, default=40.0)
    ap.add_argument("--max-acc-drop", type=float, default=1.0)
    ap.add_argument("--out", default="/tmp/search_int4")
    a = ap.parse_args()

    sys.path.insert(0, str(Path(__file__).parent))
    import tfcompress.keras_compat  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
    from search import int8_accuracy, upscaled
    from tfcompress.datasets import load_fashion_mnist
    from tfcompress.search import search
    from tfcompress.search.front import table
    from tfcompress.search.settings import SearchSettings

    (xt, yt), (xv, yv) = load_fashion_mnist()
    x, y = upscaled(xt[:12000], 64), yt[:12000].astype(np.int64)
    x_val, y_val = upscaled(xv[:5000], 64), yv[:5000].astype(np.int64)
    t0 = time.perf_counter()
    s = SearchSettings(size_kb=a.size_kb, int4=True, max_acc_drop=a.max_acc_drop, strategy="netadapt", step=0.1,
                       trial_steps=40, trial_samples=8192, final_epochs=3, val_samples=2000)
    r = search(a.reference, (x, y), val_data=(x_val, y_val), device="host", output=a.out, settings=s,
               executor="local", workers=2, measure="none", fresh=True,
               on_progress=lambda m: print(f"[{time.perf_counter() - t0:7.1f}s] {m}", flush=True))
    print(table(r.front, None))
    print("chosen:", r.genome.describe(), "params", r.original.params, "->", r.chosen.params)
    print("int8 bytes", r.original.int8_bytes, "->", r.chosen.int8_bytes, "; written", r.final_bytes, "budget",
          int(a.size_kb * 1024))
    q = r.int4
    if q is not None:
        print("int4 layers", len(q.layers), q.layers, "float", q.float_layers, "bytes", q.bytes_before, "->",
              q.bytes_after, "acc", q.accuracy_before, "->", q.accuracy_after)
    print("reference float", r.reference_accuracy, "final acc (LiteRT, 2000 val)", r.final_accuracy, "met",
          r.budget_met)
    best = (Path(a.out) / "best.tflite").read_bytes()
    print("final accuracy on 5000 test images (LiteRT):", int8_accuracy(best, x_val, y_val))
    print("seconds", r.seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
