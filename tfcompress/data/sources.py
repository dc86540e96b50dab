"""Which kind of source the user passed (path, tf.data, arrays, callable, iterator) and its reader."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from tfcompress.data.elements import SourceData, is_array_like
from tfcompress.data.files import path_source
from tfcompress.data.specs import InputSpec
from tfcompress.errors import DataError

__all__ = ["source_for"]


def _is_tf_dataset(obj: Any) -> bool:
    if "tensorflow" not in sys.modules:
        return False
    from tfcompress.keras_compat import tf

    return isinstance(obj, tf.data.Dataset)


def _dataset_source(ds: Any, specs: list[InputSpec], *, max_samples: int | None, **_: Any) -> SourceData:
    from tfcompress.keras_compat import tf

    if int(ds.cardinality()) == int(tf.data.INFINITE_CARDINALITY) and max_samples is None:
        raise DataError("tf.data.Dataset is infinite (repeat()) and max_samples is not set", "pass max_samples or ds.take(n)")
    try:
        elements = ds.as_numpy_iterator()
    except (TypeError, ValueError) as exc:  # ragged / sparse components
        raise DataError(f"tf.data.Dataset cannot be read as numpy: {exc}", "map the elements to dense tensors") from exc
    return SourceData(chunks=elements, source="tf.data.Dataset", record={}, iterated=True)


def _direct_source(data: Any, specs: list[InputSpec], **_: Any) -> SourceData:
    return SourceData(chunks=[data], source="arrays", record={})


def _is_direct_data(obj: Any) -> bool:
    """What a callable may return instead of batches: an array/tensor, tuple or dict."""
    return isinstance(obj, (np.ndarray, tuple, Mapping)) or (hasattr(obj, "shape") and hasattr(obj, "dtype"))


def _callable_source(fn: Callable[[], Any], specs: list[InputSpec], **kw: Any) -> SourceData:
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
        raw = source_for(result, specs, kw)
        return replace(raw, source=f"callable -> {raw.source}", record={**raw.record, "callable": name})
    if isinstance(result, (str, bytes, os.PathLike)) or not isinstance(result, Iterable):
        raise DataError(
            f"data callable {name}() returned {type(result).__name__}, not data or an iterable of batches",
            "return arrays or (x, y), or yield batches",
        )
    return SourceData(chunks=result, source="callable", record={"kind": "callable", "callable": name}, iterated=True)


def _iterator_source(it: Iterator[Any], specs: list[InputSpec], **_: Any) -> SourceData:
    return SourceData(chunks=it, source="iterator", record={}, iterated=True)


# (accepts?, loader), tried in order.
_SOURCES: tuple[tuple[Callable[[Any], bool], Callable[..., SourceData], str], ...] = (
    (lambda s: isinstance(s, (str, os.PathLike)), path_source, "path"),
    (_is_tf_dataset, _dataset_source, "tf.data.Dataset"),
    (is_array_like, _direct_source, "arrays"),
    (callable, _callable_source, "callable"),
    (lambda s: isinstance(s, Iterator), _iterator_source, "iterator"),
)


def source_for(source: Any, specs: list[InputSpec], kw: dict[str, Any]) -> SourceData:
    for accepts, loader, kind in _SOURCES:
        if accepts(source):
            raw = loader(source, specs, **kw)
            return replace(raw, record={"kind": raw.record.get("kind", kind), **raw.record})
    raise DataError(
        f"cannot use {type(source).__name__} as data",
        "pass a .npy/.npz path, an image folder, arrays, (x, y), a tf.data.Dataset or a callable yielding batches",
    )
