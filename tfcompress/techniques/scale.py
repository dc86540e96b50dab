"""Whole-model scaling (`scale`): width alpha, depth d and input resolution r (MobileNet / EfficientNet).

    width       every channel group keeps make_divisible(channels x alpha, 8) channels (min 8, never below 90%
                of channels x alpha, as MobileNet's and EfficientNet's code round), the channels with the largest
                L1 norms: structured pruning's surgery (`analyze_channels` keeps residuals, SE, concat and
                Flatten -> Dense consistent), so the smaller model starts from the original's weights
    depth       each stage of k residual blocks gets ceil(d x k) (`tfcompress.surgery.depth`): the last
                blocks removed, or copies of the last block appended that start as the identity
    resolution  the model rebuilt for inputs of side x r, rounded to a multiple of its total stride
                (`tfcompress.surgery.resolution`); every weight carries over. `compress` resizes the data to
                the new input size for training, calibration and verification

Applied in that order (width, depth, resolution): EfficientNet's compound scaling is all three at once. The
stage's details (report, `details`) say which channel groups were shrunk, which blocks were removed or added,
and the input size before / after. Fine-tune or distill afterwards.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt

from tfcompress.techniques.base import Capability, StageContext, Technique
from tfcompress.types import LayerRule

__all__ = ["TECHNIQUE", "Params", "apply", "make_divisible", "scale_model", "width_plan"]


class Params(BaseModel):
    """Parameters of a `scale` stage (field descriptions are the docs and the JSON Schema)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    width: StrictFloat = Field(
        1.0, gt=0.0, le=1.0, description="width multiplier alpha: every channel group keeps channels x alpha, "
        "rounded to a multiple of `divisor` (min `divisor`), the channels with the largest L1 norms; 1: unchanged")
    divisor: StrictInt = Field(8, ge=1, le=1024, description="width: channel counts are rounded to a multiple of "
                               "this (8: the SIMD width of int8 kernels)")
    depth: StrictFloat = Field(
        1.0, gt=0.0, le=8.0, description="depth multiplier d: each chain of k residual blocks (x + f(x), same shape) "
        "gets ceil(d x k), at least 1; below 1 the last blocks go, above 1 the last block is repeated, each copy "
        "starting as the identity; 1: unchanged")
    resolution: StrictFloat = Field(
        1.0, ge=0.125, le=8.0, description="input-resolution multiplier r: the model is rebuilt for inputs of side "
        "x r, rounded to a multiple of the model's total stride; compress resizes the data to match")
    resolution_multiple: StrictInt | None = Field(
        None, ge=1, le=1024, description="round the new input side to a multiple of this instead of the total stride")
    flatten: Literal["error", "gap"] = Field(
        "error", description="resolution with a Flatten -> Dense: error, or gap (GlobalAveragePooling2D in the "
        "Flatten's place, the Dense's rows summed over positions)")


def make_divisible(value: float, divisor: int = 8) -> int:
    """`value` rounded to a multiple of `divisor`, at least `divisor`, never below 90% of `value` (MobileNet)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def width_plan(model: Any, params: Params, rules: tuple[LayerRule, ...] = ()) -> Any:
    """structured pruning's `PrunePlan` for width x alpha: kept channels per producer, one decision per group."""
    from tfcompress.surgery.channels import analyze_channels
    from tfcompress.techniques.channel_importance import channel_importance, first_calls
    from tfcompress.techniques.rules import plan_layers
    from tfcompress.techniques.structured import GroupDecision, PrunePlan

    analysis = analyze_channels(model)
    producers = [n.layer for n in first_calls(analysis.graph) if n.name in analysis.group_of]
    layer_plan = plan_layers(producers, rules, params, lambda layer: True, where="scale")
    scores = channel_importance(analysis, "l1")
    keep: dict[str, tuple[int, ...]] = {}
    decisions = []
    for g in analysis.groups:
        if not g.prunable:
            decisions.append(GroupDecision(g.producers, g.size, g.size, g.reason))
            continue
        hit = next((s for s in g.producers if s in layer_plan.skipped), None)
        if hit:
            decisions.append(GroupDecision(g.producers, g.size, g.size, f"skipped by a rule on '{hit}'"))
            continue
        gp = next(layer_plan.params[s] for s in g.producers if s in layer_plan.params)
        k = min(g.size, make_divisible(g.size * gp.width, gp.divisor))
        decisions.append(GroupDecision(g.producers, g.size, k))
        if k == g.size:
            continue
        kept_units = set(g.units[np.sort(np.argsort(-scores[g.index], kind="stable")[:k])].tolist())
        for prod in g.producers:
            labels = analysis.producer_channels(prod).tolist()
            keep[prod] = tuple(i for i, lab in enumerate(labels) if lab in kept_units)
    return PrunePlan(keep, tuple(decisions), "l1")


