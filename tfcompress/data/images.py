"""Image folders: class subfolders or a flat folder, decoded with Pillow, resized and scaled."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tfcompress.data.checks import fmt_shape, input_names
from tfcompress.data.elements import SourceData
from tfcompress.data.specs import RESIZE_METHODS, ImageSpec, InputSpec
from tfcompress.errors import DataError

__all__ = ["IMAGE_SUFFIXES", "folder_source"]

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp")


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
            f"input '{spec.name}' has shape {fmt_shape(shape)}, not an image (N, H, W, C)",
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


def folder_source(
    path: Path, specs: list[InputSpec], *, image: ImageSpec | None, max_samples: int | None, **_: Any
) -> SourceData:
    if len(specs) != 1:
        raise DataError(
            f"image folder {path}: the model has {len(specs)} inputs ({input_names(specs)}); image folders feed 1 input",
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
    resample = getattr(Image.Resampling, RESIZE_METHODS[image.resize])
    decoded = [_load_image(f, mode, size, resample) for f, _ in files]
    shapes = {p.shape for p, _ in decoded}
    if len(shapes) > 1:
        raise DataError(
            f"image folder {path}: images have different sizes {sorted(shapes)[:3]} and input '{spec.name}' "
            f"has no fixed H x W ({fmt_shape(spec.shape)})",
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
    return SourceData(
        chunks=[((scaled,), y)],
        source=f"folder {path}/ ({described})",
        record=record,
        labels=classes,
        presplit=True,
        prescaled=True,
    )
