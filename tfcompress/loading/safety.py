"""What a model file will make Keras deserialize, checked before Keras reads it.

Keras rebuilds a model from a JSON config in which every dict holding a `class_name` names a class (or, with
`"class_name": "function"`, a function) that Keras looks up and calls: layers, the layers inside wrappers and
nested models, initializers, regularizers, constraints, activations, dtype policies. The walk visits EVERY dict and
list of the config, whatever its keys, so no field being absent (a Lambda without `name`) or present in an unusual
place (a layer inside `TimeDistributed.layer`, a custom initializer) hides an object from it.

Each reference must be one of:
- plain data Keras decodes without looking anything up (`__tuple__`, `TensorShape`, `__keras_tensor__`, ...);
- a Keras built-in of the flavour at hand: its `module` (when present) is Keras', its `registered_name` (when
  present) is its own class name, and the name resolves in the flavour's public namespaces;
- in the user's `custom_objects` (by class or registered name).

Classes that carry code (Lambda's bytecode or imported function, tf_keras op layers, pickled torch modules, ...)
are refused by name even though Keras ships them, except tf_keras op layers whose TensorFlow symbol is pure tensor
math (`PURE_OP_SYMBOLS`: what the bridge writes for `keras.ops` calls) and the activation functions tfcompress
registers itself, so a bridged model saved by the user reloads. Refused unless `safe_mode=False`; with it, an
unknown class that Keras could not find anyway is named with the `--custom-objects` hint.

Bounded: at most `MAX_DEPTH` levels and `MAX_NODES` dicts / lists / values, then a clear error.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Iterator

from tfcompress.errors import ModelLoadError

MAX_DEPTH = 200
MAX_NODES = 2_000_000

UNSAFE_HINT = (
    "loading it runs Python code stored in or referenced by the model; if you trust it, pass --unsafe "
    "(safe_mode=False in the API)"
)
_CUSTOM_OBJECTS_HINT = "pass the class: CLI --custom-objects my_layers.py (with --unsafe), API custom_objects={...}"
_DAMAGED_HINT = "the file is damaged or was not written by Keras; re-save the model with model.save()"

# Decoded as data by Keras 3 / tf_keras (serialization_lib, json_utils): no class is looked up.
_DATA_MARKERS = frozenset(
    {
        "__tuple__", "__ellipsis__", "TensorShape", "TypeSpec", "CompositeTensor",  # tf_keras json_utils
        "__keras_tensor__", "__tensor__", "__numpy__", "__bytes__", "__slice__",  # Keras 3 serialization_lib
    }
)
# Shipped with Keras, but deserializing them runs code from the config (bytecode, an imported function, a pickle,
# an op looked up by name, a model loaded from a stored path).
UNSAFE_CLASSES = frozenset(
    {
        "Lambda", "__lambda__",
        "TFOpLambda", "SlicingOpLambda", "InstanceMethod", "InstanceProperty", "ClassMethod",  # tf_keras op layers
        "TFClassMethodDispatcher",
        "DropoutWrapper", "ResidualWrapper", "DeviceWrapper",  # tf_keras RNN cell wrappers (func_load)
        "TorchModuleWrapper", "JaxLayer", "FlaxLayer", "TFSMLayer",  # Keras 3: pickle, functions, stored paths
    }
)
# tf_keras op layers whose TensorFlow symbol is pure tensor math (what the bridge writes for Keras 3 `keras.ops`
# calls and tensor operators, tests/test_bridge_ops.py keeps the two in step): they look up nothing else and
# are data like any layer. Any other symbol (tf.io.write_file, tf.py_function, ...) stays refused.
PURE_OP_SYMBOLS = frozenset(
    {
        "__operators__.getitem", "cast", "clip_by_value", "concat", "expand_dims", "reshape", "squeeze", "stack",
        "transpose", "where", "linalg.matmul",
        "math.abs", "math.add", "math.divide", "math.equal", "math.erf", "math.exp", "math.greater",
        "math.greater_equal", "math.less", "math.less_equal", "math.log", "math.maximum", "math.minimum",
        "math.multiply", "math.negative", "math.not_equal", "math.pow", "math.reduce_max", "math.reduce_mean",
        "math.reduce_min", "math.reduce_sum", "math.rsqrt", "math.sigmoid", "math.softplus", "math.sqrt",
        "math.square", "math.subtract", "math.tanh",
        "nn.elu", "nn.gelu", "nn.leaky_relu", "nn.log_softmax", "nn.relu", "nn.relu6", "nn.silu", "nn.softmax",
    }
)
_OP_LAYERS = frozenset({"TFOpLambda", "SlicingOpLambda"})
# Activation functions tfcompress itself registers (tfcompress/bridge/activations.py: Keras 3 activations that
# tf_keras lacks); importing tfcompress registers them, so a bridged model reloads.
_OWN_FUNCTION_PREFIX = "tfcompress>keras3_"
_CONTAINER_CLASSES = frozenset({"Functional", "Sequential", "Model"})
_KERAS_PACKAGES = frozenset({"keras", "tf_keras"})
_CLASS_NAMESPACES = (
    "layers", "models", "initializers", "regularizers", "constraints", "losses", "metrics", "optimizers",
    "optimizers.schedules", "dtype_policies", "mixed_precision", "layers.experimental",
    "layers.experimental.preprocessing",
)
_FUNCTION_NAMESPACES = ("activations", "losses", "metrics", "initializers", "regularizers", "constraints")


@dataclass(frozen=True)
class ConfigObject:
    """One `{"class_name": ...}` reference found in a serialized config."""

    class_name: str
    path: str
    name: str | None = None
    module: str | None = None
    registered_name: str | None = None
    function: str | None = None  # the function's name when class_name == "function"
    op: str | None = None  # a tf_keras op layer's TensorFlow symbol ("math.add")

    def label(self) -> str:
        """How an error names it: the layer's name, else where it sits in the config."""
        return f"layer '{self.name}'" if self.name else f"the object at {self.path}"


