"""Checks of one input array against its `InputSpec`: shape fitting, value-preserving casts, labels."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from tfcompress.data.specs import InputSpec
from tfcompress.errors import DataError

__all__ = [
    "cast_to_input",
    "dims_match",
    "fit_shape",
    "fmt_shape",
    "input_names",
    "normalize_labels",
    "target_dtype",
    "to_numpy",
]


def fmt_shape(shape: tuple[int | None, ...], batch: str = "N") -> str:
    """'(N, 28, 28, 1)' for a spec shape; unknown dims print as None."""
    dims = [batch] + ["None" if d is None else str(d) for d in shape[1:]]
    return "(" + ", ".join(dims) + (",)" if len(dims) == 1 else ")")


def input_names(specs: list[InputSpec]) -> str:
    return ", ".join(s.name for s in specs)


def to_numpy(obj: Any, where: str) -> np.ndarray:
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


def _first_sample(mask: np.ndarray) -> int:
    """Index of the first sample (axis 0) where `mask` is True anywhere."""
    return int(np.argmax(mask.reshape(mask.shape[0], -1).any(axis=1)))


# Ways an array may differ from the model's shape, tried in order:
# (name, rank difference, array lacks the batch axis, array lacks a trailing channel axis of 1).
_SHAPE_FITS: tuple[tuple[str, int, bool, bool], ...] = (
    ("as is", 0, False, False),
    ("single sample", 1, True, False),
    ("missing channel axis", 1, False, True),
    ("single sample, missing channel axis", 2, True, True),
)


def dims_match(got: tuple[int, ...], want: tuple[int | None, ...]) -> bool:
    return len(got) == len(want) and all(w is None or g == w for g, w in zip(got, want))


def fit_shape(arr: np.ndarray, spec: InputSpec, where: str) -> tuple[np.ndarray, bool, bool]:
    """Give `arr` the spec's layout; returns (array, batch axis added, channel axis added)."""
    want = tuple(spec.shape[1:])
    for _, delta, no_batch, no_channel in _SHAPE_FITS:
        if arr.ndim != len(spec.shape) - delta or (no_channel and (not want or want[-1] != 1)):
            continue
        sample_dims = tuple(arr.shape) if no_batch else tuple(arr.shape[1:])
        if dims_match(sample_dims, want[:-1] if no_channel else want):
            arr = arr[..., np.newaxis] if no_channel else arr
            return (arr[np.newaxis] if no_batch else arr), no_batch, no_channel
    raise DataError(
        f"{where}: input '{spec.name}' expects shape {fmt_shape(spec.shape)} (N = samples), got {tuple(arr.shape)}",
        f"reshape the data to {fmt_shape(spec.shape)}",
    )


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


def target_dtype(spec: InputSpec) -> np.dtype:
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


def cast_to_input(arr: np.ndarray, spec: InputSpec, where: str) -> np.ndarray:
    """Cast to the spec's dtype, refusing anything that would change values."""
    target = target_dtype(spec)
    if arr.dtype.kind not in _NUMERIC_KINDS:
        raise DataError(
            f"{where}: {arr.dtype} data (strings/objects/complex) cannot feed the {target.name} input",
            f"convert the data to numeric arrays of dtype {target.name}",
        )
    if arr.dtype.kind == "f":
        _nonfinite_check(arr, where)
    with np.errstate(all="ignore"):  # overflow is detected and reported by the casts
        return _CASTS[target.kind](arr, target, where)


def normalize_labels(
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
