"""Load the user's model from any format we accept, safely.

Accepted: Keras 3 `.keras`, tf_keras `.keras`, `.h5` (either Keras), a
SavedModel directory (tf_keras with Keras metadata, or a plain exported
SavedModel), and in-memory Keras 3 / tf_keras models.

`load_source` returns a `SourceModel`: the model as the user gave it (what
conversion and verification run on). `load_model` returns a tf_keras model
(Keras 3 models bridged) for the techniques that need TF-MOT.

Safe by default: a model holding Lambda layers or custom (non-Keras) classes
is refused unless `safe_mode=False` — loading such a file runs code from it.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from tfcompress.errors import ModelLoadError

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_CONTAINER_CLASSES = frozenset({"Functional", "Sequential", "Model", "InputLayer"})
_UNSAFE_CLASSES = frozenset({"Lambda", "TFOpLambda", "SlicingOpLambda"})
_UNSAFE_HINT = (
    "loading it runs Python code stored in or referenced by the model; if you trust it, pass --unsafe "
    "(safe_mode=False in the API)"
)


@dataclass(frozen=True)
class LayerRef:
    """A layer found while scanning a model config or object."""

    name: str
    class_name: str
    module: str | None = None


@dataclass(frozen=True)
class SourceModel:
    """A loaded model as the user gave it, plus what reports need to know about it.

    Attributes:
        model: the Keras 3 or tf_keras model object; None for a plain SavedModel.
        flavor: "keras3", "tf_keras" or "saved_model".
        format: human description of where it came from (".keras (Keras 3)", "in-memory tf_keras", ...).
        path: file or directory it was loaded from; None when in memory.
        sha256: of the file / directory, or of config + weights for in-memory models.
        name: the model's name.
        saved_model: the `tf.saved_model.load` object for plain SavedModels.
    """

    model: Any
    flavor: str
    format: str
    path: str | None
    sha256: str
    name: str
    saved_model: Any = field(default=None, repr=False)

    # ------------------------------------------------------------------ shapes
    def input_specs(self) -> list:
        """One `tfcompress.data.InputSpec` per model input."""
        from tfcompress.data import InputSpec

        if self.model is not None:
            specs = []
            for i, t in enumerate(self.model.inputs):
                name = getattr(t, "name", f"input_{i}").split(":")[0]
                specs.append(InputSpec(name=name, shape=tuple(_dim(d) for d in t.shape), dtype=_dtype_name(t.dtype)))
            return specs
        sig = self._signature()
        _, kwargs = sig.structured_input_signature
        return [
            InputSpec(name=k, shape=tuple(_dim(d) for d in v.shape), dtype=v.dtype.name) for k, v in sorted(kwargs.items())
        ]

    def layer_names(self) -> list[str]:
        """Names of all layers, nested models included (for mapping .tflite ops back)."""
        if self.model is None:
            return []
        return [ref.name for ref in _walk_layers(self.model)]

    # -------------------------------------------------------------- inference
    def predict(self, xs: tuple[np.ndarray, ...], batch_size: int = 64) -> list[np.ndarray]:
        """Run the source model in inference mode; returns one array per output."""
        n = len(xs[0])
        chunks: list[list[np.ndarray]] = []
        for start in range(0, n, batch_size):
            batch = [x[start : start + batch_size] for x in xs]
            chunks.append(self._call(batch))
        return [np.concatenate([c[i] for c in chunks]) for i in range(len(chunks[0]))]

    def _call(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        if self.model is not None:
            out = self.model(batch[0] if len(batch) == 1 else batch, training=False)
            outs = out if isinstance(out, (list, tuple)) else [out]
            if isinstance(out, dict):
                outs = [out[k] for k in sorted(out)]
            return [np.asarray(o) for o in outs]
        from tfcompress.keras_compat import tf

        sig = self._signature()
        names = [s.name for s in self.input_specs()]
        out = sig(**{k: tf.constant(v) for k, v in zip(names, batch)})
        return [np.asarray(out[k]) for k in sorted(out)]

    def _signature(self) -> Any:
        sigs = self.saved_model.signatures
        if "serving_default" in sigs:
            return sigs["serving_default"]
        if len(sigs) == 1:
            return next(iter(sigs.values()))
        raise ModelLoadError(
            f"SavedModel {self.path} has signatures {sorted(sigs)} but no 'serving_default'",
            "export it with a single serving signature",
        )


def _dim(d: Any) -> int | None:
    return None if d is None else int(d)


def _dtype_name(dtype: Any) -> str:
    return getattr(dtype, "name", None) or str(dtype)


# ---------------------------------------------------------------------- public


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
        return _load_path(Path(model_or_path).expanduser(), safe_mode, custom_objects or {})
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


# ----------------------------------------------------------------- from disk

_TFLITE_HINT = "it is already a .tflite model: use `tfcompress inspect` on it, and convert the Keras model it came from"


def _load_path(path: Path, safe_mode: bool, custom_objects: dict[str, Any]) -> SourceModel:
    if not path.exists():
        raise ModelLoadError(f"model file {path} does not exist", "check the path")
    if path.is_dir():
        return _load_saved_model(path)
    if path.stat().st_size == 0:
        raise ModelLoadError(f"model file {path} is empty (0 bytes)", "re-save the model, e.g. model.save('m.keras')")
    suffix = path.suffix.lower()
    loader = _FILE_LOADERS.get(suffix)
    if loader is None:
        if suffix == ".tflite":
            raise ModelLoadError(f"{path} is a .tflite file", _TFLITE_HINT)
        raise ModelLoadError(
            f"unsupported model file {path} (suffix '{suffix}')",
            "tfcompress reads Keras .keras and .h5 files and SavedModel directories",
        )
    return loader(path, safe_mode, custom_objects)


def _load_keras_zip(path: Path, safe_mode: bool, custom_objects: dict[str, Any]) -> SourceModel:
    if not zipfile.is_zipfile(path):
        raise ModelLoadError(
            f"{path} is not a valid .keras file (not a zip archive: truncated or not a model)",
            "re-save the model with model.save('model.keras')",
        )
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if "config.json" not in names:
                raise ModelLoadError(f"{path} is a zip file but not a Keras model (no config.json)", "pass a file saved by model.save()")
            config = json.loads(z.read("config.json"))
            meta = json.loads(z.read("metadata.json")) if "metadata.json" in names else {}
    except (zipfile.BadZipFile, json.JSONDecodeError, OSError, EOFError) as e:
        raise ModelLoadError(f"{path} is corrupt ({e})", "re-save the model with model.save('model.keras')") from None
    keras_version = str(meta.get("keras_version", "3"))
    flavor = "keras3" if keras_version.startswith("3") else "tf_keras"
    _check_config_safety(config, flavor, path, safe_mode, custom_objects)
    model = _call_loader(path, flavor, safe_mode, custom_objects)
    return _source(model, flavor, f".keras ({_FLAVOR_NAMES[flavor]} {keras_version})", path)


def _load_h5(path: Path, safe_mode: bool, custom_objects: dict[str, Any]) -> SourceModel:
    with open(path, "rb") as f:
        if f.read(8) != _HDF5_SIGNATURE:
            raise ModelLoadError(f"{path} is not an HDF5 file (truncated or not a model)", "re-save the model with model.save('model.h5')")
    import h5py

    try:
        with h5py.File(path, "r") as h:
            raw = h.attrs.get("model_config")
            keras_version = h.attrs.get("keras_version", "2")
    except OSError as e:
        raise ModelLoadError(f"{path} is a damaged HDF5 file ({e})", "re-save the model") from None
    if raw is None:
        raise ModelLoadError(
            f"{path} holds weights only (no model_config)",
            "save the whole model (model.save('m.h5'), not save_weights), or build the model in code and load the weights",
        )
    keras_version = keras_version.decode() if isinstance(keras_version, bytes) else str(keras_version)
    config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    flavor = "keras3" if keras_version.startswith("3") else "tf_keras"
    _check_config_safety(config, flavor, path, safe_mode, custom_objects)
    model = _call_loader(path, flavor, safe_mode, custom_objects)
    return _source(model, flavor, f".h5 ({_FLAVOR_NAMES[flavor]} {keras_version})", path)


_FILE_LOADERS: dict[str, Callable[[Path, bool, dict[str, Any]], SourceModel]] = {
    ".keras": _load_keras_zip,
    ".h5": _load_h5,
    ".hdf5": _load_h5,
}
_FLAVOR_NAMES = {"keras3": "Keras", "tf_keras": "tf_keras"}


def _call_loader(path: Path, flavor: str, safe_mode: bool, custom_objects: dict[str, Any]) -> Any:
    from tfcompress.keras_compat import keras3, tf_keras

    kwargs: dict[str, Any] = {"custom_objects": custom_objects or None, "compile": False}
    if flavor == "keras3" or path.suffix.lower() == ".keras":
        kwargs["safe_mode"] = safe_mode  # tf_keras' .h5 loader has no such flag: our config scan guards it
    loader = keras3.models.load_model if flavor == "keras3" else tf_keras.models.load_model
    try:
        return loader(str(path), **kwargs)
    except ModelLoadError:
        raise
    except Exception as e:  # Keras raises many types here; the message is what helps
        raise ModelLoadError(
            f"could not load {path}: {_first_line(e)}",
            "check the file was saved completely, with the Keras it was made with",
        ) from None


def _load_saved_model(path: Path) -> SourceModel:
    if not (path / "saved_model.pb").exists() and not (path / "saved_model.pbtxt").exists():
        raise ModelLoadError(
            f"{path} is a directory but not a SavedModel (no saved_model.pb)",
            "pass a .keras / .h5 file or a SavedModel directory",
        )
    from tfcompress.keras_compat import tf, tf_keras

    try:
        if (path / "keras_metadata.pb").exists():
            model = tf_keras.models.load_model(str(path), compile=False)
            return _source(model, "tf_keras", "SavedModel (tf_keras)", path)
        loaded = tf.saved_model.load(str(path))
    except Exception as e:
        raise ModelLoadError(f"could not load SavedModel {path}: {_first_line(e)}", "re-export the model") from None
    if not loaded.signatures:
        raise ModelLoadError(f"SavedModel {path} has no signatures", "export it with model.export(path)")
    return SourceModel(
        model=None,
        flavor="saved_model",
        format="SavedModel (signatures only)",
        path=str(path),
        sha256=_sha256(path),
        name=path.name,
        saved_model=loaded,
    )


def _source(model: Any, flavor: str, fmt: str, path: Path) -> SourceModel:
    return SourceModel(model=model, flavor=flavor, format=fmt, path=str(path), sha256=_sha256(path), name=model.name)


def _sha256(path: Path) -> str:
    from tfcompress.files import sha256_of_path

    return sha256_of_path(path)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__


# ----------------------------------------------------------------- in memory


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
        for ref in _walk_layers(model):
            _refuse_if_unsafe(ref, f"model '{model.name}'", flavor, {})
    return SourceModel(
        model=model,
        flavor=flavor,
        format=f"in-memory {_FLAVOR_NAMES[flavor]}",
        path=None,
        sha256=_sha256_of_model(model),
        name=model.name,
    )


def _walk_layers(model: Any) -> Iterator[LayerRef]:
    """Every layer of a model, depth first, nested models included."""
    for layer in getattr(model, "layers", []):
        yield LayerRef(layer.name, type(layer).__name__, type(layer).__module__)
        if hasattr(layer, "layers"):
            yield from _walk_layers(layer)


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


# -------------------------------------------------------------------- safety

_BUILTIN_MODULE_PREFIXES = ("keras", "tf_keras")


def _config_layers(config: Any) -> Iterator[LayerRef]:
    """Layers named in a serialized model config, nested models included."""
    if isinstance(config, dict):
        cls = config.get("class_name")
        inner = config.get("config")
        if isinstance(cls, str) and isinstance(inner, dict) and "name" in inner:
            yield LayerRef(inner["name"], cls, config.get("module"))
        for key in ("config", "layers", "layer"):
            value = config.get(key)
            if isinstance(value, (dict, list)):
                yield from _config_layers(value)
    elif isinstance(config, list):
        for item in config:
            yield from _config_layers(item)


def _check_config_safety(config: dict, flavor: str, path: Path, safe_mode: bool, custom_objects: dict[str, Any]) -> None:
    for ref in _config_layers(config):
        if safe_mode:
            _refuse_if_unsafe(ref, str(path), flavor, custom_objects)
        elif ref.class_name not in custom_objects and not _is_builtin(ref, flavor):
            raise ModelLoadError(
                f"{path}: layer '{ref.name}' has custom class '{ref.class_name}' that tfcompress cannot find",
                "pass the class: CLI --custom-objects my_layers.py (with --unsafe), API custom_objects={...}",
            )


def _refuse_if_unsafe(ref: LayerRef, where: str, flavor: str, custom_objects: dict[str, Any]) -> None:
    if ref.class_name in _UNSAFE_CLASSES:
        raise ModelLoadError(f"{where}: layer '{ref.name}' is a {ref.class_name} layer", _UNSAFE_HINT)
    if ref.class_name in custom_objects or _is_builtin(ref, flavor):
        return
    raise ModelLoadError(f"{where}: layer '{ref.name}' has custom class '{ref.class_name}'", _UNSAFE_HINT)


def _is_builtin(ref: LayerRef, flavor: str) -> bool:
    """A layer class that ships with Keras (by module, else by name lookup)."""
    if ref.module:
        return ref.module.split(".")[0] in _BUILTIN_MODULE_PREFIXES
    if ref.class_name in _CONTAINER_CLASSES:
        return True
    from tfcompress.keras_compat import keras3, tf_keras

    k = keras3 if flavor == "keras3" else tf_keras
    return hasattr(k.layers, ref.class_name)
