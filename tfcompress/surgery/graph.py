"""The functional-graph rebuild engine every surgery technique uses.

`trace(model)` turns a tf_keras Functional or Sequential model (nested models
included) into a flat `LayerGraph`: nodes in execution order, each a layer
call with its input and output tensors named by integer keys, with the
tensors' shapes. Nested models are inlined: a nested model called twice
contributes its layers twice, as shared layers (one object, two nodes).

`rebuild(model, replace)` replays that graph on new tf_keras tensors. For each
layer, once, `replace(layer)` decides what it becomes:

    None                      a copy of the layer (same config, same weights)
    a tf_keras layer          used instead; gets the old weights if their shapes match
    Replacement(layers, ...)  a chain of new layers (or any subgraph through `call`)
                              with the weights to load once they are built;
                              `Replacement()` with no layers removes the layer

The result is an ordinary flat tf_keras Functional model with the same inputs
and outputs (names kept; a nested layer whose name collides with another gets
its model's name as prefix). Shared layers stay shared. It is uncompiled.

Subclassed models have no layer graph to rebuild: `ModelLoadError` naming
the class.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from tfcompress.errors import ModelLoadError

__all__ = [
    "GraphNode",
    "LayerGraph",
    "Replacement",
    "TensorRef",
    "as_tf_keras",
    "clone_layer",
    "rebuild",
    "replay",
    "run_graph",
    "trace",
]


# --------------------------------------------------------------------- the IR


@dataclass(frozen=True)
class TensorRef:
    """Placeholder for a graph tensor inside a node's recorded call arguments."""

    key: int


@dataclass(frozen=True)
class GraphNode:
    """One layer call.

    Attributes:
        layer: the tf_keras layer (never a nested model: those are inlined).
        inputs: keys of the tensors passed in, in argument order.
        outputs: keys of the tensors it returns.
        args: recorded positional arguments, tensors replaced by `TensorRef`.
        kwargs: recorded keyword arguments, likewise (None values dropped).
        scope: names of the nested models enclosing the call, outermost first.
    """

    layer: Any
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    scope: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.layer.name

    @property
    def class_name(self) -> str:
        return type(self.layer).__name__


@dataclass
class LayerGraph:
    """A flat view of a model: input tensors, nodes in execution order, outputs.

    Attributes:
        model: the traced tf_keras model.
        inputs: input tensor keys, in `model.inputs` order.
        input_names: the input layers' names.
        nested_inputs / nested_outputs: `model`'s input / output structure, keys as leaves.
        nodes: layer calls in an order where every input is computed first.
        shapes: tensor key -> shape (batch dimension included, None when unknown).
        dtypes: tensor key -> dtype name.
    """

    model: Any
    inputs: tuple[int, ...] = ()
    input_names: tuple[str, ...] = ()
    nested_inputs: Any = None
    nested_outputs: Any = None
    nodes: list[GraphNode] = field(default_factory=list)
    shapes: dict[int, tuple] = field(default_factory=dict)
    dtypes: dict[int, str] = field(default_factory=dict)

    @property
    def outputs(self) -> tuple[int, ...]:
        """Output tensor keys, flattened."""
        from tfcompress.keras_compat import tf

        return tuple(tf.nest.flatten(self.nested_outputs))

    def producer(self) -> dict[int, int]:
        """Tensor key -> index of the node that computes it (inputs have none)."""
        return {k: i for i, n in enumerate(self.nodes) for k in n.outputs}

    def consumers(self) -> dict[int, list[int]]:
        """Tensor key -> indices of the nodes that read it."""
        out: dict[int, list[int]] = {}
        for i, n in enumerate(self.nodes):
            for k in dict.fromkeys(n.inputs):
                out.setdefault(k, []).append(i)
        return out

    def layers(self) -> list[Any]:
        """Distinct layers, in order of first call."""
        seen: dict[int, Any] = {}
        for n in self.nodes:
            seen.setdefault(id(n.layer), n.layer)
        return list(seen.values())

    def nodes_of(self, layer: Any) -> list[GraphNode]:
        """Every call of `layer`."""
        return [n for n in self.nodes if n.layer is layer]

    def channels(self, key: int) -> int | None:
        """Size of a tensor's last axis (None if unknown)."""
        shape = self.shapes[key]
        return int(shape[-1]) if shape and shape[-1] is not None else None


