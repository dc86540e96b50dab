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
from typing import Any, Callable, Literal, Mapping

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt

from tfcompress.techniques.channel_importance import (
    channel_importance,
    first_calls,
    importance_and_uniform_groups,
    random_inputs,
    sample_arrays,
)
from tfcompress.techniques.base import Capability, StageContext, Technique
from tfcompress.types import LayerRule

__all__ = [
    "TECHNIQUE",
    "GroupDecision",
    "Params",
    "PrunePlan",
    "apply",
    "channel_importance",
    "plan_pruning",
    "prune_channels",
    "prune_iteratively",
]

Criterion = Literal["l1", "l2", "bn_gamma", "taylor", "activation"]
CRITERIA: tuple[str, ...] = ("l1", "l2", "bn_gamma", "taylor", "activation")


class Params(BaseModel):
    """Parameters of a `structured_prune` stage (field descriptions are the docs and the JSON Schema)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ratio: StrictFloat = Field(
        0.5, ge=0.0, lt=1.0,
        description="fraction of channels to remove (per group with `uniform`, in total with `global`)")
    criterion: Criterion = Field("l1", description="how channels are ranked: " + ", ".join(CRITERIA))
    allocation: Literal["uniform", "global"] = Field(
        "uniform", description='"uniform" (same ratio per group) or "global" (one ranking over all groups)')
    min_channels: StrictInt = Field(4, ge=1, le=10**6, description="never keep fewer channels than this in a group")
    min_fraction: StrictFloat = Field(
        0.1, ge=0.0, le=1.0, description="never keep less than this fraction of a group")
    round_to: StrictInt = Field(
        1, ge=1, le=4096, description="round kept channel counts to a multiple of this (1 = off)")
    rounds: StrictInt = Field(
        1, ge=1, le=1000, description="prune in this many steps of equal keep-ratio, re-ranking in between "
        "(`prune_iteratively` fine-tunes in between)")
    compensate: StrictBool = Field(True, description="fold removed channels' mean into the next layer's bias")
    samples: StrictInt = Field(
        512, ge=1, le=100_000, description="data samples used by data-driven criteria and compensation")


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

    p = Params.model_validate({**(params or Params()).model_dump(), **overrides})
    analysis = analyze_channels(model)
    graph = analysis.graph
    producers = [n.layer for n in first_calls(graph) if n.name in analysis.group_of]
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

    scores, uniform_only = importance_and_uniform_groups(analysis, p.criterion, data, loss, p.samples, 64)
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
    p = Params.model_validate({**(params or Params()).model_dump(), **overrides})
    if ratio is not None:
        p = Params.model_validate({**p.model_dump(), "ratio": ratio})
    if criterion is not None:
        p = Params.model_validate({**p.model_dump(), "criterion": criterion})
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
    x, _ = sample_arrays(data, samples)
    real = x is not None
    xs = x if real else random_inputs(graph)
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

    p = Params.model_validate({**(params or Params()).model_dump(), **overrides})
    per_round = 1.0 - (1.0 - p.ratio) ** (1.0 / p.rounds)
    step = p.model_copy(update={"ratio": per_round, "rounds": 1})
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


def apply(model: Any, params: Params, rules: tuple[LayerRule, ...] = (), ctx: StageContext = StageContext()) -> Any:
    """Recipe stage: prune channels (all rounds, without fine-tuning between them)."""
    return prune_channels(model, params=params, rules=rules, data=ctx.data)


# Nothing to strip (the pruned model is an ordinary model), no callbacks.
TECHNIQUE = Technique(
    name="structured_prune",
    summary="remove whole channels (graph surgery)",
    params_type=Params,
    apply=apply,
    capabilities=frozenset({Capability.CHANGES_STRUCTURE, Capability.USES_DATA}),
)