def scale_model(model: Any, params: Params, rules: tuple[LayerRule, ...] = (), data: Any = None) -> tuple[Any, dict]:
    """`model` at width x alpha, depth x d and resolution x r, and what changed (JSON-able: shrunk groups, blocks
    removed / added, input sizes)."""
    from tfcompress.surgery.graph import as_tf_keras
    from tfcompress.techniques import structured

    model = as_tf_keras(model)
    details: dict[str, Any] = {"width": params.width, "depth": params.depth, "resolution": params.resolution}
    if params.width < 1.0:
        plan = width_plan(model, params, rules)
        model = structured.prune_channels(model, plan=plan, params=structured.Params(compensate=True), data=data)
        details.update(_width_summary(plan))
    if params.depth != 1.0:
        model, depth_details = _depth(model, params.depth)
        details.update(depth_details)
    if params.resolution != 1.0:
        from tfcompress.surgery.resolution import change_resolution

        model, change = change_resolution(model, params.resolution, multiple=params.resolution_multiple,
                                          flatten=params.flatten)
        details["input"] = change.to_dict()
    return model, details


def apply(model: Any, params: Params, rules: tuple[LayerRule, ...] = (), ctx: StageContext = StageContext()) -> Any:
    """Recipe stage: scale width / resolution (fine-tune or distill afterwards)."""
    return scale_model(model, params, rules, ctx.data)[0]


def details(before: Any, after: Any, params: Params, rules: tuple[LayerRule, ...]) -> dict[str, Any]:
    """For the report: params / FLOPs before and after, which channel groups shrank, the input size."""
    from tfcompress.surgery.flops import cost_change

    out: dict[str, Any] = {**cost_change(before, after), "width": params.width, "depth": params.depth,
                           "resolution": params.resolution}
    if params.width < 1.0:
        out.update(_width_summary(width_plan(before, params, rules)))
    if params.depth != 1.0:
        out.update(_depth(before, params.depth, warn=False)[1])  # the same blocks as after the width step
    if params.resolution != 1.0:
        out["input_before"] = _input_side(before)
        out["input_after"] = _input_side(after)
    return out


def _depth(model: Any, depth: float, warn: bool = True) -> tuple[Any, dict[str, Any]]:
    """Depth scaling and its details (`blocks`: a record per stage; `depth_start_diff`: max |new - old| on random
    inputs); warns when the multiplier changes no stage (ceil(d x k) == k everywhere)."""
    import warnings

    from tfcompress.surgery.depth import scale_depth

    model, plan = scale_depth(model, depth)
    if warn and not plan.changed:
        warnings.warn(f"scale: depth {depth:g} changes no stage (each keeps ceil({depth:g} x blocks), at least one): "
                      + ", ".join(f"{s.before} block(s) from {s.blocks[0]}" for s in plan.stages), stacklevel=3)
    return model, {"blocks": [st.to_dict() for st in plan.stages], "depth_start_diff": plan.max_abs_diff}


def _width_summary(plan: Any) -> dict[str, Any]:
    """Which channel groups shrank (producers, channels before / kept), and which stayed whole and why."""
    return {"shrunk": [{"producers": list(g.producers), "channels": g.channels, "kept": g.kept}
                       for g in plan.groups if not g.note and g.kept < g.channels],
            "kept_whole": [{"producers": list(g.producers), "why": g.note} for g in plan.groups if g.note]}


def _input_side(model: Any) -> list[int | None]:
    return [None if d is None else int(d) for d in model.inputs[0].shape[1:3]]


# Nothing to strip (the scaled model is an ordinary model), no callbacks.
TECHNIQUE = Technique(
    name="scale",
    summary="width multiplier (fewer channels, largest L1 kept), depth multiplier (residual blocks removed or "
    "repeated) and input-resolution multiplier (graph surgery)",
    params_type=Params,
    apply=apply,
    details=details,
    capabilities=frozenset({Capability.CHANGES_STRUCTURE, Capability.USES_DATA}),
)
