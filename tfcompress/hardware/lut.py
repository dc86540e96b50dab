"""Build latency lookup tables by timing single kernels, and predict model latency.

Profiler: for each `KernelKey` a one-op Keras model is built, converted to
full int8 (random calibration data) and timed in LiteRT (warm-up, repeats,
median after outlier rejection). The interpreter's per-invoke overhead, timed
on a near-empty model, is subtracted from each kernel and added back once per
predicted model. Each measured key is written to the cache folder as soon as
it completes (file name = the key's content hash + runtime + threads), so an
interrupted build resumes where it stopped.

Predictor: a LUT hit is used as is; a key not in the LUT is predicted by a
per-op-type non-negative least-squares fit on cost features (MACs, activation
bytes, weight bytes; see `_features`). Non-negative coefficients make the
prediction monotone: more MACs or bytes never predict less time. Every op of
the model is predicted (ADD, MEAN, PAD, RESHAPE, QUANTIZE, ...), not only
convolutions.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from tfcompress.hardware.kernels import CONV_OPS, KernelKey, KernelUse, kernels_of
from tfcompress.hardware.profile import DeviceProfile, LutEntry, Provenance, write_json_atomic

__all__ = [
    "Timing",
    "PredictionRow",
    "Prediction",
    "time_tflite",
    "kernel_model",
    "measure_kernel",
    "measure_overhead",
    "build_profile",
    "LatencyModel",
    "predict_latency_ms",
    "to_tflite",
]


# ------------------------------------------------------------------ timing


@dataclass(frozen=True)
class Timing:
    median_ms: float
    mad_ms: float
    runs: int  # kept after outlier rejection


def time_tflite(
    content: bytes, *, threads: int = 1, warmup: int = 10, runs: int = 50, budget_s: float = 0.5, seed: int = 0
) -> Timing:
    """Median invoke() time of a .tflite on random inputs, after MAD outlier rejection."""
    from tfcompress.runtime import make_interpreter

    interp = make_interpreter(content, num_threads=threads)
    rng = np.random.default_rng(seed)
    for d in interp.get_input_details():
        dt = np.dtype(d["dtype"])
        if np.issubdtype(dt, np.integer):
            info = np.iinfo(dt)
            x = rng.integers(info.min, info.max, size=d["shape"], endpoint=True).astype(dt)
        else:
            x = rng.standard_normal(d["shape"]).astype(dt)
        interp.set_tensor(d["index"], x)
    for _ in range(warmup):
        interp.invoke()
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(times) < runs and (len(times) < 7 or time.perf_counter() < deadline):
        t0 = time.perf_counter()
        interp.invoke()
        times.append((time.perf_counter() - t0) * 1e3)
    arr = np.asarray(times)
    med = float(np.median(arr))
    mad = float(np.median(np.abs(arr - med))) * 1.4826
    kept = arr[np.abs(arr - med) <= 3 * mad + 1e-9] if mad > 0 else arr
    return Timing(float(np.median(kept)), mad, int(kept.size))


# ------------------------------------------------------- one-op models


_KERAS_ACT = {"": None, "RELU": "relu", "RELU6": "relu6", "RELU_N1_TO_1": None, "TANH": "tanh"}

MEASURABLE_OPS: frozenset[str] = frozenset(
    {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "MUL", "MEAN", "LOGISTIC", "HARD_SWISH", "PAD",
     "AVERAGE_POOL_2D", "MAX_POOL_2D", "RESHAPE", "SOFTMAX", "RELU", "RELU6"}
)
"""Op types `kernel_model` can build; others are predicted by regression only."""


def kernel_model(key: KernelKey) -> Any:
    """A tf_keras model that converts to (essentially) the single op `key`."""
    from tfcompress.keras_compat import tf, tf_keras

    L = tf_keras.layers
    x = tf_keras.Input(key.in_shape[1:], batch_size=1)
    inputs = [x]

    def act(y: Any) -> Any:
        if key.activation == "RELU6":
            return L.ReLU(6.0)(y)
        if key.activation == "RELU":
            return L.ReLU()(y)
        return y

    op = key.op
    if op == "CONV_2D":
        y = act(L.Conv2D(key.cout, key.kernel, strides=key.stride, padding=key.padding.lower())(x))
    elif op == "DEPTHWISE_CONV_2D":
        mult = max(key.cout // max(key.cin, 1), 1)
        y = act(L.DepthwiseConv2D(key.kernel, strides=key.stride, padding=key.padding.lower(),
                                  depth_multiplier=mult)(x))
    elif op == "FULLY_CONNECTED":
        y = act(L.Dense(key.cout)(L.Reshape((key.cin,))(x) if len(key.in_shape) != 2 else x))
    elif op in {"ADD", "MUL"}:
        other = tf_keras.Input((key.extra or key.in_shape)[1:], batch_size=1)
        inputs.append(other)
        fn = tf.add if op == "ADD" else tf.multiply
        y = act(L.Lambda(lambda ab: fn(ab[0], ab[1]))([x, other]))
    elif op == "MEAN":
        keep = len(key.out_shape) == len(key.in_shape)
        y = L.Lambda(lambda t: tf.reduce_mean(t, axis=[1, 2], keepdims=keep))(x)
    elif op == "LOGISTIC":
        y = L.Activation("sigmoid")(x)
    elif op == "HARD_SWISH":
        y = L.Lambda(lambda t: t * tf.nn.relu6(t + 3.0) / 6.0)(x)
    elif op in {"RELU", "RELU6"}:
        y = L.ReLU(6.0 if op == "RELU6" else None)(x)
    elif op == "PAD":
        h, w = key.in_hw
        oh, ow = key.out_shape[1], key.out_shape[2]
        y = L.ZeroPadding2D(((0, oh - h), (0, ow - w)))(x)
    elif op in {"AVERAGE_POOL_2D", "MAX_POOL_2D"}:
        cls = L.AveragePooling2D if op == "AVERAGE_POOL_2D" else L.MaxPooling2D
        y = cls(key.kernel, strides=key.stride, padding=key.padding.lower())(x)
    elif op == "RESHAPE":
        y = L.Reshape(key.out_shape[1:])(x)
    elif op == "SOFTMAX":
        y = L.Softmax()(x)
    else:
        raise ValueError(f"cannot build a one-op model for {op}")
    return tf_keras.Model(inputs, y)


def convert_int8(model: Any, samples: int = 4, seed: int = 0) -> bytes:
    """Full-integer int8 conversion (int8 in / out) with random calibration data."""
    from tfcompress.export.converter import run_converter
    from tfcompress.keras_compat import tf

    rng = np.random.default_rng(seed)
    shapes = [tuple(int(d) for d in t.shape) for t in model.inputs]

    def representative() -> Iterable[list[np.ndarray]]:
        for _ in range(samples):
            yield [rng.uniform(-1, 1, size=s).astype(np.float32) for s in shapes]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return run_converter(conv, "a one-op profiling model")


def measure_overhead(threads: int = 1, repeats: int = 5) -> float:
    """Per-invoke cost of a near-empty model (one ADD of two 1-element tensors), in ms."""
    key = KernelKey(op="ADD", dtype="int8", in_shape=(1, 1, 1, 1), out_shape=(1, 1, 1, 1), extra=(1, 1, 1, 1))
    content = convert_int8(kernel_model(key))
    return min(time_tflite(content, threads=threads, runs=200, budget_s=0.3).median_ms for _ in range(repeats))


def measure_kernel(key: KernelKey, overhead_ms: float, threads: int = 1) -> LutEntry:
    """Convert and time the one-op model of `key`; the overhead is subtracted."""
    content = convert_int8(kernel_model(key))
    t = time_tflite(content, threads=threads)
    return LutEntry(key, max(t.median_ms - overhead_ms, 0.0), t.runs, t.mad_ms)


# ------------------------------------------------------------------ building


def _cache_name(key: KernelKey, runtime: str, threads: int) -> str:
    return f"{key.digest()}-{runtime.replace(' ', '_')}-t{threads}.json"


def build_profile(
    sources: Iterable[Any],
    *,
    device: str = "host",
    cache_dir: str | os.PathLike[str],
    base: DeviceProfile | None = None,
    threads: int = 1,
    max_keys: int | None = None,
    time_budget_s: float | None = None,
    command: str = "",
    on_progress: Callable[[int, int, KernelKey], None] | None = None,
) -> DeviceProfile:
    """Build (or extend `base`) a profile by timing the kernels of `sources`.

    Args:
        sources: Keras models, .tflite bytes / paths, or KernelKeys. Models are
            converted to int8 first; their kernels are what gets timed.
        cache_dir: measured keys are stored here one file each, as they complete;
            a second call finds them and measures only the rest.
        max_keys / time_budget_s: stop early; the most frequent keys (then the
            most expensive, by MACs) are measured first.
    """
    from tfcompress.runtime import runtime_version

    runtime = runtime_version()
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    counts: Counter[KernelKey] = Counter()
    for src in sources:
        if isinstance(src, KernelKey):
            counts[src] += 1
        else:
            counts.update(u.key for u in kernels_of(to_tflite(src)))
    have = base.table() if base is not None else {}
    todo = [k for k in sorted(counts, key=lambda k: (-counts[k], -k.macs, k)) if k not in have]
    todo = [k for k in todo if k.op in MEASURABLE_OPS and k.dtype == "int8"]
    if max_keys is not None:
        todo = todo[:max_keys]

    overhead_file = cache / f"overhead-{runtime.replace(' ', '_')}-t{threads}.json"
    if overhead_file.exists():
        overhead = float(json.loads(overhead_file.read_text())["ms"])
    else:
        overhead = measure_overhead(threads)
        write_json_atomic(overhead_file, {"ms": overhead})

    entries: list[LutEntry] = []
    for n, key in enumerate(todo):
        path = cache / _cache_name(key, runtime, threads)
        if path.exists():
            d = json.loads(path.read_text())
            entries.append(LutEntry(key, float(d["ms"]), int(d["runs"]), float(d["spread_ms"])))
            continue
        if time_budget_s is not None and time.perf_counter() - started > time_budget_s:
            break
        try:
            entry = measure_kernel(key, overhead, threads)
        except Exception:  # noqa: BLE001 - a key the converter cannot reproduce is left to the regression
            continue
        write_json_atomic(path, {"key": key.to_json(), "ms": entry.ms, "runs": entry.runs,
                                 "spread_ms": entry.spread_ms})
        entries.append(entry)
        if on_progress is not None:
            on_progress(n + 1, len(todo), key)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    prov = Provenance(
        command=command,
        measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        host=f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus",
        method="one-op int8 models, random calibration; warm-up 10, <=50 runs / 0.5 s, median after 3-MAD "
               "rejection; empty-model overhead subtracted",
        load_average=load,
    )
    profile = base or DeviceProfile(device=device, runtime=runtime, threads=threads)
    return replace(profile.with_entries(entries), overhead_ms=overhead, provenance=prov)


def to_tflite(source: Any) -> bytes:
    """.tflite bytes of bytes, a path to a .tflite, or a Keras model (converted to int8)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, (str, os.PathLike)) and str(source).endswith(".tflite"):
        return Path(source).read_bytes()
    from tfcompress.keras_compat import keras3, tf_keras

    model = source
    if isinstance(source, (str, os.PathLike)):
        from tfcompress import load_model

        model = load_model(source)
    if isinstance(model, (keras3.Model, tf_keras.Model)):
        return convert_int8(model)
    raise TypeError(f"expected a Keras model, .tflite bytes or path, got {type(source).__name__}")


