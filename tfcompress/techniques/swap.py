"""Block swaps (`swap`): a plain k x k convolution becomes its MobileNet-style counterpart, from its own weights.

    Conv2D k x k (cin -> cout)   ->  DepthwiseConv2D k x k (cin)  [-> BatchNorm [-> ReLU6]]  -> Conv2D 1x1 (-> cout)

Initialised from the original kernel: for each input channel c, the k x k x cout
slice of the kernel is a (k*k, cout) matrix; its best rank-1 approximation
(SVD: s0 * u0 v0^T) gives the depthwise filter sqrt(s0) u0 and the pointwise
row sqrt(s0) v0. A kernel that is exactly separable per input channel is
reproduced exactly (with `mid: none` or `bn`, the BatchNorm starting as the
identity); otherwise the swap keeps `energy` of the kernel's squared norm and
fine-tuning (or distillation) wins back the rest. Stride, padding and dilation
go to the depthwise layer; bias, activation and the layer's name to the
pointwise one. The plan says, per layer, what was swapped and how much of the
kernel the initialisation kept. (Inverted-residual and MBConv swaps, width /
resolution multipliers: not yet.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from tfcompress.techniques.base import Capability, StageContext, Technique
from tfcompress.types import LayerRule

__all__ = ["TECHNIQUE", "LayerSwap", "Params", "SwapPlan", "plan_swaps", "separable_factors", "swap_blocks"]


class Params(BaseModel):
    """Parameters of a `swap` stage (field descriptions are the docs and the JSON Schema)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    to: Literal["separable"] = Field(
        "separable", description="what a k x k Conv2D becomes: depthwise k x k + pointwise 1x1 (MobileNetV1)")
    mid: Literal["none", "bn", "bn_relu6"] = Field(
        "bn", description="between depthwise and pointwise: nothing, a BatchNorm (starts as the identity), or "
        "BatchNorm + ReLU6 as in MobileNetV1 (then the start is no longer exact)")
    min_kernel: StrictInt = Field(3, ge=2, le=15, description="swap only convolutions with a kernel side >= this")
    min_params: StrictInt = Field(0, ge=0, le=10**12, description="swap only kernels with at least this many weights")


@dataclass(frozen=True)
class LayerSwap:
    """One swapped layer: its cost before / after and how much of its kernel the initialisation keeps."""

    name: str
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    energy: float  # fraction of the kernel's squared norm in the separable initialisation (1.0: exact)


@dataclass(frozen=True)
class SwapPlan:
    """What `swap_blocks` does to a model."""

    swaps: tuple[LayerSwap, ...]
    skipped: tuple[str, ...]  # convolutions left as they are (by rules or size)

    def describe(self) -> str:
        lines = [f"{'layer':30s} {'params':>17s} {'MACs':>23s} {'init energy':>11s}"]
        for s in self.swaps:
            lines.append(f"{s.name[:30]:30s} {s.params_before:>8,}->{s.params_after:<8,} "
                         f"{s.macs_before:>11,}->{s.macs_after:<11,} {s.energy:11.4f}")
        return "\n".join(lines)


