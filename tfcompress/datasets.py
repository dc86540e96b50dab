"""Small public datasets for demos, tests and benchmarks (no network needed).

Fashion-MNIST is read from the four IDX files (gzipped or not), looked for in
`$TFCOMPRESS_FASHION_MNIST`, `/usr/share/datasets/fashion-mnist/` and
`~/.keras/datasets/fashion-mnist/`, in that order; only when none has them is
Keras' downloader tried. The IDX format is parsed here with numpy/struct, so
TensorFlow is not imported on the common path.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from tfcompress.errors import DataError

__all__ = [
    "ENV_VAR",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_FILES",
    "fashion_mnist_dirs",
    "find_fashion_mnist",
    "load_fashion_mnist",
    "read_idx",
]

ENV_VAR = "TFCOMPRESS_FASHION_MNIST"
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
KERAS_CACHE_DIR = Path("~/.keras/datasets/fashion-mnist")

FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

# Part -> IDX file name (stored with or without ".gz").
FASHION_MNIST_FILES: dict[str, str] = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}

# IDX type code (third magic byte) -> big-endian numpy dtype.
_IDX_DTYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}

_INSTALL_HINT = f"run `apt-get install dataset-fashion-mnist`, or set {ENV_VAR} to a folder with the four IDX .gz files"


def _read_bytes(path: Path) -> bytes:
    """File contents, gunzipped when the name ends in .gz."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(f"cannot read IDX file {path}: {exc}", "the file is corrupt; download it again") from exc


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped if its name ends in .gz.

    Args:
        path: The file.

    Returns:
        The array, in native byte order, shaped as the header says.

    Raises:
        DataError: Missing or unreadable file, bad magic number, or a size
            that does not match the header.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"IDX file not found: {path}", _INSTALL_HINT)
    data = _read_bytes(path)
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] not in _IDX_DTYPES or data[3] == 0:
        raise DataError(
            f"{path} is not an IDX file (magic {data[:4].hex() or 'missing'})",
            "the file is corrupt or of another format; download it again",
        )
    dtype, ndim = np.dtype(_IDX_DTYPES[data[2]]), data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: IDX header truncated ({len(data)} bytes)", "download the file again")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = math.prod(dims) * dtype.itemsize
    if len(data) - header != expected:
        raise DataError(
            f"{path}: IDX header says shape {dims} ({expected} bytes) but the file has {len(data) - header} data bytes",
            "the file is truncated or corrupt; download it again",
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="))


def fashion_mnist_dirs() -> tuple[Path, ...]:
    """Folders searched for Fashion-MNIST, in order."""
    env = os.environ.get(ENV_VAR)
    return tuple(Path(p).expanduser() for p in ([env] if env else []) + [str(SYSTEM_DIR), str(KERAS_CACHE_DIR)])


def _idx_path(folder: Path, stem: str) -> Path | None:
    """`stem.gz` or `stem` in folder, whichever exists."""
    return next((p for p in (folder / f"{stem}.gz", folder / stem) if p.is_file()), None)


def find_fashion_mnist() -> dict[str, Path] | None:
    """Paths of the four files from the first folder that has all of them."""
    for folder in fashion_mnist_dirs():
        paths = {part: _idx_path(folder, stem) for part, stem in FASHION_MNIST_FILES.items()}
        if all(paths.values()):
            return {part: p for part, p in paths.items() if p is not None}
    return None


def _checked_pair(images: np.ndarray, labels: np.ndarray, img_path: Path, lbl_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Check one images/labels pair looks like Fashion-MNIST."""
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise DataError(f"{img_path}: expected uint8 images (N, 28, 28), got {images.dtype} {images.shape}", _INSTALL_HINT)
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise DataError(
            f"{lbl_path}: {labels.shape} labels for {images.shape[0]} images in {img_path.name}",
            "the files do not belong together; download them again",
        )
    if labels.size and int(labels.max()) >= len(FASHION_MNIST_CLASSES):
        raise DataError(f"{lbl_path}: label {int(labels.max())} out of range 0..9", "download the file again")
    return images, labels


def _download_with_keras() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Keras' own downloader (needs internet); caches into ~/.keras/datasets."""
    from tfcompress.keras_compat import tf_keras

    return tf_keras.datasets.fashion_mnist.load_data()


def load_fashion_mnist() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Fashion-MNIST as `((x_train, y_train), (x_test, y_test))`.

    Images are uint8 (N, 28, 28), labels uint8 class ids 0..9 (names in
    `FASHION_MNIST_CLASSES`): 60000 train and 10000 test samples.

    Raises:
        DataError: Files are corrupt, or not found anywhere and the Keras
            download fails.
    """
    paths = find_fashion_mnist()
    if paths is not None:
        arrays = {part: read_idx(p) for part, p in paths.items()}
        train = _checked_pair(arrays["x_train"], arrays["y_train"], paths["x_train"], paths["y_train"])
        test = _checked_pair(arrays["x_test"], arrays["y_test"], paths["x_test"], paths["y_test"])
        return train, test
    searched = ", ".join(str(d) for d in fashion_mnist_dirs())
    try:
        return _download_with_keras()
    except Exception as exc:  # no network, proxy, SSL, disk: all end the same way for the user
        raise DataError(
            f"Fashion-MNIST not found in {searched} and the Keras download failed ({type(exc).__name__}: {exc})",
            _INSTALL_HINT,
        ) from exc
