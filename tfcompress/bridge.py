"""Rebuild Keras 3 models as tf_keras (Keras 2) models with identical weights.

TF-MOT (QAT, pruning, clustering) only understands tf_keras, while most user
models are Keras 3. `to_tf_keras` rebuilds a Keras 3 Sequential or Functional
model (nested models, shared layers and multi-input/output graphs included)
layer by layer:

1. every Keras 3 layer's `get_config()` is translated to the tf_keras format
   (`translate_layer_config`) and the tf_keras layer is created from it;
2. the Keras 3 graph is walked node by node (the same walk Keras 3 uses to run
   a Functional model) and each node is replayed on tf_keras symbolic tensors,
   so shared layers stay shared and layer / model names are kept;
3. weights are copied per layer, matched by variable name and shape
   (`copy_weights`), never by position alone.

What cannot be bridged raises `BridgeError` naming the layer and its class:
Lambda layers (their function is Keras 3 Python code, usually `keras.ops`, that
cannot run on tf_keras tensors), raw `keras.ops` calls on symbolic tensors,
custom layer classes not given in `custom_objects`, layers tf_keras does not
have, Keras 3 options tf_keras lacks when they are switched on (e.g.
`rms_scaling=True`, LoRA, quantized dtype policies) and subclassed models.
`custom_objects` maps a Keras 3 class name (or registered name
"package>Name") to the tf_keras class to build instead; it wins over every
built-in rule, Lambda included, and is also used for custom initializers,
regularizers, constraints and activation functions.

Keras 3 activations that tf_keras lacks or defines differently (e.g.
`hard_sigmoid`, `hard_silu`) are replaced by TensorFlow implementations of the
Keras 3 definition, registered as "tfcompress>keras3_<name>" so a saved
bridged model reloads once this module is imported.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

from tfcompress.errors import BridgeError
from tfcompress.keras_compat import keras3, tf, tf_keras

__all__ = [
    "KERAS3_ACTIVATIONS",
    "bridge_layer",
    "copy_weights",
    "to_tf_keras",
    "translate_layer_config",
]


# --------------------------------------------------------------------------
# Activations Keras 3 has that tf_keras lacks or defines differently
# --------------------------------------------------------------------------


def _hard_sigmoid(x: Any) -> Any:
    return tf.nn.relu6(x + 3.0) / 6.0


def _hard_silu(x: Any) -> Any:
    return x * tf.nn.relu6(x + 3.0) / 6.0


def _celu(x: Any) -> Any:
    return tf.nn.relu(x) + tf.minimum(0.0, tf.math.expm1(x))


def _glu(x: Any) -> Any:
    a, b = tf.split(x, 2, axis=-1)
    return a * tf.sigmoid(b)


def _hard_shrink(x: Any) -> Any:
    return tf.where(tf.abs(x) > 0.5, x, tf.zeros_like(x))


def _hard_tanh(x: Any) -> Any:
    return tf.clip_by_value(x, -1.0, 1.0)


def _soft_shrink(x: Any) -> Any:
    return tf.where(x > 0.5, x - 0.5, tf.where(x < -0.5, x + 0.5, tf.zeros_like(x)))


def _sparse_plus(x: Any) -> Any:
    return tf.where(x <= -1.0, tf.zeros_like(x), tf.where(x >= 1.0, x, 0.25 * tf.square(x + 1.0)))


def _sparse_sigmoid(x: Any) -> Any:
    return tf.where(x <= -1.0, tf.zeros_like(x), tf.where(x >= 1.0, tf.ones_like(x), 0.5 * (x + 1.0)))


def _squareplus(x: Any) -> Any:
    return 0.5 * (x + tf.sqrt(tf.square(x) + 4.0))


def _tanh_shrink(x: Any) -> Any:
    return x - tf.tanh(x)


def _register_activations(table: dict[str, Callable[[Any], Any]]) -> dict[str, Callable[[Any], Any]]:
    """Name each function keras3_<name> and register it for tf_keras (de)serialization."""
    registered = {}
    for name, fn in table.items():
        fn.__name__ = fn.__qualname__ = f"keras3_{name}"
        registered[name] = tf_keras.saving.register_keras_serializable(package="tfcompress")(fn)
    return registered


# Keras 3 activation name -> TF implementation of the Keras 3 definition
# (default parameters, as used when the activation is given by name).
KERAS3_ACTIVATIONS: dict[str, Callable[[Any], Any]] = _register_activations(
    {
        "hard_sigmoid": _hard_sigmoid,  # tf_keras: clip(0.2x + 0.5); Keras 3: relu6(x + 3) / 6
        "hard_silu": _hard_silu,
        "celu": _celu,
        "glu": _glu,
        "hard_shrink": _hard_shrink,
        "hard_tanh": _hard_tanh,
        "log_sigmoid": tf.math.log_sigmoid,
        "soft_shrink": _soft_shrink,
        "sparse_plus": _sparse_plus,
        "sparse_sigmoid": _sparse_sigmoid,
        "squareplus": _squareplus,
        "tanh_shrink": _tanh_shrink,
    }
)
# "hard_swish" is an alias: keep one function object with one registered name.
KERAS3_ACTIVATIONS["hard_swish"] = KERAS3_ACTIVATIONS["hard_silu"]


# --------------------------------------------------------------------------
# Config translation tables
# --------------------------------------------------------------------------

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

# Per class: tf_keras weight name -> Keras 3 weight name, where they differ.
_WEIGHT_ALIASES: dict[str, dict[str, str]] = {
    "DepthwiseConv1D": {"depthwise_kernel": "kernel"},
    "DepthwiseConv2D": {"depthwise_kernel": "kernel"},
}

# Built-in Keras 3 layers that exist in tf_keras but cannot be rebuilt from config.
_UNBRIDGEABLE: dict[str, tuple[str, str]] = {
    "Lambda": (
        "a Lambda holds Keras 3 Python code (usually keras.ops) that cannot run on tf_keras tensors",
        "replace the Lambda with built-in layers (Activation, Rescaling, Multiply, Reshape, ...) or a "
        "custom layer class, and pass its tf_keras version in custom_objects",
    ),
}


# --------------------------------------------------------------------------
# Config translation
# --------------------------------------------------------------------------


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


def _lookup_custom(custom_objects: dict[str, Any] | None, *names: str | None) -> Any:
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
        custom = _lookup_custom(custom_objects, value.get("registered_name"), fn_name)
        if custom is not None:
            return custom
        value = fn_name
    if not isinstance(value, str):
        raise BridgeError(layer_name, class_name, f"unsupported activation {value!r}")
    custom = _lookup_custom(custom_objects, value)
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
    obj_cls = _lookup_custom(custom_objects, value.get("registered_name"), obj_name)
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
        if isinstance(getattr(tf_keras.layers, inner_class, None), type) or _lookup_custom(
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
    if _lookup_custom(custom_objects, class_name) is not None or not isinstance(tf_cls, type):
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


# --------------------------------------------------------------------------
# Layers and weights
# --------------------------------------------------------------------------


def _resolve_class(layer: Any, custom_objects: dict[str, Any] | None) -> type:
    """The tf_keras class to rebuild a Keras 3 layer with, or BridgeError."""
    class_name = type(layer).__name__
    registered = keras3.saving.get_registered_name(type(layer))
    custom = _lookup_custom(custom_objects, registered, class_name)
    if custom is not None:
        if not (isinstance(custom, type) and issubclass(custom, tf_keras.layers.Layer)):
            raise BridgeError(
                layer.name, class_name, f"custom_objects['{class_name}'] is not a tf_keras layer class",
                hint="map the class name to a tf_keras (Keras 2) layer class",
            )
        return custom
    if class_name in _UNBRIDGEABLE:
        reason, hint = _UNBRIDGEABLE[class_name]
        raise BridgeError(layer.name, class_name, reason, hint=hint)
    if type(layer) is not getattr(keras3.layers, class_name, None):
        raise BridgeError(layer.name, class_name, "custom layer class not given in custom_objects")
    tf_cls = getattr(tf_keras.layers, class_name, None)
    if not isinstance(tf_cls, type):
        raise BridgeError(
            layer.name, class_name, f"tf_keras has no {class_name} layer",
            hint="replace it with built-in layers, or pass a tf_keras implementation in custom_objects",
        )
    return tf_cls


def bridge_layer(layer: Any, custom_objects: dict[str, Any] | None = None) -> Any:
    """Create the (unbuilt, weightless) tf_keras twin of a single Keras 3 layer.

    Args:
        layer: a Keras 3 layer (not a model).
        custom_objects: user classes / functions, by (registered) name.

    Returns:
        A tf_keras layer with the same name and configuration.

    Raises:
        BridgeError: the layer cannot be rebuilt in tf_keras.
    """
    if not isinstance(layer, keras3.layers.Layer):
        raise BridgeError(
            getattr(layer, "name", "?"),
            type(layer).__name__,
            "a Keras 3 op (keras.ops / tensor operator) applied directly to symbolic tensors",
            hint="wrap the computation in a built-in layer (Add, Multiply, Reshape, Activation, ...)",
        )
    class_name = type(layer).__name__
    tf_cls = _resolve_class(layer, custom_objects)
    try:
        config = layer.get_config()
    except Exception as exc:  # noqa: BLE001 - user get_config can raise anything
        raise BridgeError(layer.name, class_name, f"get_config() failed: {exc}") from exc
    tf_config = translate_layer_config(class_name, config, custom_objects)
    try:
        with tf_keras.utils.custom_object_scope(custom_objects or {}):
            return tf_cls.from_config(tf_config)
    except Exception as exc:  # noqa: BLE001 - report any rejection as a bridge failure
        raise BridgeError(layer.name, class_name, f"tf_keras rejected the translated config: {exc}") from exc


def _short_name(name: str) -> str:
    """'block/conv/kernel:0' -> 'kernel'."""
    return name.split("/")[-1].split(":")[0]


def copy_weights(source: Any, target: Any) -> None:
    """Copy a Keras 3 layer's weights into its tf_keras twin, matched by name and shape.

    Raises:
        BridgeError: the two layers' variables do not correspond one to one.
    """
    class_name = type(source).__name__
    k3_vars = list(source.weights)
    values = source.get_weights()
    tf_vars = list(target.weights)
    aliases = _WEIGHT_ALIASES.get(class_name, {})
    k3_desc = [f"{_short_name(v.path)}{tuple(v.shape)}" for v in k3_vars]
    if len(k3_vars) != len(tf_vars):
        raise BridgeError(
            source.name, class_name,
            f"Keras 3 has weights {k3_desc} but tf_keras has {[v.name for v in tf_vars]}",
        )
    used: set[int] = set()
    ordered = []
    for tf_var in tf_vars:
        wanted = _short_name(tf_var.name)
        wanted = aliases.get(wanted, wanted)
        shape = tuple(tf_var.shape)
        index = next(
            (
                i
                for i, v in enumerate(k3_vars)
                if i not in used and _short_name(v.path) == wanted and tuple(v.shape) == shape
            ),
            None,
        )
        if index is None:
            raise BridgeError(
                source.name, class_name,
                f"no Keras 3 weight matches tf_keras weight {tf_var.name}{shape} (Keras 3 has {k3_desc})",
            )
        used.add(index)
        ordered.append(values[index])
    target.set_weights(ordered)


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------


@dataclass
class _Context:
    """State of one `to_tf_keras` call: bridged objects by id, layers awaiting weights."""

    custom_objects: dict[str, Any] | None
    bridged: dict[int, tuple[Any, Any]] = field(default_factory=dict)
    leaves: list[tuple[Any, Any]] = field(default_factory=list)
    models: list[tuple[Any, Any]] = field(default_factory=list)


def _is_functional(model: Any) -> bool:
    """True for a Keras 3 Functional model (a graph of nodes)."""
    return isinstance(getattr(model, "_nodes_by_depth", None), dict)


def _make_input(tensor: Any) -> Any:
    """A tf_keras Input matching a Keras 3 input tensor (shape incl. batch, dtype, name)."""
    history = getattr(tensor, "_keras_history", None)
    name = history[0].name if history else tensor.name
    return tf_keras.Input(
        batch_shape=tuple(tensor.shape), dtype=tensor.dtype, sparse=bool(tensor.sparse), name=name
    )


def _subclassed_model_error(model: Any) -> BridgeError:
    """The error for a subclassed Keras 3 model, which has no layer graph."""
    return BridgeError(
        model.name,
        type(model).__name__,
        "subclassed Keras 3 model: its call() is Python code, there is no layer graph to rebuild",
        hint="rebuild it with the Functional API or keras.Sequential and save that, "
        "or convert the Keras 3 model directly (post-training quantization needs no bridge)",
    )


def _bridge_operation(op: Any, ctx: _Context) -> Any:
    """The tf_keras twin of a Keras 3 layer or model, created once per object (sharing kept)."""
    if id(op) in ctx.bridged:
        return ctx.bridged[id(op)][1]
    if isinstance(op, keras3.Model) and (isinstance(op, keras3.Sequential) or _is_functional(op)):
        result = _bridge_model(op, ctx)
        ctx.models.append((op, result))
    elif isinstance(op, keras3.Model) and _lookup_custom(
        ctx.custom_objects, keras3.saving.get_registered_name(type(op)), type(op).__name__
    ) is None:
        raise _subclassed_model_error(op)
    else:
        result = bridge_layer(op, ctx.custom_objects)
        ctx.leaves.append((op, result))
    ctx.bridged[id(op)] = (op, result)
    return result


def _call_kwargs(op: Any, layer: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of a recorded Keras 3 call that the tf_keras layer takes.

    None values are defaults (`mask=None` is recorded by Keras 3 for every
    mask-aware layer) and are dropped; tf_keras propagates masks itself.
    """
    params = inspect.signature(layer.call).parameters
    open_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
    out = {}
    for key, value in kwargs.items():
        if value is None:
            continue
        if key not in params and not open_kwargs:
            reason = f"tf_keras {type(layer).__name__}.call has no '{key}' argument"
            raise BridgeError(op.name, type(op).__name__, reason)
        out[key] = value
    return out


