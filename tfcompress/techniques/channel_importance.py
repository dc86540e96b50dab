"""How much each channel matters: the importance criteria of structured channel pruning.

    l1 / l2      filter norm (per layer, divided by the layer's mean)
    bn_gamma     |gamma| of the BatchNormalization after it (l1 where there is none)
    taylor       first-order Taylor: (sum of activation * gradient)^2 per batch, on labelled data
    activation   mean |activation| after BN / activation, on data (no labels needed)

Scores are per unit of a channel group (`tfcompress.surgery.analyze_channels`),
aggregated over the group's producers. `tfcompress.techniques.structured`
turns them into a plan.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable

import numpy as np

from tfcompress.errors import DataError

__all__ = ["DATA_CRITERIA", "channel_importance", "first_calls", "importance_and_uniform_groups", "random_inputs", "sample_arrays"]

DATA_CRITERIA: frozenset[str] = frozenset({"taylor", "activation"})


# --------------------------------------------------------------------- data


def sample_arrays(data: Any, limit: int) -> tuple[Any, np.ndarray | None]:
    """(x, y or None) as numpy, at most `limit` samples, from arrays, (x, y) or a tf.data.Dataset."""
    if data is None:
        return None, None
    if hasattr(data, "as_numpy_iterator"):
        xs, ys = [], []
        count = 0
        for item in data.as_numpy_iterator():
            x, y = (item[0], item[1]) if isinstance(item, tuple) and len(item) >= 2 else (item, None)
            xs.append(np.asarray(x))
            if y is not None:
                ys.append(np.asarray(y))
            count += len(xs[-1])
            if count >= limit:
                break
        x = np.concatenate(xs)[:limit]
        return x, (np.concatenate(ys)[:limit] if ys else None)
    if isinstance(data, tuple) and len(data) == 2:
        x, y = data
        return np.asarray(x)[:limit], np.asarray(y)[:limit]
    return np.asarray(data)[:limit], None


def random_inputs(graph: Any, n: int = 16) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [
        rng.random((n, *[d or 1 for d in graph.shapes[k][1:]]), dtype=np.float32) for k in graph.inputs
    ]


# --------------------------------------------------------------------- importance


def _producer_norms(layer: Any, p: int) -> np.ndarray:
    """Norm of each output channel's weights of a producer."""
    weights = layer.get_weights()
    cls = type(layer).__name__
    kernel = weights[1] if cls.startswith("Separable") else weights[0]
    if "Transpose" in cls:
        kernel = np.swapaxes(kernel, -1, -2)
    flat = np.abs(kernel.reshape(-1, kernel.shape[-1]))
    return flat.sum(axis=0) if p == 1 else np.sqrt((flat**2).sum(axis=0))


def _normalized(v: np.ndarray) -> np.ndarray:
    mean = float(np.mean(v)) if len(v) else 0.0
    return v / mean if mean > 0 else np.ones_like(v)


class _UnitScores:
    """Accumulates per-unit scores of each group from per-layer channel scores."""

    def __init__(self, analysis: Any, groups: list[Any]) -> None:
        self.groups = groups
        self.pos = {int(u): (g.index, i) for g in groups for i, u in enumerate(g.units.tolist())}
        self.total = {g.index: np.zeros(g.size) for g in groups}
        self.count = {g.index: np.zeros(g.size) for g in groups}

    def add(self, labels: np.ndarray, values: np.ndarray) -> None:
        seen: set[int] = set()
        for label, v in zip(labels.tolist(), values.tolist()):
            if label in self.pos and label not in seen:
                seen.add(label)
                g, i = self.pos[label]
                self.total[g][i] += v
                self.count[g][i] += 1

    def result(self) -> dict[int, np.ndarray]:
        return {g: self.total[g] / np.maximum(self.count[g], 1) for g in self.total}


