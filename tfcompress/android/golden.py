"""The Python side of the cross-language checks: what tfcompress computes, to compare with the app's Kotlin core.

The phone must feed a model the very bytes tfcompress verified on the host. So these are not a second
implementation: they call the code that calibrates and verifies models, `tfcompress.data.Scaling.apply`
(0..255 pixels -> float32) and `tfcompress.export.verify.quantize` / `dequantize`, with the parameters the
sidecar records. The ranking rule (`top_k`) is the one both sides define: largest first, ties in class order.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tfcompress.data.specs import Scaling
from tfcompress.errors import TfcompressError
from tfcompress.export.verify import dequantize, quantize

__all__ = ["dequantize_output", "preprocess", "quantize_input", "sidecar_scaling", "top_k"]


def sidecar_scaling(meta: dict[str, Any]) -> Scaling:
    """The pixel scaling the sidecar recorded for its one input (`preprocessing.inputs.<name>.scaling`)."""
    inputs = (meta.get("preprocessing") or {}).get("inputs") or {}
    if len(inputs) != 1:
        raise TfcompressError("the sidecar records no pixel scaling for one input", "convert from image data")
    (record,) = inputs.values()
    scaling = record.get("scaling")
    if scaling is None:
        raise TfcompressError("the sidecar records no pixel scaling", "convert from image data")
    return Scaling(scaling.get("spec", ""), tuple(scaling["scale"]), tuple(scaling["offset"]))


def preprocess(pixels: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
    """uint8 images (N, H, W) or (N, H, W, C) -> float32 (N, H, W, C), as calibration scaled them."""
    channels = meta["inputs"][0]["shape"][-1]
    if pixels.ndim == 3 and channels == 1:
        pixels = pixels[..., None]
    return sidecar_scaling(meta).apply(pixels, "android golden check")


def _detail(entry: dict[str, Any]) -> dict[str, Any]:
    """A sidecar tensor entry as the interpreter detail `verify.quantize` / `dequantize` take."""
    return {"dtype": entry["dtype"], "quantization": (entry["scale"], entry["zero_point"])}


def quantize_input(x: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
    """Model-space floats -> the input tensor's values (int8 / uint8, or float32 unchanged)."""
    return quantize(x, _detail(meta["inputs"][0]))


def dequantize_output(q: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
    """The output tensor's values -> float32 scores."""
    return dequantize(q, _detail(meta["outputs"][0]))


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """(N, classes) -> (N, k) class ids, largest first; equal scores keep ascending class order."""
    return np.argsort(-scores, axis=-1, kind="stable")[..., :k]
