"""Predict a model's latency on a device from its profile: LUT + regression + calibration.

    pred = predict_latency_ms("model.tflite", "host")      # a shipped profile name, a JSON path or a DeviceProfile
    pred.total_ms, pred.by_layer(), pred.rows               # rows: op, Keras layers, ms, "lut" | "fit:<group>"

Three parts, each measured, none hand-tuned:

1. **LUT**: a kernel key measured on the device (one-op model, interpreter
   overhead subtracted) is used as is.
2. **Regression** for keys not in the LUT: a per-op-type non-negative
   least-squares fit on cost features (MACs, activation elements, weight
   elements), each op type's features and groups from its entry of
   `ops.OP_SPECS`. Non-negative coefficients make the prediction
   monotone: more MACs or bytes never predict less time.
3. **Calibration**: one-op timings run with inputs hot in cache and nothing
   before or after; in a model, ops run back to back and pass activations
   through memory. `total = overhead + scale * sum(kernel ms) + per_op_ms * n_ops`,
   with `scale` and `per_op_ms` fitted (non-negative least squares on relative
   error) on whole models measured on the same device (`Observation`s, recorded
   by `build_profile` for the models the LUT was built from, or imported).

Reading keys from a .tflite needs no TensorFlow; a Keras model is converted to
int8 first (and its layer names are mapped onto the rows).
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from tfcompress.hardware.kernels import KernelKey, KernelUse, kernels_of, to_tflite
from tfcompress.hardware.ops import spec_of
from tfcompress.hardware.profile import MAX_SCALE, Calibration, DeviceProfile, LutEntry, Observation, resolve_profile
from tfcompress.hardware.schema import MAX_MS

__all__ = ["PredictionRow", "Prediction", "LatencyModel", "fit_calibration", "calibrated", "predict_latency_ms"]


def _features(key: KernelKey) -> np.ndarray:
    """The regression's cost features of `key`, as its op's entry of `OP_SPECS` defines them."""
    return spec_of(key).features(key)


def _nnls(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative least squares on relative error (each row weighted by 1/y).

    Total, so that any profile that loads can be fitted: a system the solver
    gives up on is solved again with columns scaled to unit size (features span
    many orders of magnitude) and more iterations, then by clipped least
    squares, then the coefficients are zero.
    """
    from scipy.optimize import nnls

    w = 1.0 / np.maximum(y, 1e-3)
    a, b = x * w[:, None], y * w
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return np.zeros(a.shape[1])
    try:
        return nnls(a, b)[0]
    except RuntimeError:
        pass
    norms = np.abs(a).max(axis=0)
    norms[~(norms > 0)] = 1.0
    try:
        coef = nnls(a / norms, b, maxiter=100 * a.shape[1])[0]
    except RuntimeError:
        try:
            coef = np.clip(np.linalg.lstsq(a / norms, b, rcond=None)[0], 0.0, None)
        except np.linalg.LinAlgError:
            coef = np.zeros(a.shape[1])
    coef = coef / norms
    return np.where(np.isfinite(coef), coef, 0.0)


@dataclass(frozen=True)
class PredictionRow:
    """One op of the model: its predicted share of the total (calibration applied)."""

    op_index: int
    op: str
    layers: tuple[str, ...]
    ms: float  # calibrated: scale * kernel_ms + per_op_ms
    kernel_ms: float  # the LUT value or the regression's
    source: str  # "lut" | "fit:<group>" | "fit:all" | "const" (runs at prepare, not per invoke) | "none"
    key: KernelKey