def channel_importance(
    analysis: Any,
    criterion: str = "l1",
    data: Any = None,
    *,
    loss: Callable[[Any, Any], Any] | None = None,
    samples: int = 512,
    batch_size: int = 64,
) -> dict[int, np.ndarray]:
    """Importance of each unit of each prunable group: group index -> scores (higher = keep).

    Args:
        analysis: from `tfcompress.surgery.analyze_channels`.
        criterion: l1, l2, bn_gamma, taylor (needs (x, y) data) or activation (needs x).
        data: x, (x, y) or a tf.data.Dataset of (x, y) batches.
        loss: for taylor, `loss(y_true, y_pred)`; default sparse categorical cross-entropy
            (from logits unless the model ends in softmax / sigmoid), or MSE for float targets
            shaped like the output.
        samples: at most this many samples are used.
    """
    return importance_and_uniform_groups(analysis, criterion, data, loss, samples, batch_size)[0]


def importance_and_uniform_groups(
    analysis: Any, criterion: str, data: Any, loss: Any, samples: int, batch_size: int
) -> tuple[dict[int, np.ndarray], set[int]]:
    """(scores per group, groups whose scores are not on the common scale and must be pruned uniformly)."""
    groups = analysis.prunable_groups()
    graph = analysis.graph
    scores = _UnitScores(analysis, groups)
    if criterion in ("l1", "l2"):
        for node in first_calls(graph):
            if node.name in analysis.group_of:
                norms = _producer_norms(node.layer, 1 if criterion == "l1" else 2)
                scores.add(analysis.labels[node.outputs[0]], _normalized(norms))
        return scores.result(), set()
    if criterion == "bn_gamma":
        covered: set[int] = set()
        for node in first_calls(graph):
            if node.class_name == "BatchNormalization" and node.layer.scale:
                gamma = np.abs(node.layer.gamma.numpy())
                labels = analysis.labels[node.inputs[0]]
                scores.add(labels, _normalized(gamma))
                covered |= {g for g, _ in (scores.pos.get(int(l), (None, 0)) for l in labels) if g is not None}
        result = scores.result()
        missing = [g for g in groups if g.index not in covered]
        if missing:
            fallback = channel_importance(analysis, "l1")
            result.update({g.index: fallback[g.index] for g in missing})
        return result, set()
    if criterion in DATA_CRITERIA:
        x, y = sample_arrays(data, samples)
        if x is None:
            raise DataError(
                f"criterion '{criterion}' needs data",
                "pass data=(x, y) (a few hundred samples), or use criterion l1 / l2 / bn_gamma",
            )
        if criterion == "taylor" and y is None:
            raise DataError("criterion 'taylor' needs labels: pass data=(x, y)", "or use criterion 'activation'")
        return _dataimportance_and_uniform_groups(analysis, groups, criterion, x, y, loss, batch_size)
    raise ValueError(f"unknown criterion {criterion!r}")


def first_calls(graph: Any) -> list[Any]:
    seen: set[int] = set()
    out = []
    for node in graph.nodes:
        if id(node.layer) not in seen:
            seen.add(id(node.layer))
            out.append(node)
    return out


_GATE_FOLLOW = frozenset({"BatchNormalization", "Activation", "ReLU", "LeakyReLU", "ELU", "PReLU"})


def _gate_points(analysis: Any, groups: list[Any]) -> dict[str, tuple[int, str]]:
    """Layer after which to measure each producer's channels -> (its output key, the producer).

    From the producer's output, follow single-consumer BN / activation layers:
    that is the tensor the next layer reads, i.e. what removing a channel removes.
    """
    graph = analysis.graph
    consumers = graph.consumers()
    calls: dict[int, int] = {}
    for node in graph.nodes:
        calls[id(node.layer)] = calls.get(id(node.layer), 0) + 1
    points: dict[str, tuple[int, str]] = {}
    wanted = {p for g in groups for p in g.producers}
    for node in graph.nodes:
        if node.name not in wanted or calls[id(node.layer)] > 1:
            continue
        last, key = node, node.outputs[0]
        while True:
            nxt = consumers.get(key, [])
            if len(nxt) != 1:
                break
            follower = graph.nodes[nxt[0]]
            if follower.class_name not in _GATE_FOLLOW or calls[id(follower.layer)] > 1:
                break
            last, key = follower, follower.outputs[0]
        points[last.name] = (key, node.name)
    return points


