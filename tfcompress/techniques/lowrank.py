"""Low-rank factorization (`low_rank`): replace big layers by thin chains of smaller ones.

    Dense(in -> out)            -> Dense(in -> r, no bias) -> Dense(r -> out)          truncated SVD
    Conv2D 1x1                  -> Conv2D 1x1 (-> r) -> Conv2D 1x1 (-> out)            truncated SVD
    Conv2D kh x kw, "spatial"   -> Conv2D kh x 1 (-> r) -> Conv2D 1 x kw (-> out)       SVD of the kernel
                                                                                        as a (kh*cin, kw*cout) matrix
    Conv2D kh x kw, "tucker"    -> Conv2D 1x1 (-> r1) -> Conv2D kh x kw (r1 -> r2)
                                   -> Conv2D 1x1 (-> out)                               Tucker-2 (HOSVD + HOOI)

Strides, dilation and padding are split so that at full rank the chain computes
exactly what the layer did; activation, bias and the layer's name go to the
last layer of the chain. The rank of each layer comes from, in this order:
an explicit `rank`; a model-wide `reduction` (the fraction of the whole
model's params or FLOPs to remove: one energy threshold for all layers is
searched that reaches it); else `energy` (keep the smallest rank whose
singular values hold that fraction of the kernel's squared norm). A layer
whose factorized form would not be cheaper (by `objective`) is skipped, and
the plan says so. Fine-tune afterwards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt

from tfcompress.types import LayerRule
from tfcompress.techniques.base import Capability, StageContext, Technique

__all__ = [
    "TECHNIQUE",
    "LayerFactorization",
    "LowRankPlan",
    "Params",
    "apply",
    "factorize",
    "plan_factorization",
]


class Params(BaseModel):
    """Parameters of a `low_rank` stage (field descriptions are the docs and the JSON Schema)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    conv_method: Literal["auto", "spatial", "tucker"] = Field(
        "auto", description='for k x k Conv2D: "spatial", "tucker" or "auto" (the cheaper one)')
    rank: StrictInt | None = Field(
        None, ge=1, le=10**6, description="explicit rank (Tucker: both ranks); wins over `reduction` and `energy`")
    reduction: StrictFloat | None = Field(
        None, gt=0.0, lt=1.0, description="fraction of the whole model's cost (`objective`) to remove")
    energy: StrictFloat = Field(
        0.9, gt=0.0, le=1.0,
        description="fraction of each kernel's squared singular values to keep (when no rank / reduction)")
    objective: Literal["params", "flops"] = Field("params", description='what "cost" means: "params" or "flops"')
    rank_multiple: StrictInt = Field(
        1, ge=1, le=4096, description="round ranks up to a multiple of this (8 suits XNNPACK)")
    min_params: StrictInt = Field(1024, ge=0, le=10**12, description="layers with fewer kernel weights are left alone")
    only_if_smaller: StrictBool = Field(True, description="skip layers whose factorized form is not cheaper")
    tucker_iters: StrictInt = Field(2, ge=0, le=1000, description="HOOI refinement iterations after HOSVD")


@dataclass(frozen=True)
class LayerFactorization:
    """The decision for one layer.

    Attributes:
        name / class_name: the layer.
        method: "svd", "spatial", "tucker", or "" when skipped.
        ranks: (r,) or (r1, r2) for tucker.
        params_before / params_after, flops_before / flops_after: kernel cost (batch 1; FLOPs = 2 x MACs).
        energy: fraction of the kernel's squared norm the factorization keeps.
        note: why it was skipped ("" when factorized).
    """

    name: str
    class_name: str
    method: str
    ranks: tuple[int, ...]
    params_before: int
    params_after: int
    flops_before: int
    flops_after: int
    energy: float = 1.0
    note: str = ""


