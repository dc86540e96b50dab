"""Calibration and verification data: load, validate against the model, split.

`load_samples(source, specs)` turns whatever the user has into `Samples`: one
array per model input (first axis = samples, dtype = the input's dtype),
optional integer class labels, and a JSON-able record of every change made.
All checks happen here, before any conversion starts; a problem the user can
fix raises `DataError` naming the file / key / input / shape.

Accepted sources (checked in this order):

* **path** (`str` / `os.PathLike`):
    - `.npy`: one array = the inputs of a single-input model (no labels).
    - `.npz`: read like a dict element (below): inputs under `x_key`
      (comma-separated keys, one per input, for multi-input models), labels
      under `y_key` when that key exists (a non-default `y_key` must exist).
    - a directory of `.jpg/.jpeg/.png/.bmp` images: one subfolder per class
      (sorted subfolder names = class names, labels = their index; images are
      taken round-robin over classes so any prefix mixes classes), or a flat
      folder of images (no labels). Images are decoded with Pillow, converted
      to grayscale / RGB / RGBA from the model's channel count, resized to the
      model's H x W and scaled by `ImageSpec`. Single-input models only.
* **`tf.data.Dataset`**: elements as for iterables below; unbatched or batched
  (told apart per element by comparing ranks with the model input). An
  infinite dataset needs `max_samples`.
* **direct data**: an `np.ndarray` / tensor, a tuple or list, or a dict,
  read with the element rules below; the first axis is samples.
* **callable**: called with no arguments. If it returns an array/tensor, tuple
  or dict, that is direct data; a `tf.data.Dataset` is a dataset; any other
  iterable (a list, a generator) is iterated as batches (elements below).
* **iterator / generator** of batches (consumed once).

An *element* (one batch, or the whole direct data) is one of:

* an array: the single input (models with one input);
* a tuple/list of `n_inputs` arrays: one per input, no labels (`n_inputs > 1`);
* a pair `(x, y)`: `x` an array (one input) or a tuple/list/dict of arrays
  (several inputs), `y` the labels. For a one-input model a tuple of one array
  is `(x,)`;
* a dict: inputs under `x_key` (comma-separated for several); with the
  default `x_key` absent, under the model's input names or `arr_0, ..`;
  labels under `y_key` when present.

Each input array may carry a batch axis or not (a single sample): ranks are
compared with the model's. If the only difference is a missing trailing
channel axis of size 1, it is added (`"expand_channel_axis": true`).

Dtypes: data is cast to each input's dtype only when no value changes: floats
must be finite (NaN / Inf are reported with the first sample index), float
data for an integer input must be integer-valued and in range, bool inputs
take 0/1, strings / objects / complex are refused. uint8 data for a float
input is cast as is (with a "did you forget to scale?" warning in
`preprocessing` when values exceed 1.5), or scaled by `image` when given.

Labels: integer class ids (shape `(N,)` or `(N, 1)`), one-hot / scores
`(N, C)` (argmax taken) or strings (sorted names become `labels`). Labels that
are not class ids (e.g. float regression targets) are dropped, with a note in
`preprocessing`; a count that differs from the sample count is an error.
"""

from __future__ import annotations

import itertools
import math
import os
import sys
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from tfcompress.errors import DataError

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageSpec",
    "InputSpec",
    "Samples",
    "Scaling",
    "load_samples",
    "parse_scaling",
    "representative_dataset",
    "split",
]

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp")
DEFAULT_X_KEY = "x"
DEFAULT_Y_KEY = "y"
UINT8_WARNING = "values up to 255: did you forget to scale?"

_SCALE_HINT = 'use "0,1", "-1,1", "raw" or "mean=0.485,0.456,0.406;std=0.229,0.224,0.225"'


# --------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class InputSpec:
    """What the model expects on one input.

    Attributes:
        name: The input's name.
        shape: Full shape including the batch axis (`None` = any size).
        dtype: NumPy dtype name, e.g. "float32", "int32".
    """

    name: str
    shape: tuple[int | None, ...]
    dtype: str


@dataclass(frozen=True)
class Scaling:
    """A per-channel affine map `x * scale + offset` from 0..255 pixel values.

    Attributes:
        spec: The string it was parsed from.
        scale: One value, or one per channel.
        offset: One value, or one per channel (same length as `scale`).
    """

    spec: str
    scale: tuple[float, ...]
    offset: tuple[float, ...]

    def apply(self, x: np.ndarray, where: str) -> np.ndarray:
        """Scale `x` (channels last) to float32; `where` names it in errors."""
        channels = x.shape[-1] if x.ndim else 1
        if len(self.scale) > 1 and len(self.scale) != channels:
            raise DataError(
                f"{where}: scaling '{self.spec}' has {len(self.scale)} channel values "
                f"but the data has {channels} channel(s) (shape {tuple(x.shape)})",
                f"give one mean/std value, or {channels}",
            )
        scale = np.asarray(self.scale, dtype=np.float32)
        offset = np.asarray(self.offset, dtype=np.float32)
        return (x.astype(np.float32) * scale + offset).astype(np.float32)

    def record(self) -> dict[str, Any]:
        """JSON-able description for `Samples.preprocessing`."""
        return {
            "spec": self.spec,
            "formula": "pixel * scale + offset (pixel in 0..255, per channel)",
            "scale": list(self.scale),
            "offset": list(self.offset),
        }


# "lo,hi" ranges that have a name.
_RANGE_ALIASES: dict[str, str] = {"raw": "0,255"}


