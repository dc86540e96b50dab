"""Channel dependency groups, and removing channels consistently across them.

Every tensor's last axis gets one label per element. A *producer* (Conv, Dense,
SeparableConv, ConvTranspose) gives its output fresh labels: those are the
channels that can be removed. Labels then flow through the graph:

    BatchNormalization, activations, pooling,
    padding, dropout, ...                       same labels in and out (per-channel weights follow)
    DepthwiseConv2D (multiplier m)              each input label repeated m times
    Add / Subtract / Multiply / Average /
    Maximum / Minimum (residuals, SE blocks)    the inputs' labels are unified element by element
    Concatenate on the channel axis             the inputs' labels, side by side (offset mapping)
    Flatten / Reshape keeping channels last     labels tiled: Dense rows h*W*C + w*C + c follow channel c
    Conv / Dense / SeparableConv reading it     their input channels (kernel rows) follow

Labels reaching a model output, a model input, or a layer this module does
not understand (LayerNormalization, Softmax over channels, Permute, Lambda,
grouped convolutions, ...) are *fixed*. Producers whose labels were unified
form one `ChannelGroup`; a group can be pruned when none of its labels is
fixed, and each of its units (one label) is removed everywhere at once.

Removing the channels of a group is `channel_removal.remove_channels` (also
importable from here, the former home of it and of `channel_statistics`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tfcompress.surgery.graph import GraphNode, LayerGraph, trace

__all__ = [
    "CHANNELWISE",
    "MERGES",
    "PRODUCERS",
    "ChannelAnalysis",
    "ChannelGroup",
    "analyze_channels",
]

# Layers whose output channels can be dropped (and whose input channels follow).
PRODUCERS: frozenset[str] = frozenset(
    {
        "Conv1D", "Conv2D", "Conv3D", "Dense", "SeparableConv1D", "SeparableConv2D",
        "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
    }
)
# Layers that act on each channel separately: same labels in and out.
CHANNELWISE: frozenset[str] = frozenset(
    {
        "BatchNormalization", "PReLU", "Normalization", "Rescaling", "DepthwiseConv1D", "DepthwiseConv2D",
        "Activation", "ReLU", "LeakyReLU", "ELU", "ThresholdedReLU",
        "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise", "GaussianDropout",
        "AlphaDropout", "ActivityRegularization",
        "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
        "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D",
        "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D",
        "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D", "Cropping3D",
        "UpSampling1D", "UpSampling2D", "UpSampling3D",
    }
)
# Element-wise merges: their inputs' channels are tied.
MERGES: frozenset[str] = frozenset({"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"})
# Activations that mix channels (normalize over the last axis).
_CHANNEL_MIXING_ACTIVATIONS: frozenset[str] = frozenset({"softmax", "log_softmax"})


# --------------------------------------------------------------------- union-find


class _Labels:
    """Union-find over channel labels, grown in blocks."""

    def __init__(self) -> None:
        self.parent: list[int] = []

    def fresh(self, n: int) -> np.ndarray:
        start = len(self.parent)
        self.parent.extend(range(start, start + n))
        return np.arange(start, start + n, dtype=np.int64)

    def find(self, a: int) -> int:
        root = a
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[a] != root:
            self.parent[a], a = root, self.parent[a]
        return root

    def union(self, a: np.ndarray, b: np.ndarray) -> None:
        for x, y in zip(a.tolist(), b.tolist()):
            rx, ry = self.find(x), self.find(y)
            if rx != ry:
                self.parent[max(rx, ry)] = min(rx, ry)

    def roots(self, ids: np.ndarray) -> np.ndarray:
        return np.fromiter((self.find(int(i)) for i in ids), dtype=np.int64, count=len(ids))


# --------------------------------------------------------------------- analysis


@dataclass(frozen=True, eq=False)
class ChannelGroup:
    """Producers whose output channels are tied, and the units that can be removed together.

    Attributes:
        index: position in `ChannelAnalysis.groups`.
        producers: names of the producer layers (e.g. the convs feeding one residual Add).
        units: one label per removable unit, in the first producer's channel order.
        followers: other layers whose weights or shapes follow (BN, depthwise, consumers, reshapes).
        prunable: False when a unit is fixed.
        reason: why not prunable ("" when prunable).
    """

    index: int
    producers: tuple[str, ...]
    units: np.ndarray = field(repr=False)
    followers: tuple[str, ...] = ()
    prunable: bool = True
    reason: str = ""

    @property
    def size(self) -> int:
        """Number of channels (units) in the group."""
        return len(self.units)


@dataclass(eq=False)
class ChannelAnalysis:
    """The labels of every tensor's channels and the groups they form.

    Attributes:
        graph: the traced model.
        labels: tensor key -> label (root) of each element of its last axis.
        fixed: labels that must stay (with why).
        groups: the producer groups.
        group_of: producer layer name -> group index.
    """

    graph: LayerGraph
    labels: dict[int, np.ndarray]
    fixed: dict[int, str]
    groups: list[ChannelGroup]
    group_of: dict[str, int]

    def prunable_groups(self) -> list[ChannelGroup]:
        return [g for g in self.groups if g.prunable]

    def keep_mask(self, key: int, removed: np.ndarray) -> np.ndarray:
        """Which elements of tensor `key`'s last axis survive removing labels `removed`."""
        return ~np.isin(self.labels[key], removed)

    def producer_channels(self, layer_name: str) -> np.ndarray:
        """The labels of a producer's output channels."""
        node = next(n for n in self.graph.nodes if n.name == layer_name)
        return self.labels[node.outputs[0]]

    def describe(self) -> str:
        """One line per group: size, producers, prunable or why not."""
        lines = []
        for g in self.groups:
            state = "prunable" if g.prunable else f"fixed: {g.reason}"
            lines.append(f"group {g.index}: {g.size} ch, producers {', '.join(g.producers)} ({state})")
        return "\n".join(lines)