@dataclass(frozen=True)
class Prediction:
    """Predicted latency of one model on one device profile."""

    device: str
    total_ms: float
    overhead_ms: float
    rows: tuple[PredictionRow, ...]
    calibration: Calibration = Calibration()

    @property
    def lut_hit_rate(self) -> float:
        """Fraction of ops whose kernel was measured (not regressed)."""
        return sum(r.source == "lut" for r in self.rows) / max(len(self.rows), 1)

    def by_layer(self) -> dict[str, float]:
        """Predicted ms per Keras layer (ops without a layer under their op type), in model order."""
        out: dict[str, float] = {}
        for r in self.rows:
            names = r.layers or (f"<{r.op}>",)
            for name in names:  # an op fused from several layers is split evenly between them
                out[name] = out.get(name, 0.0) + r.ms / len(names)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (for reports): total, overhead, LUT hit rate, per-layer ms."""
        return {
            "device": self.device,
            "total_ms": round(self.total_ms, 5),
            "overhead_ms": round(self.overhead_ms, 5),
            "lut_hit_rate": round(self.lut_hit_rate, 4),
            "calibration": asdict(self.calibration),
            "per_layer_ms": {k: round(v, 5) for k, v in self.by_layer().items()},
        }


WEIGHT_CACHE_CANDIDATES_MB = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
"""Model weight sizes beyond which the calibration may find weights streamed from memory on every invoke; the one
that fits the observed models best is kept (`Calibration.weight_cache_mb`)."""


def weight_mb(keys: Sequence[KernelKey]) -> float:
    """Megabytes of int8 weights of a model of `keys`."""
    return sum(k.weight_elements for k in keys) / 1e6


def streamed_weight_mb(keys: Sequence[KernelKey], cache_mb: float) -> float:
    """Megabytes of weights a model of `keys` reads from memory on every invoke: all of them when they exceed
    `cache_mb` (they evict each other between invokes, while the LUT timed each op alone, its weights hot), else 0.

    Measured on the host (32 MB L3): ResNet50, VGG16, InceptionV3 and Xception (21-44 MB of weights) ran 0.4-1.9 ms
    longer than their kernels timed one by one; models under 9 MB ran as their kernels add up (docs/latency.md).
    """
    total = weight_mb(keys)
    return total if total > cache_mb else 0.0


NEIGHBOURS = 5
"""Measured kernels whose regression residual corrects an unmeasured convolution's prediction."""
MAX_CORRECTION = 4.0


def _coords(key: KernelKey) -> np.ndarray:
    """Where a convolution sits in shape space: log2 of output positions, input and output channels; stride.

    `math.log2` takes integers of any size: a profile may hold absurd (but valid) shapes.
    """
    positions = 1
    for d in key.out_shape[1:-1]:
        positions *= max(int(d), 1)
    return np.array([math.log2(positions), math.log2(max(key.cin, 1)), math.log2(max(key.cout, 1)),
                     float(min(key.stride[0], 2**53)) if key.stride else 1.0])


