"""Input-resolution change: the same model rebuilt for H' x W' inputs, weights carried over.

EfficientNet scales the input side by r; a fully convolutional model (conv,
pooling, global pooling, Dense on the pooled vector) has no weight whose shape
depends on the input size, so every weight carries over as it is. What does
depend on it:

    Flatten -> Dense     the Dense has H*W*C input rows. `flatten="error"` refuses
                         (naming the layers); `flatten="gap"` puts a
                         GlobalAveragePooling2D in the Flatten's place and starts the
                         Dense from the sum of its rows over positions (exact for
                         feature maps constant over space: GAP gives their mean m_c,
                         Flatten -> Dense gave sum_hw m_c K[h,w,c] = m_c sum_hw K[h,w,c])
    Reshape to a fixed   refused (no substitute): the target shape names the old size
    size, other layers
    with size-bound
    weights

The new side is the old one times r, rounded to a multiple of the model's total
stride (input side / smallest feature-map side), so every feature map scales
evenly, or of `multiple` when given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tfcompress.errors import TfcompressError
from tfcompress.surgery.graph import LayerGraph, Replacement, rebuild, trace

__all__ = ["ResolutionChange", "change_resolution", "scaled_side", "total_stride"]

_PASS_THROUGH = frozenset({"Dropout", "AlphaDropout", "GaussianDropout", "GaussianNoise", "ActivityRegularization"})


@dataclass(frozen=True)
class ResolutionChange:
    """What `change_resolution` did.

    Attributes:
        input_before / input_after: (H, W) of the (first) image input.
        multiple: what the new side was rounded to (the total stride, or the `multiple` asked).
        substituted: Flatten layers replaced by GlobalAveragePooling2D, with the Dense layers collapsed after them.
    """

    input_before: tuple[int, int]
    input_after: tuple[int, int]
    multiple: int
    substituted: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"input_before": list(self.input_before), "input_after": list(self.input_after),
                "multiple": self.multiple,
                "substituted": [{"flatten": f, "dense": list(d)} for f, d in self.substituted]}


def _image_inputs(graph: LayerGraph) -> list[int]:
    keys = [k for k in graph.inputs if len(graph.shapes[k]) == 4]
    if not keys:
        raise TfcompressError("the model has no image input (batch, H, W, C): its resolution cannot change",
                              "use a resolution multiplier only with image models")
    for k, name in zip(graph.inputs, graph.input_names):
        if k in keys and None in graph.shapes[k][1:3]:
            raise TfcompressError(f"input '{name}' has no fixed size {graph.shapes[k]}: there is no size to scale",
                                  "give the model a fixed input size (e.g. Input((224, 224, 3)))")
    return keys


def total_stride(graph: LayerGraph) -> int:
    """Input side / smallest feature-map side (rounded; 1 for a model that never downsamples)."""
    side = graph.shapes[_image_inputs(graph)[0]][1]
    smallest = min((s[1] for s in graph.shapes.values() if len(s) == 4 and s[1]), default=side)
    return max(1, int(round(side / smallest)))


def scaled_side(side: int, r: float, multiple: int) -> int:
    """`side` x `r` rounded to a multiple of `multiple` (at least one multiple)."""
    return max(multiple, int(round(side * r / multiple)) * multiple)


def _flatten_consumers(graph: LayerGraph, node: Any) -> list[Any]:
    """The Dense layers reading a Flatten's output (through dropout-like layers), or an error."""
    consumers = graph.consumers()
    found, frontier = [], [node.outputs[0]]
    while frontier:
        key = frontier.pop()
        if key in graph.outputs:
            raise TfcompressError(f"Flatten '{node.name}' feeds a model output: its size depends on the resolution",
                                  "keep the resolution")
        for i in consumers.get(key, []):
            n = graph.nodes[i]
            if n.class_name == "Dense" and len(graph.nodes_of(n.layer)) == 1:
                found.append(n.layer)
            elif n.class_name in _PASS_THROUGH:
                frontier.append(n.outputs[0])
            else:
                raise TfcompressError(
                    f"Flatten '{node.name}' feeds {n.class_name} '{n.name}', whose input size depends on the "
                    "resolution; only Dense layers (through Dropout) can be collapsed after a GlobalAveragePooling",
                    "end the model in GlobalAveragePooling2D -> Dense, or keep the resolution")
    return found


def _collapse(dense: Any, spatial: tuple[int, int]) -> Replacement:
    """The Dense after a Flatten of (H, W, C), reading the C-vector of a GlobalAveragePooling instead."""
    from tfcompress.surgery.graph import clone_layer

    kernel, *rest = dense.get_weights()
    h, w = spatial
    collapsed = kernel.reshape(h, w, -1, kernel.shape[-1]).sum(axis=(0, 1))
    return Replacement((clone_layer(dense),), ([collapsed, *rest],))


def change_resolution(model: Any, r: float, *, multiple: int | None = None, flatten: str = "error") -> tuple[Any, ResolutionChange]:
    """`model` rebuilt for inputs of side x r (see the module doc); a new tf_keras model and what changed.

    Args:
        model: tf_keras model (Keras 3 models and paths are bridged).
        r: resolution multiplier.
        multiple: round the new sides to a multiple of this (default: the total stride).
        flatten: "error" or "gap" (what to do with a Flatten -> Dense whose size depends on the resolution).

    Raises:
        TfcompressError: no fixed-size image input, or a layer whose weights / shape depend on the input size.
    """
    from tfcompress.keras_compat import tf_keras

    graph = trace(model)
    keys = _image_inputs(graph)
    m = multiple or total_stride(graph)
    h, w = graph.shapes[keys[0]][1:3]
    new_h, new_w = scaled_side(h, r, m), scaled_side(w, r, m)
    replacements: dict[str, Any] = {}
    substituted = []
    for node in graph.nodes:
        rank = len(graph.shapes[node.inputs[0]]) if node.inputs else 0
        if node.class_name == "Flatten" and rank == 4 and (new_h, new_w) != (h, w):
            if flatten != "gap":
                raise TfcompressError(
                    f"Flatten '{node.name}' makes the next layer's weights depend on the input size "
                    f"({graph.shapes[node.inputs[0]][1:]})",
                    "use `flatten: gap` (a GlobalAveragePooling2D in its place, the Dense collapsed over positions), "
                    "or keep the resolution")
            denses = _flatten_consumers(graph, node)
            spatial = graph.shapes[node.inputs[0]][1:3]
            replacements[node.name] = tf_keras.layers.GlobalAveragePooling2D(name=node.name)
            for d in denses:
                replacements[d.name] = _collapse(d, spatial)
            substituted.append((node.name, tuple(d.name for d in denses)))
        elif node.class_name == "Reshape" and rank >= 3 and (new_h, new_w) != (h, w):
            raise TfcompressError(f"Reshape '{node.name}' has a fixed target shape {node.layer.target_shape}: it "
                                  "depends on the input size", "keep the resolution")
    for k in keys:
        b, _, _, c = graph.shapes[k]
        graph.shapes[k] = (b, new_h, new_w, c)
    try:
        rebuilt = rebuild(graph, lambda layer: replacements.get(layer.name))
    except ValueError as e:
        raise TfcompressError(f"the model cannot be rebuilt for {new_h}x{new_w} inputs: {e}",
                              "some layer's weights depend on the input size; keep the resolution") from None
    change = ResolutionChange((h, w), (new_h, new_w), m, tuple(substituted))
    return rebuilt, change