def _axis_is_last(axis: Any, rank: int) -> bool:
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            return False
        axis = axis[0]
    return axis is not None and int(axis) % rank == rank - 1


def _channels_last(layer: Any) -> bool:
    return getattr(layer, "data_format", "channels_last") in (None, "channels_last")


def _kind(node: GraphNode, graph: LayerGraph) -> tuple[str, str]:
    """(kind, reason) of a node: producer / channelwise / merge / concat / reshape / block."""
    layer, cls = node.layer, node.class_name
    if len(node.outputs) != 1:
        return "block", f"{cls} '{layer.name}' has several outputs"
    out = node.outputs[0]
    if graph.channels(out) is None or any(graph.channels(k) is None for k in node.inputs):
        return "block", f"'{layer.name}' has an unknown channel dimension"
    if cls in PRODUCERS:
        if not _channels_last(layer) or getattr(layer, "groups", 1) != 1:
            return "block", f"{cls} '{layer.name}' is channels_first or grouped"
        if getattr(getattr(layer, "activation", None), "__name__", "") in _CHANNEL_MIXING_ACTIVATIONS:
            # its input channels can go; its output channels are normalized together
            return "producer", f"'{layer.name}' applies {layer.activation.__name__} over its channels"
        return "producer", ""
    if cls in CHANNELWISE:
        if len(node.inputs) != 1 or not _channels_last(layer):
            return "block", f"{cls} '{layer.name}' is channels_first"
        rank = len(graph.shapes[node.inputs[0]])
        if cls == "BatchNormalization" and not _axis_is_last(layer.axis, rank):
            return "block", f"BatchNormalization '{layer.name}' is not over the last axis"
        if cls == "Normalization" and not _axis_is_last(layer.axis, rank):
            return "block", f"Normalization '{layer.name}' is not over the last axis"
        if cls == "Rescaling" and (np.ndim(layer.scale) or np.ndim(layer.offset)):
            return "block", f"Rescaling '{layer.name}' has per-channel constants"
        if cls == "Activation" and getattr(layer.activation, "__name__", "") in _CHANNEL_MIXING_ACTIVATIONS:
            return "block", f"'{layer.name}' applies {layer.activation.__name__} over channels"
        if cls.startswith("Depthwise"):
            return "depthwise", ""
        if graph.channels(node.inputs[0]) != graph.channels(out):
            return "block", f"{cls} '{layer.name}' changes the channel count"
        return "channelwise", ""
    if cls in MERGES:
        return "merge", ""
    if cls == "Concatenate":
        return "concat", ""
    if cls in ("Flatten", "Reshape"):
        if not _channels_last(layer) or len(node.inputs) != 1:
            return "block", f"{cls} '{layer.name}' is channels_first"
        c_in, c_out = graph.channels(node.inputs[0]), graph.channels(out)
        if c_out % c_in:
            return "block", f"{cls} '{layer.name}' splits channels"
        return "reshape", ""
    return "block", f"'{layer.name}' ({cls}) is not understood by channel surgery"