def _floats(text: str, spec: str, what: str) -> tuple[float, ...]:
    """Comma-separated finite floats, or a DataError naming `spec`."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise DataError(f"bad scaling '{spec}': {what} '{text}' is not comma-separated numbers", _SCALE_HINT) from None
    if not all(math.isfinite(v) for v in values):
        raise DataError(f"bad scaling '{spec}': {what} must be finite numbers", _SCALE_HINT)
    return values


def _parse_range(spec: str, text: str) -> Scaling:
    """'lo,hi': map 0..255 linearly onto lo..hi."""
    values = _floats(text, spec, "range")
    if len(values) != 2 or not values[1] > values[0]:
        raise DataError(f"bad scaling '{spec}': a range needs two numbers lo,hi with hi > lo", _SCALE_HINT)
    lo, hi = values
    return Scaling(spec, ((hi - lo) / 255.0,), (lo,))


def _parse_mean_std(spec: str, text: str) -> Scaling:
    """'mean=..;std=..': (x / 255 - mean) / std, per channel."""
    parts: dict[str, tuple[float, ...]] = {}
    for item in filter(None, (p.strip() for p in text.split(";"))):
        key, _, value = item.partition("=")
        parts[key.strip().lower()] = _floats(value, spec, key.strip() or "value")
    if set(parts) != {"mean", "std"}:
        raise DataError(f"bad scaling '{spec}': expected exactly mean=...;std=...", _SCALE_HINT)
    mean, std = parts["mean"], parts["std"]
    if len(mean) != len(std) and 1 not in (len(mean), len(std)):
        raise DataError(f"bad scaling '{spec}': mean has {len(mean)} values but std has {len(std)}", _SCALE_HINT)
    if not all(s > 0 for s in std):
        raise DataError(f"bad scaling '{spec}': std values must be > 0", _SCALE_HINT)
    count = max(len(mean), len(std))
    mean, std = mean * (count // len(mean)), std * (count // len(std))
    return Scaling(spec, tuple(1.0 / (255.0 * s) for s in std), tuple(-m / s for m, s in zip(mean, std)))


def parse_scaling(spec: str) -> Scaling:
    """Parse a pixel scaling spec.

    Args:
        spec: "0,1" (x/255), "-1,1" (x/127.5 - 1), "raw" (0..255 as float), any
            "lo,hi" range, or "mean=0.485,0.456,0.406;std=0.229,0.224,0.225"
            meaning (x/255 - mean) / std per channel.

    Returns:
        The affine map as a `Scaling`.

    Raises:
        DataError: The spec does not parse.
    """
    text = spec.strip()
    text = _RANGE_ALIASES.get(text.lower(), text)
    return _parse_mean_std(spec, text) if "=" in text else _parse_range(spec, text)


# Resize method name -> Pillow `Image.Resampling` member.
_RESIZE_METHODS: dict[str, str] = {
    "bilinear": "BILINEAR",
    "nearest": "NEAREST",
    "bicubic": "BICUBIC",
    "lanczos": "LANCZOS",
    "area": "BOX",
}


@dataclass(frozen=True)
class ImageSpec:
    """How images (and uint8 array data) become model input.

    Image folders always use it (default: scale to 0..1, bilinear resize). For
    other sources it is applied only when given, and only to uint8 data fed
    to a float input; other data is taken as already scaled.

    Attributes:
        scale: Scaling spec, see `parse_scaling`.
        resize: One of "bilinear", "nearest", "bicubic", "lanczos", "area".
    """

    scale: str = "0,1"
    resize: str = "bilinear"

    def __post_init__(self) -> None:
        parse_scaling(self.scale)
        if self.resize not in _RESIZE_METHODS:
            raise DataError(f"unknown resize method '{self.resize}'", f"use one of: {', '.join(_RESIZE_METHODS)}")

    @property
    def scaling(self) -> Scaling:
        """The parsed scale spec."""
        return parse_scaling(self.scale)


# --------------------------------------------------------------------------- samples


@dataclass(frozen=True, eq=False)
class Samples:
    """Validated model inputs, ready for calibration or verification.

    Attributes:
        x: One array per model input, first axis = samples, model dtypes.
        y: Class ids (int64, shape (N,)) or None.
        source: Human description of where the data came from.
        preprocessing: JSON-able record of everything done to the data.
        labels: Class names when known, indexed by class id.
    """

    x: tuple[np.ndarray, ...]
    y: np.ndarray | None
    source: str
    preprocessing: dict[str, Any] = field(default_factory=dict)
    labels: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return int(self.x[0].shape[0]) if self.x else 0

    def take(self, start: int, stop: int) -> Samples:
        """Samples `start:stop`, every array sliced the same way."""
        return replace(
            self,
            x=tuple(a[start:stop] for a in self.x),
            y=None if self.y is None else self.y[start:stop],
        )


# --------------------------------------------------------------------------- helpers


def _fmt_shape(shape: tuple[int | None, ...], batch: str = "N") -> str:
    """'(N, 28, 28, 1)' for a spec shape; unknown dims print as None."""
    dims = [batch] + ["None" if d is None else str(d) for d in shape[1:]]
    return "(" + ", ".join(dims) + (",)" if len(dims) == 1 else ")")


def _names(specs: list[InputSpec]) -> str:
    return ", ".join(s.name for s in specs)


def _to_numpy(obj: Any, where: str) -> np.ndarray:
    """Array from an ndarray, tensor, scalar or nested list."""
    if isinstance(obj, np.ndarray):
        return obj
    try:
        if hasattr(obj, "numpy") and callable(obj.numpy):
            obj = obj.numpy()
        return np.asarray(obj)
    except Exception as exc:  # numpy / TF raise several types for ragged or odd objects
        raise DataError(
            f"{where}: cannot turn {type(obj).__name__} into an array ({exc})",
            "pass numpy arrays with a regular (non-ragged) shape",
        ) from exc


def _is_array_like(obj: Any) -> bool:
    """Arrays, tensors and containers of them (not Python scalars)."""
    return isinstance(obj, (np.ndarray, tuple, list, Mapping)) or (hasattr(obj, "shape") and hasattr(obj, "dtype"))


def _first_sample(mask: np.ndarray) -> int:
    """Index of the first sample (axis 0) where `mask` is True anywhere."""
    return int(np.argmax(mask.reshape(mask.shape[0], -1).any(axis=1)))


# --------------------------------------------------------------------------- elements


def _keys_from_mapping(
    m: Mapping[str, Any], specs: list[InputSpec], x_key: str, y_key: str | None, where: str
) -> tuple[tuple[Any, ...], Any | None, dict[str, Any]]:
    """Inputs and labels from a dict-like (npz file, dict element)."""
    keys = [str(k) for k in m.keys()]
    x_keys = [k.strip() for k in x_key.split(",") if k.strip()]
    candidates = [x_keys]
    if x_key == DEFAULT_X_KEY:
        candidates += [[s.name for s in specs], [f"arr_{i}" for i in range(len(specs))]]
    chosen = next((c for c in candidates if len(c) == len(specs) and all(k in m for k in c)), None)
    if chosen is None:
        if len(x_keys) != len(specs):
            raise DataError(
                f"{where}: model has {len(specs)} input(s) ({_names(specs)}) but x_key '{x_key}' "
                f"names {len(x_keys)} key(s); keys in the data: {', '.join(keys) or '(none)'}",
                f"pass x_key with {len(specs)} comma-separated keys, one per input in order",
            )
        missing = [k for k in x_keys if k not in m]
        raise DataError(
            f"{where}: no key {', '.join(repr(k) for k in missing)}; keys in the data: {', '.join(keys) or '(none)'}",
            "pass x_key (and y_key) naming the keys that hold the inputs (and labels)",
        )
    record: dict[str, Any] = {"x_keys": chosen}
    y = None
    if y_key is not None and y_key in m:
        y = m[y_key]
        record["y_key"] = y_key
    elif y_key not in (None, DEFAULT_Y_KEY):
        raise DataError(
            f"{where}: no label key '{y_key}'; keys in the data: {', '.join(keys) or '(none)'}",
            "pass y_key naming the labels, or y_key=None for no labels",
        )
    return tuple(m[k] for k in chosen), y, record


def _split_element(
    elem: Any, specs: list[InputSpec], x_key: str, y_key: str | None, where: str
) -> tuple[tuple[Any, ...], Any | None, dict[str, Any]]:
    """(inputs, labels, key record) from one element, see the module docstring."""
    n = len(specs)
    if isinstance(elem, Mapping):
        return _keys_from_mapping(elem, specs, x_key, y_key, where)
    if isinstance(elem, (tuple, list)) and all(_is_array_like(v) for v in elem):
        items = tuple(elem)
        if len(items) == 2 and (n == 1 or isinstance(items[0], (tuple, list, Mapping))):
            xs, _, record = _split_element(items[0], specs, x_key, None, where)
            return xs, items[1], record
        if n == 1 and len(items) == 1:
            return _split_element(items[0], specs, x_key, y_key, where)
        if len(items) == n and n > 1 and not any(isinstance(v, (tuple, list, Mapping)) for v in items):
            return items, None, {}
        raise DataError(
            f"{where}: got a {type(elem).__name__} of {len(items)} item(s) for a model with {n} input(s) ({_names(specs)})",
            "pass x or (x, y) for one input; (x1, .., xn) or ((x1, .., xn), y) for several",
        )
    if n != 1:
        raise DataError(
            f"{where}: got 1 array for a model with {n} inputs ({_names(specs)})",
            f"pass a tuple of {n} arrays (one per input), or a dict keyed by input name",
        )
    return (elem,), None, {}


# Ways an array may differ from the model's shape, tried in order:
# (name, rank difference, array lacks the batch axis, array lacks a trailing channel axis of 1).
_SHAPE_FITS: tuple[tuple[str, int, bool, bool], ...] = (
    ("as is", 0, False, False),
    ("single sample", 1, True, False),
    ("missing channel axis", 1, False, True),
    ("single sample, missing channel axis", 2, True, True),
)


def _dims_match(got: tuple[int, ...], want: tuple[int | None, ...]) -> bool:
    return len(got) == len(want) and all(w is None or g == w for g, w in zip(got, want))


def _fit_shape(arr: np.ndarray, spec: InputSpec, where: str) -> tuple[np.ndarray, bool, bool]:
    """Give `arr` the spec's layout; returns (array, batch axis added, channel axis added)."""
    want = tuple(spec.shape[1:])
    for _, delta, no_batch, no_channel in _SHAPE_FITS:
        if arr.ndim != len(spec.shape) - delta or (no_channel and (not want or want[-1] != 1)):
            continue
        sample_dims = tuple(arr.shape) if no_batch else tuple(arr.shape[1:])
        if _dims_match(sample_dims, want[:-1] if no_channel else want):
            arr = arr[..., np.newaxis] if no_channel else arr
            return (arr[np.newaxis] if no_batch else arr), no_batch, no_channel
    raise DataError(
        f"{where}: input '{spec.name}' expects shape {_fmt_shape(spec.shape)} (N = samples), got {tuple(arr.shape)}",
        f"reshape the data to {_fmt_shape(spec.shape)}",
    )