@dataclass(frozen=True)
class LowRankPlan:
    """Per-layer decisions; apply with `factorize(model, plan=...)`."""

    layers: tuple[LayerFactorization, ...]
    objective: str = "params"

    @property
    def factorized(self) -> tuple[LayerFactorization, ...]:
        return tuple(d for d in self.layers if d.method)

    @property
    def skipped(self) -> tuple[LayerFactorization, ...]:
        return tuple(d for d in self.layers if not d.method)

    def table(self) -> str:
        lines = [f"{'layer':28s} {'method':8s} {'ranks':>10s} {'params':>19s} {'FLOPs':>25s} {'energy':>7s}"]
        for d in self.layers:
            ranks = "x".join(map(str, d.ranks)) or "-"
            tail = f"  skipped: {d.note}" if d.note else ""
            lines.append(
                f"{d.name[:28]:28s} {d.method or '-':8s} {ranks:>10s} {d.params_before:>9,d}->{d.params_after:<9,d}"
                f" {d.flops_before:>12,d}->{d.flops_after:<12,d} {d.energy:7.3f}{tail}"
            )
        return "\n".join(lines)


# --------------------------------------------------------------------- the maths


def _rank_for(s: np.ndarray, energy: float) -> int:
    e = np.cumsum(s.astype(np.float64) ** 2)
    if e[-1] <= 0:
        return 1
    return int(min(len(s), np.searchsorted(e / e[-1], energy - 1e-12) + 1))


def _energy_of(s: np.ndarray, r: int) -> float:
    e = s.astype(np.float64) ** 2
    return float(e[:r].sum() / e.sum()) if e.sum() > 0 else 1.0


def _round_rank(r: int, multiple: int, cap: int) -> int:
    return int(min(cap, max(1, math.ceil(r / multiple) * multiple)))


