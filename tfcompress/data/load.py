"""`load_samples`: any source -> validated `Samples` (the rules are in the package docstring)."""

from __future__ import annotations

from typing import Any

import numpy as np

from tfcompress.data.checks import cast_to_input, dims_match, fmt_shape, normalize_labels, target_dtype
from tfcompress.data.elements import DEFAULT_X_KEY, DEFAULT_Y_KEY, assemble
from tfcompress.data.samples import Samples
from tfcompress.data.sources import source_for
from tfcompress.data.specs import ImageSpec, InputSpec
from tfcompress.errors import DataError

__all__ = ["UINT8_WARNING", "load_samples"]

UINT8_WARNING = "values up to 255: did you forget to scale?"


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
            tf.data.Dataset, callable or iterator (see the `tfcompress.data` docstring).
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
            if not dims_match(tuple(arr.shape[1:]), spec.shape[1:]):
                raise DataError(
                    f"{source.source}: input '{spec.name}' has shape {tuple(arr.shape)}, the model expects {fmt_shape(spec.shape)}",
                    "load the data for this model",
                )
        return source if max_samples is None else source.take(0, max_samples)
    targets = [target_dtype(spec) for spec in specs]
    raw = source_for(source, specs, {"x_key": x_key, "y_key": y_key, "image": image, "max_samples": max_samples})
    xs, y, assembled = assemble(raw, specs, x_key, y_key, max_samples)
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
        xs[i] = cast_to_input(arr, spec, where)
        info["dtype"] = str(xs[i].dtype)
        if info["source_dtype"] != info["dtype"]:
            info["cast"] = f"{info['source_dtype']}->{info['dtype']}"
    labels = raw.labels
    record: dict[str, Any] = {**raw.record, **assembled, "samples": int(xs[0].shape[0]), "inputs": inputs}
    if y is not None and raw.labels is None:
        y, labels, label_record = normalize_labels(y, raw.source)
        record.update(label_record)
    if labels is not None:
        record["label_names"] = list(labels)
    if any(info.get("expand_channel_axis") for info in inputs.values()):
        record["expand_channel_axis"] = True
    if warning:
        record["warning"] = warning
    return Samples(x=tuple(xs), y=y, source=raw.source, preprocessing=record, labels=labels)
