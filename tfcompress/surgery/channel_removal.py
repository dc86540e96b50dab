"""Removing channels: the model rebuilt without some labels of a `ChannelAnalysis`.

`remove_channels(analysis, removed)` rebuilds the model without the removed
labels, slicing every kernel, bias, BatchNormalization statistic and reshape
target that they touch. With `compensation` (the mean value of each removed
channel where a Conv / Dense reads it, from `channel_statistics`) the
consumer's bias absorbs what the removed channel contributed on average, so
constant channels (e.g. a filter whose kernel is all zero, followed by BN and
ReLU) are removed exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from tfcompress.surgery.channels import PRODUCERS, ChannelAnalysis
from tfcompress.surgery.graph import GraphNode, LayerGraph, Replacement, clone_layer, rebuild, run_graph

__all__ = ["ChannelStats", "channel_statistics", "remove_channels"]


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