@dataclass(frozen=True)
class _Raw:
    """What a source loader hands to the shared validation."""

    chunks: Iterable[Any]  # elements (see module docstring), or ((x1, ..), y) when `presplit`
    source: str
    record: dict[str, Any]
    labels: tuple[str, ...] | None = None
    presplit: bool = False  # chunks are already ((x1, ..), y)
    prescaled: bool = False  # images already scaled by ImageSpec
    iterated: bool = False  # chunks are batches from user code (errors name the batch)


def _assemble(
    raw: _Raw, specs: list[InputSpec], x_key: str, y_key: str | None, max_samples: int | None
) -> tuple[list[np.ndarray], np.ndarray | None, dict[str, Any]]:
    """Fit every chunk's shapes, cut at max_samples, concatenate."""
    parts: list[list[np.ndarray]] = [[] for _ in specs]
    label_parts: list[np.ndarray] = []
    flags: dict[str, dict[str, bool]] = {s.name: {} for s in specs}
    record: dict[str, Any] = {}
    total = 0
    has_y: bool | None = None
    chunk_iter = iter(raw.chunks)
    for index in itertools.count():
        try:
            chunk = next(chunk_iter)
        except StopIteration:
            break
        except DataError:
            raise
        except Exception as exc:  # user code (generator, dataset pipeline) failed
            raise DataError(
                f"{raw.source}: reading batch {index} failed: {type(exc).__name__}: {exc}",
                "fix the data pipeline so it can be iterated",
            ) from exc
        where = f"{raw.source} (batch {index})" if raw.iterated else raw.source
        if raw.presplit:
            xs_raw, y_raw = chunk
        else:
            xs_raw, y_raw, keys = _split_element(chunk, specs, x_key, y_key, where)
            record.update(keys)
        arrays: list[np.ndarray] = []
        batch_added = False
        for spec, value in zip(specs, xs_raw):
            arr, added, expanded = _fit_shape(_to_numpy(value, where), spec, where)
            batch_added |= added
            flags[spec.name]["added_batch_axis"] = flags[spec.name].get("added_batch_axis", False) or added
            flags[spec.name]["expand_channel_axis"] = flags[spec.name].get("expand_channel_axis", False) or expanded
            arrays.append(arr)
        counts = {spec.name: int(a.shape[0]) for spec, a in zip(specs, arrays)}
        if len(set(counts.values())) > 1:
            raise DataError(
                f"{where}: inputs have different sample counts ({', '.join(f'{k}: {v}' for k, v in counts.items())})",
                "give every input the same number of samples",
            )
        count = arrays[0].shape[0]
        if (y_raw is not None) != has_y and has_y is not None:
            raise DataError(f"{where}: some batches have labels and others do not", "yield (x, y) for every batch, or x only")
        has_y = y_raw is not None
        if y_raw is not None:
            y_arr = _to_numpy(y_raw, where)
            y_arr = y_arr.reshape(1, *y_arr.shape) if (batch_added or y_arr.ndim == 0) else y_arr
            if y_arr.shape[0] != count:
                raise DataError(
                    f"{where}: labels count ({y_arr.shape[0]}) != samples count ({count})",
                    "give exactly one label per sample",
                )
            label_parts.append(y_arr)
        keep = count if max_samples is None else min(count, max_samples - total)
        for part, arr in zip(parts, arrays):
            part.append(arr[:keep])
        if label_parts:
            label_parts[-1] = label_parts[-1][:keep]
        total += keep
        if max_samples is not None and total >= max_samples:
            record["max_samples"] = max_samples
            break
    if total == 0:
        raise DataError(f"{raw.source}: no samples (0 found)", "give at least one sample")
    xs = [_concat(p, f"{raw.source}: input '{s.name}'") for p, s in zip(parts, specs)]
    y = _concat(label_parts, f"{raw.source}: labels") if label_parts else None
    record["inputs"] = {name: {k: v for k, v in f.items() if v} for name, f in flags.items()}
    return xs, y, record


