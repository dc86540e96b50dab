"""`tfcompress demo`: the whole job on a built-in default.

Train the reference FMNIST-CNN on Fashion-MNIST (cached), convert it to a
full-int8 .tflite with int8 I/O, and verify it on the 10,000 test images.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np



def default_cache_dir() -> Path:
    """$TFCOMPRESS_CACHE, else ~/.cache/tfcompress (read at call time)."""
    return Path(os.environ.get("TFCOMPRESS_CACHE") or Path.home() / ".cache" / "tfcompress")


@dataclass(frozen=True)
class DemoConfig:
    """Knobs of the demo (the CLI flags).

    Attributes:
        epochs: training epochs (10 is the reference baseline).
        out_dir: where the .tflite and its sidecars go.
        cache_dir: where the trained Keras model is cached (None: `default_cache_dir()`).
        retrain: ignore the cache.
        calib_samples: training images used for calibration.
        train_samples: limit the training set (None = all 60,000).
        seed: random seed for reproducible training.
    """

    epochs: int = 10
    out_dir: Path = Path("tfcompress-demo")
    cache_dir: Path | None = None
    retrain: bool = False
    calib_samples: int = 200
    train_samples: int | None = None
    seed: int = 0


def fashion_mnist_float() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Fashion-MNIST as float32 (N, 28, 28, 1) in [0, 1] with int64 labels."""
    from tfcompress.datasets import load_fashion_mnist

    (xtr, ytr), (xte, yte) = load_fashion_mnist()

    def prep(x: np.ndarray) -> np.ndarray:
        return (x.astype(np.float32) / 255.0)[..., None]

    return (prep(xtr), ytr.astype(np.int64)), (prep(xte), yte.astype(np.int64))


def train_fmnist_cnn(cfg: DemoConfig, console: Any = None) -> tuple[Any, Path, bool]:
    """The trained reference model, from cache or trained now.

    Returns:
        (tf_keras model, cache path, whether it came from the cache).
    """
    from tfcompress.keras_compat import tf_keras
    from tfcompress.models import fmnist_cnn
    from tfcompress.progress import RichProgress

    suffix = f"_n{cfg.train_samples}" if cfg.train_samples else ""
    path = Path(cfg.cache_dir or default_cache_dir()).expanduser() / f"fmnist_cnn_e{cfg.epochs}_s{cfg.seed}{suffix}.keras"
    if path.exists() and not cfg.retrain:
        return tf_keras.models.load_model(path, compile=False), path, True
    (xtr, ytr), _ = fashion_mnist_float()
    if cfg.train_samples:
        xtr, ytr = xtr[: cfg.train_samples], ytr[: cfg.train_samples]
    tf_keras.utils.set_random_seed(cfg.seed)
    model = fmnist_cnn("tf_keras")
    model.compile(
        optimizer=tf_keras.optimizers.Adam(1e-3),
        loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    callbacks = [RichProgress(cfg.epochs, console)] if console is not None else []
    model.fit(xtr, ytr, epochs=cfg.epochs, batch_size=128, verbose=0, callbacks=callbacks)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".keras")
    os.close(fd)
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return model, path, False


def prepare_out_dir(out_dir: Path) -> Path:
    """`out_dir` made if missing, and checked (with the files it will hold) before the training starts.

    Raises:
        OutputError: `out_dir` exists and is not a folder, cannot be made, or holds a target that is not a
            regular file.
    """
    from tfcompress.errors import OutputError
    from tfcompress.export.outputs import check_outputs

    out_dir = out_dir.expanduser()
    hint = "give a folder for the .tflite and its sidecars, e.g. --out tfcompress-demo"
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"--out {out_dir} exists and is not a folder", hint)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot make the folder {out_dir} ({e.strerror or e})", hint) from None
    check_outputs(out_dir / "fmnist_cnn_int8.tflite")
    return out_dir


def run_demo(cfg: DemoConfig = DemoConfig(), console: Any = None, on_progress: Any = None) -> Any:
    """Train (or load) FMNIST-CNN, convert to full int8, verify on the test set.

    Returns:
        The `ConvertResult` (written to cfg.out_dir/fmnist_cnn_int8.tflite).
    """
    from tfcompress.data import ImageSpec
    from tfcompress.datasets import load_fashion_mnist
    from tfcompress.conversion import convert

    output = prepare_out_dir(Path(cfg.out_dir)) / "fmnist_cnn_int8.tflite"
    model, cache_path, cached = train_fmnist_cnn(cfg, console)
    if console is not None:
        console.print(f"model: {'cached ' if cached else 'trained '}{cache_path}")
    # Raw uint8 pixels + an ImageSpec: the data module scales them and records
    # exactly that in the sidecar, so a device app knows to divide by 255.
    (xtr, ytr), (xte, yte) = load_fashion_mnist()
    return convert(
        model,
        (xtr[: cfg.calib_samples], ytr[: cfg.calib_samples]),
        verify_data=(xte, yte),
        output=output,
        mode="int8",
        calib_samples=cfg.calib_samples,
        verify_samples=None,
        image=ImageSpec(scale="0,1"),
        labels=_class_names(),
        on_progress=on_progress,
    )


def _class_names() -> tuple[str, ...]:
    from tfcompress.datasets import FASHION_MNIST_CLASSES

    return tuple(FASHION_MNIST_CLASSES)
