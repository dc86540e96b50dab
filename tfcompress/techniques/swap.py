"""Block swaps (`swap`): plain layers become their MobileNet / EfficientNet counterparts, from their own weights.

    target              Conv2D k x k (cin -> cout) becomes                                   (docs/surgery.md)
    separable           DW k x k [-> BN [-> ReLU6]] -> PW 1x1                                MobileNetV1
    inverted_residual   1x1 expand (t) -> BN -> ReLU6 -> DW k x k -> BN -> ReLU6
                        -> 1x1 linear projection [+ input when stride 1 and cin == cout]     MobileNetV2
    mbconv              the same with swish / hard-swish and squeeze-and-excitation          EfficientNet / MNv3
    auto                inverted_residual where the residual applies, separable elsewhere
    bottleneck          Dense (in -> out) -> Dense (in -> r) -> Dense (r -> out), truncated SVD   (low_rank's code)

Every new block starts from the original kernel: the per-input-channel rank-1
split (SVD) gives the depthwise and pointwise / projection weights; expansion
layers start as signed identity copies that carry the signal through the
block's activations exactly (`tfcompress.surgery.blocks` explains why). The
plan says, per swapped layer, which new layers start from the original
weights, which as the identity and which fresh, and how much of the kernel
the start keeps (`energy`). Fine-tune or distill afterwards.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt

from tfcompress.surgery.blocks import BlockSpec, separable_factors
from tfcompress.techniques.base import Capability, StageContext, Technique
from tfcompress.types import LayerRule

__all__ = ["TECHNIQUE", "LayerSwap", "Params", "SwapPlan", "plan_swaps", "separable_factors", "swap_blocks"]

CONV_TARGETS = ("separable", "inverted_residual", "mbconv", "auto")


class Params(BaseModel):
    """Parameters of a `swap` stage (field descriptions are the docs and the JSON Schema)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: Literal["separable", "inverted_residual", "mbconv", "auto", "bottleneck"] = Field(
        "separable", description="what a layer becomes: k x k Conv2D -> separable (MobileNetV1), inverted_residual "
        "(MobileNetV2), mbconv (EfficientNet / MobileNetV3), auto (inverted_residual where a residual fits, else "
        "separable); Dense -> bottleneck (two thin Dense by SVD)")
    mid: Literal["none", "bn", "bn_relu6"] = Field(
        "bn", description="separable: between depthwise and pointwise nothing, a BatchNorm (starts as the identity), "
        "or BatchNorm + ReLU6 (MobileNetV1; the start is then no longer exact). inverted_residual / mbconv: `none` "
        "leaves out their BatchNorms")
    expansion: StrictInt = Field(
        2, ge=1, le=16, description="inverted_residual / mbconv: t, the block is t x cin channels wide inside "
        "(MobileNetV2 uses 6; 2 keeps a 3x3 swap cheaper than the conv)")
    activation: Literal["auto", "relu6", "swish", "hard_swish"] = Field(
        "auto", description="inverted_residual / mbconv activation (auto: relu6 for inverted_residual, swish for "
        "mbconv; hard_swish as in MobileNetV3)")
    se_ratio: StrictFloat = Field(
        0.25, ge=0.0, le=1.0, description="mbconv: squeeze-and-excitation channels = cin x se_ratio (0: no SE)")
    residual: StrictBool = Field(
        True, description="inverted_residual / mbconv: add the input where stride is 1, cin == cout and padding same")
    min_kernel: StrictInt = Field(3, ge=2, le=15, description="swap only convolutions with a kernel side >= this")
    min_params: StrictInt = Field(0, ge=0, le=10**12, description="swap only kernels with at least this many weights")
    rank: StrictInt | None = Field(None, ge=1, le=10**6, description="bottleneck: explicit rank (wins over `energy`)")
    energy: StrictFloat = Field(
        0.9, gt=0.0, le=1.0, description="bottleneck: keep the smallest rank holding this fraction of the kernel's "
        "squared singular values")


@dataclass(frozen=True)
class LayerSwap:
    """One swapped layer: what it became, its cost before / after, and how each new layer started.

    Attributes:
        init: (new layer, how it started): "original" (computed from the original weights), "identity" (passes
            its input through: BatchNorm, signed copies), "fresh" (random), "zero (...)" or a mix of them.
    """

    name: str
    target: str
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    energy: float  # fraction of the kernel's squared norm in the initialisation (1.0: exact)
    init: tuple[tuple[str, str], ...] = ()
    exact: bool = False  # the start reproduces the layer when its kernel is separable (energy 1)