def _concat(parts: list[np.ndarray], where: str) -> np.ndarray:
    """Concatenate batches; different per-batch shapes are a DataError."""
    if len(parts) == 1:
        return parts[0]
    try:
        return np.concatenate(parts, axis=0)
    except (ValueError, TypeError) as exc:
        shapes = sorted({tuple(p.shape[1:]) for p in parts})
        raise DataError(
            f"{where}: batches have different sample shapes {shapes[:3]} ({exc})",
            "pad or resize so every sample has the same shape",
        ) from exc


# --------------------------------------------------------------------------- dtype checks


def _nonfinite_check(arr: np.ndarray, where: str) -> None:
    """DataError with counts and the first sample index for NaN / Inf."""
    bad = ~np.isfinite(arr)
    if bad.any():
        counts = {"NaN": int(np.isnan(arr).sum()), "Inf": int(np.isinf(arr).sum())}
        what = " and ".join(f"{n} {kind}" for kind, n in counts.items() if n)
        raise DataError(
            f"{where}: {what} value(s), first at sample {_first_sample(bad)}",
            "remove or fix those samples (calibration needs finite values)",
        )


def _cast_to_float(arr: np.ndarray, target: np.dtype, where: str) -> np.ndarray:
    out = np.array(arr, dtype=target)
    bad = ~np.isfinite(out)
    if bad.any():
        raise DataError(
            f"{where}: {int(bad.sum())} value(s) overflow {target.name}, first at sample {_first_sample(bad)}",
            f"rescale the data into the {target.name} range",
        )
    return out


