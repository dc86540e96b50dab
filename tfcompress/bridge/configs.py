"""Translate a Keras 3 layer config into the tf_keras format (`translate_layer_config`)."""

from __future__ import annotations

import inspect
from typing import Any

from tfcompress.bridge.activations import KERAS3_ACTIVATIONS
from tfcompress.errors import BridgeError
from tfcompress.keras_compat import keras3, tf_keras

__all__ = ["lookup_custom", "translate_layer_config"]


# Keras 3 config key -> tf_keras key ("*" applies to every class).
_RENAMED_KEYS: dict[str, dict[str, str]] = {
    "*": {"batch_shape": "batch_input_shape"},
    "LeakyReLU": {"negative_slope": "alpha"},
}

# tf_keras keys Keras 3 configs lack, with the value that means "not given".
_ADDED_KEYS: dict[str, dict[str, Any]] = {
    "MultiHeadAttention": {"query_shape": None, "key_shape": None, "value_shape": None},
}

# Keras 3-only keys with no effect on inference results: dropped whatever their value.
_IGNORED_KEYS: frozenset[str] = frozenset(
    {"seed", "flash_attention", "use_cudnn", "lora_alpha", "bounding_box_format"}
)

# Keras 3-only keys dropped only while they hold one of these "feature off" values.
# Any other key tf_keras does not accept is dropped only while it equals the Keras 3
# class's own default for it (see `_keras3_defaults`), otherwise it is an error.
_NEUTRAL_VALUES: dict[str, tuple[Any, ...]] = {
    "rms_scaling": (False,),
    "lora_rank": (None, 0),
    "quantization_config": (None,),
    "optional": (False,),
    "data_format": (None, "channels_last"),
    "antialias": (False,),
    "pad_to_aspect_ratio": (False,),
    "use_gate": (False,),
    "sliding_window": (None,),
    "gptq_unpacked_column_size": (None,),
}

# Keyword arguments every tf_keras layer accepts through `Layer.__init__(**kwargs)`.
_TF_KERAS_LAYER_KWARGS: frozenset[str] = frozenset(
    {
        "name", "trainable", "dtype", "dynamic", "input_dim", "input_shape", "batch_input_shape",
        "batch_size", "weights", "activity_regularizer", "autocast", "implementation",
    }
)

# Config-key suffix -> tf_keras module that deserializes such nested objects.
_OBJECT_MODULES: dict[str, Any] = {
    "_initializer": tf_keras.initializers,
    "_regularizer": tf_keras.regularizers,
    "_constraint": tf_keras.constraints,
}

_ACTIVATION_KEYS: frozenset[str] = frozenset({"activation", "recurrent_activation"})

# Keras 3 dtype policies that carry nothing but a dtype / mixed-precision name.
_PLAIN_DTYPE_POLICIES: frozenset[str] = frozenset({"DTypePolicy", "FloatDTypePolicy"})


def _init_params(cls: type) -> dict[str, Any]:
    """Named `__init__` parameters (name -> default) over the class's MRO."""
    params: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            signature = inspect.signature(init)
        except (TypeError, ValueError):
            continue
        for name, param in signature.parameters.items():
            if name != "self" and param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                params[name] = param.default
    return params


def _keras3_defaults(class_name: str) -> dict[str, Any]:
    """`__init__` defaults of the built-in Keras 3 layer class, {} if unknown."""
    cls = getattr(keras3.layers, class_name, None)
    if not isinstance(cls, type):
        return {}
    return {k: v for k, v in _init_params(cls).items() if v is not inspect.Parameter.empty}


def _tf_keras_accepted(cls: type) -> frozenset[str]:
    """Config keys a tf_keras layer class accepts."""
    return frozenset(_init_params(cls)) | _TF_KERAS_LAYER_KWARGS


def lookup_custom(custom_objects: dict[str, Any] | None, *names: str | None) -> Any:
    """The first of `names` found in custom_objects, else None."""
    for name in names:
        if custom_objects and name and name in custom_objects:
            return custom_objects[name]
    return None


def _translate_dtype(layer_name: str, class_name: str, value: Any) -> Any:
    """Keras 3 DTypePolicy dict -> dtype / policy name string."""
    if not isinstance(value, dict):
        return value
    policy_class = value.get("class_name", "")
    if policy_class not in _PLAIN_DTYPE_POLICIES:
        raise BridgeError(
            layer_name,
            class_name,
            f"dtype policy {policy_class} (quantized Keras 3 layers have no tf_keras equivalent)",
            hint="bridge the float model and let tfcompress quantize it",
        )
    return value.get("config", {}).get("name")


def _translate_activation(
    layer_name: str, class_name: str, value: Any, custom_objects: dict[str, Any] | None
) -> Any:
    """Keras 3 activation (name or serialized function) -> tf_keras name or callable."""
    if value is None or callable(value):
        return value
    if isinstance(value, dict):  # a serialized (custom) function
        fn_name = value.get("config")
        custom = lookup_custom(custom_objects, value.get("registered_name"), fn_name)
        if custom is not None:
            return custom
        value = fn_name
    if not isinstance(value, str):
        raise BridgeError(layer_name, class_name, f"unsupported activation {value!r}")
    custom = lookup_custom(custom_objects, value)
    if custom is not None:
        return custom
    if value in KERAS3_ACTIVATIONS:
        return KERAS3_ACTIVATIONS[value]
    try:
        tf_keras.activations.get(value)
    except (ValueError, TypeError) as exc:
        raise BridgeError(
            layer_name,
            class_name,
            f"activation '{value}' does not exist in tf_keras",
            hint="pass a TensorFlow implementation of it in custom_objects",
        ) from exc
    return value


