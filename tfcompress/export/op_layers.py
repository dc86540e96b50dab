"""Which Keras layers each .tflite operator came from, guessed from the converter's tensor names."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from tfcompress.export.tflite_model import OperatorInfo, TfliteModel

__all__ = ["layer_names_for_ops"]

_SCOPE_SUFFIX = re.compile(r"^(?P<base>.+)_\d+$")
_OUTPUT_SUFFIX = re.compile(r":\d+$")


def layer_names_for_ops(
    model: TfliteModel, ops: Iterable[OperatorInfo] | None, keras_layer_names: Sequence[str]
) -> dict[int, list[str]]:
    """Map operators back to the Keras layers they came from, via tensor names.

    The converter names tensors after the TF ops they came from, joining the
    names of fused ops with ";", e.g.
    "sequential/conv2d_1/Conv2D;sequential/batch_normalization/FusedBatchNormV3".
    Heuristics:

    * Names looked at: the op's constant inputs (weights carry their layer's
      scope), then its outputs. Only when those name no layer, its
      non-constant inputs: they are the previous op's outputs, so this names
      the layer feeding the op. That is right for a fused activation on the
      model output (whose tensor is renamed "StatefulPartitionedCall:0"),
      and the nearest guess otherwise.
    * Each ";"-separated part yields at most one layer: its deepest "/" path
      component that names a layer (nested scopes are more specific).
    * Keras 3 models trace each layer in a uniquified scope, "conv2d" becoming
      "conv2d_1"; tf_keras uses the layer name as is. A component matches a
      layer exactly or with one "_<n>" suffix removed; which of the two wins
      is decided once per model, by which explains more of `keras_layer_names`
      (ties go to exact); the other reading is the fallback. So in a tf_keras
      model "conv2d_1" is layer conv2d_1 (the longest match), in a Keras 3
      model it is layer conv2d.
    * Layers are listed once each, in the order found; ops with no match get [].

    Args:
        model: the model the operators belong to.
        ops: the operators to map (default: the main subgraph's).
        keras_layer_names: names of the source model's layers.

    Returns:
        {op.index: [layer name, ...]} for every op in `ops`. Ops of different
        subgraphs that share an index share an entry (their names merged);
        pass one subgraph's ops where that matters.
    """
    layers = frozenset(keras_layer_names)
    ops = list(model.subgraphs[0].operators if ops is None else ops)
    suffixed_first = _prefers_suffixed_scopes(model, layers)
    result: dict[int, list[str]] = {}
    for op in ops:
        tensors = model.subgraphs[op.subgraph].tensors
        constants = [i for i, const in zip(op.inputs, op.constant_inputs) if const]
        activations = [i for i, const in zip(op.inputs, op.constant_inputs) if i >= 0 and not const]
        found = _layers_in_names([tensors[i].name for i in constants + list(op.outputs)], layers, suffixed_first)
        found = found or _layers_in_names([tensors[i].name for i in activations], layers, suffixed_first)
        merged = result.setdefault(op.index, [])
        merged.extend(name for name in found if name not in merged)
    return result


def _layers_in_names(names: list[str], layers: frozenset[str], suffixed_first: bool) -> list[str]:
    """Layers named by the ";"-separated parts of `names`, once each, in order."""
    found: list[str] = []
    for name in names:
        for part in name.split(";"):
            layer = _layer_in_part(part, layers, suffixed_first)
            if layer is not None and layer not in found:
                found.append(layer)
    return found


def _components(part: str) -> list[str]:
    return [_OUTPUT_SUFFIX.sub("", c) for c in part.split("/") if c]


def _candidates(component: str, suffixed_first: bool) -> list[str]:
    """Layer names a scope component may stand for, preferred first."""
    m = _SCOPE_SUFFIX.match(component)
    stripped = [m.group("base")] if m else []
    return stripped + [component] if suffixed_first else [component] + stripped


def _layer_in_part(part: str, layers: frozenset[str], suffixed_first: bool) -> str | None:
    for component in reversed(_components(part)):
        for candidate in _candidates(component, suffixed_first):
            if candidate in layers:
                return candidate
    return None


def _prefers_suffixed_scopes(model: TfliteModel, layers: frozenset[str]) -> bool:
    """Whether tensor scopes look like Keras 3's ("<layer>_<n>") rather than tf_keras' ("<layer>")."""
    components = {
        c for sg in model.subgraphs for t in sg.tensors for part in t.name.split(";") for c in _components(part)
    }
    exact = len(layers & components)
    suffixed = len(layers & {m.group("base") for c in components if (m := _SCOPE_SUFFIX.match(c))})
    return suffixed > exact
