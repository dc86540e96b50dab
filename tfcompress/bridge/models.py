"""`to_tf_keras`: a Keras 3 Sequential / Functional model replayed node by node on tf_keras tensors."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

from tfcompress.bridge.configs import lookup_custom
from tfcompress.bridge.layers import bridge_layer, copy_weights
from tfcompress.bridge.ops import is_keras3_op, replay_op
from tfcompress.errors import BridgeError
from tfcompress.keras_compat import keras3, tf_keras

__all__ = ["to_tf_keras"]


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
    elif isinstance(op, keras3.Model) and lookup_custom(
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
    names = {layer.name for layer in model.layers}  # op layers get names no Keras 3 layer has
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            if node.operation is None or node.is_input:
                continue
            if any(id(x) not in tensors for x in node.input_tensors):
                continue  # not reachable from the inputs (Keras 3 skips these too)
            args, kwargs = node.arguments.fill_in(tensors)
            if is_keras3_op(node.operation):  # keras.ops call / tensor operator: TF op layers
                outputs = replay_op(node, args, kwargs, names)
            else:
                layer = _bridge_operation(node.operation, ctx)
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