def _bridge_functional(model: Any, ctx: _Context) -> Any:
    """Replay a Keras 3 Functional graph on tf_keras tensors."""
    tensors: dict[int, Any] = {}

    def new_input(tensor: Any) -> Any:
        tensors[id(tensor)] = _make_input(tensor)
        return tensors[id(tensor)]

    inputs = keras3.tree.map_structure(new_input, model._inputs_struct)
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            if node.operation is None or node.is_input:
                continue
            if any(id(x) not in tensors for x in node.input_tensors):
                continue  # not reachable from the inputs (Keras 3 skips these too)
            layer = _bridge_operation(node.operation, ctx)
            args, kwargs = node.arguments.fill_in(tensors)
            outputs = layer(*args, **_call_kwargs(node.operation, layer, kwargs))
            for k3_out, tf_out in zip(node.outputs, keras3.tree.flatten(outputs)):
                tensors[id(k3_out)] = tf_out
    outputs = keras3.tree.map_structure(lambda x: tensors[id(x)], model._outputs_struct)
    return tf_keras.Model(inputs=inputs, outputs=outputs, name=model.name)


def _bridge_sequential(model: Any, ctx: _Context) -> Any:
    """Rebuild a built Keras 3 Sequential model as a tf_keras Sequential."""
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not inputs:
        raise BridgeError(
            model.name, type(model).__name__, "the Sequential model is not built, its input shape is unknown",
            hint="start it with keras.Input(shape=...) or call model.build(input_shape) before saving",
        )
    sequential = tf_keras.Sequential(name=model.name)
    sequential.add(_make_input(inputs[0]))
    for layer in model.layers:
        sequential.add(_bridge_operation(layer, ctx))
    return sequential


