"""Shared fixtures: tiny models built in code, data they make, Fashion-MNIST when installed."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep the demo's model cache out of the user's home."""
    monkeypatch.setenv("TFCOMPRESS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


REPORTS_CHECKED: list[Path] = []


@pytest.fixture(autouse=True)
def _reports_load_back(request):
    """Every OUT.report.json a test writes loads back into the report that wrote it (and writes the same JSON)."""
    yield
    tmp = request.node.funcargs.get("tmp_path") if hasattr(request.node, "funcargs") else None
    if tmp is None:
        return
    import json

    from tfcompress.export.report import CONVERT_SCHEMA, ConvertReport
    from tfcompress.report import COMPRESS_SCHEMA, CompressReport

    for path in Path(tmp).rglob("*.report.json"):
        written = json.loads(path.read_text())
        kind = {CONVERT_SCHEMA: ConvertReport, COMPRESS_SCHEMA: CompressReport}[written["schema"]]
        assert kind.from_dict(written).to_dict() == written, f"{path} does not round-trip"
        REPORTS_CHECKED.append(path)


@pytest.fixture(scope="session")
def fmnist():
    """Fashion-MNIST as float32 (N, 28, 28, 1) in [0, 1]; skips when not installed."""
    from tfcompress.demo import fashion_mnist_float

    if not FMNIST_DIR.exists() and not os.environ.get("TFCOMPRESS_FASHION_MNIST"):
        pytest.skip("Fashion-MNIST not installed: apt-get install dataset-fashion-mnist")
    return fashion_mnist_float()


@pytest.fixture(scope="session")
def trained_cnn(fmnist):
    """FMNIST-CNN (tf_keras) trained 1 epoch on 30k images (469 steps, so BN statistics settle): ~10 s."""
    from tfcompress.keras_compat import tf_keras
    from tfcompress.models import fmnist_cnn

    (xtr, ytr), _ = fmnist
    tf_keras.utils.set_random_seed(0)
    model = fmnist_cnn("tf_keras")
    model.compile(
        optimizer=tf_keras.optimizers.Adam(2e-3),
        loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(xtr[:30000], ytr[:30000], epochs=1, batch_size=64, verbose=0)
    return model


@pytest.fixture(scope="session")
def tiny_files(tmp_path_factory):
    """A folder with m.keras (tf_keras Dense 8 -> 4, seeded) and d.npz (16 samples under x): the adversarial tests' model."""
    from tfcompress.keras_compat import tf_keras

    d = tmp_path_factory.mktemp("tiny")
    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([tf_keras.layers.Input((8,)), tf_keras.layers.Dense(4)])
    model.save(d / "m.keras")
    np.savez(d / "d.npz", x=np.random.default_rng(0).random((16, 8), dtype=np.float32))
    return d


@pytest.fixture(scope="session")
def calib_npz(tmp_path_factory, fmnist):
    """An .npz with 300 test images under x and labels under y."""
    _, (xte, yte) = fmnist
    path = tmp_path_factory.mktemp("data") / "calib.npz"
    np.savez(path, x=xte[:300], y=yte[:300])
    return path


def random_images(n: int = 64, shape=(28, 28, 1), seed: int = 0) -> np.ndarray:
    """Uniform [0, 1) float32 images."""
    return np.random.default_rng(seed).random((n, *shape), dtype=np.float32)
