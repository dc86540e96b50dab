"""Load the user's model from any format we accept, safely.

Accepted: Keras 3 `.keras`, tf_keras `.keras`, `.h5` (either Keras), a
SavedModel directory (tf_keras with Keras metadata, or a plain exported
SavedModel), and in-memory Keras 3 / tf_keras models.

`load_source` returns a `SourceModel`: the model as the user gave it (what
conversion and verification run on). `load_model` returns a tf_keras model
(Keras 3 models bridged) for the techniques that need TF-MOT.

Safe by default: before Keras reads a file, every class the file names (any
nesting, any format: `safety`) must be a Keras built-in or in the user's
custom_objects, and classes that carry code (Lambda, ...) are refused, unless
`safe_mode=False`: loading those runs code from the file. A plain SavedModel
(no `keras_metadata.pb`: tf.function signatures only) runs TensorFlow graph
ops, not Python code from the directory (`formats`).

Modules: `source` (the SourceModel), `formats` (files and directories),
`safety` (the config check).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from tfcompress.errors import ModelLoadError
from tfcompress.loading.formats import FLAVOR_NAMES, load_path
from tfcompress.loading.safety import UNSAFE_CLASSES, UNSAFE_HINT
from tfcompress.loading.source import LayerRef, SourceModel

__all__ = ["LayerRef", "SourceModel", "load_model", "load_source"]


def load_source(
    model_or_path: Any, *, safe_mode: bool = True, custom_objects: dict[str, Any] | None = None
) -> SourceModel:
    """Load a model for conversion, keeping its own Keras flavour.

    Args:
        model_or_path: a path (str / Path) or an in-memory Keras 3 or tf_keras model.
        safe_mode: refuse Lambda layers and custom classes (see module doc).
        custom_objects: classes / functions the model needs, by name.

    Raises:
        ModelLoadError: with the file, what is wrong and what to do.
    """
    if isinstance(model_or_path, (str, Path)):
        return load_path(Path(model_or_path).expanduser(), safe_mode, custom_objects or {})
    return _from_memory(model_or_path, safe_mode)


def load_model(
    model_or_path: Any, *, safe_mode: bool = True, custom_objects: dict[str, Any] | None = None
) -> Any:
    """Load any supported model as a tf_keras model (what TF-MOT works on).

    Keras 3 models are rebuilt in tf_keras by `tfcompress.bridge` with their
    weights copied; tf_keras models are returned as they are.

    Raises:
        ModelLoadError: unreadable file, unsafe content, or a plain SavedModel
            (which has no Keras layers to compress).
        BridgeError: a Keras 3 layer that cannot be rebuilt (names it).
    """
    src = load_source(model_or_path, safe_mode=safe_mode, custom_objects=custom_objects)
    if src.flavor == "tf_keras":
        return src.model
    if src.flavor == "keras3":
        from tfcompress.bridge import to_tf_keras

        return to_tf_keras(src.model, custom_objects=custom_objects)
    raise ModelLoadError(
        f"{src.path} is a SavedModel without Keras metadata: it has no Keras layers to compress",
        "load the Keras model that produced it (.keras / .h5), or use `tfcompress convert` on it directly",
    )


# ----------------------------------------------------------------- in memory
# Nothing is deserialized: the model's code is already the caller's. Safe mode still refuses what a file with the
# same layers would be refused for, so the API and the CLI agree.

_KERAS_PACKAGES = ("keras", "tf_keras")


def _from_memory(model: Any, safe_mode: bool) -> SourceModel:
    from tfcompress.keras_compat import keras_flavor

    flavor = keras_flavor(model)
    if flavor == "other" or not hasattr(model, "inputs"):
        raise ModelLoadError(
            f"cannot use an object of type {type(model).__name__} as a model",
            "pass a Keras 3 or tf_keras Model, or a path to a .keras / .h5 / SavedModel",
        )
    if not getattr(model, "inputs", None):
        raise ModelLoadError(
            f"model '{model.name}' ({type(model).__name__}) has no defined inputs (subclassed or never built)",
            "build it with keras.Input(...) (functional / Sequential with an Input), or call it once on data",
        )
    if safe_mode:
        for ref in _layers_and_wrapped(model):
            if ref.class_name in UNSAFE_CLASSES:
                raise ModelLoadError(f"model '{model.name}': layer '{ref.name}' is a {ref.class_name} layer", UNSAFE_HINT)
            if (ref.module or "").split(".")[0] not in _KERAS_PACKAGES:
                raise ModelLoadError(f"model '{model.name}': layer '{ref.name}' has custom class '{ref.class_name}'", UNSAFE_HINT)
    return SourceModel(
        model=model,
        flavor=flavor,
        format=f"in-memory {FLAVOR_NAMES[flavor]}",
        path=None,
        sha256=_sha256_of_model(model),
        name=model.name,
    )


def _layers_and_wrapped(model: Any, depth: int = 0) -> Iterator[LayerRef]:
    """Every layer, nested models and the layers inside wrappers (TimeDistributed, Bidirectional) included."""
    if depth > 200:
        raise ModelLoadError(f"model '{model.name}' nests layers deeper than 200 levels", "flatten the model")
    for layer in getattr(model, "layers", []):
        yield LayerRef(layer.name, type(layer).__name__, type(layer).__module__)
        inner = [getattr(layer, a, None) for a in ("layer", "forward_layer", "backward_layer", "cell")]
        for child in [layer, *(i for i in inner if i is not None and hasattr(i, "name"))]:
            if child is not layer:
                yield LayerRef(child.name, type(child).__name__, type(child).__module__)
            yield from _layers_and_wrapped(child, depth + 1)


def _sha256_of_model(model: Any) -> str:
    import hashlib

    h = hashlib.sha256()
    try:
        h.update(json.dumps(model.get_config(), sort_keys=True, default=str).encode())
    except Exception:  # subclassed models may not serialise; weights still identify them
        h.update(type(model).__name__.encode())
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()