def config_objects(config: Any, root: str = "config") -> Iterator[ConfigObject]:
    """Every class reference in `config`, depth first, whatever keys hold it.

    Raises:
        ModelLoadError: deeper than `MAX_DEPTH`, larger than `MAX_NODES`, or a `class_name` that is not a string.
    """
    stack: list[tuple[Any, Any, int]] = [(config, (None, root), 0)]  # (value, path as a linked (parent, key), depth)
    seen = 0
    while stack:
        value, path, depth = stack.pop()
        seen += 1
        if seen > MAX_NODES:
            raise ModelLoadError(
                f"the model config has more than {MAX_NODES:,} values; refusing to scan it", _DAMAGED_HINT
            )
        if depth > MAX_DEPTH:
            raise ModelLoadError(
                f"the model config is nested deeper than {MAX_DEPTH} levels (at {_path_text(path)})", _DAMAGED_HINT
            )
        if isinstance(value, dict):
            if "class_name" in value:
                yield _object(value, path)
            for key in reversed(list(value)):
                stack.append((value[key], (path, f".{key}"), depth + 1))
        elif isinstance(value, list):
            for i in range(len(value) - 1, -1, -1):
                stack.append((value[i], (path, f"[{i}]"), depth + 1))


def _path_text(path: Any) -> str:
    parts = []
    while path is not None:
        path, key = path
        parts.append(key)
    return "".join(reversed(parts))


def _object(value: dict, path: Any) -> ConfigObject:
    cls = value["class_name"]
    where = _path_text(path)
    if not isinstance(cls, str):
        raise ModelLoadError(f"the model config has a class_name that is not a string at {where}", _DAMAGED_HINT)
    inner = value.get("config")
    name = value.get("name")
    if not isinstance(name, str) and isinstance(inner, dict):
        name = inner.get("name")
    module, registered = value.get("module"), value.get("registered_name")
    return ConfigObject(
        class_name=cls,
        path=where,
        name=name if isinstance(name, str) and name else None,
        module=module if isinstance(module, str) else None if module is None else repr(module),
        registered_name=registered if isinstance(registered, str) else None if registered is None else repr(registered),
        function=inner if cls == "function" and isinstance(inner, str) else None,
        op=inner.get("function") if cls in _OP_LAYERS and isinstance(inner, dict)
        and isinstance(inner.get("function"), str) else None,
    )


