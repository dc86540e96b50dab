"""Paths: .npy / .npz files (read here) and image folders (read by `images`)."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tfcompress.data.checks import input_names
from tfcompress.data.elements import SourceData, keys_from_mapping
from tfcompress.data.images import folder_source
from tfcompress.data.specs import InputSpec
from tfcompress.errors import DataError

__all__ = ["path_source"]


def _read_file(path: Path, reader: Callable[[Path], Any]) -> Any:
    """Run `reader`, turning unreadable / corrupt files into DataError."""
    try:
        return reader(path)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(
            f"cannot read {path}: {exc}",
            "the file is corrupt or not a NumPy file; re-save it with np.save / np.savez (no object arrays)",
        ) from exc


def _numpy_file_source(path: Path, specs: list[InputSpec], *, x_key: str, y_key: str | None, **_: Any) -> SourceData:
    """A .npy or .npz file, told apart by content (np.load), not by suffix."""
    loaded = _read_file(path, lambda p: np.load(p, mmap_mode="r", allow_pickle=False))
    if isinstance(loaded, np.ndarray):
        if len(specs) != 1:
            raise DataError(
                f"{path}: a .npy file holds 1 array but the model has {len(specs)} inputs ({input_names(specs)})",
                "save the inputs into one .npz and pass x_key='k1,k2,..'",
            )
        return SourceData(
            chunks=[((loaded,), None)],
            source=str(path),
            record={"kind": "npy", "file": str(path)},
            presplit=True,
        )
    with loaded as npz:
        # Members are decompressed on access, so corrupt members fail inside _read_file too.
        xs, y, keys = _read_file(path, lambda _: keys_from_mapping(npz, specs, x_key, y_key, str(path)))
    return SourceData(
        chunks=[(xs, y)],
        source=f"{path}[{','.join(keys['x_keys'])}]",
        record={"kind": "npz", "file": str(path), **keys},
        presplit=True,
    )


# File kind -> loader; a directory is an image folder.
_FILE_LOADERS: dict[str, Callable[..., SourceData]] = {".npy": _numpy_file_source, ".npz": _numpy_file_source}


def path_source(source: str | os.PathLike[str], specs: list[InputSpec], **kw: Any) -> SourceData:
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(f"data path not found: {path}", "check the path: a .npy/.npz file or a folder of images")
    if path.is_dir():
        return folder_source(path, specs, **kw)
    loader = _FILE_LOADERS.get(path.suffix.lower())
    if loader is None:
        raise DataError(
            f"unsupported data file {path} ({path.suffix or 'no extension'})",
            "use a .npy/.npz file or a folder of .jpg/.png/.bmp images",
        )
    return loader(path, specs, **kw)