def _cast_to_int(arr: np.ndarray, target: np.dtype, where: str) -> np.ndarray:
    if arr.dtype.kind == "f":
        frac = arr != np.floor(arr)
        if frac.any():
            index = _first_sample(frac)
            raise DataError(
                f"{where}: {int(frac.sum())} non-integer value(s) for the {target.name} input "
                f"(e.g. {float(arr[frac].flat[0])!r} at sample {index})",
                "feed integer ids (token / category indices) for this input",
            )
    if arr.size:
        info = np.iinfo(target)
        lo, hi = arr.min(), arr.max()
        too_low = float(lo) < info.min if arr.dtype.kind == "f" else int(lo) < info.min
        too_high = float(hi) >= info.max + 1 if arr.dtype.kind == "f" else int(hi) > info.max
        if too_low or too_high:
            raise DataError(
                f"{where}: values {lo}..{hi} do not fit the {target.name} input ({info.min}..{info.max})",
                f"clip or remap the values into {info.min}..{info.max}",
            )
    return np.array(arr, dtype=target)


def _cast_to_bool(arr: np.ndarray, target: np.dtype, where: str) -> np.ndarray:
    if arr.dtype.kind != "b" and not np.isin(arr, (0, 1)).all():
        raise DataError(f"{where}: a bool input needs 0/1 values", "feed True/False or 0/1 values")
    return np.array(arr, dtype=target)


# Target dtype kind -> checked cast. Source kinds 'f', 'i', 'u', 'b' may reach all of them.
_CASTS: dict[str, Callable[[np.ndarray, np.dtype, str], np.ndarray]] = {
    "f": _cast_to_float,
    "i": _cast_to_int,
    "u": _cast_to_int,
    "b": _cast_to_bool,
}
_NUMERIC_KINDS = "fiub"


def _target_dtype(spec: InputSpec) -> np.dtype:
    """The NumPy dtype of a model input, or DataError if it cannot be fed."""
    try:
        target = np.dtype(spec.dtype)
    except TypeError:
        target = np.dtype(object)
    if target.kind not in _CASTS:
        raise DataError(
            f"input '{spec.name}' has dtype {spec.dtype}; only numeric/bool inputs can be calibrated",
            "export the model with numeric inputs (do string preprocessing outside the model)",
        )
    return target


def _cast(arr: np.ndarray, spec: InputSpec, where: str) -> np.ndarray:
    """Cast to the spec's dtype, refusing anything that would change values."""
    target = _target_dtype(spec)
    if arr.dtype.kind not in _NUMERIC_KINDS:
        raise DataError(
            f"{where}: {arr.dtype} data (strings/objects/complex) cannot feed the {target.name} input",
            f"convert the data to numeric arrays of dtype {target.name}",
        )
    if arr.dtype.kind == "f":
        _nonfinite_check(arr, where)
    with np.errstate(all="ignore"):  # overflow is detected and reported by the casts
        return _CASTS[target.kind](arr, target, where)


# --------------------------------------------------------------------------- labels


def _normalize_labels(
    y: np.ndarray, where: str
) -> tuple[np.ndarray | None, tuple[str, ...] | None, dict[str, Any]]:
    """(class ids, class names, record) from raw labels; non-class labels are dropped."""
    count = y.shape[0]
    if y.dtype.kind in "USO":
        flat = y.reshape(-1)
        if y.size != count or not all(isinstance(v, (str, bytes)) for v in flat):
            return None, None, {"labels_dropped": f"{y.dtype} labels of shape {tuple(y.shape)} are not class names"}
        text = np.asarray([v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in flat])
        names, ids = np.unique(text, return_inverse=True)
        return ids.astype(np.int64), tuple(str(n) for n in names), {"labels_from": "strings (sorted names)"}
    if y.dtype.kind not in _NUMERIC_KINDS:
        return None, None, {"labels_dropped": f"{y.dtype} labels are not class ids"}
    record: dict[str, Any] = {}
    if y.ndim == 2 and y.shape[1] > 1:
        if y.dtype.kind == "f" and not np.isfinite(y).all():
            return None, None, {"labels_dropped": "one-hot / score labels contain NaN or Inf"}
        y = np.argmax(y, axis=1)
        record["labels_from"] = "argmax of one-hot / scores"
    elif y.size == count:
        y = y.reshape(count)
    else:
        return None, None, {"labels_dropped": f"labels of shape {tuple(y.shape)} are not class ids"}
    if y.dtype.kind == "f" and not (np.isfinite(y).all() and (y == np.floor(y)).all()):
        return None, None, {"labels_dropped": "float labels are not integer class ids"}
    if count and y.min() < 0:
        return None, None, {"labels_dropped": "negative labels are not class ids"}
    return y.astype(np.int64), None, record


# --------------------------------------------------------------------------- sources


def _read_file(path: Path, reader: Callable[[Path], Any]) -> Any:
    """Run `reader`, turning unreadable / corrupt files into DataError."""
    try:
        return reader(path)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(
            f"cannot read {path}: {exc}",
            "the file is corrupt or not a NumPy file; re-save it with np.save / np.savez (no object arrays)",
        ) from exc


def _numpy_file_source(path: Path, specs: list[InputSpec], *, x_key: str, y_key: str | None, **_: Any) -> _Raw:
    """A .npy or .npz file, told apart by content (np.load), not by suffix."""
    loaded = _read_file(path, lambda p: np.load(p, mmap_mode="r", allow_pickle=False))
    if isinstance(loaded, np.ndarray):
        if len(specs) != 1:
            raise DataError(
                f"{path}: a .npy file holds 1 array but the model has {len(specs)} inputs ({_names(specs)})",
                "save the inputs into one .npz and pass x_key='k1,k2,..'",
            )
        return _Raw(
            chunks=[((loaded,), None)],
            source=str(path),
            record={"kind": "npy", "file": str(path)},
            presplit=True,
        )
    with loaded as npz:
        # Members are decompressed on access, so corrupt members fail inside _read_file too.
        xs, y, keys = _read_file(path, lambda _: _keys_from_mapping(npz, specs, x_key, y_key, str(path)))
    return _Raw(
        chunks=[(xs, y)],
        source=f"{path}[{','.join(keys['x_keys'])}]",
        record={"kind": "npz", "file": str(path), **keys},
        presplit=True,
    )