def _bridge_model(model: Any, ctx: _Context) -> Any:
    """Dispatch a Keras 3 model to the Sequential or Functional rebuild."""
    if isinstance(model, keras3.Sequential):
        return _bridge_sequential(model, ctx)
    return _bridge_functional(model, ctx)


def to_tf_keras(model: Any, custom_objects: dict | None = None) -> "tf_keras.Model":
    """Rebuild a Keras 3 model (Sequential or Functional, possibly nested) as a tf_keras model with identical weights.

    Layer, input and model names are kept; shared layers stay shared; nested
    models become nested tf_keras models. A Sequential comes back as a tf_keras
    Sequential, anything else as a tf_keras Functional model.

    Args:
        model: a built Keras 3 `keras.Model`.
        custom_objects: maps Keras 3 class names (or "package>Name" registered
            names) of custom layers, initializers, regularizers, constraints and
            activation functions to their tf_keras implementations.

    Returns:
        The tf_keras model.

    Raises:
        BridgeError: a layer (named, with its class) cannot be rebuilt, or the
            model is subclassed / not built.
    """
    if not isinstance(model, keras3.Model):
        raise BridgeError(
            getattr(model, "name", "?"), type(model).__name__, "not a Keras 3 model",
            hint="pass a keras.Model (tf_keras models need no bridge)",
        )
    if not (isinstance(model, keras3.Sequential) or _is_functional(model)):
        raise _subclassed_model_error(model)
    ctx = _Context(custom_objects=custom_objects)
    result = _bridge_operation(model, ctx)
    for source, target in ctx.leaves:
        copy_weights(source, target)
    for source, target in ctx.models:
        if not source.trainable:  # setting True would override per-layer trainable=False
            target.trainable = False
    return result