# ------------------------------------------------------------------ predicting


def _group(key: KernelKey) -> str:
    if key.op in CONV_OPS:
        return f"{key.op}/k{key.kernel[0]}"
    return key.op


def _features(key: KernelKey) -> np.ndarray:
    """Cost features: [1, MACs, activation elements in+out, weight elements] (in millions)."""
    return np.array(
        [1.0, key.macs / 1e6, (key.in_elements + key.out_elements) / 1e6, key.weight_elements / 1e6]
    )


def _nnls(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    from scipy.optimize import nnls

    # relative error matters: weight each row by 1/y so small kernels count as much as large ones
    w = 1.0 / np.maximum(y, 1e-3)
    coef, _ = nnls(x * w[:, None], y * w)
    return coef


@dataclass(frozen=True)
class PredictionRow:
    op_index: int
    op: str
    layers: tuple[str, ...]
    ms: float
    source: str  # "lut" | "fit:<group>" | "fit:all"
    key: KernelKey


@dataclass(frozen=True)
class Prediction:
    total_ms: float
    overhead_ms: float
    rows: tuple[PredictionRow, ...]

    @property
    def lut_hit_rate(self) -> float:
        return sum(r.source == "lut" for r in self.rows) / max(len(self.rows), 1)


class LatencyModel:
    """A profile's LUT plus the regressions fitted on it (fit once, predict many)."""

    def __init__(self, profile: DeviceProfile) -> None:
        self.profile = profile
        self.table = profile.table()
        by_group: dict[str, list[LutEntry]] = defaultdict(list)
        by_op: dict[str, list[LutEntry]] = defaultdict(list)
        for e in profile.entries:
            by_group[_group(e.key)].append(e)
            by_op[e.key.op].append(e)
        self.fits: dict[str, np.ndarray] = {}
        for name, rows in list(by_group.items()) + list(by_op.items()):
            if len(rows) >= 3 and name not in self.fits:
                self.fits[name] = self._fit(rows)
        if profile.entries:
            self.fits["all"] = self._fit(list(profile.entries))

    @staticmethod
    def _fit(rows: Sequence[LutEntry]) -> np.ndarray:
        return _nnls(np.stack([_features(e.key) for e in rows]), np.array([e.ms for e in rows]))

    def kernel_ms(self, key: KernelKey) -> tuple[float, str]:
        if key in self.table:
            return self.table[key], "lut"
        for name in (_group(key), key.op, "all"):
            if name in self.fits:
                return float(_features(key) @ self.fits[name]), f"fit:{name}"
        return 0.0, "none"

    def predict(self, uses: Sequence[KernelUse]) -> Prediction:
        rows = []
        for u in uses:
            ms, src = self.kernel_ms(u.key)
            rows.append(PredictionRow(u.op_index, u.key.op, u.layers, ms, src, u.key))
        total = self.profile.overhead_ms + sum(r.ms for r in rows)
        return Prediction(total, self.profile.overhead_ms, tuple(rows))


def predict_latency_ms(model_or_tflite: Any, profile: DeviceProfile | LatencyModel) -> Prediction:
    """Predicted latency of a model on the profile's device: overhead + every op's kernel time.

    `model_or_tflite`: .tflite bytes or path (fast, no TensorFlow), or a Keras
    model (converted to int8 first, with layer names mapped onto the rows).
    """
    lm = profile if isinstance(profile, LatencyModel) else LatencyModel(profile)
    names: list[str] = []
    if not isinstance(model_or_tflite, (bytes, bytearray, memoryview, str, os.PathLike)):
        names = [layer.name for layer in model_or_tflite.layers]
    return lm.predict(kernels_of(to_tflite(model_or_tflite), names))