def separable_factors(kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(depthwise (kh, kw, cin, 1), pointwise (1, 1, cin, cout), energy kept) of a (kh, kw, cin, cout) kernel."""
    kh, kw, cin, cout = kernel.shape
    depthwise = np.zeros((kh, kw, cin, 1), dtype=kernel.dtype)
    pointwise = np.zeros((1, 1, cin, cout), dtype=kernel.dtype)
    kept = total = 0.0
    for c in range(cin):
        u, s, vt = np.linalg.svd(kernel[:, :, c, :].reshape(kh * kw, cout).astype(np.float64), full_matrices=False)
        root = np.sqrt(s[0])
        depthwise[:, :, c, 0] = (u[:, 0] * root).reshape(kh, kw)
        pointwise[0, 0, c, :] = vt[0] * root
        kept += float(s[0] ** 2)
        total += float(np.sum(s**2))
    return depthwise, pointwise, (kept / total if total > 0 else 1.0)


def _swappable(layer: Any, p: Params) -> bool:
    if type(layer).__name__ != "Conv2D" or getattr(layer, "groups", 1) != 1:
        return False
    if layer.get_config().get("data_format", "channels_last") != "channels_last":
        return False
    kh, kw = layer.kernel_size
    return max(kh, kw) >= p.min_kernel and int(np.prod(layer.kernel.shape)) >= p.min_params


def plan_swaps(model: Any, params: Params | None = None, rules: tuple[LayerRule, ...] = ()) -> SwapPlan:
    """Which convolutions are swapped, at what cost, keeping how much of each kernel."""
    from tfcompress.surgery.graph import as_tf_keras, trace
    from tfcompress.techniques.rules import plan_layers

    p = params or Params()
    graph = trace(as_tf_keras(model))
    first: dict[int, Any] = {}
    for node in graph.nodes:
        first.setdefault(id(node.layer), node)
    convs = [n for n in first.values() if type(n.layer).__name__ == "Conv2D"]
    chosen = plan_layers([n.layer for n in convs], rules, p, lambda layer: _swappable(layer, p), where="swap")
    swaps, skipped = [], []
    for node in convs:
        layer = node.layer
        lp = chosen.params.get(layer.name)
        if lp is None:
            skipped.append(layer.name)
            continue
        kh, kw, cin, cout = layer.kernel.shape
        out_hw = int(np.prod([d or 1 for d in graph.shapes[node.outputs[0]][1:-1]]))
        _, _, energy = separable_factors(layer.kernel.numpy())
        swaps.append(LayerSwap(layer.name, kh * kw * cin * cout, kh * kw * cin + cin * cout,
                               out_hw * kh * kw * cin * cout, out_hw * (kh * kw * cin + cin * cout), energy))
    return SwapPlan(tuple(swaps), tuple(skipped))


def swap_blocks(model: Any, params: Params | None = None, rules: tuple[LayerRule, ...] = ()) -> Any:
    """`model` with its chosen k x k convolutions swapped (see the module doc); a new tf_keras model."""
    from tfcompress.keras_compat import tf_keras
    from tfcompress.surgery.graph import Replacement, as_tf_keras, clone_layer, rebuild

    p = params or Params()
    model = as_tf_keras(model)
    names = {s.name for s in plan_swaps(model, p, rules).swaps}

    def replace_layer(layer: Any) -> Any:
        if layer.name not in names:
            return None
        weights = layer.get_weights()
        depthwise, pointwise, _ = separable_factors(weights[0])
        config = layer.get_config()
        dw = tf_keras.layers.DepthwiseConv2D(
            layer.kernel_size, strides=layer.strides, padding=config["padding"], dilation_rate=layer.dilation_rate,
            use_bias=False, name=f"{layer.name}_dw",
        )
        chain, chain_weights = [dw], [[depthwise]]
        if p.mid in ("bn", "bn_relu6"):
            bn = tf_keras.layers.BatchNormalization(name=f"{layer.name}_dw_bn")
            cin = depthwise.shape[2]
            ones, zeros = np.ones(cin, np.float32), np.zeros(cin, np.float32)
            chain.append(bn)
            chain_weights.append([ones, zeros, zeros, ones - bn.epsilon])  # identity: (x - 0) / sqrt(1 - eps + eps)
            if p.mid == "bn_relu6":
                chain.append(tf_keras.layers.ReLU(6.0, name=f"{layer.name}_dw_relu"))
                chain_weights.append(None)
        pw = clone_layer(layer, kernel_size=(1, 1), strides=(1, 1), padding="valid", dilation_rate=(1, 1))
        chain.append(pw)
        chain_weights.append([pointwise, *weights[1:]])
        return Replacement(tuple(chain), tuple(chain_weights))

    return rebuild(model, replace_layer)


def apply(model: Any, params: Params, rules: tuple[LayerRule, ...] = (), ctx: StageContext = StageContext()) -> Any:
    """Recipe stage: swap (fine-tune or distill afterwards)."""
    return swap_blocks(model, params, rules)


# Nothing to strip (the swapped model is an ordinary model), no callbacks.
TECHNIQUE = Technique(
    name="swap",
    summary="swap k x k convolutions for depthwise-separable blocks initialised from them (graph surgery)",
    params_type=Params,
    apply=apply,
    capabilities=frozenset({Capability.CHANGES_STRUCTURE}),
)