@dataclass(frozen=True)
class _ImageLayout:
    """Where H, W and C sit in an image input."""

    name: str  # "NHWC", "NCHW" or "NHW" (grayscale, no channel axis)
    height: int | None
    width: int | None
    channels: int

    def arrange(self, pixels: np.ndarray) -> np.ndarray:
        """(N, H, W, C) pixels in this layout."""
        return _ARRANGE[self.name](pixels)


# Layout name -> how (N, H, W, C) pixels are rearranged for it.
_ARRANGE: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "NHWC": lambda p: p,
    "NCHW": lambda p: np.transpose(p, (0, 3, 1, 2)),
    "NHW": lambda p: p[..., 0],
}
# Channel count -> Pillow mode.
_COLOR_MODES: dict[int, str] = {1: "L", 3: "RGB", 4: "RGBA"}


def _image_layout(spec: InputSpec) -> _ImageLayout:
    """The image layout of a model input (unknown channel count = RGB), or DataError."""
    shape = spec.shape
    if len(shape) == 3:
        layout = _ImageLayout("NHW", shape[1], shape[2], 1)
    elif len(shape) == 4 and shape[1] in _COLOR_MODES and shape[3] not in _COLOR_MODES:
        layout = _ImageLayout("NCHW", shape[2], shape[3], shape[1] or 3)
    elif len(shape) == 4:
        layout = _ImageLayout("NHWC", shape[1], shape[2], 3 if shape[3] is None else shape[3])
    else:
        raise DataError(
            f"input '{spec.name}' has shape {_fmt_shape(shape)}, not an image (N, H, W, C)",
            "image folders need an image model; pass a .npy/.npz file instead",
        )
    if layout.channels not in _COLOR_MODES:
        raise DataError(
            f"input '{spec.name}' has {layout.channels} channels; images give 1, 3 or 4",
            "pass a .npy/.npz file instead",
        )
    return layout


def _image_files(root: Path) -> tuple[list[tuple[Path, int | None]], tuple[str, ...] | None, int]:
    """(files with class ids, class names or None, ignored file count), round-robin over classes."""
    def is_image(p: Path) -> bool:
        return p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")

    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if classes:
        per_class = [[(f, i) for f in sorted(filter(is_image, (root / c).rglob("*")))] for i, c in enumerate(classes)]
        if any(per_class):
            files = [f for f in itertools.chain.from_iterable(itertools.zip_longest(*per_class)) if f is not None]
            ignored = sum(1 for p in root.rglob("*") if p.is_file()) - len(files)
            return files, tuple(classes), ignored
    files = [(f, None) for f in sorted(filter(is_image, root.iterdir()))]
    return files, None, sum(1 for p in root.iterdir() if p.is_file()) - len(files)


