"""What a .tflite file holds, as frozen values: tensors, operators, subgraphs, the model.

`tflite_file.read_tflite` builds a `TfliteModel`; this module only describes
one (numpy only, no TensorFlow, no flatbuffer schema).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

__all__ = [
    "BOUNDARY_OPS",
    "FLOAT_DTYPES",
    "IODetail",
    "OpDtypeRow",
    "OperatorInfo",
    "SubgraphInfo",
    "TensorInfo",
    "TfliteModel",
]

FLOAT_DTYPES: frozenset[str] = frozenset(
    {"float16", "float32", "float64", "bfloat16", "float8_e4m3fn", "float8_e5m2"}
)
"""Tensor dtypes that count as floating point for `OperatorInfo.computes_in_float`."""

BOUNDARY_OPS: frozenset[str] = frozenset({"QUANTIZE", "DEQUANTIZE"})
"""Ops that convert between float and integer; never counted as float compute."""


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a subgraph.

    `nbytes` is the size of its constant data (0 for activations and
    variables); `scales` / `zero_points` are empty for unquantized tensors and
    have one entry per channel along `quantized_dimension` when per-channel.
    """

    index: int
    subgraph: int
    name: str
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...]
    dtype: str
    scales: tuple[float, ...]
    zero_points: tuple[int, ...]
    quantized_dimension: int
    buffer: int
    nbytes: int
    is_constant: bool
    is_variable: bool
    sparsity: bool

    @property
    def is_quantized(self) -> bool:
        """Whether the tensor carries quantization scales."""
        return bool(self.scales)

    @property
    def per_channel(self) -> bool:
        """Whether it is quantized with more than one scale."""
        return len(self.scales) > 1

    @property
    def num_elements(self) -> int:
        """Number of elements (1 for a scalar; unknown -1 dims count as 1)."""
        return int(np.prod([max(d, 1) for d in self.shape], dtype=np.int64))


@dataclass(frozen=True)
class OperatorInfo:
    """One operator, with the dtypes of its tensors resolved.

    `inputs` holds -1 for an absent optional input; its `input_dtypes` entry
    is "" and its `constant_inputs` entry False.
    """

    index: int
    subgraph: int
    op_type: str
    version: int
    is_custom: bool
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    input_dtypes: tuple[str, ...]
    output_dtypes: tuple[str, ...]
    constant_inputs: tuple[bool, ...]

    @property
    def activation_input_dtypes(self) -> tuple[str, ...]:
        """Dtypes of the present, non-constant inputs (data flowing in)."""
        return tuple(
            d for i, d, const in zip(self.inputs, self.input_dtypes, self.constant_inputs) if i >= 0 and not const
        )

    @property
    def compute_dtype(self) -> str:
        """The dtype the op computes in.

        Defined as the dtype of the first present non-constant input; for an op
        without one (all inputs constant or absent) the dtype of the first
        output; "" for an op with neither. So QUANTIZE of an activation gives
        the dtype it reads (e.g. float32), while DEQUANTIZE of a constant
        float16 / int8 weight, having no non-constant input, gives float32.
        """
        acts = self.activation_input_dtypes
        if acts:
            return acts[0]
        return self.output_dtypes[0] if self.output_dtypes else ""

    @property
    def computes_in_float(self) -> bool:
        """True if a non-constant input or an output is floating point.

        QUANTIZE and DEQUANTIZE are never float ops: they are the boundary
        between float and integer parts. Constant inputs do not count, so a
        float16-weight DEQUANTIZE feeding an int8 op does not make it float,
        while a dynamic-range FULLY_CONNECTED (float activations, int8
        weights) is float. See `FLOAT_DTYPES`.
        """
        if self.op_type in BOUNDARY_OPS:
            return False
        return any(d in FLOAT_DTYPES for d in self.activation_input_dtypes + self.output_dtypes)


@dataclass(frozen=True)
class IODetail:
    """A model input or output, as the interpreter's get_input_details() reports it.

    `scale` / `zero_point` are the per-tensor parameters (0.0 / 0 when the
    tensor is not quantized); all of them are in `scales` / `zero_points`.
    """

    name: str
    index: int
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...]
    dtype: str
    scale: float
    zero_point: int
    scales: tuple[float, ...]
    zero_points: tuple[int, ...]
    quantized_dimension: int


