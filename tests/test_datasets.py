"""Tests for tfcompress.datasets: IDX parsing and Fashion-MNIST discovery."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from tfcompress import datasets
from tfcompress.datasets import (
    ENV_VAR,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_FILES,
    find_fashion_mnist,
    load_fashion_mnist,
    read_idx,
)
from tfcompress.errors import DataError

IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(np.int16): 0x0B, np.dtype(np.int32): 0x0C,
             np.dtype(np.float32): 0x0D, np.dtype(np.float64): 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode an array as IDX (big-endian header and data)."""
    header = bytes([0, 0, IDX_CODES[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write `array` as a (gzipped when the name ends in .gz) IDX file."""
    data = idx_bytes(array)
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)
    return path


def write_fake_fashion(folder: Path, n_train: int = 6, n_test: int = 4) -> Path:
    """A tiny, well-formed Fashion-MNIST folder."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    parts = {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": (np.arange(n_train) % 10).astype(np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": (np.arange(n_test) % 10).astype(np.uint8),
    }
    for part, array in parts.items():
        write_idx(folder / f"{FASHION_MNIST_FILES[part]}.gz", array)
    return folder


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No real dataset anywhere: env unset, system and Keras dirs point into tmp_path."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(datasets, "SYSTEM_DIR", tmp_path / "system")
    monkeypatch.setattr(datasets, "KERAS_CACHE_DIR", tmp_path / "keras")
    return tmp_path


# --------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("dtype", sorted(IDX_CODES, key=str))
@pytest.mark.parametrize("suffix", [".gz", ""])
def test_read_idx_roundtrip(tmp_path: Path, dtype: np.dtype, suffix: str) -> None:
    array = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype) if dtype.kind != "u" else np.arange(24, dtype=dtype).reshape(2, 3, 4)
    got = read_idx(write_idx(tmp_path / f"tiny-idx3{suffix}", array))
    assert got.shape == (2, 3, 4)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, array)
    assert got.flags.writeable


def test_read_idx_1d_labels(tmp_path: Path) -> None:
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "l.gz", labels)), labels)


