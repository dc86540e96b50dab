"""Structured channel pruning (`structured_prune`): remove whole channels, get a smaller model.

Unlike magnitude pruning (zeros in a same-sized model), this rebuilds the
model with fewer filters, through `tfcompress.surgery`: the result is an
ordinary tf_keras model with fewer parameters and FLOPs, faster on any
runtime, converted like any other.

1. `analyze_channels` groups the producers whose channels are tied (residual
   Adds, SE Multiplies, depthwise convs, concats, Flatten -> Dense).
2. Each unit of a group gets an importance (`criterion`), aggregated over the
   group's producers:
       l1 / l2      filter norm (per layer, divided by the layer's mean)
       bn_gamma     |gamma| of the BatchNormalization after it (l1 where there is none)
       taylor       first-order Taylor: (sum of activation * gradient)^2 per batch, on labelled data
       activation   mean |activation| after BN / activation, on data (no labels needed)
3. Allocation: `uniform` removes `ratio` of every group; `global` ranks all
   units together and removes `ratio` of them in total, so unimportant layers
   lose more. Floors (`min_channels`, `min_fraction`) hold in both, per-layer
   rules can set their own `ratio`, kept counts can be rounded to a multiple
   (`round_to`, e.g. 8 for XNNPACK's SIMD width).
4. With `compensate`, the mean of each removed channel (measured on the data;
   without data only constant channels) is folded into the bias of the layer
   reading it, so removing a dead or constant channel changes nothing.

Fine-tune afterwards (a few epochs recover most of the accuracy);
`prune_iteratively` alternates pruning and fine-tuning rounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, Callable, Literal, Mapping

import numpy as np

from tfcompress.errors import DataError
from tfcompress.types import LayerRule

__all__ = [
    "GroupDecision",
    "Params",
    "PrunePlan",
    "apply",
    "callbacks",
    "channel_importance",
    "plan_pruning",
    "prune_channels",
    "prune_iteratively",
    "strip",
]

Criterion = Literal["l1", "l2", "bn_gamma", "taylor", "activation"]
CRITERIA: tuple[str, ...] = ("l1", "l2", "bn_gamma", "taylor", "activation")
DATA_CRITERIA: frozenset[str] = frozenset({"taylor", "activation"})


@dataclass(frozen=True)
class Params:
    """Parameters of a `structured_prune` stage.

    Attributes:
        ratio: fraction of channels to remove (per group with `uniform`, in total with `global`).
        criterion: how channels are ranked (see module doc).
        allocation: "uniform" (same ratio per group) or "global" (one ranking over all groups).
        min_channels: never keep fewer channels than this in a group.
        min_fraction: never keep less than this fraction of a group.
        round_to: round kept channel counts to a multiple of this (1 = off).
        rounds: prune in this many steps of equal keep-ratio (re-ranking in between;
            `prune_iteratively` fine-tunes in between).
        compensate: fold removed channels' mean into the next layer's bias.
        samples: data samples used by data-driven criteria and compensation.
    """

    ratio: float = 0.5
    criterion: Criterion = "l1"
    allocation: Literal["uniform", "global"] = "uniform"
    min_channels: int = 4
    min_fraction: float = 0.1
    round_to: int = 1
    rounds: int = 1
    compensate: bool = True
    samples: int = 512

    def __post_init__(self) -> None:
        if not 0.0 <= self.ratio < 1.0:
            raise ValueError(f"ratio must be in [0, 1), got {self.ratio}")
        if self.criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {', '.join(CRITERIA)}, got {self.criterion!r}")
        if self.allocation not in ("uniform", "global"):
            raise ValueError(f"allocation must be 'uniform' or 'global', got {self.allocation!r}")
        if self.min_channels < 1:
            raise ValueError(f"min_channels must be at least 1, got {self.min_channels}")
        if not 0.0 <= self.min_fraction <= 1.0:
            raise ValueError(f"min_fraction must be in [0, 1], got {self.min_fraction}")
        if self.round_to < 1:
            raise ValueError(f"round_to must be at least 1, got {self.round_to}")
        if self.rounds < 1:
            raise ValueError(f"rounds must be at least 1, got {self.rounds}")
        if self.samples < 1:
            raise ValueError(f"samples must be at least 1, got {self.samples}")


@dataclass(frozen=True)
class GroupDecision:
    """What happens to one channel group.

    Attributes:
        producers: the group's producer layers.
        channels: channels before.
        kept: channels after.
        note: why it was left alone, if it was ("" otherwise).
    """

    producers: tuple[str, ...]
    channels: int
    kept: int
    note: str = ""


@dataclass(frozen=True)
class PrunePlan:
    """Which output channels of which producers survive; apply with `prune_channels(model, plan=...)`.

    Attributes:
        keep: producer layer name -> indices of its output channels kept (only pruned producers).
        groups: one decision per channel group (pruned or not, and why).
        criterion: the ranking used.
    """

    keep: Mapping[str, tuple[int, ...]]
    groups: tuple[GroupDecision, ...]
    criterion: str = "l1"

    @property
    def channels_before(self) -> int:
        return sum(g.channels for g in self.groups if not g.note)

    @property
    def channels_after(self) -> int:
        return sum(g.kept for g in self.groups if not g.note)

    def table(self) -> str:
        """A text table: one line per group."""
        lines = [f"{'channels':>8s} {'kept':>6s}  producers"]
        for g in self.groups:
            tail = f"  ({g.note})" if g.note else ""
            lines.append(f"{g.channels:8d} {g.kept:6d}  {', '.join(g.producers)}{tail}")
        return "\n".join(lines)


# --------------------------------------------------------------------- data


def _arrays(data: Any, limit: int) -> tuple[Any, np.ndarray | None]:
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


def _random_inputs(graph: Any, n: int = 16) -> list[np.ndarray]:
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
    return _importance(analysis, criterion, data, loss, samples, batch_size)[0]


def _importance(
    analysis: Any, criterion: str, data: Any, loss: Any, samples: int, batch_size: int
) -> tuple[dict[int, np.ndarray], set[int]]:
    """(scores per group, groups whose scores are not on the common scale and must be pruned uniformly)."""
    groups = analysis.prunable_groups()
    graph = analysis.graph
    scores = _UnitScores(analysis, groups)
    if criterion in ("l1", "l2"):
        for node in _first_calls(graph):
            if node.name in analysis.group_of:
                norms = _producer_norms(node.layer, 1 if criterion == "l1" else 2)
                scores.add(analysis.labels[node.outputs[0]], _normalized(norms))
        return scores.result(), set()
    if criterion == "bn_gamma":
        covered: set[int] = set()
        for node in _first_calls(graph):
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
        x, y = _arrays(data, samples)
        if x is None:
            raise DataError(
                f"criterion '{criterion}' needs data",
                "pass data=(x, y) (a few hundred samples), or use criterion l1 / l2 / bn_gamma",
            )
        if criterion == "taylor" and y is None:
            raise DataError("criterion 'taylor' needs labels: pass data=(x, y)", "or use criterion 'activation'")
        return _data_importance(analysis, groups, criterion, x, y, loss, batch_size)
    raise ValueError(f"unknown criterion {criterion!r}")


def _first_calls(graph: Any) -> list[Any]:
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


def _data_importance(
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


# --------------------------------------------------------------------- planning


def _floor(n: int, p: Params) -> int:
    return min(n, max(p.min_channels, math.ceil(p.min_fraction * n - 1e-9)))


def _rounded(keep: int, n: int, p: Params) -> int:
    floor = _floor(n, p)
    if p.round_to > 1:
        keep = int(round(keep / p.round_to)) * p.round_to
        while keep < floor:
            keep += p.round_to
    return int(min(n, max(keep, floor)))


def plan_pruning(
    model: Any,
    params: Params | None = None,
    rules: tuple[LayerRule, ...] = (),
    *,
    data: Any = None,
    loss: Callable[[Any, Any], Any] | None = None,
    **overrides: Any,
) -> PrunePlan:
    """Decide which channels to remove (nothing is changed yet).

    Args:
        model: tf_keras model (Keras 3 models and paths are bridged).
        params: a `Params`; keyword overrides (ratio=..., criterion=...) are applied on top.
        rules: per-layer rules (first match wins) on producer layers: `skip`, or their own
            ratio / min_channels / min_fraction / round_to.
        data: x or (x, y) for data-driven criteria and compensation.
        loss: taylor's loss (see `channel_importance`).
    """
    from tfcompress.surgery.channels import analyze_channels
    from tfcompress.techniques.rules import plan_layers

    p = replace(params or Params(), **overrides)
    analysis = analyze_channels(model)
    graph = analysis.graph
    producers = [n.layer for n in _first_calls(graph) if n.name in analysis.group_of]
    layer_plan = plan_layers(producers, rules, p, lambda layer: True, where="structured_prune")
    skipped = set(layer_plan.skipped)

    decisions: list[GroupDecision] = []
    group_params: dict[int, Params] = {}
    for g in analysis.groups:
        if not g.prunable:
            decisions.append(GroupDecision(g.producers, g.size, g.size, g.reason))
            continue
        hit = next((s for s in g.producers if s in skipped), None)
        if hit:
            decisions.append(GroupDecision(g.producers, g.size, g.size, f"skipped by a rule on '{hit}'"))
            continue
        group_params[g.index] = next(layer_plan.params[s] for s in g.producers if s in layer_plan.params)
        decisions.append(GroupDecision(g.producers, g.size, g.size))
    active = [g for g in analysis.groups if g.index in group_params]
    if p.ratio == 0 and all(gp.ratio == 0 for gp in group_params.values()):
        return PrunePlan({}, tuple(decisions), p.criterion)

    scores, uniform_only = _importance(analysis, p.criterion, data, loss, p.samples, 64)
    counts = _allocate(active, scores, group_params, p, uniform_only)
    keep: dict[str, tuple[int, ...]] = {}
    for g in active:
        k = counts[g.index]
        decisions[g.index] = GroupDecision(g.producers, g.size, k)
        if k == g.size:
            continue
        order = np.argsort(-scores[g.index], kind="stable")[:k]
        kept_units = set(g.units[np.sort(order)].tolist())
        for prod in g.producers:
            labels = analysis.producer_channels(prod)
            keep[prod] = tuple(int(i) for i, lab in enumerate(labels.tolist()) if lab in kept_units)
    return PrunePlan(keep, tuple(decisions), p.criterion)


def _allocate(
    groups: list[Any], scores: dict[int, np.ndarray], gp: dict[int, Params], p: Params, uniform_only: set[int]
) -> dict[int, int]:
    """Channels kept per group."""
    counts: dict[int, int] = {}
    pooled = []
    for g in groups:
        q = gp[g.index]
        if p.allocation == "uniform" or q.ratio != p.ratio or g.index in uniform_only:
            counts[g.index] = _rounded(int(math.floor(g.size * (1 - q.ratio) + 0.5)), g.size, q)
        else:
            pooled.append(g)
    if pooled:
        total = sum(g.size for g in pooled)
        to_remove = int(round(p.ratio * total))
        removable = {g.index: g.size - _floor(g.size, gp[g.index]) for g in pooled}
        ranked = sorted(
            ((float(s), g.index) for g in pooled for s in scores[g.index]), key=lambda t: t[0]
        )
        removed = {g.index: 0 for g in pooled}
        for _, gi in ranked:
            if to_remove <= 0:
                break
            if removed[gi] < removable[gi]:
                removed[gi] += 1
                to_remove -= 1
        for g in pooled:
            counts[g.index] = _rounded(g.size - removed[g.index], g.size, gp[g.index])
    return counts


# --------------------------------------------------------------------- pruning


def prune_channels(
    model: Any,
    ratio: float | None = None,
    criterion: str | None = None,
    data: Any = None,
    *,
    params: Params | None = None,
    rules: tuple[LayerRule, ...] = (),
    plan: PrunePlan | None = None,
    loss: Callable[[Any, Any], Any] | None = None,
    **overrides: Any,
) -> Any:
    """Remove channels and return a smaller tf_keras model (uncompiled; fine-tune it).

    Args:
        model: tf_keras model (Keras 3 models and paths are bridged first).
        ratio: fraction of channels to remove (default 0.5).
        criterion: l1 (default), l2, bn_gamma, taylor or activation.
        data: x or (x, y): needed by taylor / activation, used for compensation.
        params: a full `Params` (ratio / criterion / overrides win over it).
        rules: per-layer rules (see `plan_pruning`).
        plan: apply this plan instead of making one (e.g. one you inspected).
        loss: taylor's loss.
        **overrides: other `Params` fields (allocation, min_channels, round_to, rounds, ...).

    Example:
        small = prune_channels(model, ratio=0.5, criterion="taylor", data=(x[:512], y[:512]), round_to=8)
    """
    from tfcompress.surgery.graph import as_tf_keras

    model = as_tf_keras(model)
    p = replace(params or Params(), **overrides)
    if ratio is not None:
        p = replace(p, ratio=ratio)
    if criterion is not None:
        p = replace(p, criterion=criterion)
    if plan is not None:
        return _apply_plan(model, plan, p, data)
    if p.rounds > 1:
        return prune_iteratively(model, None, params=p, data=data, rules=rules, loss=loss)
    return _apply_plan(model, plan_pruning(model, p, rules, data=data, loss=loss), p, data)


def _apply_plan(model: Any, plan: PrunePlan, p: Params, data: Any) -> Any:
    from tfcompress.surgery.channels import analyze_channels, remove_channels

    analysis = analyze_channels(model)
    removed: set[int] = set()
    for prod, kept in plan.keep.items():
        labels = analysis.producer_channels(prod)
        mask = np.ones(len(labels), bool)
        mask[list(kept)] = False
        removed |= set(labels[mask].tolist())
    if not removed:
        from tfcompress.surgery.graph import rebuild

        return rebuild(analysis.graph)
    compensation = None
    if p.compensate:
        compensation = _compensation(analysis, np.asarray(sorted(removed)), data, p.samples)
    return remove_channels(analysis, removed, compensation=compensation)


def _compensation(analysis: Any, removed: np.ndarray, data: Any, samples: int) -> dict[int, np.ndarray]:
    """Tensor key -> value to fold for each channel (mean on data; without data, constants only)."""
    from tfcompress.surgery.channels import PRODUCERS, channel_statistics

    graph = analysis.graph
    keys = [
        n.inputs[0]
        for n in graph.nodes
        if n.class_name in PRODUCERS and not analysis.keep_mask(n.inputs[0], removed).all()
    ]
    if not keys:
        return {}
    x, _ = _arrays(data, samples)
    real = x is not None
    xs = x if real else _random_inputs(graph)
    stats = channel_statistics(graph, keys, xs)
    return {k: (s.mean if real else np.where(s.constant, s.mean, 0.0)) for k, s in stats.items()}


def prune_iteratively(
    model: Any,
    fine_tune: Callable[[Any, int], Any] | None,
    *,
    params: Params | None = None,
    data: Any = None,
    rules: tuple[LayerRule, ...] = (),
    loss: Callable[[Any, Any], Any] | None = None,
    **overrides: Any,
) -> Any:
    """Prune in `params.rounds` steps, calling `fine_tune(model, round) -> model` after each.

    Each round removes the same fraction of what is left, so that after all rounds
    `ratio` of the channels are gone: (1 - ratio) = (1 - r) ** rounds. Importance is
    measured again on the fine-tuned model before each round. `fine_tune` gets an
    uncompiled model: compile and fit it, and return it (or the model it trained).
    """
    from tfcompress.surgery.graph import as_tf_keras

    p = replace(params or Params(), **overrides)
    per_round = 1.0 - (1.0 - p.ratio) ** (1.0 / p.rounds)
    step = replace(p, ratio=per_round, rounds=1)
    step_rules = tuple(
        replace(r, params={**r.params, "ratio": 1.0 - (1.0 - r.params["ratio"]) ** (1.0 / p.rounds)})
        if "ratio" in r.params
        else r
        for r in rules
    )
    model = as_tf_keras(model)
    for i in range(p.rounds):
        model = _apply_plan(model, plan_pruning(model, step, step_rules, data=data, loss=loss), step, data)
        if fine_tune is not None:
            model = fine_tune(model, i) or model
    return model


# --------------------------------------------------------------------- registry contract


def apply(model: Any, params: Params, rules: tuple[LayerRule, ...] = (), *, data: Any = None) -> Any:
    """Recipe stage: prune channels (all rounds, without fine-tuning between them)."""
    return prune_channels(model, params=params, rules=rules, data=data)


def strip(model: Any) -> Any:
    """Nothing to strip: the pruned model is an ordinary model."""
    return model


def callbacks(params: Params) -> list[Any]:
    """No training-time callbacks needed."""
    return []
