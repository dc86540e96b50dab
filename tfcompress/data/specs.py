"""What the model expects and how pixels are scaled: `InputSpec`, `ImageSpec`, `Scaling`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from tfcompress.errors import DataError

__all__ = ["RESIZE_METHODS", "ImageSpec", "InputSpec", "Scaling", "parse_scaling"]

_SCALE_HINT = 'use "0,1", "-1,1", "raw" or "mean=0.485,0.456,0.406;std=0.229,0.224,0.225"'


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
RESIZE_METHODS: dict[str, str] = {
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
        if self.resize not in RESIZE_METHODS:
            raise DataError(f"unknown resize method '{self.resize}'", f"use one of: {', '.join(RESIZE_METHODS)}")

    @property
    def scaling(self) -> Scaling:
        """The parsed scale spec."""
        return parse_scaling(self.scale)