@dataclass(frozen=True)
class SwapPlan:
    """What `swap_blocks` does to a model."""

    swaps: tuple[LayerSwap, ...]
    skipped: tuple[str, ...]  # layers left as they are (by rules, size, or a target that does not apply)

    def describe(self) -> str:
        lines = [f"{'layer':24s} {'target':18s} {'params':>18s} {'MACs':>24s} {'energy':>7s}  init"]
        for s in self.swaps:
            init = ", ".join(f"{layer}: {how}" for layer, how in s.init)
            lines.append(f"{s.name[:24]:24s} {s.target:18s} {s.params_before:>8,}->{s.params_after:<8,} "
                         f"{s.macs_before:>11,}->{s.macs_after:<11,} {s.energy:7.4f}  {init}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"swaps": [asdict(s) for s in self.swaps], "skipped": list(self.skipped)}


def _conv_candidate(layer: Any) -> bool:
    return (type(layer).__name__ == "Conv2D" and getattr(layer, "groups", 1) == 1
            and layer.get_config().get("data_format", "channels_last") == "channels_last")


def _supported(layer: Any) -> bool:
    return _conv_candidate(layer) or type(layer).__name__ == "Dense"


def _residual_fits(layer: Any, in_shape: tuple, out_shape: tuple) -> bool:
    return tuple(layer.strides) == (1, 1) and tuple(in_shape[1:]) == tuple(out_shape[1:])


def _spec(layer: Any, p: Params, graph: Any, node: Any) -> BlockSpec:
    from tfcompress.surgery.blocks import input_is_nonnegative

    in_shape, out_shape = graph.shapes[node.inputs[0]], graph.shapes[node.outputs[0]]
    kind = "mbconv" if p.target == "mbconv" else "inverted_residual"
    activation = p.activation if p.activation != "auto" else ("swish" if kind == "mbconv" else "relu6")
    return BlockSpec(kind, p.expansion, activation, p.se_ratio if kind == "mbconv" else 0.0, p.mid != "none",
                     p.residual and _residual_fits(layer, in_shape, out_shape),
                     input_is_nonnegative(graph, node.inputs[0]))


def _block_target(layer: Any, p: Params, graph: Any, node: Any) -> str:
    if p.target != "auto":
        return p.target
    fits = _residual_fits(layer, graph.shapes[node.inputs[0]], graph.shapes[node.outputs[0]])
    return "inverted_residual" if p.residual and fits else "separable"


def _conv_swap(layer: Any, p: Params, graph: Any, node: Any) -> tuple[LayerSwap, Any]:
    """The plan entry and the Replacement for one convolution."""
    from tfcompress.surgery.blocks import build_inverted_residual, build_separable

    kh, kw, cin, cout = layer.kernel.shape
    in_hw = int(np.prod([d or 1 for d in graph.shapes[node.inputs[0]][1:-1]]))
    out_hw = int(np.prod([d or 1 for d in graph.shapes[node.outputs[0]][1:-1]]))
    before = kh * kw * cin * cout
    target = _block_target(layer, p, graph, node)
    if target == "separable":
        rep, energy, init = build_separable(layer, p.mid)
        after, macs = kh * kw * cin + cin * cout, out_hw * (kh * kw * cin + cin * cout)
        exact = p.mid != "bn_relu6"
    else:
        spec = _spec(layer, p.model_copy(update={"target": target}), graph, node)
        rep, weights, init = build_inverted_residual(layer, spec)
        energy, width = weights.energy, weights.depthwise.shape[2]
        expand = cin * width if weights.expand is not None else 0
        squeeze = max(1, int(round(cin * spec.se_ratio))) if spec.se_ratio > 0 else 0
        se = 2 * width * squeeze + width + squeeze if squeeze else 0
        after = expand + kh * kw * width + se + width * cout
        macs = in_hw * expand + out_hw * (kh * kw * width + width * cout) + 2 * width * squeeze
        exact = spec.exact
    swap = LayerSwap(layer.name, target, before, after, out_hw * before, macs, energy, init, exact)
    return swap, rep


def _decide(model: Any, p: Params, rules: tuple[LayerRule, ...]) -> tuple[list[tuple[LayerSwap, Any]], list[str],
                                                                          Any]:
    """(plan entry, Replacement or None for bottlenecks) per swapped layer, skipped names, the low-rank plan."""
    from tfcompress.surgery.graph import trace
    from tfcompress.techniques.rules import plan_layers

    graph = trace(model)
    first: dict[int, Any] = {}
    calls: dict[int, int] = {}
    for node in graph.nodes:
        first.setdefault(id(node.layer), node)
        calls[id(node.layer)] = calls.get(id(node.layer), 0) + 1
    nodes = [n for n in first.values() if _supported(n.layer)]
    chosen = plan_layers([n.layer for n in nodes], rules, p, _supported, where="swap")
    decided: list[tuple[LayerSwap, Any]] = []
    skipped: list[str] = []
    dense: dict[str, Params] = {}
    for node in nodes:
        layer, lp = node.layer, chosen.params.get(node.layer.name)
        is_dense = type(layer).__name__ == "Dense"
        if lp is None or calls[id(layer)] > 1 or is_dense != (lp.target == "bottleneck"):
            skipped.append(layer.name)
            continue
        if is_dense:
            dense[layer.name] = lp
            continue
        if max(layer.kernel_size) < lp.min_kernel or int(np.prod(layer.kernel.shape)) < lp.min_params:
            skipped.append(layer.name)
            continue
        decided.append(_conv_swap(layer, lp, graph, node))
    lowrank_plan = _bottlenecks(model, dense)
    for d in lowrank_plan.layers:
        if not d.method:
            skipped.append(d.name)
            continue
        init = ((f"{d.name}_svd", "original"), (d.name, "original"))
        decided.append((LayerSwap(d.name, "bottleneck", d.params_before, d.params_after, d.flops_before // 2,
                                  d.flops_after // 2, d.energy, init, True), None))
    order = {layer.name: i for i, layer in enumerate(graph.layers())}
    decided.sort(key=lambda e: order[e[0].name])
    return decided, skipped, lowrank_plan


def _bottlenecks(model: Any, dense: dict[str, Params]) -> Any:
    """low_rank's plan restricted to the Dense layers swapped to bottlenecks (each with its own rank / energy)."""
    from tfcompress.techniques import lowrank

    decisions = []
    for key in dict.fromkeys((lp.rank, lp.energy, lp.min_params) for lp in dense.values()):
        rank, energy, min_params = key
        lp_params = lowrank.Params(rank=rank, energy=energy, min_params=min_params)
        plan = lowrank.plan_factorization(model, lp_params)
        names = {n for n, lp in dense.items() if (lp.rank, lp.energy, lp.min_params) == key}
        decisions += [d for d in plan.layers if d.name in names]
    return lowrank.LowRankPlan(tuple(decisions))


def plan_swaps(model: Any, params: Params | None = None, rules: tuple[LayerRule, ...] = ()) -> SwapPlan:
    """Which layers are swapped, into what, at what cost, and how each new layer starts."""
    from tfcompress.surgery.graph import as_tf_keras

    decided, skipped, _ = _decide(as_tf_keras(model), params or Params(), rules)
    return SwapPlan(tuple(s for s, _ in decided), tuple(skipped))


def swap_blocks(model: Any, params: Params | None = None, rules: tuple[LayerRule, ...] = (), *,
                with_plan: bool = False) -> Any:
    """`model` with its chosen layers swapped (see the module doc); a new tf_keras model (and the plan)."""
    from tfcompress.surgery.graph import as_tf_keras, rebuild
    from tfcompress.techniques.lowrank import factorize

    model = as_tf_keras(model)
    decided, skipped, lowrank_plan = _decide(model, params or Params(), rules)
    replacements = {s.name: rep for s, rep in decided if rep is not None}
    swapped = rebuild(model, lambda layer: replacements.get(layer.name))
    if lowrank_plan.factorized:
        swapped = factorize(swapped, plan=lowrank_plan)
    plan = SwapPlan(tuple(s for s, _ in decided), tuple(skipped))
    return (swapped, plan) if with_plan else swapped


def apply(model: Any, params: Params, rules: tuple[LayerRule, ...] = (), ctx: StageContext = StageContext()) -> Any:
    """Recipe stage: swap (fine-tune or distill afterwards); the plan goes to the stage's log dir as swap_plan.json."""
    swapped, plan = swap_blocks(model, params, rules, with_plan=True)
    if ctx.log_dir:
        from tfcompress.files import atomic_writer

        path = Path(ctx.log_dir) / "swap_plan.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_writer(path, "w") as f:
            json.dump(plan.to_dict(), f, indent=2)
    return swapped


def details(before: Any, after: Any, params: Params, rules: tuple[LayerRule, ...]) -> dict[str, Any]:
    """For the report: params / MACs / FLOPs before and after, and per swapped layer how each new layer started."""
    from tfcompress.surgery.flops import cost_change

    plan = plan_swaps(before, params, rules)
    swaps = [{"name": s.name, "target": s.target, "params_before": s.params_before, "params_after": s.params_after,
              "energy": float(s.energy), "exact": bool(s.exact), "init": {layer: how for layer, how in s.init}} for s in plan.swaps]
    return {**cost_change(before, after), "swaps": swaps, "skipped": list(plan.skipped)}


# Nothing to strip (the swapped model is an ordinary model), no callbacks.
TECHNIQUE = Technique(
    name="swap",
    summary="swap plain convolutions / Dense for separable, inverted-residual, MBConv or bottleneck blocks "
    "initialised from them (graph surgery)",
    params_type=Params,
    apply=apply,
    details=details,
    capabilities=frozenset({Capability.CHANGES_STRUCTURE}),
)
