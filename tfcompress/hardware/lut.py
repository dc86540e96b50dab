"""Build latency lookup tables by timing single kernels (the predictor is in `predict.py`).

Profiler: for each `KernelKey` a one-op Keras model is built, converted to
full int8 (random calibration data) and timed in LiteRT (warm-up, repeats,
median after outlier rejection) by the functions of `edge_profile`, the same
code that times an edge bundle on a device. The interpreter's per-invoke overhead, timed
on a near-empty model, is subtracted from each kernel and added back once per
predicted model. Each measured key is written to the cache folder as soon as
it completes (file name = the key's content hash + runtime + threads), so an
interrupted build resumes where it stopped.

The source models themselves are timed whole too (`Observation`s, cached the
same way) and the profile's calibration is fitted on them (`predict.calibrated`).
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from tfcompress.hardware.edge_profile import fill_inputs, time_invoke, time_overhead
from tfcompress.hardware.kernels import KernelKey, kernels_of
from tfcompress.hardware.profile import DeviceProfile, LutEntry, Observation, Provenance, write_json_atomic

__all__ = [
    "Timing",
    "KernelSelection",
    "MEASURABLE_OPS",
    "time_tflite",
    "kernel_model",
    "convert_int8",
    "overhead_model_bytes",
    "select_kernels",
    "measure_kernel",
    "measure_overhead",
    "build_profile",
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
    fill_inputs(interp, seed)
    return Timing(*time_invoke(interp, warmup, runs, budget_s))


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
    shapes = [(1, *(_fixed(d, model, t) for d in t.shape[1:])) for t in model.inputs]  # batch 1

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


OVERHEAD_KEY = KernelKey(op="ADD", dtype="int8", in_shape=(1, 1, 1, 1), out_shape=(1, 1, 1, 1),
                         extra=(1, 1, 1, 1))
"""The near-empty model whose invoke time is the per-invoke overhead."""


def overhead_model_bytes() -> bytes:
    """The int8 .tflite of `OVERHEAD_KEY` (one ADD of two 1-element tensors)."""
    return convert_int8(kernel_model(OVERHEAD_KEY))


def _fixed(dim: Any, model: Any, tensor: Any) -> int:
    if dim is None:
        from tfcompress.errors import ConversionError

        raise ConversionError(
            f"model '{model.name}' input {tensor.name} has a variable size {tuple(tensor.shape)}: latency depends on it",
            "build the model with a fixed input shape (e.g. Input((224, 224, 3))) to predict its latency",
        )
    return int(dim)


def measure_overhead(threads: int = 1, repeats: int = 5) -> float:
    """Per-invoke cost of the near-empty model, in ms (best of `repeats` medians)."""
    from tfcompress.runtime import make_interpreter

    interp = make_interpreter(overhead_model_bytes(), num_threads=threads)
    fill_inputs(interp, 0)
    return time_overhead(interp, repeats=repeats)


def measure_kernel(key: KernelKey, overhead_ms: float, threads: int = 1) -> LutEntry:
    """Convert and time the one-op model of `key`; the overhead is subtracted."""
    content = convert_int8(kernel_model(key))
    t = time_tflite(content, threads=threads)
    return LutEntry(key, max(t.median_ms - overhead_ms, 0.0), t.runs, t.mad_ms)


# ------------------------------------------------------------------ building


@dataclass(frozen=True)
class KernelSelection:
    """The kernels of some sources: what can be timed, in measuring order, and what cannot."""

    keys: tuple[KernelKey, ...]  # measurable: most frequent first, then most MACs
    skipped: tuple[tuple[KernelKey, str], ...]  # (key, why it is not timed), same order


def select_kernels(sources: Iterable[Any]) -> KernelSelection:
    """Collect the kernel keys of `sources` (see `build_profile`) and split off the unmeasurable ones."""
    counts: Counter[KernelKey] = Counter()
    for src in sources:
        if isinstance(src, KernelKey):
            counts[src] += 1
        else:
            counts.update(u.key for u in kernels_of(to_tflite(src)))
    keys: list[KernelKey] = []
    skipped: list[tuple[KernelKey, str]] = []
    for k in sorted(counts, key=lambda k: (-counts[k], -k.macs, k)):
        if k.op not in MEASURABLE_OPS:
            skipped.append((k, f"no one-op model for {k.op}; predicted by regression"))
        elif k.dtype != "int8":
            skipped.append((k, f"computes in {k.dtype}; only int8 kernels are timed"))
        else:
            keys.append(k)
    return KernelSelection(tuple(keys), tuple(skipped))


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
    observe: bool = True,
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
        observe: also time every source model whole, record it as an
            `Observation` and fit the profile's `Calibration` on all its
            observations (see `tfcompress.hardware.predict`).
    """
    from tfcompress.hardware.predict import calibrated
    from tfcompress.runtime import runtime_version

    runtime = runtime_version()
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    named = [(source_name(src, i), src if isinstance(src, KernelKey) else to_tflite(src))
             for i, src in enumerate(sources)]
    have = base.table() if base is not None else {}
    todo = [k for k in select_kernels([c for _, c in named]).keys if k not in have]
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
    profile = replace(profile.with_entries(entries), overhead_ms=overhead, provenance=prov)
    if not observe:
        return profile
    models = [(name, c) for name, c in named if not isinstance(c, KernelKey)]
    observed = [_observe(name, c, cache, runtime, threads) for name, c in models]
    return calibrated(profile.with_observations(observed))


def source_name(source: Any, index: int) -> str:
    if isinstance(source, (str, os.PathLike)):
        return Path(source).name
    name = getattr(source, "name", None)
    return str(name) if isinstance(name, str) else f"model{index}"


def _observe(name: str, content: bytes, cache: Path, runtime: str, threads: int) -> Observation:
    """Time a whole model (cached by content hash, like kernels)."""
    import hashlib

    keys = tuple(u.key for u in kernels_of(content))
    digest = hashlib.sha256(content).hexdigest()[:24]
    path = cache / f"model-{digest}-{runtime.replace(' ', '_')}-t{threads}.json"
    if path.exists():
        ms = float(json.loads(path.read_text())["ms"])
    else:
        ms = time_tflite(content, threads=threads, runs=50, budget_s=1.0).median_ms
        write_json_atomic(path, {"name": name, "ms": ms})
    return Observation(f"{name}#{digest[:8]}", ms, keys)


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