# --------------------------------------------------------------------- tracing


def as_tf_keras(model: Any) -> Any:
    """A tf_keras model for any model `tfcompress.load_model` accepts (tf_keras models pass as they are).

    In-memory tf_keras models are used as they are (custom layers included);
    Keras 3 models and paths go through `tfcompress.loading.load_model`.
    """
    from tfcompress.keras_compat import tf_keras

    if isinstance(model, tf_keras.Model):
        _check_graph_model(model)
        return model
    from tfcompress.loading import load_model

    return load_model(model)


def _is_graph_model(layer: Any) -> bool:
    from tfcompress.keras_compat import tf_keras

    return isinstance(layer, tf_keras.Model) and bool(getattr(layer, "_is_graph_network", False))


def _check_graph_model(model: Any) -> None:
    from tfcompress.keras_compat import tf_keras

    if isinstance(model, tf_keras.Model) and not _is_graph_model(model):
        raise ModelLoadError(
            f"model '{model.name}' is a subclassed {type(model).__name__}: its call() is Python code, "
            "there is no layer graph to rebuild",
            "build it with the Functional API or Sequential (with an Input) to use graph surgery",
        )


def trace(model: Any) -> LayerGraph:
    """Flatten a tf_keras Functional / Sequential model (nested models inlined) into a `LayerGraph`.

    Raises:
        ModelLoadError: the model, or a model nested in it, is subclassed.
    """
    from tfcompress.keras_compat import tf

    model = as_tf_keras(model)
    graph = LayerGraph(model=model)
    counter = iter(range(1 << 62))

    def new_key(tensor: Any) -> int:
        key = next(counter)
        graph.shapes[key] = tuple(None if d is None else int(d) for d in tensor.shape)
        graph.dtypes[key] = tensor.dtype.name
        return key

    keys = {id(t): new_key(t) for t in model.inputs}
    graph.inputs = tuple(keys[id(t)] for t in model.inputs)
    graph.input_names = tuple(t._keras_history.layer.name for t in model.inputs)
    graph.nested_inputs = tf.nest.map_structure(lambda t: keys[id(t)], model._nested_inputs)
    out_keys = _walk(model, [keys[id(t)] for t in model.inputs], (), graph, new_key)
    by_id = dict(zip((id(t) for t in model.outputs), out_keys))
    graph.nested_outputs = tf.nest.map_structure(lambda t: by_id[id(t)], model._nested_outputs)
    return graph


def _walk(model: Any, input_keys: Sequence[int], scope: tuple[str, ...], graph: LayerGraph,
          new_key: Callable[[Any], int]) -> list[int]:
    """Append `model`'s nodes to `graph`, its inputs bound to `input_keys`; return its output keys."""
    from tfcompress.keras_compat import tf, tf_keras

    _check_graph_model(model)
    local: dict[int, int] = {id(t): k for t, k in zip(model.inputs, input_keys)}
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            if node.is_input or any(id(t) not in local for t in node.keras_inputs):
                continue
            layer = node.layer
            flat_outputs = tf.nest.flatten(node.outputs)
            if _is_graph_model(layer):
                inner_args = node.call_args[0] if node.call_args else next(iter(node.call_kwargs.values()))
                inner_keys = [local[id(t)] for t in tf.nest.flatten(inner_args)]
                inner_out = _walk(layer, inner_keys, scope + (layer.name,), graph, new_key)
                local.update(zip((id(t) for t in flat_outputs), inner_out))
                continue
            if isinstance(layer, tf_keras.Model):
                _check_graph_model(layer)

            def ref(x: Any) -> Any:
                return TensorRef(local[id(x)]) if id(x) in local else x

            args = tuple(tf.nest.map_structure(ref, list(node.call_args)))
            kwargs = {k: tf.nest.map_structure(ref, v) for k, v in node.call_kwargs.items() if v is not None}
            outs = [new_key(t) for t in flat_outputs]
            local.update(zip((id(t) for t in flat_outputs), outs))
            graph.nodes.append(
                GraphNode(layer, tuple(local[id(t)] for t in node.keras_inputs), tuple(outs), args, kwargs, scope)
            )
    return [local[id(t)] for t in model.outputs]