def analyze_channels(model: Any) -> ChannelAnalysis:
    """Label every tensor's channels and group the producers whose channels are tied.

    Args:
        model: a tf_keras model (Keras 3 models / paths are bridged), or its `LayerGraph`.
    """
    graph = model if isinstance(model, LayerGraph) else trace(model)
    uf = _Labels()
    ids: dict[int, np.ndarray] = {}
    fixed: list[tuple[np.ndarray, str]] = []
    first_call: dict[int, tuple[list[np.ndarray], np.ndarray | None]] = {}

    for key, name in zip(graph.inputs, graph.input_names):
        ids[key] = uf.fresh(graph.channels(key) or 0)
        fixed.append((ids[key], f"model input '{name}'"))

    for node in graph.nodes:
        kind, reason = _kind(node, graph)
        ins = [ids[k] for k in node.inputs]
        out_key = node.outputs[0] if node.outputs else None
        shared = first_call.get(id(node.layer))
        if kind == "block":
            for x in ins:
                fixed.append((x, reason))
            for k in node.outputs:
                ids[k] = uf.fresh(graph.channels(k) or 0)
                fixed.append((ids[k], reason))
            continue
        if kind == "producer":
            out = shared[1] if shared is not None else uf.fresh(graph.channels(out_key))
            if reason:
                fixed.append((out, reason))
        elif kind == "channelwise":
            out = ins[0]
        elif kind == "depthwise":
            out = np.repeat(ins[0], graph.channels(out_key) // len(ins[0]))
        elif kind == "merge":
            c = graph.channels(out_key)
            tied = [x for x in ins if len(x) == c]
            for x in ins:
                if len(x) not in (c, 1):
                    fixed.append((x, f"'{node.name}' broadcasts channels"))
            for x in tied[1:]:
                uf.union(tied[0], x)
            out = tied[0]
        elif kind == "concat":
            rank = len(graph.shapes[out_key])
            if _axis_is_last(node.layer.axis, rank):
                out = np.concatenate(ins)
            else:
                for x in ins[1:]:
                    uf.union(ins[0], x)
                out = ins[0]
        else:  # reshape
            out = np.tile(ins[0], graph.channels(out_key) // len(ins[0]))
        if shared is not None and node.layer.weights:  # shared weights see the same channels at every call
            for a, b in zip(shared[0], ins):
                if len(a) == len(b):
                    uf.union(a, b)
            if kind != "producer" and shared[1] is not None and len(shared[1]) == len(out):
                uf.union(shared[1], out)
        elif shared is None:
            first_call[id(node.layer)] = (ins, out)
        ids[out_key] = out

    for key in graph.outputs:
        fixed.append((ids[key], "feeds a model output"))

    labels = {k: uf.roots(v) for k, v in ids.items()}
    fixed_roots: dict[int, str] = {}
    for arr, why in fixed:
        for r in uf.roots(arr).tolist():
            fixed_roots.setdefault(r, why)
    groups, group_of = _groups(graph, labels, fixed_roots)
    return ChannelAnalysis(graph, labels, fixed_roots, groups, group_of)


def _groups(
    graph: LayerGraph, labels: dict[int, np.ndarray], fixed: dict[int, str]
) -> tuple[list[ChannelGroup], dict[str, int]]:
    producers: dict[str, np.ndarray] = {}
    for node in graph.nodes:
        if node.class_name in PRODUCERS and node.name not in producers:
            producers[node.name] = labels[node.outputs[0]]
    # producers sharing a label belong together
    owner: dict[int, str] = {}
    parent = {name: name for name in producers}

    def find(a: str) -> str:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for name, out in producers.items():
        for r in out.tolist():
            if r in owner:
                ra, rb = find(owner[r]), find(name)
                if ra != rb:
                    parent[rb] = ra
            else:
                owner[r] = name
    members: dict[str, list[str]] = {}
    for name in producers:
        members.setdefault(find(name), []).append(name)

    followers_of: dict[int, set[str]] = {}
    for node in graph.nodes:
        for k in (*node.inputs, *node.outputs):
            for r in set(labels[k].tolist()):
                followers_of.setdefault(r, set()).add(node.name)

    groups: list[ChannelGroup] = []
    group_of: dict[str, int] = {}
    for names in members.values():
        units = list(dict.fromkeys(r for n in names for r in producers[n].tolist()))
        blocked = next((fixed[r] for r in units if r in fixed), "")
        follow: set[str] = set()
        for r in units:
            follow |= followers_of.get(r, set())
        index = len(groups)
        groups.append(
            ChannelGroup(
                index=index,
                producers=tuple(names),
                units=np.asarray(units, dtype=np.int64),
                followers=tuple(sorted(follow - set(names))),
                prunable=not blocked,
                reason=blocked,
            )
        )
        for n in names:
            group_of[n] = index
    return groups, group_of


# Names that moved to `channel_removal`, still importable from here.
_MOVED: frozenset[str] = frozenset({"ChannelStats", "channel_statistics", "remove_channels"})


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        return getattr(importlib.import_module("tfcompress.surgery.channel_removal"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