@lru_cache(maxsize=1)
def _gate_class() -> type:
    from tfcompress.keras_compat import tf_keras

    class ChannelGate(tf_keras.layers.Layer):
        """x * gate (ones): d loss / d gate is the first-order effect of removing each channel."""

        def build(self, input_shape: Any) -> None:
            self.gate = self.add_weight(name="gate", shape=(int(input_shape[-1]),), initializer="ones")
            super().build(input_shape)

        def call(self, x: Any) -> Any:
            self.seen = x  # eager runs only: the activation, for the "activation" criterion
            return x * self.gate

    return ChannelGate


def _default_loss(model: Any, y: np.ndarray) -> Callable[[Any, Any], Any]:
    from tfcompress.keras_compat import tf_keras

    out_shape = tuple(model.outputs[0].shape)
    if np.issubdtype(y.dtype, np.floating) and y.ndim == len(out_shape) and y.shape[1:] == out_shape[1:]:
        return tf_keras.losses.MeanSquaredError()
    last = model.layers[-1]
    act = getattr(getattr(last, "activation", None), "__name__", "linear")
    return tf_keras.losses.SparseCategoricalCrossentropy(from_logits=act not in ("softmax", "sigmoid"))


def _dataimportance_and_uniform_groups(
    analysis: Any, groups: list[Any], criterion: str, x: Any, y: Any, loss: Any, batch_size: int
) -> tuple[dict[int, np.ndarray], set[int]]:
    from tfcompress.keras_compat import tf
    from tfcompress.surgery.graph import Replacement, clone_layer, rebuild

    graph = analysis.graph
    points = _gate_points(analysis, groups)
    gated_groups = {analysis.group_of[producer] for _, producer in points.values()}
    gates: dict[str, Any] = {}
    gate_cls = _gate_class()

    def replace(layer: Any) -> Any:
        if layer.name not in points:
            return None
        gate = gate_cls(name=f"{layer.name}_gate")
        gates[layer.name] = gate
        return Replacement((clone_layer(layer), gate), (layer.get_weights(), None))

    gated = rebuild(graph, replace)
    order = list(gates)
    labels = [analysis.labels[points[n][0]] for n in order]
    loss_fn = loss or (_default_loss(graph.model, y) if y is not None else None)
    scores = _UnitScores(analysis, groups)
    taylor = {g.index: np.zeros(g.size) for g in groups}
    act_sum = {n: 0.0 for n in order}
    xs = x if isinstance(x, (list, tuple)) else [x]
    n = len(xs[0])
    for start in range(0, n, batch_size):
        xb = [tf.constant(a[start : start + batch_size]) for a in xs]
        xb = xb if len(xb) > 1 else xb[0]
        if criterion == "taylor":
            with tf.GradientTape() as tape:
                out = gated(xb, training=False)
                value = loss_fn(tf.constant(y[start : start + batch_size]), out)
            grads = tape.gradient(value, [gates[name].gate for name in order])
            per_batch = {g.index: np.zeros(g.size) for g in groups}
            for lab, grad in zip(labels, grads):
                g_np = np.zeros(len(lab)) if grad is None else grad.numpy()
                for label, v in zip(lab.tolist(), g_np.tolist()):
                    if label in scores.pos:
                        gi, i = scores.pos[label]
                        per_batch[gi][i] += v
            for gi in taylor:
                taylor[gi] += per_batch[gi] ** 2
        else:
            gated(xb, training=False)
            for name in order:
                seen = gates[name].seen.numpy()
                act_sum[name] = act_sum[name] + np.abs(seen).reshape(-1, seen.shape[-1]).mean(axis=0)
    result = taylor if criterion == "taylor" else {}
    if criterion != "taylor":
        for name, lab in zip(order, labels):
            scores.add(lab, _normalized(np.asarray(act_sum[name], dtype=np.float64)))
        result = scores.result()
    # groups without a measuring point (only shared producers): ranked by L1, pruned uniformly
    missing = {g.index for g in groups} - gated_groups
    if missing:
        fallback = channel_importance(analysis, "l1")
        result.update({g: fallback[g] for g in missing})
    return result, (missing if criterion == "taylor" else set())
