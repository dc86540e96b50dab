"""One trial: build a genome's model from the original, fine-tune it briefly, measure its accuracy.

Trials run wherever the executor puts them (this process, local worker processes, Ray workers):
everything a trial needs travels in `Assets` (the original model file and the data, as bytes, loaded
once per worker) and a `TrialSpec`; the result is a `TrialResult`. A trial is seeded: the same spec
gives the same result in any worker (single-threaded, deterministic TensorFlow ops).
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from tfcompress.search.space import Genome, SearchSpace, genome_stages

__all__ = ["Assets", "TrialResult", "TrialSpec", "build", "configure_worker", "loaded", "make_assets", "run_trial"]


@dataclass(frozen=True)
class Assets:
    """The original model (.keras bytes), the search data (.npz bytes: x, y, x_val, y_val), the space and the
    device profile (for costs computed in workers)."""

    model: bytes
    data: bytes
    space: SearchSpace
    profile: Any = None
    key: str = ""  # hash of the contents (architecture, weights, arrays): the bytes hold save times


def _content_key(model: Any, arrays: dict[str, np.ndarray]) -> str:
    """Hash of the model's architecture and weights and of the data arrays: equal for equal contents in any
    run (the .keras and .npz archives themselves record when they were written)."""
    h = hashlib.sha256(model.to_json().encode())
    for w in model.get_weights():
        w = np.ascontiguousarray(w)
        h.update(f"{w.dtype.str}{w.shape}".encode())
        h.update(w.tobytes())
    for name, a in arrays.items():
        a = np.ascontiguousarray(a)
        h.update(f"{name}{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


class TrialSpec(BaseModel):
    """What one trial does: the genome and its short fine-tune."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    genome: Genome
    steps: int = Field(ge=0, le=10**7)
    batch_size: int = Field(128, ge=1, le=65536)
    learning_rate: float = Field(1e-3, gt=0, le=1.0)
    seed: int = Field(0, ge=0, le=2**31 - 1)


class TrialResult(BaseModel):
    """A trial's outcome: float accuracy on the search's validation split after the fine-tune."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str
    genome: Genome
    accuracy: float
    params: int
    seconds: float


def make_assets(model: Any, x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                space: SearchSpace, profile: Any = None) -> Assets:
    """Serialise the original tf_keras model and the data once, for every worker."""
    with tempfile.TemporaryDirectory(prefix="tfcompress-search-") as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        with open(path, "rb") as f:
            model_bytes = f.read()
    arrays = {"x": x, "y": y, "x_val": x_val, "y_val": y_val}
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return Assets(model_bytes, buf.getvalue(), space, profile=profile, key=_content_key(model, arrays))


_LOADED: dict[str, tuple[Any, dict[str, np.ndarray]]] = {}


def loaded(assets: Assets) -> tuple[Any, dict[str, np.ndarray]]:
    """The original model and the data arrays, loaded once per process."""
    got = _LOADED.get(assets.key)
    if got is None:
        from tfcompress.loading import load_model

        with tempfile.TemporaryDirectory(prefix="tfcompress-search-") as tmp:
            path = os.path.join(tmp, "model.keras")
            with open(path, "wb") as f:
                f.write(assets.model)
            model = load_model(path)
        with np.load(io.BytesIO(assets.data)) as d:
            arrays = {k: d[k] for k in d.files}
        _LOADED.clear()  # one search's assets at a time
        got = _LOADED[assets.key] = (model, arrays)
    return got


def configure_worker() -> None:
    """One thread and deterministic ops in a worker process, so a seeded trial gives the same result anywhere."""
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
    from tfcompress.keras_compat import tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # already initialised in this process: keep its settings
        pass
    tf.config.experimental.enable_op_determinism()


def build(model: Any, genome: Genome, space: SearchSpace, data: tuple[Any, Any] | None) -> Any:
    """The genome's model: the structural recipe stages applied to `model` (a new model; `model` is untouched)."""
    from tfcompress.keras_compat import tf_keras
    from tfcompress.recipe import parse_recipe_dict
    from tfcompress.techniques import TECHNIQUES, StageContext

    stages = genome_stages(genome, space)
    if not stages:
        copy = tf_keras.models.clone_model(model)
        copy.set_weights(model.get_weights())
        return copy
    recipe = parse_recipe_dict({"name": "genome", "stages": stages}, source="<search genome>")
    current = model
    for stage in recipe.stages:
        technique = TECHNIQUES[stage.technique]
        current = technique.strip(technique.apply(current, stage.params, stage.rules, StageContext(data=data)))
    return current


def accuracy(model: Any, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> float:
    """Top-1 accuracy of a classifier on (x, y)."""
    pred = model.predict(x, batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(pred, axis=-1) == np.asarray(y).reshape(-1)))


def _at_input_size(model: Any, x: np.ndarray) -> np.ndarray:
    """Images resized to the model's input size (a genome may change the resolution)."""
    from tfcompress.data.resize import resize_images

    want = tuple(model.inputs[0].shape[1:3])
    return x if x.ndim != 4 or tuple(x.shape[1:3]) == want else resize_images(x, want)


def run_trial(spec: TrialSpec, assets: Assets) -> TrialResult:
    """Build, fine-tune `spec.steps` steps on the assets' training data, score on its validation data."""
    from tfcompress.keras_compat import tf_keras
    from tfcompress.training import classification_loss

    t0 = time.perf_counter()
    original, d = loaded(assets)
    tf_keras.utils.set_random_seed(spec.seed)
    model = build(original, spec.genome, assets.space, (d["x"], d["y"]))
    x, x_val = _at_input_size(model, d["x"]), _at_input_size(model, d["x_val"])
    if spec.steps > 0:
        model.compile(optimizer=tf_keras.optimizers.Adam(spec.learning_rate), loss=classification_loss(model))
        n = len(x)
        per_epoch = max(1, -(-n // spec.batch_size))
        epochs = max(1, -(-spec.steps // per_epoch))
        model.fit(x, d["y"], batch_size=spec.batch_size, epochs=epochs,
                  steps_per_epoch=min(spec.steps, per_epoch), shuffle=True, verbose=0)
    acc = accuracy(model, x_val, d["y_val"])
    return TrialResult(key=spec.genome.key(), genome=spec.genome, accuracy=acc, params=int(model.count_params()),
                       seconds=round(time.perf_counter() - t0, 3))

