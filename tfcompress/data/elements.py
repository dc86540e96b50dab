"""Elements (one batch, or the whole direct data) into per-input arrays, assembled over batches."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from tfcompress.data.checks import fit_shape, input_names, to_numpy
from tfcompress.data.specs import InputSpec
from tfcompress.errors import DataError

__all__ = [
    "DEFAULT_X_KEY",
    "DEFAULT_Y_KEY",
    "SourceData",
    "assemble",
    "is_array_like",
    "keys_from_mapping",
]

DEFAULT_X_KEY = "x"
DEFAULT_Y_KEY = "y"


def is_array_like(obj: Any) -> bool:
    """Arrays, tensors and containers of them (not Python scalars)."""
    return isinstance(obj, (np.ndarray, tuple, list, Mapping)) or (hasattr(obj, "shape") and hasattr(obj, "dtype"))


def keys_from_mapping(
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
                f"{where}: model has {len(specs)} input(s) ({input_names(specs)}) but x_key '{x_key}' "
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
    """(inputs, labels, key record) from one element (rules: `tfcompress.data` docstring)."""
    n = len(specs)
    if isinstance(elem, Mapping):
        return keys_from_mapping(elem, specs, x_key, y_key, where)
    if isinstance(elem, (tuple, list)) and all(is_array_like(v) for v in elem):
        items = tuple(elem)
        if len(items) == 2 and (n == 1 or isinstance(items[0], (tuple, list, Mapping))):
            xs, _, record = _split_element(items[0], specs, x_key, None, where)
            return xs, items[1], record
        if n == 1 and len(items) == 1:
            return _split_element(items[0], specs, x_key, y_key, where)
        if len(items) == n and n > 1 and not any(isinstance(v, (tuple, list, Mapping)) for v in items):
            return items, None, {}
        raise DataError(
            f"{where}: got a {type(elem).__name__} of {len(items)} item(s) for a model with {n} input(s) ({input_names(specs)})",
            "pass x or (x, y) for one input; (x1, .., xn) or ((x1, .., xn), y) for several",
        )
    if n != 1:
        raise DataError(
            f"{where}: got 1 array for a model with {n} inputs ({input_names(specs)})",
            f"pass a tuple of {n} arrays (one per input), or a dict keyed by input name",
        )
    return (elem,), None, {}


@dataclass(frozen=True)
class SourceData:
    """What a source loader hands to the shared validation."""

    chunks: Iterable[Any]  # elements (see the package docstring), or ((x1, ..), y) when `presplit`
    source: str
    record: dict[str, Any]
    labels: tuple[str, ...] | None = None
    presplit: bool = False  # chunks are already ((x1, ..), y)
    prescaled: bool = False  # images already scaled by ImageSpec
    iterated: bool = False  # chunks are batches from user code (errors name the batch)


def assemble(
    raw: SourceData, specs: list[InputSpec], x_key: str, y_key: str | None, max_samples: int | None
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
            arr, added, expanded = fit_shape(to_numpy(value, where), spec, where)
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
            y_arr = to_numpy(y_raw, where)
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