def check_config(
    config: Any,
    *,
    flavor: str,
    where: str,
    safe_mode: bool,
    custom_objects: dict[str, Any],
    root: str = "config",
    revives_unknown: bool = False,
) -> None:
    """Refuse a config whose deserialization could run code not from Keras or the user (see module doc).

    Args:
        config: the parsed JSON (config.json, the .h5 `model_config`, one keras_metadata.pb node).
        flavor: "keras3" or "tf_keras": whose built-ins count.
        where: the file, for messages.
        safe_mode: False lets code-carrying classes and custom classes through.
        custom_objects: what the user passed, by name.
        root: the name of `config` in messages' paths.
        revives_unknown: the loader rebuilds unknown classes without their code (tf_keras SavedModel), so
            with safe_mode=False they need no custom_objects.

    Raises:
        ModelLoadError: naming the layer (or its path in the config) and its class, with the hint.
    """
    for obj in config_objects(config, root):
        verdict = classify(obj, flavor, custom_objects)
        if verdict == "safe":
            continue
        if safe_mode:
            if verdict == "unsafe":
                what = "holds a Python lambda" if obj.class_name == "__lambda__" else f"is a {obj.class_name} layer"
                raise ModelLoadError(f"{where}: {obj.label()} {what}", UNSAFE_HINT)
            raise ModelLoadError(f"{where}: {obj.label()} has custom class '{_shown(obj)}'", UNSAFE_HINT)
        if verdict == "custom" and not revives_unknown and not _registered(obj, flavor):
            raise ModelLoadError(
                f"{where}: {obj.label()} has custom class '{_shown(obj)}' that tfcompress cannot find",
                _CUSTOM_OBJECTS_HINT,
            )


def classify(obj: ConfigObject, flavor: str, custom_objects: dict[str, Any]) -> str:
    """"safe" (data, a Keras built-in, or the user's), "unsafe" (a class that carries code) or "custom"."""
    cls = obj.class_name
    if cls in _DATA_MARKERS:
        return "safe"
    if cls == "__typespec__":  # Keras 3: a TypeSpec class looked up by module (TensorFlow's own)
        return "safe" if obj.module and obj.module.split(".")[0] in (*_KERAS_PACKAGES, "tensorflow") else "custom"
    if cls in _OP_LAYERS and flavor == "tf_keras" and obj.op in PURE_OP_SYMBOLS:
        return "safe"
    if cls in UNSAFE_CLASSES:
        return "unsafe"
    if cls == "function":
        if obj.function is None:
            return "custom"
        if obj.function in custom_objects or own_function(obj.function):
            return "safe"
        from_keras = obj.module in (None, "builtins") or _is_keras_module(obj.module)
        return "safe" if from_keras and _builtin(obj.function, flavor, functions=True) else "custom"
    if cls in custom_objects or (obj.registered_name and obj.registered_name in custom_objects):
        return "safe"
    if obj.module is not None and not _is_keras_module(obj.module):
        return "custom"
    if obj.registered_name not in (None, cls):
        return "custom"  # Keras looks a registered name up first: it would not be the built-in
    return "safe" if cls in _CONTAINER_CLASSES or _builtin(cls, flavor, functions=False) else "custom"


def own_function(name: str) -> bool:
    """One of the activation functions tfcompress registers (and so can deserialize without the file's code)."""
    if not name.startswith(_OWN_FUNCTION_PREFIX):
        return False
    from tfcompress.bridge.activations import KERAS3_ACTIVATIONS

    return name[len(_OWN_FUNCTION_PREFIX):] in KERAS3_ACTIVATIONS


def _shown(obj: ConfigObject) -> str:
    """The class as quoted in messages, then where it would come from when that is not Keras."""
    shown = f"function {obj.function or '?'}" if obj.class_name == "function" else obj.class_name
    foreign = obj.module and obj.module != "builtins" and not _is_keras_module(obj.module)
    return f"{shown}' from module '{obj.module}" if foreign else shown


def _is_keras_module(module: str) -> bool:
    return module.split(".")[0] in _KERAS_PACKAGES


@functools.lru_cache(maxsize=4096)
def _builtin(name: str, flavor: str, functions: bool) -> bool:
    """`name` is a public class (or function) of the flavour's Keras."""
    if not name.isidentifier() or name.startswith("_"):
        return False
    from tfcompress.keras_compat import keras3, tf_keras

    root = keras3 if flavor == "keras3" else tf_keras
    for dotted in _FUNCTION_NAMESPACES if functions else _CLASS_NAMESPACES:
        namespace: Any = root
        for part in dotted.split("."):
            namespace = getattr(namespace, part, None)
        found = getattr(namespace, name, None) if namespace is not None else None
        if found is not None and (isinstance(found, type) != functions) and callable(found):
            return True
    return False


def _registered(obj: ConfigObject, flavor: str) -> bool:
    """Found in the process' Keras registry (`register_keras_serializable`): loadable with safe_mode=False."""
    from tfcompress.keras_compat import keras3, tf_keras

    saving = (keras3 if flavor == "keras3" else tf_keras).saving
    names = [n for n in (obj.registered_name, obj.function, obj.class_name) if n]
    return any(saving.get_registered_object(n) is not None for n in names)