def _load_image(path: Path, mode: str, size: tuple[int, int] | None, resample: Any) -> tuple[np.ndarray, bool]:
    """Decode one image to uint8 (H, W[, C]); returns (pixels, was resized)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert(mode)
            resized = size is not None and img.size != size
            if resized:
                img = img.resize(size, resample)
            return np.asarray(img, dtype=np.uint8), resized
    except (OSError, ValueError, SyntaxError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot read image {path}: {exc}", "delete or replace the corrupt file") from exc


def _folder_source(
    path: Path, specs: list[InputSpec], *, image: ImageSpec | None, max_samples: int | None, **_: Any
) -> _Raw:
    if len(specs) != 1:
        raise DataError(
            f"image folder {path}: the model has {len(specs)} inputs ({_names(specs)}); image folders feed 1 input",
            "pass a .npz with x_key='k1,k2,..' for multi-input models",
        )
    from PIL import Image

    spec, image = specs[0], image or ImageSpec()
    layout = _image_layout(spec)
    files, classes, ignored = _image_files(path)
    if not files:
        raise DataError(
            f"image folder {path} has no images ({', '.join(IMAGE_SUFFIXES)})",
            "put images in it, directly or one subfolder per class",
        )
    files = files[:max_samples] if max_samples is not None else files
    size = (layout.width, layout.height) if layout.height is not None and layout.width is not None else None
    mode = _COLOR_MODES[layout.channels]
    resample = getattr(Image.Resampling, _RESIZE_METHODS[image.resize])
    decoded = [_load_image(f, mode, size, resample) for f, _ in files]
    shapes = {p.shape for p, _ in decoded}
    if len(shapes) > 1:
        raise DataError(
            f"image folder {path}: images have different sizes {sorted(shapes)[:3]} and input '{spec.name}' "
            f"has no fixed H x W ({_fmt_shape(spec.shape)})",
            "resize the images to one size first",
        )
    pixels = np.stack([p for p, _ in decoded])
    pixels = pixels[..., np.newaxis] if pixels.ndim == 3 else pixels
    scaled = layout.arrange(image.scaling.apply(pixels, f"image folder {path}"))
    y = None if classes is None else np.asarray([c for _, c in files], dtype=np.int64)
    record = {
        "kind": "image_folder",
        "folder": str(path),
        "images": len(files),
        "classes": list(classes) if classes else None,
        "order": "round-robin over classes" if classes else "sorted file names",
        "color_mode": mode,
        "layout": layout.name,
        "resize": {"method": image.resize, "to": [layout.height, layout.width], "resized": sum(r for _, r in decoded)},
        "scaling": image.scaling.record(),
        "ignored_files": ignored,
    }
    described = f"{len(classes)} classes" if classes else f"{len(files)} images, no labels"
    return _Raw(
        chunks=[((scaled,), y)],
        source=f"folder {path}/ ({described})",
        record=record,
        labels=classes,
        presplit=True,
        prescaled=True,
    )


# File kind -> loader; a directory is an image folder.
_FILE_LOADERS: dict[str, Callable[..., _Raw]] = {".npy": _numpy_file_source, ".npz": _numpy_file_source}


def _path_source(source: str | os.PathLike[str], specs: list[InputSpec], **kw: Any) -> _Raw:
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(f"data path not found: {path}", "check the path: a .npy/.npz file or a folder of images")
    if path.is_dir():
        return _folder_source(path, specs, **kw)
    loader = _FILE_LOADERS.get(path.suffix.lower())
    if loader is None:
        raise DataError(
            f"unsupported data file {path} ({path.suffix or 'no extension'})",
            "use a .npy/.npz file or a folder of .jpg/.png/.bmp images",
        )
    return loader(path, specs, **kw)


def _is_tf_dataset(obj: Any) -> bool:
    if "tensorflow" not in sys.modules:
        return False
    from tfcompress.keras_compat import tf

    return isinstance(obj, tf.data.Dataset)


def _dataset_source(ds: Any, specs: list[InputSpec], *, max_samples: int | None, **_: Any) -> _Raw:
    from tfcompress.keras_compat import tf

    if int(ds.cardinality()) == int(tf.data.INFINITE_CARDINALITY) and max_samples is None:
        raise DataError("tf.data.Dataset is infinite (repeat()) and max_samples is not set", "pass max_samples or ds.take(n)")
    try:
        elements = ds.as_numpy_iterator()
    except (TypeError, ValueError) as exc:  # ragged / sparse components
        raise DataError(f"tf.data.Dataset cannot be read as numpy: {exc}", "map the elements to dense tensors") from exc
    return _Raw(chunks=elements, source="tf.data.Dataset", record={}, iterated=True)


def _direct_source(data: Any, specs: list[InputSpec], **_: Any) -> _Raw:
    return _Raw(chunks=[data], source="arrays", record={})


def _is_direct_data(obj: Any) -> bool:
    """What a callable may return instead of batches: an array/tensor, tuple or dict."""
    return isinstance(obj, (np.ndarray, tuple, Mapping)) or (hasattr(obj, "shape") and hasattr(obj, "dtype"))


def _callable_source(fn: Callable[[], Any], specs: list[InputSpec], **kw: Any) -> _Raw:
    name = getattr(fn, "__name__", type(fn).__name__)
    try:
        result = fn()
    except DataError:
        raise
    except Exception as exc:  # user code
        raise DataError(
            f"data callable {name}() failed: {type(exc).__name__}: {exc}", "fix the callable; it is called with no arguments"
        ) from exc
    if _is_direct_data(result) or _is_tf_dataset(result):
        raw = _source_for(result, specs, kw)
        return replace(raw, source=f"callable -> {raw.source}", record={**raw.record, "callable": name})
    if isinstance(result, (str, bytes, os.PathLike)) or not isinstance(result, Iterable):
        raise DataError(
            f"data callable {name}() returned {type(result).__name__}, not data or an iterable of batches",
            "return arrays or (x, y), or yield batches",
        )
    return _Raw(chunks=result, source="callable", record={"kind": "callable", "callable": name}, iterated=True)


def _iterator_source(it: Iterator[Any], specs: list[InputSpec], **_: Any) -> _Raw:
    return _Raw(chunks=it, source="iterator", record={}, iterated=True)


# (accepts?, loader), tried in order.
_SOURCES: tuple[tuple[Callable[[Any], bool], Callable[..., _Raw], str], ...] = (
    (lambda s: isinstance(s, (str, os.PathLike)), _path_source, "path"),
    (_is_tf_dataset, _dataset_source, "tf.data.Dataset"),
    (_is_array_like, _direct_source, "arrays"),
    (callable, _callable_source, "callable"),
    (lambda s: isinstance(s, Iterator), _iterator_source, "iterator"),
)


def _source_for(source: Any, specs: list[InputSpec], kw: dict[str, Any]) -> _Raw:
    for accepts, loader, kind in _SOURCES:
        if accepts(source):
            raw = loader(source, specs, **kw)
            return replace(raw, record={"kind": raw.record.get("kind", kind), **raw.record})
    raise DataError(
        f"cannot use {type(source).__name__} as data",
        "pass a .npy/.npz path, an image folder, arrays, (x, y), a tf.data.Dataset or a callable yielding batches",
    )


# --------------------------------------------------------------------------- public API


def load_samples(
    source: Any,
    specs: list[InputSpec],
    *,
    x_key: str = DEFAULT_X_KEY,
    y_key: str | None = DEFAULT_Y_KEY,
    image: ImageSpec | None = None,
    max_samples: int | None = None,
) -> Samples:
    """Load and validate calibration / verification data for a model.

    Args:
        source: Path (.npy, .npz, image folder), arrays, (x, y), dict,
            tf.data.Dataset, callable or iterator (see the module docstring).
        specs: The model's inputs, in order.
        x_key: Key(s) of the inputs in an .npz / dict, comma-separated for
            several inputs.
        y_key: Key of the labels in an .npz / dict (used when present), or None.
        image: Scaling / resize for image folders (default `ImageSpec()`), and
            for uint8 array data fed to float inputs when given.
        max_samples: Keep at most this many samples (required for infinite
            datasets; stops reading generators early).

    Returns:
        `Samples` whose arrays have the model's dtypes and shapes.

    Raises:
        DataError: Missing / corrupt file, missing key, wrong input count,
            shape or dtype mismatch, NaN / Inf, no samples, label count mismatch.
    """
    if not specs:
        raise DataError("the model has no inputs to feed", "check the model")
    if max_samples is not None and max_samples < 1:
        raise DataError(f"max_samples must be >= 1, got {max_samples}", "pass a positive number or None")
    if isinstance(source, Samples):  # already loaded and validated (e.g. by compress): re-check shapes only
        if len(source.x) != len(specs):
            raise DataError(f"{source.source}: {len(source.x)} input(s) for a model with {len(specs)}", "check the data")
        for arr, spec in zip(source.x, specs):
            if not _dims_match(tuple(arr.shape[1:]), spec.shape[1:]):
                raise DataError(
                    f"{source.source}: input '{spec.name}' has shape {tuple(arr.shape)}, the model expects {_fmt_shape(spec.shape)}",
                    "load the data for this model",
                )
        return source if max_samples is None else source.take(0, max_samples)
    targets = [_target_dtype(spec) for spec in specs]
    raw = _source_for(source, specs, {"x_key": x_key, "y_key": y_key, "image": image, "max_samples": max_samples})
    xs, y, assembled = _assemble(raw, specs, x_key, y_key, max_samples)
    inputs: dict[str, dict[str, Any]] = assembled.pop("inputs")
    warning = None
    for i, spec in enumerate(specs):
        where = f"{raw.source}: input '{spec.name}'"
        arr, info = xs[i], inputs[spec.name]
        info["shape"] = [int(d) for d in arr.shape]
        info["source_dtype"] = str(arr.dtype)
        to_float = targets[i].kind == "f"
        if arr.dtype == np.uint8 and to_float and image is not None and not raw.prescaled:
            arr = image.scaling.apply(arr, where)
            info["scaling"] = image.scaling.record()
        elif arr.dtype == np.uint8 and to_float and not raw.prescaled and arr.size and arr.max() > 1.5:
            warning = UINT8_WARNING
            info["warning"] = UINT8_WARNING
        xs[i] = _cast(arr, spec, where)
        info["dtype"] = str(xs[i].dtype)
        if info["source_dtype"] != info["dtype"]:
            info["cast"] = f"{info['source_dtype']}->{info['dtype']}"
    labels = raw.labels
    record: dict[str, Any] = {**raw.record, **assembled, "samples": int(xs[0].shape[0]), "inputs": inputs}
    if y is not None and raw.labels is None:
        y, labels, label_record = _normalize_labels(y, raw.source)
        record.update(label_record)
    if labels is not None:
        record["label_names"] = list(labels)
    if any(info.get("expand_channel_axis") for info in inputs.values()):
        record["expand_channel_axis"] = True
    if warning:
        record["warning"] = warning
    return Samples(x=tuple(xs), y=y, source=raw.source, preprocessing=record, labels=labels)


def split(samples: Samples, calib: int, verify: int | None) -> tuple[Samples, Samples, dict[str, Any]]:
    """Split into calibration (first `calib`) and verification (next `verify`).

    Args:
        samples: Loaded data.
        calib: Calibration sample count (all samples if fewer exist).
        verify: Verification sample count, or None for all the rest.

    Returns:
        (calibration, verification, info) where info is
        `{"calibration": n, "verification": m, "verification_held_out": bool}`
        (plus "note" when something was not as asked). With no samples left
        after calibration, verification reuses the calibration samples.

    Raises:
        DataError: `calib` < 1 or `verify` < 1.
    """
    if calib < 1:
        raise DataError(f"calibration sample count must be >= 1, got {calib}", "pass a positive number")
    if verify is not None and verify < 1:
        raise DataError(f"verification sample count must be >= 1 or None, got {verify}", "pass a positive number or None")
    total = len(samples)
    n_cal = min(calib, total)
    calibration = samples.take(0, n_cal)
    rest = total - n_cal
    n_ver = rest if verify is None else min(verify, rest)
    notes = [f"only {total} samples, all used for calibration (asked {calib})"] if calib > total else []
    if n_ver >= 1:
        verification = samples.take(n_cal, n_cal + n_ver)
    else:
        verification = calibration if verify is None else calibration.take(0, verify)
        notes.append(f"no samples left after calibration: verification reuses {len(verification)} calibration samples")
    info: dict[str, Any] = {
        "calibration": n_cal,
        "verification": len(verification),
        "verification_held_out": n_ver >= 1,
    }
    if notes:
        info["note"] = "; ".join(notes)
    return calibration, verification, info


def representative_dataset(samples: Samples, batch: int = 1) -> Iterator[list[np.ndarray]]:
    """Yield `[input_1, .., input_n]` batches for `TFLiteConverter.representative_dataset`.

    Use as `converter.representative_dataset = lambda: representative_dataset(calib)`.

    Args:
        samples: Calibration samples (already in the model's dtypes).
        batch: Samples per yielded batch (1 is what the converter expects).

    Yields:
        One list per batch: one array per input with a leading batch axis.
    """
    if batch < 1:
        raise DataError(f"representative batch size must be >= 1, got {batch}", "pass batch=1")
    for start in range(0, len(samples), batch):
        yield [np.ascontiguousarray(a[start : start + batch]) for a in samples.x]