def _translate_object(
    layer_name: str, class_name: str, key: str, value: Any, custom_objects: dict[str, Any] | None
) -> Any:
    """Nested Keras 3 initializer / regularizer / constraint -> tf_keras config dict."""
    if not isinstance(value, dict) or "class_name" not in value:
        return value
    suffix = next(s for s in _OBJECT_MODULES if key.endswith(s))
    obj_name = value["class_name"]
    obj_cls = lookup_custom(custom_objects, value.get("registered_name"), obj_name)
    if obj_cls is None:
        obj_cls = getattr(_OBJECT_MODULES[suffix], obj_name, None)
    if not isinstance(obj_cls, type):
        if suffix == "_initializer":  # weights are copied afterwards: the initializer never runs
            return {"class_name": "Zeros", "config": {}}
        raise BridgeError(
            layer_name,
            class_name,
            f"{key} {obj_name} does not exist in tf_keras",
            hint="pass its tf_keras class in custom_objects, or remove it",
        )
    config = dict(value.get("config") or {})
    accepted = _init_params(obj_cls)
    extra = {k: v for k, v in config.items() if k not in accepted}
    if suffix != "_initializer" and any(v is not None for v in extra.values()):
        raise BridgeError(layer_name, class_name, f"{key} {obj_name} has Keras 3-only options {sorted(extra)}")
    return {"class_name": obj_name, "config": {k: v for k, v in config.items() if k in accepted}}


def _strip_keras3_keys(value: Any) -> Any:
    """Drop Keras 3 serialization bookkeeping ("module", "registered_name") from nested dicts."""
    if isinstance(value, dict):
        return {k: _strip_keras3_keys(v) for k, v in value.items() if k not in ("module", "registered_name")}
    if isinstance(value, list):
        return [_strip_keras3_keys(v) for v in value]
    return value


def _translate_value(
    layer_name: str, class_name: str, key: str, value: Any, custom_objects: dict[str, Any] | None
) -> Any:
    """Translate one config value (dtype, activation, nested object, nested layer, plain)."""
    if key == "dtype":
        return _translate_dtype(layer_name, class_name, value)
    if key in _ACTIVATION_KEYS:
        return _translate_activation(layer_name, class_name, value, custom_objects)
    if any(key.endswith(suffix) for suffix in _OBJECT_MODULES):
        return _translate_object(layer_name, class_name, key, value, custom_objects)
    if isinstance(value, dict) and {"class_name", "config"} <= value.keys():
        inner_class = value["class_name"]
        if isinstance(getattr(tf_keras.layers, inner_class, None), type) or lookup_custom(
            custom_objects, value.get("registered_name"), inner_class
        ):  # a wrapped layer (TimeDistributed, Bidirectional, RNN cell, ...)
            return {
                "class_name": inner_class,
                "config": translate_layer_config(inner_class, value["config"], custom_objects),
            }
    return _strip_keras3_keys(value)


def _same_value(a: Any, b: Any) -> bool:
    """Equality that keeps bools apart from ints (0 is not False) and lists equal to tuples."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b))
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def translate_layer_config(
    class_name: str, config: dict[str, Any], custom_objects: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Translate a Keras 3 layer config into the tf_keras config format.

    Renames keys (`batch_shape`, LeakyReLU `negative_slope`), turns dtype policies
    into names, translates activations and nested initializers / regularizers /
    constraints, and drops Keras 3-only keys while they are at a neutral value.

    Args:
        class_name: Keras 3 class name, e.g. "Conv2D".
        config: the layer's Keras 3 `get_config()`.
        custom_objects: user classes / functions, by (registered) name.

    Returns:
        A config for `tf_keras.layers.<class_name>.from_config`. Activations
        tf_keras lacks come back as callables, not names.

    Raises:
        BridgeError: a Keras 3-only option is switched on, or a nested object /
            activation has no tf_keras equivalent.
    """
    layer_name = str(config.get("name", class_name))
    renames = {**_RENAMED_KEYS["*"], **_RENAMED_KEYS.get(class_name, {})}
    out = dict(_ADDED_KEYS.get(class_name, {}))
    for key, value in config.items():
        key = renames.get(key, key)
        out[key] = _translate_value(layer_name, class_name, key, value, custom_objects)

    tf_cls = getattr(tf_keras.layers, class_name, None)
    if lookup_custom(custom_objects, class_name) is not None or not isinstance(tf_cls, type):
        return out  # a user class: its config is its own business
    accepted = _tf_keras_accepted(tf_cls) | _ADDED_KEYS.get(class_name, {}).keys()
    defaults = _keras3_defaults(class_name)
    for key in [k for k in out if k not in accepted]:
        value = out.pop(key)
        if key in _IGNORED_KEYS:
            continue
        neutral = _NEUTRAL_VALUES.get(key, (defaults[key],) if key in defaults else ())
        if not any(_same_value(value, n) for n in neutral):
            raise BridgeError(
                layer_name,
                class_name,
                f"Keras 3 option {key}={value!r} has no tf_keras equivalent",
                hint=f"rebuild the layer without {key}, or pass a tf_keras class for it in custom_objects",
            )
    return out
