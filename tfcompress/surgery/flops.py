"""FLOP and parameter counts per layer and in total, for reports and benchmarks.

Counted for one sample (batch 1), on the traced graph (nested models
inlined; a shared layer's parameters count once, its FLOPs at every call):

    Conv / Dense / Depthwise / Separable / Transpose   MACs = multiply-adds of the kernel;
                                                       FLOPs = 2 x MACs (+1 per output for a bias)
    BatchNormalization, Normalization                  2 per element (scale and shift)
    activations, merges (Add, Multiply, ...)           1 per output element (per input for merges)
    pooling                                            1 per window element read
    reshapes, padding, dropout, concat, ...            0

BatchNormalization is usually folded into the convolution by the converter;
its FLOPs are listed but `macs` (what runtimes spend their time on) has none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["FlopRow", "FlopTable", "cost_change", "count_flops"]


@dataclass(frozen=True)
class FlopRow:
    """One layer: name, class, output shape of its first call, params, MACs and FLOPs over all its calls."""

    name: str
    class_name: str
    output_shape: tuple
    params: int
    macs: int
    flops: int
    calls: int = 1


@dataclass(frozen=True)
class FlopTable:
    """Per-layer rows and totals (`params` counts every weight, trainable or not, once)."""

    rows: tuple[FlopRow, ...]

    @property
    def params(self) -> int:
        return sum(r.params for r in self.rows)

    @property
    def macs(self) -> int:
        return sum(r.macs for r in self.rows)

    @property
    def flops(self) -> int:
        return sum(r.flops for r in self.rows)

    def row(self, name: str) -> FlopRow:
        return next(r for r in self.rows if r.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "params": self.params,
            "macs": self.macs,
            "flops": self.flops,
            "layers": [
                {
                    "name": r.name, "class": r.class_name, "output_shape": list(r.output_shape),
                    "params": r.params, "macs": r.macs, "flops": r.flops, "calls": r.calls,
                }
                for r in self.rows
            ],
        }

    def format(self, skip_empty: bool = True) -> str:
        """A text table (layers with neither params nor FLOPs left out when `skip_empty`)."""
        head = f"{'layer':32s} {'class':22s} {'output':>18s} {'params':>10s} {'MACs':>13s} {'FLOPs':>13s}"
        lines = [head, "-" * len(head)]
        for r in self.rows:
            if skip_empty and not (r.params or r.flops):
                continue
            shape = "x".join(str(d) for d in r.output_shape[1:])
            lines.append(
                f"{r.name[:32]:32s} {r.class_name[:22]:22s} {shape:>18s} {r.params:10,d} {r.macs:13,d} {r.flops:13,d}"
            )
        lines.append("-" * len(head))
        lines.append(f"{'total':32s} {'':22s} {'':>18s} {self.params:10,d} {self.macs:13,d} {self.flops:13,d}")
        return "\n".join(lines)


def _prod(shape: Any) -> int:
    return int(np.prod([d or 1 for d in shape], dtype=np.int64))


_ACTIVATIONS = frozenset(
    {"Activation", "ReLU", "LeakyReLU", "ELU", "PReLU", "ThresholdedReLU", "Softmax", "Rescaling"}
)
_MERGES = frozenset({"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"})


def _node_cost(cls: str, layer: Any, in_shapes: list[tuple], out_shape: tuple) -> tuple[int, int]:
    """(MACs, FLOPs) of one call, batch 1."""
    out_el = _prod(out_shape[1:])
    bias = bool(getattr(layer, "use_bias", False))
    if cls == "Dense":
        cin = in_shapes[0][-1]
        macs = _prod(out_shape[1:]) * cin
        return macs, 2 * macs + (out_el if bias else 0)
    if cls in ("Conv1D", "Conv2D", "Conv3D"):
        k = _prod(layer.kernel_size)
        macs = out_el * k * (in_shapes[0][-1] // getattr(layer, "groups", 1))
        return macs, 2 * macs + (out_el if bias else 0)
    if cls in ("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"):
        macs = _prod(in_shapes[0][1:]) * _prod(layer.kernel_size) * out_shape[-1]
        return macs, 2 * macs + (out_el if bias else 0)
    if cls in ("DepthwiseConv1D", "DepthwiseConv2D"):
        macs = out_el * _prod(layer.kernel_size)
        return macs, 2 * macs + (out_el if bias else 0)
    if cls in ("SeparableConv1D", "SeparableConv2D"):
        cin = in_shapes[0][-1]
        mult = layer.depth_multiplier
        spatial = _prod(out_shape[1:-1])
        macs = spatial * cin * mult * _prod(layer.kernel_size) + spatial * cin * mult * out_shape[-1]
        return macs, 2 * macs + (out_el if bias else 0)
    if cls in ("BatchNormalization", "Normalization", "LayerNormalization"):
        return 0, 2 * out_el
    if cls in _ACTIVATIONS:
        return 0, out_el
    if cls in _MERGES:
        return 0, out_el * max(len(in_shapes) - 1, 1)
    if "Pooling" in cls:
        if cls.startswith("Global"):
            return 0, _prod(in_shapes[0][1:])
        return 0, out_el * _prod(layer.pool_size)
    return 0, 0


def count_flops(model: Any) -> FlopTable:
    """Per-layer parameters, MACs and FLOPs of a model (batch 1), in call order.

    Args:
        model: tf_keras model (Keras 3 models and paths are bridged), or its `LayerGraph`.
    """
    from tfcompress.surgery.graph import LayerGraph, trace

    graph = model if isinstance(model, LayerGraph) else trace(model)
    rows: dict[int, FlopRow] = {}
    for node in graph.nodes:
        in_shapes = [graph.shapes[k] for k in node.inputs]
        out_shape = graph.shapes[node.outputs[0]] if node.outputs else ()
        macs, flops = _node_cost(node.class_name, node.layer, in_shapes, out_shape)
        prev = rows.get(id(node.layer))
        if prev is None:
            rows[id(node.layer)] = FlopRow(
                node.name, node.class_name, out_shape, int(node.layer.count_params()), int(macs), int(flops)
            )
        else:
            rows[id(node.layer)] = FlopRow(
                prev.name, prev.class_name, prev.output_shape, prev.params,
                prev.macs + int(macs), prev.flops + int(flops), prev.calls + 1,
            )
    return FlopTable(tuple(rows.values()))


def cost_change(before: Any, after: Any) -> dict[str, int]:
    """Params, MACs and FLOPs of two models (e.g. before and after a stage), for reports."""
    a, b = count_flops(before), count_flops(after)
    return {"params_before": a.params, "params_after": b.params, "macs_before": a.macs, "macs_after": b.macs,
            "flops_before": a.flops, "flops_after": b.flops}
