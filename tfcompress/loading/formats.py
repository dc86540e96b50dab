"""Model files and directories: recognise the format, check what it will deserialize, then let Keras load it.

Every Keras format is checked by `safety.check_config` on the config Keras is about to read (config.json of a
`.keras`, the `model_config` attribute of an `.h5`, every node of a SavedModel's `keras_metadata.pb`) before any
Keras loader sees the file. tf_keras' `.h5` and SavedModel loaders take no `safe_mode`, so they also run inside
tf_keras' own safe-mode switch: its Lambda refuses bytecode even if the check missed one.

A SavedModel directory without `keras_metadata.pb` goes to `tf.saved_model.load`, which rebuilds no Keras objects
and runs no Python code from the directory: only TensorFlow graph ops (restoring variables, and the serving
signature when we call it). Graph ops are not a sandbox, though: a crafted graph can read or write files
through TensorFlow's file ops, so pass only SavedModels you would run with TensorFlow yourself.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any, Callable

from tfcompress.errors import ModelLoadError
from tfcompress.loading.safety import check_config, own_function
from tfcompress.loading.source import SourceModel

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_TFLITE_HINT = "it is already a .tflite model: use `tfcompress inspect` on it, and convert the Keras model it came from"
_METADATA_FILE = "keras_metadata.pb"  # what tf_keras' SavedModel loader reads (constants.SAVED_METADATA_PATH)
FLAVOR_NAMES = {"keras3": "Keras", "tf_keras": "tf_keras"}


def load_path(path: Path, safe_mode: bool, custom_objects: dict[str, Any]) -> SourceModel:
    """Load a model file or SavedModel directory (see the module doc for what is checked)."""
    if not path.exists():
        raise ModelLoadError(f"model file {path} does not exist", "check the path")
    if path.is_dir():
        return _load_saved_model(path, safe_mode, custom_objects)
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


def _parse_json(raw: bytes | str, what: str, hint: str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as e:  # JSONDecodeError / UnicodeDecodeError, or nesting too deep to parse
        reason = "nested too deeply" if isinstance(e, RecursionError) else str(e)[:200]
        raise ModelLoadError(f"{what} is not valid JSON ({reason})", hint) from None


def _flavor(keras_version: str) -> str:
    return "keras3" if keras_version.startswith("3") else "tf_keras"


def _load_keras_zip(path: Path, safe_mode: bool, custom_objects: dict[str, Any]) -> SourceModel:
    hint = "re-save the model with model.save('model.keras')"
    if not zipfile.is_zipfile(path):
        raise ModelLoadError(f"{path} is not a valid .keras file (not a zip archive: truncated or not a model)", hint)
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if "config.json" not in names:
                raise ModelLoadError(f"{path} is a zip file but not a Keras model (no config.json)", "pass a file saved by model.save()")
            raw_config = z.read("config.json")  # the entry Keras reads too (zipfile keeps the last of duplicates)
            raw_meta = z.read("metadata.json") if "metadata.json" in names else b"{}"
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as e:
        raise ModelLoadError(f"{path} is corrupt ({e})", hint) from None
    config = _parse_json(raw_config, f"{path}: config.json", hint)
    meta = _parse_json(raw_meta, f"{path}: metadata.json", hint)
    keras_version = str(meta.get("keras_version", "3")) if isinstance(meta, dict) else "3"
    flavor = _flavor(keras_version)
    if isinstance(config, dict):  # we load with compile=False: both saving_libs drop the top-level one unread
        config = {k: v for k, v in config.items() if k != "compile_config"}
    check_config(config, flavor=flavor, where=str(path), safe_mode=safe_mode, custom_objects=custom_objects)
    model = _call_loader(path, flavor, safe_mode, custom_objects)
    return _source(model, flavor, f".keras ({FLAVOR_NAMES[flavor]} {keras_version})", path)


def _load_h5(path: Path, safe_mode: bool, custom_objects: dict[str, Any]) -> SourceModel:
    hint = "re-save the model with model.save('model.h5')"
    with open(path, "rb") as f:
        if f.read(8) != _HDF5_SIGNATURE:
            raise ModelLoadError(f"{path} is not an HDF5 file (truncated or not a model)", hint)
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
    config = _parse_json(raw.decode() if isinstance(raw, bytes) else raw, f"{path}: model_config", hint)
    flavor = _flavor(keras_version)
    check_config(config, flavor=flavor, where=str(path), safe_mode=safe_mode, custom_objects=custom_objects)
    legacy = _own_functions_by_name(config) if flavor == "tf_keras" else config
    if legacy != config:
        model = _load_h5_rewritten(path, legacy, safe_mode, custom_objects)
    else:
        model = _call_loader(path, flavor, safe_mode, custom_objects)
    return _source(model, flavor, f".h5 ({FLAVOR_NAMES[flavor]} {keras_version})", path)


def _own_functions_by_name(value: Any, depth: int = 0) -> Any:
    """`value` with tfcompress's own registered activations given by name ("tfcompress>keras3_hard_silu").

    tf_keras writes a registered function into an .h5 as {"class_name": "function", "config": NAME, ...} but
    reads .h5 configs with its legacy deserializer, which knows a function only by its name: a bridged model
    saved with `model.save("m.h5")` did not reload ("Unknown activation function: 'function'")."""
    if depth > 200:  # bounded: configs nest a few levels per layer
        return value
    if isinstance(value, dict):
        if value.get("class_name") == "function" and isinstance(value.get("config"), str) \
                and own_function(value["config"]):
            return value["config"]
        return {k: _own_functions_by_name(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_own_functions_by_name(v, depth + 1) for v in value]
    return value


def _load_h5_rewritten(path: Path, config: dict[str, Any], safe_mode: bool, custom_objects: dict[str, Any]) -> Any:
    """A tf_keras .h5 rebuilt from its (rewritten) config, then its weights loaded from the file."""
    from tfcompress.keras_compat import tf_keras, tf_keras_safe_mode

    try:
        with tf_keras_safe_mode(safe_mode):
            model = tf_keras.models.model_from_config(config, custom_objects=custom_objects or None)
            model.load_weights(str(path))
        return model
    except Exception as e:  # Keras raises many types here; the message is what helps
        raise ModelLoadError(f"could not load {path}: {first_line(e)}",
                             "check the file was saved completely, with the Keras it was made with") from None


_FILE_LOADERS: dict[str, Callable[[Path, bool, dict[str, Any]], SourceModel]] = {
    ".keras": _load_keras_zip,
    ".h5": _load_h5,
    ".hdf5": _load_h5,
}


def _call_loader(path: Path, flavor: str, safe_mode: bool, custom_objects: dict[str, Any]) -> Any:
    from tfcompress.keras_compat import keras3, tf_keras, tf_keras_safe_mode

    kwargs: dict[str, Any] = {"custom_objects": custom_objects or None, "compile": False}
    if flavor == "keras3" or path.suffix.lower() == ".keras":
        kwargs["safe_mode"] = safe_mode  # tf_keras' .h5 loader has no such flag: its safe-mode switch below
    loader = keras3.models.load_model if flavor == "keras3" else tf_keras.models.load_model
    try:
        with tf_keras_safe_mode(safe_mode):
            return loader(str(path), **kwargs)
    except ModelLoadError:
        raise
    except Exception as e:  # Keras raises many types here; the message is what helps
        raise ModelLoadError(
            f"could not load {path}: {first_line(e)}",
            "check the file was saved completely, with the Keras it was made with",
        ) from None


def _load_saved_model(path: Path, safe_mode: bool, custom_objects: dict[str, Any]) -> SourceModel:
    if not (path / "saved_model.pb").exists() and not (path / "saved_model.pbtxt").exists():
        raise ModelLoadError(
            f"{path} is a directory but not a SavedModel (no saved_model.pb)",
            "pass a .keras / .h5 file or a SavedModel directory",
        )
    from tfcompress.keras_compat import tf, tf_keras, tf_keras_safe_mode

    try:
        if (path / _METADATA_FILE).exists() and _check_keras_metadata(path, safe_mode, custom_objects):
            with tf_keras_safe_mode(safe_mode):
                model = tf_keras.models.load_model(str(path), compile=False, custom_objects=custom_objects or None)
            return _source(model, "tf_keras", "SavedModel (tf_keras)", path)
        loaded = tf.saved_model.load(str(path))
    except ModelLoadError:
        raise
    except Exception as e:
        raise ModelLoadError(f"could not load SavedModel {path}: {first_line(e)}", "re-export the model") from None
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


def _check_keras_metadata(path: Path, safe_mode: bool, custom_objects: dict[str, Any]) -> bool:
    """Check every node of keras_metadata.pb; False when it has none (tf_keras then loads it as a plain SavedModel)."""
    from tfcompress.keras_compat import parse_keras_metadata

    file = path / _METADATA_FILE
    hint = "re-save the model with model.save(path, save_format='tf'), or pass a .keras / .h5 file"
    try:
        nodes = parse_keras_metadata(file.read_bytes())
    except Exception as e:  # protobuf's DecodeError, a directory in its place, unreadable
        raise ModelLoadError(f"{file} is damaged or unreadable ({first_line(e)})", hint) from None
    for node_path, metadata in nodes:
        config = _parse_json(metadata, f"{file}: node {node_path}", hint)
        if isinstance(config, dict):  # read by tf_keras only when compiling; we load with compile=False
            config = {k: v for k, v in config.items() if k != "training_config"}
        # unknown classes are revived from the SavedModel's graph, without their code: no custom_objects needed
        check_config(config, flavor="tf_keras", where=str(path), safe_mode=safe_mode, custom_objects=custom_objects,
                     root=node_path or "metadata", revives_unknown=True)
    return bool(nodes)


def _source(model: Any, flavor: str, fmt: str, path: Path) -> SourceModel:
    return SourceModel(model=model, flavor=flavor, format=fmt, path=str(path), sha256=_sha256(path), name=model.name)


def _sha256(path: Path) -> str:
    from tfcompress.files import sha256_of_path

    return sha256_of_path(path)


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (Keras' can be pages long), or its type."""
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__
