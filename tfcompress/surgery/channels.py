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

`remove_channels(analysis, removed)` rebuilds the model without the removed
labels, slicing every kernel, bias, BatchNormalization statistic and reshape
target that they touch. With `compensation` (the mean value of each removed
channel where a Conv / Dense reads it) the consumer's bias absorbs what the
removed channel contributed on average, so constant channels (e.g. a filter
whose kernel is all zero, followed by BN and ReLU) are removed exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from tfcompress.surgery.graph import GraphNode, LayerGraph, Replacement, clone_layer, rebuild, run_graph, trace

__all__ = [
    "CHANNELWISE",
    "MERGES",
    "PRODUCERS",
    "ChannelAnalysis",
    "ChannelGroup",
    "analyze_channels",
    "channel_statistics",
    "remove_channels",
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


# --------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class ChannelStats:
    """Per last-axis element of one tensor, over samples and positions: mean, min and max."""

    mean: np.ndarray
    min: np.ndarray
    max: np.ndarray

    @property
    def constant(self) -> np.ndarray:
        """Elements that never changed over the data (exactly, up to float32 rounding)."""
        scale = np.maximum(np.abs(self.mean), 1.0)
        return (self.max - self.min) <= 1e-6 * scale


def channel_statistics(graph: LayerGraph, keys: Iterable[int], x: Any, batch_size: int = 64) -> dict[int, ChannelStats]:
    """Mean / min / max of each channel of the tensors `keys`, running the model on inputs `x`."""
    keys = list(dict.fromkeys(keys))
    if not keys:
        return {}
    xs = x if isinstance(x, (list, tuple)) else [x]
    n = len(xs[0])
    sums = [0.0] * len(keys)
    mins: list[Any] = [None] * len(keys)
    maxs: list[Any] = [None] * len(keys)
    count = [0] * len(keys)
    for start in range(0, n, batch_size):
        outs = run_graph(graph, [a[start : start + batch_size] for a in xs], keys)
        for i, o in enumerate(outs):
            a = np.asarray(o, dtype=np.float64).reshape(-1, o.shape[-1])
            sums[i] = sums[i] + a.sum(axis=0)
            count[i] += a.shape[0]
            lo, hi = a.min(axis=0), a.max(axis=0)
            mins[i] = lo if mins[i] is None else np.minimum(mins[i], lo)
            maxs[i] = hi if maxs[i] is None else np.maximum(maxs[i], hi)
    return {k: ChannelStats(sums[i] / max(count[i], 1), mins[i], maxs[i]) for i, k in enumerate(keys)}


# --------------------------------------------------------------------- removal


def _consumer_contribution(layer: Any, removed_in: np.ndarray, values: np.ndarray) -> np.ndarray | None:
    """What the removed input channels (at `values`) add to each output channel of a Conv / Dense."""
    cls = type(layer).__name__
    weights = layer.get_weights()
    v = np.where(removed_in, values, 0.0)
    if cls == "Dense" or (cls in ("Conv1D", "Conv2D", "Conv3D")):
        kernel = weights[0]
        return np.tensordot(kernel.reshape(-1, kernel.shape[-2], kernel.shape[-1]).sum(axis=0).T, v, axes=1)
    if cls in ("SeparableConv1D", "SeparableConv2D"):
        dw, pw = weights[0], weights[1]
        mult = dw.shape[-1]
        dw_sum = dw.reshape(-1, dw.shape[-2], mult).sum(axis=0)  # (cin, mult)
        per_mid = (dw_sum * v[:, None]).reshape(-1)  # (cin * mult,)
        return pw.reshape(-1, pw.shape[-1]).T @ per_mid
    return None


def _slice_producer(layer: Any, keep_in: np.ndarray, keep_out: np.ndarray, bias_delta: np.ndarray | None) -> Replacement:
    """A producer with fewer input and / or output channels, weights sliced."""
    cls = type(layer).__name__
    weights = layer.get_weights()
    n_out = int(keep_out.sum())
    overrides: dict[str, Any] = {"units" if cls == "Dense" else "filters": n_out}
    if cls.startswith("Separable"):
        dw, pw = weights[0], weights[1]
        mult = dw.shape[-1]
        new = [dw[..., keep_in, :], pw[..., np.repeat(keep_in, mult), :][..., keep_out]]
        rest = weights[2:]
    elif "Transpose" in cls:
        new = [weights[0][..., keep_out, :][..., keep_in]]
        rest = weights[1:]
    else:
        kernel = weights[0]
        new = [kernel[..., keep_in, :][..., keep_out]]
        rest = weights[1:]
    if layer.use_bias:
        bias = rest[0] + (bias_delta if bias_delta is not None else 0.0)
        new.append(bias[keep_out])
    elif bias_delta is not None:
        overrides["use_bias"] = True
        new.append(bias_delta[keep_out].astype(np.float32))
    return Replacement((clone_layer(layer, **overrides),), (new,))


def _slice_channelwise(layer: Any, keep: np.ndarray, keep_out: np.ndarray, mean_delta: np.ndarray | None) -> Replacement | None:
    """BN / PReLU / Normalization / depthwise with fewer channels."""
    cls = type(layer).__name__
    weights = layer.get_weights()
    c = len(keep)
    if cls.startswith("Depthwise"):
        new = [weights[0][..., keep, :]] + [b[keep_out] for b in weights[1:]]
        return Replacement((clone_layer(layer),), (new,))
    if cls == "BatchNormalization":
        names = [w.name.split("/")[-1].split(":")[0] for w in layer.weights]
        new = []
        for name, w in zip(names, weights):
            if name == "moving_mean" and mean_delta is not None:
                w = w - mean_delta
            new.append(w[keep])
        return Replacement((clone_layer(layer),), (new,))
    new = [w[..., keep] if w.ndim and w.shape[-1] == c else w for w in weights]
    overrides = {}
    for key in ("mean", "variance"):  # Normalization given its statistics in the constructor
        value = layer.get_config().get(key)
        if value is not None and np.ndim(value) and np.shape(value)[-1] == c:
            overrides[key] = np.asarray(value)[..., keep].tolist()
    return Replacement((clone_layer(layer, **overrides),), (new,))


def remove_channels(
    analysis: ChannelAnalysis,
    removed: Iterable[int],
    *,
    compensation: dict[int, np.ndarray] | None = None,
    name: str | None = None,
) -> Any:
    """Rebuild the model without the channels labelled `removed`.

    Args:
        analysis: from `analyze_channels`.
        removed: labels (units of prunable groups) to remove. Fixed labels are refused.
        compensation: tensor key -> per-channel value that the removed channels of that
            tensor are replaced by (usually their mean). Each Conv / Dense / SeparableConv
            reading the tensor folds `value * weights` of its removed inputs into its bias
            (or, without a bias, into the moving mean of the BatchNormalization right after it).
        name: the new model's name.

    Returns:
        A smaller tf_keras Functional model with the same inputs and outputs.
    """
    graph = analysis.graph
    removed_arr = np.asarray(sorted(set(int(r) for r in removed)), dtype=np.int64)
    bad = [r for r in removed_arr.tolist() if r in analysis.fixed]
    if bad:
        raise ValueError(f"cannot remove fixed channels ({analysis.fixed[bad[0]]})")
    consumers = graph.consumers()
    nodes_by_layer: dict[int, list[GraphNode]] = {}
    for node in graph.nodes:
        nodes_by_layer.setdefault(id(node.layer), []).append(node)

    # bias deltas from compensation, and where a bias-free producer pushes them (the BN after it)
    bias_delta: dict[int, np.ndarray] = {}
    bn_delta: dict[int, np.ndarray] = {}
    for node in graph.nodes:
        if compensation is None or node.class_name not in PRODUCERS or "Transpose" in node.class_name:
            continue
        key = node.inputs[0]
        if key not in compensation or len(nodes_by_layer[id(node.layer)]) > 1:
            continue
        removed_in = ~analysis.keep_mask(key, removed_arr)
        if not removed_in.any():
            continue
        delta = _consumer_contribution(node.layer, removed_in, compensation[key])
        if delta is None or not np.any(delta):
            continue
        if node.layer.use_bias:
            bias_delta[id(node.layer)] = delta
            continue
        after = [graph.nodes[i] for i in consumers.get(node.outputs[0], [])]
        if (
            len(after) == 1
            and after[0].class_name == "BatchNormalization"
            and len(nodes_by_layer[id(after[0].layer)]) == 1
        ):
            bn_delta[id(after[0].layer)] = delta
        else:
            bias_delta[id(node.layer)] = delta

    def replace(layer: Any) -> Any:
        node = nodes_by_layer[id(layer)][0]
        cls = node.class_name
        keep_in = [analysis.keep_mask(k, removed_arr) for k in node.inputs]
        keep_out = [analysis.keep_mask(k, removed_arr) for k in node.outputs]
        changed = not all(m.all() for m in keep_in + keep_out)
        delta = bias_delta.get(id(layer))
        if not changed and delta is None and id(layer) not in bn_delta:
            return None
        if cls in PRODUCERS:
            return _slice_producer(layer, keep_in[0], keep_out[0], delta)
        if cls in ("BatchNormalization", "PReLU", "Normalization") or cls.startswith("Depthwise"):
            return _slice_channelwise(layer, keep_in[0], keep_out[0], bn_delta.get(id(layer)))
        if cls == "Reshape":
            target = tuple(layer.target_shape[:-1]) + (int(keep_out[0].sum()),)
            return Replacement((clone_layer(layer, target_shape=target),))
        noise = getattr(layer, "noise_shape", None)  # Dropout with an explicit per-channel noise shape
        if noise is not None and len(noise) and noise[-1] == len(keep_in[0]):
            return Replacement((clone_layer(layer, noise_shape=(*noise[:-1], int(keep_in[0].sum()))),))
        return None  # no weights, no channel count in its config

    return rebuild(graph, replace, name=name)