class LatencyModel:
    """A profile's LUT plus the regressions fitted on it (fit once, predict many).

    An unmeasured convolution or dense layer (an op whose spec has `neighbours`) gets its group's regression times the
    median ratio measured / regressed of the NEIGHBOURS nearest measured kernels of that group (log2 positions,
    input and output channels, stride): XNNPACK's GEMM speed varies with shape in ways a line in MACs and bytes
    misses, and neighbours share it. Cross-validated on a 1009-kernel host LUT this took the median error of
    unseen 1x1 convolutions from 31% to 10% (docs/latency.md).
    """

    def __init__(self, profile: DeviceProfile) -> None:
        self.profile = profile
        self.table = profile.table()
        by_group: dict[str, list[LutEntry]] = defaultdict(list)
        by_op: dict[str, list[LutEntry]] = defaultdict(list)
        for e in profile.entries:
            groups = spec_of(e.key).groups(e.key)[:-1]  # "all" is fitted on every entry below
            by_group[groups[0]].append(e)
            by_op[groups[-1]].append(e)
        self.fits: dict[str, np.ndarray] = {}
        for name, rows in list(by_group.items()) + list(by_op.items()):
            if len(rows) >= 3 and name not in self.fits:
                self.fits[name] = self._fit(rows)
        if profile.entries:
            self.fits["all"] = self._fit(list(profile.entries))
        self._near: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for name, rows in by_group.items():
            spec = spec_of(rows[0].key)
            if not spec.neighbours or len(rows) < NEIGHBOURS or name not in self.fits:
                continue
            base = np.array([max(float(spec.features(e.key) @ self.fits[name]), 1e-6) for e in rows])
            ratio = np.log(np.maximum(np.array([e.ms for e in rows]), 1e-6) / base)
            self._near[name] = (np.stack([_coords(e.key) for e in rows]), ratio)
        self._memo: dict[KernelKey, tuple[float, str]] = {}

    @staticmethod
    def _fit(rows: Sequence[LutEntry]) -> np.ndarray:
        return _nnls(np.stack([_features(e.key) for e in rows]), np.array([e.ms for e in rows]))

    def kernel_ms(self, key: KernelKey) -> tuple[float, str]:
        """(ms, source) of one kernel: the LUT value, else the most specific regression (neighbour-corrected)."""
        if key in self.table:
            return self.table[key], "lut"
        if key in self._memo:
            return self._memo[key]
        spec = spec_of(key)
        if spec.at_prepare:  # only constant inputs (e.g. DENSIFY of sparse weights): done once, at prepare
            return 0.0, "const"
        got = 0.0, "none"
        for name in spec.groups(key):
            if name in self.fits:
                ms = float(spec.features(key) @ self.fits[name])
                got = ms, f"fit:{name}"
                if name in self._near:
                    coords, ratio = self._near[name]
                    nearest = np.argsort(((coords - _coords(key)) ** 2).sum(axis=1), kind="stable")[:NEIGHBOURS]
                    corr = float(np.clip(np.exp(np.median(ratio[nearest])), 1 / MAX_CORRECTION, MAX_CORRECTION))
                    got = ms * corr, f"fit:{name}+near"
                break
        self._memo[key] = got
        return got

    def kernel_sum(self, keys: Sequence[KernelKey]) -> float:
        """Sum of the (uncalibrated) kernel times of `keys`."""
        return sum(self.kernel_ms(k)[0] for k in keys)

    def predict(self, uses: Sequence[KernelUse]) -> Prediction:
        cal = self.profile.calibration
        rows = []
        for u in uses:
            ms, src = self.kernel_ms(u.key)
            rows.append(PredictionRow(u.op_index, u.key.op, u.layers, cal.scale * ms + cal.per_op_ms, ms, src, u.key))
        total = self.profile.overhead_ms + sum(r.ms for r in rows)
        total += cal.per_weight_mb_ms * streamed_weight_mb([u.key for u in uses], cal.weight_cache_mb)
        return Prediction(self.profile.device, total, self.profile.overhead_ms, tuple(rows), cal)


OUTLIER_MADS = 4.0
OUTLIER_FLOOR = 0.10
"""An observation whose relative residual lies further than OUTLIER_MADS (scaled) MADs and OUTLIER_FLOOR from the
median residual is left out of a second fit (`fit_calibration`)."""


def fit_calibration(profile: DeviceProfile, observations: Sequence[Observation] = ()) -> Calibration:
    """Fit `scale`, `per_op_ms`, `per_weight_mb_ms` and `weight_cache_mb` on whole-model observations (default: the
    profile's own).

    Non-negative least squares on relative error of
    `measured - overhead = scale * sum(kernel ms) + per_op_ms * n_ops + per_weight_mb_ms * streamed MB`,
    once for each of WEIGHT_CACHE_CANDIDATES_MB beyond which some observed model's weights go (`streamed_weight_mb`);
    the fit with the least mean absolute relative error is kept (squared error let one 22 ms model with 2.5 MB of
    weights choose 1 MB over the 16 MB the heavy models showed), or no weight term when none beats it. With fewer
    than 3 observations the identity calibration is returned.

    Then once more without the outliers (OUTLIER_MADS, OUTLIER_FLOOR), when at least 3 and half the models remain:
    a model its kernels cannot explain is not evidence about how kernels combine. Two kernel-coverage models whose
    standalone ReLUs ran on inputs the CPU could predict (3.4 ns an element, not the 8 ns of random ones) were
    predicted +26% and +47% and pulled the scale of all 79 to 0.988, every MBConv model 2.7% low (docs/latency.md).
    `fitted_on` counts the models of the fit kept.
    """
    obs = list(observations or profile.observations)
    if len(obs) < 3:
        return Calibration()
    lm = LatencyModel(profile)
    base = np.array([[lm.kernel_sum(o.kernels), float(len(o.kernels))] for o in obs])
    y = np.array([max(o.measured_ms - profile.overhead_ms, 1e-6) for o in obs])
    streamed = {c: np.array([streamed_weight_mb(o.kernels, c) for o in obs]) for c in WEIGHT_CACHE_CANDIDATES_MB}
    cal, rel = _fit_on(base, y, streamed, np.ones(len(obs), dtype=bool))
    if rel is not None:
        dev = np.abs(rel - np.median(rel))
        mad = 1.4826 * float(np.median(dev))
        inliers = dev <= max(OUTLIER_MADS * mad, OUTLIER_FLOOR)
        if not inliers.all() and inliers.sum() >= max(3, len(obs) / 2):
            cal, _ = _fit_on(base, y, streamed, inliers)
    return cal