# --------------------------------------------------------------------- rebuilding


@dataclass(frozen=True)
class Replacement:
    """What one layer becomes in a rebuilt model.

    Attributes:
        layers: new tf_keras layers. Without `call` they are chained: the first
            gets the original call's arguments, each next one the previous output.
            Empty (and no `call`): the layer is removed and its first input passes through.
        weights: per layer of `layers`, the arrays to `set_weights` once it is built
            (None: keep its initializers). Missing entries count as None.
        call: custom wiring, `call(inputs) -> outputs` using `layers` (e.g. a
            residual subgraph); `inputs` is the original call's first argument.
    """

    layers: tuple = ()
    weights: tuple = ()
    call: Callable[[Any], Any] | None = None

    def apply(self, args: tuple, kwargs: dict) -> Any:
        if self.call is not None:
            return self.call(args[0])
        if not self.layers:
            return args[0]
        x = self.layers[0](*args, **_accepted_kwargs(self.layers[0], kwargs))
        for layer in self.layers[1:]:
            x = layer(x)
        return x


def _accepted_kwargs(layer: Any, kwargs: dict) -> dict:
    """The recorded keyword arguments `layer.call` takes."""
    if not kwargs:
        return kwargs
    params = inspect.signature(layer.call).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in params}


def clone_layer(layer: Any, **overrides: Any) -> Any:
    """A new, unbuilt layer of the same class with `layer`'s config and `overrides` (e.g. filters=16)."""
    config = {**layer.get_config(), **overrides}
    return type(layer).from_config(config)


ReplaceFn = Callable[[Any], Any]


@dataclass
class Replayed:
    """What `replay` built: new input tensors, every graph tensor's new twin, the output structure."""

    inputs: list[Any]
    tensors: dict[int, Any]
    nested_inputs: Any
    nested_outputs: Any
    replacements: dict[int, Replacement]


def replay(graph: LayerGraph, replace: ReplaceFn | None = None) -> Replayed:
    """Replay `graph` on fresh tf_keras Inputs with layers decided by `replace` (see module doc)."""
    from tfcompress.keras_compat import tf, tf_keras

    tensors: dict[int, Any] = {}
    inputs = []
    for key, name in zip(graph.inputs, graph.input_names):
        tensors[key] = tf_keras.Input(batch_shape=graph.shapes[key], dtype=graph.dtypes[key], name=name)
        inputs.append(tensors[key])
    names = set(graph.input_names)
    placed: set[int] = set()  # new layers already named (a layer may replace several old ones: tying)
    made: dict[int, Replacement] = {}
    for node in graph.nodes:
        first_use = id(node.layer) not in made
        if first_use:
            made[id(node.layer)] = _replacement_for(node, replace, names, placed)
        rep = made[id(node.layer)]

        def fill(x: Any) -> Any:
            return tensors[x.key] if isinstance(x, TensorRef) else x

        args = tuple(tf.nest.map_structure(fill, list(node.args)))
        kwargs = {k: tf.nest.map_structure(fill, v) for k, v in node.kwargs.items()}
        outputs = tf.nest.flatten(rep.apply(args, kwargs))
        if len(outputs) != len(node.outputs):
            raise ValueError(
                f"the replacement of layer '{node.name}' returns {len(outputs)} tensor(s), the layer {len(node.outputs)}"
            )
        tensors.update(zip(node.outputs, outputs))
        if first_use:
            _load_weights(node.layer, rep)
    return Replayed(
        inputs=inputs,
        tensors=tensors,
        nested_inputs=tf.nest.map_structure(lambda k: tensors[k], graph.nested_inputs),
        nested_outputs=tf.nest.map_structure(lambda k: tensors[k], graph.nested_outputs),
        replacements=made,
    )