def svd_factors(kernel: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    """(in, out) kernel -> A (in, r), B (r, out) with A @ B the best rank-r approximation."""
    u, s, vt = np.linalg.svd(kernel.astype(np.float64), full_matrices=False)
    root = np.sqrt(s[:r])
    return (u[:, :r] * root).astype(np.float32), (root[:, None] * vt[:r]).astype(np.float32)


def spatial_matrix(kernel: np.ndarray) -> np.ndarray:
    """(kh, kw, cin, cout) -> (kh*cin, kw*cout): M[(h, c), (w, o)] = W[h, w, c, o]."""
    kh, kw, cin, cout = kernel.shape
    return kernel.transpose(0, 2, 1, 3).reshape(kh * cin, kw * cout)


def spatial_factors(kernel: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    """(kh, kw, cin, cout) -> kernels (kh, 1, cin, r) and (1, kw, r, cout)."""
    kh, kw, cin, cout = kernel.shape
    a, b = svd_factors(spatial_matrix(kernel), r)
    first = a.reshape(kh, cin, r)[:, None, :, :]
    second = b.reshape(r, kw, cout).transpose(1, 0, 2)[None]
    return first, second


def _unfold(t: np.ndarray, axis: int) -> np.ndarray:
    return np.moveaxis(t, axis, 0).reshape(t.shape[axis], -1)


def _top_left(m: np.ndarray, r: int) -> np.ndarray:
    u, _, _ = np.linalg.svd(m, full_matrices=False)
    return u[:, :r]


def tucker_factors(kernel: np.ndarray, r1: int, r2: int, iters: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(kh, kw, cin, cout) -> kernels (1, 1, cin, r1), (kh, kw, r1, r2), (1, 1, r2, cout): Tucker-2 by HOOI."""
    w = kernel.astype(np.float64)
    u_in = _top_left(_unfold(w, 2), r1)
    u_out = _top_left(_unfold(w, 3), r2)
    for _ in range(iters):
        u_in = _top_left(_unfold(np.einsum("hwio,os->hwis", w, u_out), 2), r1)
        u_out = _top_left(_unfold(np.einsum("hwio,ir->hwro", w, u_in), 3), r2)
    core = np.einsum("hwio,ir,os->hwrs", w, u_in, u_out)
    return (
        u_in[None, None].astype(np.float32),
        core.astype(np.float32),
        u_out.T[None, None].astype(np.float32),
    )


# --------------------------------------------------------------------- planning


@dataclass
class _Candidate:
    """One factorizable layer with its spectra and shapes."""

    layer: Any
    params: Params
    kind: str  # "dense", "conv1x1", "conv"
    kernel: np.ndarray
    in_spatial: int  # positions of the input (per sample)
    out_spatial: int  # positions of the output
    mid_spatial: int  # spatial: positions after the first (kh x 1) conv
    s: np.ndarray | None = None  # svd / spatial spectrum
    s_spatial: np.ndarray | None = None
    s_in: np.ndarray | None = None
    s_out: np.ndarray | None = None

    @property
    def before(self) -> tuple[int, int]:
        k = self.kernel
        return int(k.size), int(2 * k.size * self.out_spatial)

    def cost(self, method: str, ranks: tuple[int, ...]) -> tuple[int, int]:
        """(params, FLOPs) of the factorized kernel."""
        k = self.kernel
        if method == "svd":
            cin, cout = k.shape[-2], k.shape[-1]
            r = ranks[0]
            p = r * (cin + cout)
            return p, 2 * p * self.out_spatial
        kh, kw, cin, cout = k.shape
        if method == "spatial":
            r = ranks[0]
            return kh * cin * r + kw * r * cout, 2 * (self.mid_spatial * kh * cin * r + self.out_spatial * kw * r * cout)
        r1, r2 = ranks
        p = cin * r1 + kh * kw * r1 * r2 + r2 * cout
        f = 2 * (self.in_spatial * cin * r1 + self.out_spatial * (kh * kw * r1 * r2 + r2 * cout))
        return p, f


def _candidates(model: Any, params: Params, rules: tuple[LayerRule, ...]) -> tuple[list[_Candidate], list[LayerFactorization], Any]:
    from tfcompress.surgery.graph import trace
    from tfcompress.techniques.rules import plan_layers

    graph = trace(model)
    calls: dict[int, int] = {}
    for node in graph.nodes:
        calls[id(node.layer)] = calls.get(id(node.layer), 0) + 1
    first = {}
    for node in graph.nodes:
        first.setdefault(id(node.layer), node)

    def supported(layer: Any) -> bool:
        cls = type(layer).__name__
        if cls == "Dense":
            return True
        return (
            cls == "Conv2D"
            and getattr(layer, "groups", 1) == 1
            and layer.data_format == "channels_last"
        )

    layers = [n.layer for n in first.values()]
    plan = plan_layers(layers, rules, params, supported, where="low_rank")
    out: list[_Candidate] = []
    notes: list[LayerFactorization] = []
    for layer in layers:
        if layer.name not in plan.params:
            continue
        p = plan.params[layer.name]
        node = first[id(layer)]
        kernel = layer.get_weights()[0]
        cls = type(layer).__name__
        in_shape, out_shape = graph.shapes[node.inputs[0]], graph.shapes[node.outputs[0]]
        in_sp = int(np.prod([d or 1 for d in in_shape[1:-1]]))
        out_sp = int(np.prod([d or 1 for d in out_shape[1:-1]]))
        if cls == "Dense":
            kind = "dense"
            mid = out_sp
        else:
            kind = "conv1x1" if tuple(layer.kernel_size) == (1, 1) else "conv"
            # after the kh x 1 conv: output height, input width
            mid = int((out_shape[1] or 1) * (in_shape[2] or 1))
        cand = _Candidate(layer, p, kind, kernel, in_sp, out_sp, mid)
        before_p, before_f = cand.before
        if calls[id(layer)] > 1:
            notes.append(LayerFactorization(layer.name, cls, "", (), before_p, before_p, before_f, before_f, 1.0,
                                            "shared layer (called more than once)"))
            continue
        if kernel.size < p.min_params:
            notes.append(LayerFactorization(layer.name, cls, "", (), before_p, before_p, before_f, before_f, 1.0,
                                            f"{kernel.size} weights < min_params {p.min_params}"))
            continue
        if kind == "conv":
            cand.s_spatial = np.linalg.svd(spatial_matrix(kernel).astype(np.float64), compute_uv=False)
            cand.s_in = np.linalg.svd(_unfold(kernel.astype(np.float64), 2), compute_uv=False)
            cand.s_out = np.linalg.svd(_unfold(kernel.astype(np.float64), 3), compute_uv=False)
        else:
            cand.s = np.linalg.svd(kernel.reshape(kernel.shape[-2], kernel.shape[-1]).astype(np.float64), compute_uv=False)
        out.append(cand)
    return out, notes, graph


def _options(c: _Candidate, energy: float | None) -> list[tuple[str, tuple[int, ...], float]]:
    """(method, ranks, energy kept) choices for a candidate at an energy (or its explicit rank)."""
    p = c.params
    m = p.rank_multiple
    if c.kind in ("dense", "conv1x1"):
        cap = len(c.s)
        r = _round_rank(p.rank if p.rank else _rank_for(c.s, energy), m, cap)
        return [("svd", (r,), _energy_of(c.s, r))]
    opts = []
    if p.conv_method in ("auto", "spatial"):
        cap = len(c.s_spatial)
        r = _round_rank(p.rank if p.rank else _rank_for(c.s_spatial, energy), m, cap)
        opts.append(("spatial", (r,), _energy_of(c.s_spatial, r)))
    if p.conv_method in ("auto", "tucker"):
        r1 = _round_rank(p.rank if p.rank else _rank_for(c.s_in, energy), m, len(c.s_in))
        r2 = _round_rank(p.rank if p.rank else _rank_for(c.s_out, energy), m, len(c.s_out))
        # HOSVD bound on the kept energy
        lost = (1 - _energy_of(c.s_in, r1)) + (1 - _energy_of(c.s_out, r2))
        opts.append(("tucker", (r1, r2), max(0.0, 1.0 - lost)))
    return opts


def _decide(c: _Candidate, energy: float | None, objective: str) -> LayerFactorization:
    idx = 0 if objective == "params" else 1
    before = c.before
    best = min(_options(c, energy), key=lambda o: c.cost(o[0], o[1])[idx])
    after = c.cost(best[0], best[1])
    cls = type(c.layer).__name__
    if c.params.only_if_smaller and after[idx] >= before[idx]:
        return LayerFactorization(
            c.layer.name, cls, "", best[1], before[0], before[0], before[1], before[1], 1.0,
            f"{best[0]} at rank {'x'.join(map(str, best[1]))} would not reduce {objective}",
        )
    return LayerFactorization(c.layer.name, cls, best[0], best[1], before[0], after[0], before[1], after[1], best[2])


def plan_factorization(
    model: Any, params: Params | None = None, rules: tuple[LayerRule, ...] = (), **overrides: Any
) -> LowRankPlan:
    """Choose method and rank per Dense / Conv2D layer (nothing is changed yet).

    Args:
        model: tf_keras model (Keras 3 models and paths are bridged).
        params: a `Params`; keyword overrides on top.
        rules: per-layer rules: `skip`, or their own rank / energy / conv_method.
    """
    from tfcompress.surgery.flops import count_flops
    from tfcompress.surgery.graph import as_tf_keras

    p = Params.model_validate({**(params or Params()).model_dump(), **overrides})
    model = as_tf_keras(model)
    cands, notes, graph = _candidates(model, p, rules)
    idx = 0 if p.objective == "params" else 1

    def energy_of(c: _Candidate, shared: float) -> float | None:
        if c.params.rank:
            return None
        return c.params.energy if c.params.energy != p.energy else shared  # a rule's own energy wins

    def decide_all(shared: float) -> list[LayerFactorization]:
        return [_decide(c, energy_of(c, shared), p.objective) for c in cands]

    if p.rank is None and p.reduction is not None and cands:
        table = count_flops(graph)
        total = table.params if p.objective == "params" else table.flops
        target = (1.0 - p.reduction) * total

        def model_cost(decisions: list[LayerFactorization]) -> float:
            saved = sum(
                (d.params_before - d.params_after) if idx == 0 else (d.flops_before - d.flops_after)
                for d in decisions
            )
            return total - saved

        lo, hi = 0.0, 1.0
        best = decide_all(1e-6)
        for _ in range(30):
            mid = (lo + hi) / 2
            decisions = decide_all(mid)
            if model_cost(decisions) <= target:
                lo, best = mid, decisions
            else:
                hi = mid
        decided = best
    else:
        decided = decide_all(p.energy)
    decided = [_exact_tucker_energy(d, cands) for d in decided]
    order = {layer.name: i for i, layer in enumerate(graph.layers())}
    return LowRankPlan(tuple(sorted(decided + notes, key=lambda d: order.get(d.name, 0))), p.objective)


def _exact_tucker_energy(d: LayerFactorization, cands: list[_Candidate]) -> LayerFactorization:
    """Replace the HOSVD bound by the energy the Tucker core really keeps."""
    if d.method != "tucker":
        return d
    c = next(c for c in cands if c.layer.name == d.name)
    _, core, _ = tucker_factors(c.kernel, d.ranks[0], d.ranks[1], c.params.tucker_iters)
    total = float(np.sum(c.kernel.astype(np.float64) ** 2))
    return replace(d, energy=float(np.sum(core.astype(np.float64) ** 2)) / total if total > 0 else 1.0)


# --------------------------------------------------------------------- rebuilding


def factorize(
    model: Any,
    *,
    params: Params | None = None,
    rules: tuple[LayerRule, ...] = (),
    plan: LowRankPlan | None = None,
    **overrides: Any,
) -> Any:
    """Factorize Dense / Conv2D layers; returns a new tf_keras model (uncompiled; fine-tune it).

    Example:
        plan = plan_factorization(model, energy=0.9)    # inspect plan.table()
        small = factorize(model, plan=plan)
        small = factorize(model, reduction=0.5)         # half the params, one energy threshold
    """
    from tfcompress.surgery.graph import Replacement, as_tf_keras, clone_layer, rebuild

    model = as_tf_keras(model)
    p = Params.model_validate({**(params or Params()).model_dump(), **overrides})
    plan = plan or plan_factorization(model, p, rules)
    chosen = {d.name: d for d in plan.factorized}
    iters = p.tucker_iters

    def replace_layer(layer: Any) -> Any:
        d = chosen.get(layer.name)
        if d is None:
            return None
        weights = layer.get_weights()
        kernel, rest = weights[0], weights[1:]
        linear = {"use_bias": False, "activation": "linear"}
        name = layer.name
        if d.method == "svd":
            a, b = svd_factors(kernel.reshape(kernel.shape[-2], kernel.shape[-1]), d.ranks[0])
            if type(layer).__name__ == "Dense":
                first = clone_layer(layer, units=d.ranks[0], name=f"{name}_svd", **linear)
                last = clone_layer(layer)
                return Replacement((first, last), ([a], [b] + rest))
            first = clone_layer(layer, filters=d.ranks[0], name=f"{name}_svd", **linear)
            last = clone_layer(layer, strides=(1, 1), padding="valid", dilation_rate=(1, 1))
            return Replacement((first, last), ([a[None, None]], [b[None, None]] + rest))
        sh, sw = layer.strides
        dh, dw = layer.dilation_rate
        kh, kw = layer.kernel_size
        if d.method == "spatial":
            k1, k2 = spatial_factors(kernel, d.ranks[0])
            first = clone_layer(
                layer, filters=d.ranks[0], kernel_size=(kh, 1), strides=(sh, 1), dilation_rate=(dh, 1),
                name=f"{name}_v", **linear,
            )
            last = clone_layer(layer, kernel_size=(1, kw), strides=(1, sw), dilation_rate=(1, dw))
            return Replacement((first, last), ([k1], [k2] + rest))
        k1, core, k3 = tucker_factors(kernel, d.ranks[0], d.ranks[1], iters)
        pointwise = {"kernel_size": (1, 1), "strides": (1, 1), "dilation_rate": (1, 1), "padding": "valid"}
        first = clone_layer(layer, filters=d.ranks[0], name=f"{name}_in", **pointwise, **linear)
        mid = clone_layer(layer, filters=d.ranks[1], name=f"{name}_core", **linear)
        last = clone_layer(layer, **pointwise)
        return Replacement((first, mid, last), ([k1], [core], [k3] + rest))

    return rebuild(model, replace_layer)


# --------------------------------------------------------------------- registry contract


def apply(model: Any, params: Params, rules: tuple[LayerRule, ...] = (), ctx: StageContext = StageContext()) -> Any:
    """Recipe stage: factorize (data is not needed)."""
    return factorize(model, params=params, rules=rules)


# Nothing to strip (the factorized model is an ordinary model), no callbacks.
TECHNIQUE = Technique(
    name="low_rank",
    summary="SVD / Tucker-2 factorization (graph surgery)",
    params_type=Params,
    apply=apply,
    capabilities=frozenset({Capability.CHANGES_STRUCTURE}),
)