def _fit_on(base: np.ndarray, y: np.ndarray, streamed: dict[float, np.ndarray],
            rows: np.ndarray) -> tuple[Calibration, np.ndarray | None]:
    """`fit_calibration`'s fit on the observations `rows`: (calibration, every observation's relative residual, None
    when the identity calibration is returned)."""
    b, t = base[rows], y[rows]
    w = 1.0 / np.maximum(t, 1e-3)

    def fitted(x: np.ndarray) -> tuple[float, np.ndarray]:  # (mean absolute relative error, coefficients)
        coef = _nnls(x, t)
        return float(np.mean(np.abs((x @ coef) - t) * w)), coef

    best_obj, coef = fitted(b)
    scale, per_op, per_mb, cache_mb = float(coef[0]), float(coef[1]), 0.0, Calibration.weight_cache_mb
    col = np.zeros(len(y))  # the chosen cache size's streamed MB per observation (none: no term)
    for candidate, full in streamed.items():
        if not full[rows].any():
            continue
        obj, c = fitted(np.column_stack([b, full[rows]]))
        if obj < best_obj * (1 - 1e-9) and c[2] > 0:
            best_obj, (scale, per_op, per_mb), cache_mb, col = obj, (float(v) for v in c), candidate, full
    if not (0.0 <= scale <= MAX_SCALE and 0.0 <= per_op <= MAX_MS and 0.0 <= per_mb <= MAX_MS):
        return Calibration(), None  # the models contradict their kernels (e.g. 0 ms kernels): no correction
    rel = (base @ np.array([scale, per_op]) + per_mb * col - y) / np.maximum(y, 1e-6)
    err = float(np.median(np.abs(rel[rows])))
    if not np.isfinite(err):
        return Calibration(), None
    return Calibration(scale=scale, per_op_ms=per_op, per_weight_mb_ms=per_mb, weight_cache_mb=cache_mb,
                       fitted_on=int(rows.sum()), median_abs_error=round(err, 5)), rel


def calibrated(profile: DeviceProfile) -> DeviceProfile:
    """`profile` with its calibration refitted on its observations (kept as is with fewer than 3)."""
    if len(profile.observations) < 3:
        return profile
    return replace(profile, calibration=fit_calibration(profile))


def predict_latency_ms(model_or_tflite: Any, profile: DeviceProfile | LatencyModel | str | os.PathLike[str]) -> Prediction:
    """Predicted latency of a model on the profile's device: per-op breakdown and total.

    Args:
        model_or_tflite: .tflite bytes or path (fast, no TensorFlow), or a Keras
            model (converted to int8 first, layer names mapped onto the rows).
        profile: a `DeviceProfile`, a fitted `LatencyModel`, a shipped profile
            name ("host") or a profile JSON path.
    """
    if isinstance(profile, LatencyModel):
        lm = profile
    else:
        lm = LatencyModel(profile if isinstance(profile, DeviceProfile) else resolve_profile(profile))
    names: list[str] = []
    if not isinstance(model_or_tflite, (bytes, bytearray, memoryview, str, os.PathLike)):
        names = [layer.name for layer in model_or_tflite.layers]
    return lm.predict(kernels_of(to_tflite(model_or_tflite), names))
