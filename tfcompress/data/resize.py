"""Image inputs resized to what the model expects now (after a stage changed its input resolution).

`follow_inputs(samples, shapes)` resizes every (N, H, W, C) array whose H x W
differs from the model input's (bilinear with antialiasing, `tf.image.resize`),
keeps its dtype (integers rounded and clipped to their range) and records the
change in `preprocessing["resized"]`. Other arrays pass as they are. Resize
from the data as loaded, not from an earlier resize, so quality does not
degrade stage after stage.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

import numpy as np

from tfcompress.data.samples import Samples

__all__ = ["fits_inputs", "follow_inputs", "input_shapes", "resize_images"]

_BATCH = 256


def input_shapes(model: Any) -> tuple[tuple[int | None, ...], ...]:
    """The model's input shapes (batch axis included)."""
    return tuple(tuple(None if d is None else int(d) for d in t.shape) for t in model.inputs)


def resize_images(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(N, H, W, C) images at `size` (H', W'), same dtype."""
    from tfcompress.keras_compat import tf

    out = []
    for start in range(0, len(x), _BATCH):
        batch = tf.image.resize(tf.convert_to_tensor(x[start : start + _BATCH], tf.float32), size,
                                method="bilinear", antialias=True)
        out.append(batch.numpy())
    resized = np.concatenate(out) if out else np.zeros((0, *size, x.shape[-1]), np.float32)
    if np.issubdtype(x.dtype, np.integer):
        info = np.iinfo(x.dtype)
        return np.clip(np.rint(resized), info.min, info.max).astype(x.dtype)
    return resized.astype(x.dtype)


def follow_inputs(samples: Samples, shapes: Sequence[tuple[int | None, ...]]) -> Samples:
    """`samples` with image arrays resized to `shapes` where their H x W differ (see the module doc)."""
    if fits_inputs(samples, shapes):
        return samples
    arrays, changes = [], []
    for i, (a, shape) in enumerate(zip(samples.x, shapes)):
        size = tuple(shape[1:3]) if len(shape) == 4 else None
        if a.ndim != 4 or size is None or None in size or tuple(a.shape[1:3]) == size:
            arrays.append(a)
            continue
        arrays.append(resize_images(a, size))  # type: ignore[arg-type]
        changes.append({"input": i, "from": list(a.shape[1:3]), "to": list(size)})
    if not changes:
        return samples
    return replace(samples, x=tuple(arrays), preprocessing={**samples.preprocessing, "resized": changes})


def fits_inputs(samples: Samples, shapes: Sequence[tuple[int | None, ...]]) -> bool:
    """Whether no image array of `samples` needs resizing for `shapes`."""
    return all(a.ndim != 4 or len(s) != 4 or None in s[1:3] or tuple(a.shape[1:3]) == tuple(s[1:3])
               for a, s in zip(samples.x, shapes))
