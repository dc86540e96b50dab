"""One Keras 3 layer -> its tf_keras twin (`bridge_layer`), and its weights copied over (`copy_weights`)."""

from __future__ import annotations

from typing import Any

from tfcompress.bridge.configs import lookup_custom, translate_layer_config
from tfcompress.errors import BridgeError
from tfcompress.keras_compat import keras3, tf_keras

__all__ = ["bridge_layer", "copy_weights"]


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


def _resolve_class(layer: Any, custom_objects: dict[str, Any] | None) -> type:
    """The tf_keras class to rebuild a Keras 3 layer with, or BridgeError."""
    class_name = type(layer).__name__
    registered = keras3.saving.get_registered_name(type(layer))
    custom = lookup_custom(custom_objects, registered, class_name)
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
            "a Keras 3 op (keras.ops / tensor operator) is not a layer",
            hint="bridge the whole model with to_tf_keras: it replays op nodes as TensorFlow op layers",
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