class OpDtypeRow(NamedTuple):
    """Ops of one type with the same tensor dtypes (unpacks as a 4-tuple)."""

    op_type: str
    input_dtypes: tuple[str, ...]
    output_dtypes: tuple[str, ...]
    count: int


@dataclass(frozen=True)
class SubgraphInfo:
    """One subgraph: its tensors, operators and input / output tensor indices."""

    index: int
    name: str
    tensors: tuple[TensorInfo, ...]
    operators: tuple[OperatorInfo, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


@dataclass(frozen=True)
class TfliteModel:
    """Everything `read_tflite` reads from a .tflite file.

    `constant_bytes` counts each buffer that a constant tensor uses once
    (tensors may share a buffer); metadata buffers are not included.
    """

    file_size: int
    version: int
    description: str
    subgraphs: tuple[SubgraphInfo, ...]
    buffer_count: int
    constant_bytes: int
    signature_names: tuple[str, ...]
    metadata_names: tuple[str, ...]

    @property
    def subgraph_count(self) -> int:
        """Number of subgraphs (more than one with control flow)."""
        return len(self.subgraphs)

    @property
    def tensors(self) -> tuple[TensorInfo, ...]:
        """Tensors of the main subgraph, by index."""
        return self.subgraphs[0].tensors

    @property
    def inputs(self) -> tuple[int, ...]:
        """Input tensor indices of the main subgraph."""
        return self.subgraphs[0].inputs

    @property
    def outputs(self) -> tuple[int, ...]:
        """Output tensor indices of the main subgraph."""
        return self.subgraphs[0].outputs

    @property
    def operators(self) -> tuple[OperatorInfo, ...]:
        """Operators of every subgraph, subgraph 0 first, in execution order."""
        return tuple(op for sg in self.subgraphs for op in sg.operators)

    def input_details(self) -> list[IODetail]:
        """The main subgraph's inputs, in the interpreter's order."""
        return [_io_detail(self.tensors[i]) for i in self.inputs]

    def output_details(self) -> list[IODetail]:
        """The main subgraph's outputs, in the interpreter's order."""
        return [_io_detail(self.tensors[i]) for i in self.outputs]

    def op_counts(self) -> dict[str, int]:
        """{op_type: count} over all subgraphs, most frequent first."""
        counts = Counter(op.op_type for op in self.operators)
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def op_dtype_table(self) -> list[OpDtypeRow]:
        """Ops grouped by type and the dtypes of their present inputs / outputs.

        Input dtypes include constant inputs (weights, biases), in input order;
        rows are sorted by op type, then dtypes.
        """
        counts = Counter(
            (op.op_type, tuple(d for i, d in zip(op.inputs, op.input_dtypes) if i >= 0), op.output_dtypes)
            for op in self.operators
        )
        return [OpDtypeRow(t, ins, outs, n) for (t, ins, outs), n in sorted(counts.items())]

    def float_ops(self) -> list[OperatorInfo]:
        """Operators that compute in floating point (see `OperatorInfo.computes_in_float`)."""
        return [op for op in self.operators if op.computes_in_float]

    def constant_tensors(self) -> list[TensorInfo]:
        """Constant tensors of every subgraph."""
        return [t for sg in self.subgraphs for t in sg.tensors if t.is_constant]

    def weight_bytes_by_dtype(self) -> dict[str, int]:
        """Constant-data bytes per dtype, largest first (a shared buffer counts once)."""
        by_dtype: Counter[str] = Counter()
        seen: set[int] = set()
        for t in self.constant_tensors():
            if t.buffer not in seen:
                seen.add(t.buffer)
                by_dtype[t.dtype] += t.nbytes
        return dict(sorted(by_dtype.items(), key=lambda kv: (-kv[1], kv[0])))


def _io_detail(t: TensorInfo) -> IODetail:
    per_tensor = len(t.scales) == 1
    return IODetail(
        name=t.name,
        index=t.index,
        shape=t.shape,
        shape_signature=t.shape_signature,
        dtype=t.dtype,
        scale=t.scales[0] if per_tensor else 0.0,
        zero_point=t.zero_points[0] if per_tensor and t.zero_points else 0,
        scales=t.scales,
        zero_points=t.zero_points,
        quantized_dimension=t.quantized_dimension,
    )