def run_graph(graph: LayerGraph, inputs: Sequence[Any], keys: Sequence[int], *, training: bool = False) -> list[Any]:
    """Run the graph's own layers eagerly on concrete inputs; return the tensors `keys`.

    No model is built (fast for probing intermediate tensors); tensors are
    dropped as soon as nothing later reads them.
    """
    from tfcompress.keras_compat import tf

    wanted = set(keys)
    outputs = set(graph.outputs)
    last_use: dict[int, int] = {}
    for i, node in enumerate(graph.nodes):
        for k in node.inputs:
            last_use[k] = i
    values: dict[int, Any] = {k: tf.convert_to_tensor(x) for k, x in zip(graph.inputs, inputs)}
    out: dict[int, Any] = {k: values[k] for k in wanted if k in values}
    for i, node in enumerate(graph.nodes):

        def fill(x: Any) -> Any:
            return values[x.key] if isinstance(x, TensorRef) else x

        args = tuple(tf.nest.map_structure(fill, list(node.args)))
        kwargs = {k: tf.nest.map_structure(fill, v) for k, v in node.kwargs.items()}
        if "training" in inspect.signature(node.layer.call).parameters:
            kwargs["training"] = training
        results = tf.nest.flatten(node.layer(*args, **kwargs))
        for k, v in zip(node.outputs, results):
            values[k] = v
            if k in wanted:
                out[k] = v
        for k in node.inputs:
            if last_use.get(k) == i and k not in outputs:
                values.pop(k, None)
    return [out[k] for k in keys]


def rebuild(model: Any, replace: ReplaceFn | None = None, *, name: str | None = None) -> Any:
    """Rebuild a model with changed layers, carrying weights (see module doc).

    Args:
        model: a tf_keras model, a `LayerGraph` of one, a Keras 3 model or a path
            (bridged through `tfcompress.load_model`).
        replace: `replace(layer) -> None | layer | Replacement`, called once per layer.
        name: the new model's name (default: the old one).

    Returns:
        An uncompiled, flat tf_keras Functional model.
    """
    from tfcompress.keras_compat import tf_keras

    graph = model if isinstance(model, LayerGraph) else trace(model)
    built = replay(graph, replace)
    return tf_keras.Model(built.nested_inputs, built.nested_outputs, name=name or graph.model.name)


def _unique(name: str, scope: tuple[str, ...], names: set[str]) -> str:
    candidate = name
    if candidate in names and scope:
        candidate = f"{scope[-1]}_{name}"
    base, i = candidate, 1
    while candidate in names:
        candidate = f"{base}_{i}"
        i += 1
    names.add(candidate)
    return candidate


def _replacement_for(node: GraphNode, replace: ReplaceFn | None, names: set[str], placed: set[int]) -> Replacement:
    """Normalize what `replace` returned for `node.layer` into a Replacement with unique layer names."""
    from tfcompress.keras_compat import tf_keras

    layer = node.layer
    decided = replace(layer) if replace is not None else None
    if decided is None:
        new = clone_layer(layer, name=_unique(layer.name, node.scope, names))
        placed.add(id(new))
        return Replacement((new,), (layer.get_weights(),))
    if isinstance(decided, tf_keras.layers.Layer):
        decided = Replacement((decided,), (_LateWeights,))
    if not isinstance(decided, Replacement):
        raise TypeError(f"replace({layer.name}) returned {type(decided).__name__}, not None / a layer / a Replacement")
    for new in decided.layers:
        if id(new) in placed:
            continue
        placed.add(id(new))
        unique = _unique(new.name, node.scope, names)
        if unique != new.name:
            new._name = unique
    return decided


class _LateWeights:
    """Marker: copy the old layer's weights once the new one is built, if the shapes match."""


def _load_weights(old: Any, rep: Replacement) -> None:
    for i, layer in enumerate(rep.layers):
        weights = rep.weights[i] if i < len(rep.weights) else None
        if weights is _LateWeights:
            old_weights = old.get_weights()
            same = [tuple(w.shape) for w in old_weights] == [tuple(v.shape) for v in layer.weights]
            weights = old_weights if same else None
        if weights is None:
            continue
        if not layer.built:
            raise ValueError(f"replacement layer '{layer.name}' was never called, its weights cannot be set")
        layer.set_weights([np.asarray(w) for w in weights])