@pytest.mark.parametrize(
    ("name", "payload", "message"),
    [
        ("bad-magic.gz", b"\x08\x03\x00\x00" + b"\x00" * 16, "not an IDX file"),
        ("bad-type.gz", b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00", "not an IDX file"),
        ("empty.gz", b"", "not an IDX file"),
        ("short-header.gz", b"\x00\x00\x08\x03" + struct.pack(">I", 2), "header truncated"),
        ("truncated.gz", b"\x00\x00\x08\x02" + struct.pack(">II", 4, 4) + b"\x00" * 10, "(16 bytes) but the file has 10"),
        ("too-long.gz", b"\x00\x00\x08\x01" + struct.pack(">I", 2) + b"\x00" * 3, "(2,)"),
    ],
    ids=lambda v: v if isinstance(v, str) and v.endswith(".gz") else "",
)
def test_read_idx_corrupt(tmp_path: Path, name: str, payload: bytes, message: str) -> None:
    path = tmp_path / name
    with gzip.open(path, "wb") as fh:
        fh.write(payload)
    with pytest.raises(DataError) as info:
        read_idx(path)
    assert name in info.value.message
    assert message in info.value.message
    assert info.value.hint


def test_read_idx_not_gzip(tmp_path: Path) -> None:
    path = tmp_path / "images.gz"
    path.write_bytes(b"this is not gzip data at all")
    with pytest.raises(DataError, match="cannot read IDX file .*images.gz"):
        read_idx(path)


def test_read_idx_truncated_gzip(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "cut.gz", np.zeros((50, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DataError, match="cut.gz"):
        read_idx(path)


def test_read_idx_missing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found: .*nope.gz"):
        read_idx(tmp_path / "nope.gz")


# --------------------------------------------------------------------------- discovery


def test_env_dir_is_used_first(monkeypatch: pytest.MonkeyPatch, isolated: Path) -> None:
    folder = write_fake_fashion(isolated / "mine", n_train=7, n_test=3)
    write_fake_fashion(isolated / "system", n_train=5, n_test=5)
    monkeypatch.setenv(ENV_VAR, str(folder))
    assert find_fashion_mnist()["x_train"].parent == folder
    (x_train, y_train), (x_test, y_test) = load_fashion_mnist()
    assert x_train.shape == (7, 28, 28) and x_train.dtype == np.uint8
    assert y_train.shape == (7,) and x_test.shape == (3, 28, 28) and y_test.shape == (3,)


def test_falls_through_to_keras_cache(monkeypatch: pytest.MonkeyPatch, isolated: Path) -> None:
    monkeypatch.setenv(ENV_VAR, str(isolated / "empty"))
    write_fake_fashion(isolated / "keras", n_train=2, n_test=2)
    (x_train, _), _ = load_fashion_mnist()
    assert x_train.shape == (2, 28, 28)


def test_uncompressed_files_accepted(isolated: Path) -> None:
    folder = isolated / "system"
    folder.mkdir()
    write_idx(folder / FASHION_MNIST_FILES["x_train"], np.zeros((1, 28, 28), np.uint8))
    write_idx(folder / FASHION_MNIST_FILES["y_train"], np.zeros(1, np.uint8))
    write_idx(folder / f"{FASHION_MNIST_FILES['x_test']}.gz", np.zeros((1, 28, 28), np.uint8))
    write_idx(folder / f"{FASHION_MNIST_FILES['y_test']}.gz", np.zeros(1, np.uint8))
    (x_train, _), (x_test, _) = load_fashion_mnist()
    assert x_train.shape == x_test.shape == (1, 28, 28)


def test_corrupt_found_file_raises(isolated: Path) -> None:
    folder = write_fake_fashion(isolated / "system")
    (folder / f"{FASHION_MNIST_FILES['x_test']}.gz").write_bytes(b"garbage")
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz"):
        load_fashion_mnist()


@pytest.mark.parametrize(
    ("part", "array", "message"),
    [
        ("x_train", np.zeros((6, 27, 28), np.uint8), "expected uint8 images"),
        ("y_train", np.zeros(5, np.uint8), "labels for 6 images"),
        ("y_test", np.full(4, 10, np.uint8), "label 10 out of range"),
    ],
)
def test_inconsistent_files_raise(isolated: Path, part: str, array: np.ndarray, message: str) -> None:
    folder = write_fake_fashion(isolated / "system")
    write_idx(folder / f"{FASHION_MNIST_FILES[part]}.gz", array)
    with pytest.raises(DataError, match=message):
        load_fashion_mnist()


def test_not_found_and_download_fails(monkeypatch: pytest.MonkeyPatch, isolated: Path) -> None:
    def offline() -> None:
        raise OSError("network is unreachable")

    monkeypatch.setattr(datasets, "_download_with_keras", offline)
    with pytest.raises(DataError) as info:
        load_fashion_mnist()
    assert "network is unreachable" in info.value.message
    assert str(isolated / "system") in info.value.message
    assert "apt-get install dataset-fashion-mnist" in info.value.hint
    assert ENV_VAR in info.value.hint


def test_not_found_uses_keras_downloader(monkeypatch: pytest.MonkeyPatch, isolated: Path) -> None:
    fake = ((np.zeros((1, 28, 28), np.uint8), np.zeros(1, np.uint8)),) * 2
    monkeypatch.setattr(datasets, "_download_with_keras", lambda: fake)
    assert load_fashion_mnist() is fake


def test_class_names() -> None:
    assert len(FASHION_MNIST_CLASSES) == 10
    assert FASHION_MNIST_CLASSES[0] == "T-shirt/top" and FASHION_MNIST_CLASSES[9] == "Ankle boot"


# --------------------------------------------------------------------------- real data


def test_real_fashion_mnist() -> None:
    if find_fashion_mnist() is None:
        pytest.skip(f"Fashion-MNIST IDX files not installed (apt-get install dataset-fashion-mnist, or set {ENV_VAR})")
    (x_train, y_train), (x_test, y_test) = load_fashion_mnist()
    assert x_train.shape == (60000, 28, 28) and x_train.dtype == np.uint8
    assert x_test.shape == (10000, 28, 28) and x_test.dtype == np.uint8
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    assert set(np.unique(y_train)) == set(range(10)) == set(np.unique(y_test))
    assert np.bincount(y_train).tolist() == [6000] * 10
    assert 0 <= x_train.min() and x_train.max() == 255
