"""Where the predictor misses keras.applications models: each model's kernels timed here one by one, beside its
whole-model time and the profile's per-kernel prediction, summed per op type.

    python benchmarks/lut_misses.py --profile host --models "ResNet50 64px,NASNetMobile 96px"   (~20 s a model)

If the kernels timed here add up to the whole model (composition holds) while the profile's kernels do not, the
miss is in kernel prediction (regressions outside what the LUT measured), not in how kernels combine. Each
model: whole (the timing protocol) and fastest of 5 (`measure.fastest`), the sum of its kernels timed here, the
profile's kernel sum and predicted total (`LatencyModel.predict`); per op type timed vs profile ms; the
worst-predicted kernels.
"""

from __future__ import annotations

import argparse
import tempfile


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="host", help="a shipped profile name or a profile JSON")
    ap.add_argument("--models", default="", help="comma-separated names from spaces.APPLICATIONS (default: all)")
    ap.add_argument("--cache", default=None, help="kernel timing cache folder (default: a new temporary one)")
    ap.add_argument("--worst", type=int, default=3, help="worst-predicted kernels shown per model")
    a = ap.parse_args()

    import tfcompress.keras_compat  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
    from tfcompress.hardware.measure import fastest, measure, select_kernels
    from tfcompress.hardware.predict import LatencyModel
    from tfcompress.hardware.profile import resolve_profile
    from tfcompress.hardware.kernels import kernels_of
    from tfcompress.hardware.spaces import APPLICATIONS, application_models

    wanted = [w.strip() for w in a.models.split(",") if w.strip()]
    unknown = [w for w in wanted if w not in {n for n, _, _ in APPLICATIONS}]
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; choose from: {', '.join(n for n, _, _ in APPLICATIONS)}")
    prof = resolve_profile(a.profile)
    lm = LatencyModel(prof)
    with tempfile.TemporaryDirectory() as tmp:
        for name, content in application_models(names=set(wanted) if wanted else None):
            uses = kernels_of(content)
            m = measure(select_kernels([content]).keys, [(name, content)], cache_dir=a.cache or tmp)
            timed = {k: r["ms"] for k, r in m.kernels}
            fast = fastest([content], times=5)[0][0]
            rows = [(u.key, timed.get(u.key), *lm.kernel_ms(u.key)) for u in uses]
            t_sum = sum(r[1] for r in rows if r[1] is not None)
            p_sum = sum(r[2] for r in rows)
            untimed = sorted({r[0].op for r in rows if r[1] is None})
            total = lm.predict(uses).total_ms
            print(f"\n{name}: whole {m.models[0]['ms']:.3f} ms, fastest of 5 {fast:.3f} ms; {len(rows)} ops; kernels "
                  f"timed here {t_sum:.3f} ms{f' (not timed: {untimed})' if untimed else ''}; profile kernels "
                  f"{p_sum:.3f} ms, predicted total {total:.3f} ms", flush=True)
            by_op: dict[str, list[float]] = {}
            for key, ms, pred, _src in rows:
                acc = by_op.setdefault(key.op, [0, 0.0, 0.0])
                acc[0] += 1
                acc[1] += ms or 0.0
                acc[2] += pred
            print(f"  {'op':20s} {'n':>4s} {'timed ms':>9s} {'profile ms':>10s}")
            for op, (n, ms, pred) in sorted(by_op.items(), key=lambda kv: -kv[1][1]):
                print(f"  {op:20s} {n:4d} {ms:9.3f} {pred:10.3f}")
            worst = sorted((r for r in rows if r[1]), key=lambda r: -(r[1] - r[2]))[: a.worst]
            for key, ms, pred, src in worst:
                print(f"  worst: {key.describe()[:70]:70s} timed {ms:.4f} profile {pred:.4f} ({src})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
