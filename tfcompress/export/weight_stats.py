"""Per-weight sparsity and unique-value counts, read back from a .tflite file.

The proof that pruning and clustering survived conversion: for every weight
tensor of a .tflite model, the fraction of its values that are zero and how
many distinct values it holds. Like `tflite_file`, this module uses only
numpy and the flatbuffer schema, never TensorFlow.

    for s in weight_stats("model.tflite"):
        print(s.tensor, s.op_type, s.encoding, f"{s.zeros:.0%}", s.unique_per_channel)
    summary(weight_stats("model.tflite"))  # {"zeros": 0.8, "max_unique_per_channel": 8, ...}
    for s, values in weight_values("model.tflite"):  # the same, with each tensor's dense values
        ...

What counts as a weight:

* the weight input of an op that has one (`WEIGHT_SLOTS`: input 1 of
  CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, TRANSPOSE_CONV, ...), at any size;
* any other constant float / int8 / uint8 / int4 tensor with at least
  `min_elements` elements that is not a bias (`BIAS_SLOTS`).

int32 / int64 / bool / string constants (biases of int8 ops, shapes, axes)
never count. A constant that reaches its op through DENSIFY (sparse weights of
ops that cannot read them) or DEQUANTIZE (float16 and dynamic-range weights)
is judged, and named, by the op after those.

Values are the stored ones: int8 codes for quantized tensors (a code is zero
when it equals its channel's zero point), the floats themselves otherwise
(zero means exactly 0.0). Sparse-encoded tensors (TFLite's SparsityParameters:
traversal order, block map, DENSE / SPARSE_CSR dimensions) are decoded back to
dense first, as the runtime's format converter does, filling what is not
stored with 0 (`densify`, in `tflite_sparse`; `SparseDim` and `densify` are
importable from here too).

Unique values are counted twice: `unique_values` over the whole tensor and
`unique_per_channel`, the largest count within one channel of a per-channel
quantized tensor (equal to `unique_values` otherwise). A layer clustered to 8
float values and quantized per channel has at most 8 int8 codes in each
channel, but each channel scales them differently, so the whole tensor may
hold many more: `unique_per_channel` is the number to check clustering with.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tfcompress.errors import ModelLoadError
from tfcompress.export.tflite_file import (
    FLOAT_DTYPES,
    OperatorInfo,
    PathOrBytes,
    TensorInfo,
    read_tflite,
    read_tflite_bytes,
    schema,
)
from tfcompress.export.tflite_sparse import SparseDim, densify, read_sparsity, stored_count

__all__ = [
    "WEIGHT_SLOTS",
    "BIAS_SLOTS",
    "PASS_THROUGH_OPS",
    "WeightStat",
    "SparseDim",
    "weight_stats",
    "weight_values",
    "summary",
    "densify",
]

_LSTM_WEIGHTS = (1, 2, 3, 4, 5, 6, 7, 8, 16)
_LSTM_BIASES = frozenset({12, 13, 14, 15, 17})

WEIGHT_SLOTS: dict[str, frozenset[int]] = {
    "CONV_2D": frozenset({1}),
    "DEPTHWISE_CONV_2D": frozenset({1}),
    "FULLY_CONNECTED": frozenset({1}),
    "TRANSPOSE_CONV": frozenset({1}),  # inputs: output_shape, weights, input, bias
    "CONV_3D": frozenset({1}),
    "CONV_3D_TRANSPOSE": frozenset({1}),  # inputs: output_shape, filter, input
    "BATCH_MATMUL": frozenset({1}),
    "EMBEDDING_LOOKUP": frozenset({1}),  # inputs: ids, table
    "LSTM": frozenset(_LSTM_WEIGHTS),
    "UNIDIRECTIONAL_SEQUENCE_LSTM": frozenset(_LSTM_WEIGHTS),
}
"""Op type -> input positions that hold its weights (always reported, whatever their size)."""

BIAS_SLOTS: dict[str, frozenset[int]] = {
    "CONV_2D": frozenset({2}),
    "DEPTHWISE_CONV_2D": frozenset({2}),
    "FULLY_CONNECTED": frozenset({2}),
    "TRANSPOSE_CONV": frozenset({3}),
    "CONV_3D": frozenset({2}),
    "CONV_3D_TRANSPOSE": frozenset({3}),
    "LSTM": _LSTM_BIASES,
    "UNIDIRECTIONAL_SEQUENCE_LSTM": _LSTM_BIASES,
}
"""Op type -> input positions that hold biases (never reported)."""

PASS_THROUGH_OPS: frozenset[str] = frozenset({"DENSIFY", "DEQUANTIZE"})
"""Ops between a constant and the op that uses it; the weight is attributed to that op."""

# Stored dtype -> little-endian numpy dtype, for the dtypes read directly.
_NUMPY_DTYPES: dict[str, str] = {
    "float32": "<f4",
    "float16": "<f2",
    "float64": "<f8",
    "int8": "i1",
    "uint8": "u1",
    "int16": "<i2",
    "uint16": "<u2",
}
_PACKED_4BIT: frozenset[str] = frozenset({"int4", "uint4"})  # two values a byte, low nibble first
_DECODABLE: frozenset[str] = frozenset(_NUMPY_DTYPES) | _PACKED_4BIT | {"bfloat16"}
# Dtypes a constant outside a weight slot may have to count as a weight.
_GENERIC_WEIGHT_DTYPES: frozenset[str] = (FLOAT_DTYPES & _DECODABLE) | {"int8", "uint8", "int4", "uint4"}



# ------------------------------------------------------------------ results


@dataclass(frozen=True)
class WeightStat:
    """Sparsity and unique values of one weight tensor.

    Attributes:
        tensor: the tensor's name.
        op_type: the op that uses it (through DENSIFY / DEQUANTIZE), "" if none.
        shape: its dense shape.
        dtype: its stored dtype ("int8", "float32", ...).
        elements: dense element count.
        stored_bytes: bytes of its buffer in the file (for a sparse tensor the
            stored values only; the index arrays are `index_bytes`).
        encoding: "dense", or "sparse" when it has SparsityParameters.
        zeros: fraction of its (dense) values that are zero: the code equals
            its channel's zero point when quantized, exactly 0.0 for floats.
        unique_values: distinct stored values in the whole tensor.
        unique_per_channel: the most distinct values in one channel (along the
            quantized dimension) of a per-channel quantized tensor;
            `unique_values` for any other tensor (and when not given).
        channels: number of quantization channels (1 unless per-channel).
        index_bytes: bytes of the sparse index arrays (segments, indices) kept
            in the flatbuffer outside the buffer; 0 for dense tensors.
        subgraph, index: where the tensor is (index inside its subgraph).
        buffer: its buffer index (tensors may share one).
        op_index: index of the op named in `op_type` in the subgraph, -1 if none.
    """

    tensor: str
    op_type: str
    shape: tuple[int, ...]
    dtype: str
    elements: int
    stored_bytes: int
    encoding: str
    zeros: float
    unique_values: int
    unique_per_channel: int = 0
    channels: int = 1
    index_bytes: int = 0
    subgraph: int = 0
    index: int = -1
    buffer: int = -1
    op_index: int = -1

    def __post_init__(self) -> None:
        if self.unique_per_channel <= 0:  # not given: one channel
            object.__setattr__(self, "unique_per_channel", self.unique_values)

    @property
    def dense_bytes(self) -> int:
        """Bytes the tensor takes stored dense (4-bit types pack two values a byte)."""
        return _dense_nbytes(self.dtype, self.elements)

    @property
    def zero_count(self) -> int:
        """Number of zero values."""
        return int(round(self.zeros * self.elements))


# ------------------------------------------------------------------ API


def weight_stats(tflite: PathOrBytes, min_elements: int = 64) -> list[WeightStat]:
    """Sparsity and unique values of each weight tensor of a .tflite model.

    Args:
        tflite: a .tflite path, or its bytes.
        min_elements: the fewest elements a constant outside a weight slot
            (see the module docstring) needs to count as a weight.

    Returns:
        One `WeightStat` a weight tensor, by subgraph, then in the order of the
        ops using them (unused constants last).

    Raises:
        ModelLoadError: the file is not a readable .tflite model, or a sparse
            tensor's metadata does not describe its data.
    """
    return [stat for stat, _ in _weights(tflite, min_elements)]


def weight_values(tflite: PathOrBytes, min_elements: int = 64) -> list[tuple[WeightStat, np.ndarray]]:
    """`weight_stats` with each tensor's dense values (sparse tensors decoded).

    The arrays hold stored values: int8 codes for quantized tensors (int4
    unpacked to int8, bfloat16 widened to float32), in the tensor's shape.
    """
    return list(_weights(tflite, min_elements))


def summary(stats: Sequence[WeightStat]) -> dict[str, Any]:
    """Totals over `stats`; a buffer shared by several tensors counts once.

    Returns:
        tensors, sparse_tensors: how many tensors, how many sparse-encoded;
        elements, zero_elements, zeros: dense element count, zero count, and
        their ratio (the zero fraction weighted by elements; 0.0 when empty);
        max_unique_values, max_unique_per_channel: the largest counts;
        dense_bytes: bytes the weights take stored dense;
        stored_bytes, index_bytes: buffer bytes and sparse index bytes in the file;
        compression: dense_bytes / (stored_bytes + index_bytes) (1.0 when empty).
    """
    seen: set[tuple[int, int]] = set()
    unique = []
    for s in stats:
        key = (s.subgraph, s.buffer)
        if s.buffer >= 0 and key in seen:
            continue
        seen.add(key)
        unique.append(s)
    elements = sum(s.elements for s in unique)
    zero_elements = sum(s.zero_count for s in unique)
    dense_bytes = sum(s.dense_bytes for s in unique)
    stored = sum(s.stored_bytes for s in unique)
    index = sum(s.index_bytes for s in unique)
    return {
        "tensors": len(stats),
        "sparse_tensors": sum(s.encoding == "sparse" for s in stats),
        "elements": elements,
        "zero_elements": zero_elements,
        "zeros": zero_elements / elements if elements else 0.0,
        "max_unique_values": max((s.unique_values for s in stats), default=0),
        "max_unique_per_channel": max((s.unique_per_channel for s in stats), default=0),
        "dense_bytes": dense_bytes,
        "stored_bytes": stored,
        "index_bytes": index,
        "compression": dense_bytes / (stored + index) if stored + index else 1.0,
    }


# ------------------------------------------------------------------ internals


def _dense_nbytes(dtype: str, elements: int) -> int:
    if dtype in _PACKED_4BIT:
        return (elements + 1) // 2
    if dtype == "bfloat16":
        return 2 * elements
    if dtype in _NUMPY_DTYPES:
        return np.dtype(_NUMPY_DTYPES[dtype]).itemsize * elements
    return 0


def _weights(tflite: PathOrBytes, min_elements: int) -> Iterator[tuple[WeightStat, np.ndarray]]:
    data = read_tflite_bytes(tflite)
    label = "model bytes" if isinstance(tflite, (bytes, bytearray, memoryview)) else str(tflite)
    model = read_tflite(data, label=label)
    root = schema.Model.GetRootAs(data, 0)
    for sg in model.subgraphs:
        fb_sg = root.Subgraphs(sg.index)
        uses = _uses(sg.operators)
        picked = []
        for t in sg.tensors:
            if t.is_variable or t.buffer == 0 or not (t.is_constant or t.sparsity):
                continue
            chosen = _classify(uses, t, min_elements)
            if chosen is not None:
                picked.append((chosen[1] if chosen[1] >= 0 else len(sg.operators), t.index, t, chosen[0]))
        for op_index, _, t, op in sorted(picked, key=lambda p: p[:2]):
            try:
                yield _stat(data, root, fb_sg.Tensors(t.index), t, op, op_index)
            except ValueError as exc:
                raise ModelLoadError(
                    f"{label}: cannot decode weight tensor {t.index} ('{t.name}') of subgraph {sg.index}: {exc}",
                    "re-export the model with the TFLite converter",
                ) from exc


_Uses = dict[int, list[tuple[OperatorInfo, int]]]


def _uses(operators: Sequence[OperatorInfo]) -> _Uses:
    """tensor index -> (op, input position) of each direct use."""
    uses: _Uses = {}
    for op in operators:
        for pos, i in enumerate(op.inputs):
            if i >= 0:
                uses.setdefault(i, []).append((op, pos))
    return uses


def _consumers(uses: _Uses, tensor: int, depth: int = 0) -> list[tuple[OperatorInfo, int]]:
    """(op, input position) of each use of `tensor`, looking through DENSIFY / DEQUANTIZE."""
    found: list[tuple[OperatorInfo, int]] = []
    for op, pos in uses.get(tensor, ()):
        if op.op_type in PASS_THROUGH_OPS and op.outputs and depth < 8:
            found.extend(_consumers(uses, op.outputs[0], depth + 1) or [(op, pos)])
        else:
            found.append((op, pos))
    return found


def _classify(uses: _Uses, t: TensorInfo, min_elements: int) -> tuple[str, int] | None:
    """(op type, op index) when `t` is a weight, None when it is not."""
    if t.dtype not in _DECODABLE:
        return None
    consumers = _consumers(uses, t.index)
    for op, pos in consumers:
        if pos in WEIGHT_SLOTS.get(op.op_type, ()):
            return op.op_type, op.index
    if any(pos in BIAS_SLOTS.get(op.op_type, ()) for op, pos in consumers):
        return None
    if t.dtype not in _GENERIC_WEIGHT_DTYPES or t.num_elements < min_elements:
        return None
    return (consumers[0][0].op_type, consumers[0][0].index) if consumers else ("", -1)


def _buffer_bytes(data: bytes, root: Any, index: int) -> np.ndarray:
    """A buffer's bytes as a uint8 array: inline, or appended after the flatbuffer (models over 2 GB)."""
    buf = root.Buffers(index)
    offset, size = int(buf.Offset()), int(buf.Size())
    if offset > 1:
        return np.frombuffer(data, dtype=np.uint8, count=size, offset=offset)
    if buf.DataLength() == 0:
        return np.zeros(0, dtype=np.uint8)
    return buf.DataAsNumpy()


def _decode_values(raw: np.ndarray, dtype: str, count: int | None) -> np.ndarray:
    """Stored bytes -> a flat array of values (`count` trims 4-bit padding)."""
    if dtype in _PACKED_4BIT:
        low, high = raw & 0x0F, raw >> 4
        vals = np.stack([low, high], axis=-1).ravel().astype(np.int8)
        if dtype == "int4":
            vals = np.where(vals > 7, vals - 16, vals).astype(np.int8)
        return vals[:count] if count is not None else vals
    if dtype == "bfloat16":
        if raw.size % 2:
            raise ValueError(f"a bfloat16 buffer of {raw.size} bytes")
        return (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
    np_dtype = np.dtype(_NUMPY_DTYPES[dtype])
    if raw.size % np_dtype.itemsize:
        raise ValueError(f"a {dtype} buffer of {raw.size} bytes")
    return raw.view(np_dtype)


def _stat(
    data: bytes, root: Any, fb_tensor: Any, t: TensorInfo, op_type: str, op_index: int
) -> tuple[WeightStat, np.ndarray]:
    raw = _buffer_bytes(data, root, t.buffer)
    shape = tuple(int(d) for d in t.shape)
    elements = t.num_elements
    index_bytes = 0
    if t.sparsity:
        order, block_map, dims, index_bytes = read_sparsity(fb_tensor)
        values = _decode_values(raw, t.dtype, None)
        if t.dtype in _PACKED_4BIT:  # the stored count is what the metadata lists; padding dropped
            values = values[: stored_count(dims)]
        dense = densify(values, shape, order, block_map, dims)
    else:
        values = _decode_values(raw, t.dtype, elements)
        if values.size != elements:
            raise ValueError(f"its buffer holds {values.size} values for shape {shape} ({elements})")
        dense = values.reshape(shape)

    channels = len(t.scales) if t.per_channel else 1
    qdim = t.quantized_dimension
    per_channel = channels > 1 and 0 <= qdim < len(shape) and shape[qdim] == channels
    if not per_channel:
        channels = 1
    zeros = _zero_fraction(dense, t, per_channel)
    unique = int(np.unique(dense).size) if dense.size else 0
    if per_channel and dense.size:
        rows = np.sort(np.moveaxis(dense, qdim, 0).reshape(channels, -1), axis=1)
        per_ch = int((1 + (rows[:, 1:] != rows[:, :-1]).sum(axis=1)).max())
    else:
        per_ch = unique
    stat = WeightStat(
        tensor=t.name,
        op_type=op_type,
        shape=shape,
        dtype=t.dtype,
        elements=elements,
        stored_bytes=int(raw.size),
        encoding="sparse" if t.sparsity else "dense",
        zeros=zeros,
        unique_values=unique,
        unique_per_channel=per_ch,
        channels=channels,
        index_bytes=int(index_bytes),
        subgraph=t.subgraph,
        index=t.index,
        buffer=t.buffer,
        op_index=op_index,
    )
    return stat, dense


def _zero_fraction(dense: np.ndarray, t: TensorInfo, per_channel: bool) -> float:
    if not dense.size:
        return 0.0
    if t.dtype in FLOAT_DTYPES or not t.is_quantized:
        return float(np.count_nonzero(dense == 0)) / dense.size
    zp = np.asarray(t.zero_points or (0,), dtype=np.int64)
    if per_channel and zp.size == dense.shape[t.quantized_dimension]:
        shape = [1] * dense.ndim
        shape[t.quantized_dimension] = zp.size
        zp = zp.reshape(shape)
    else:
        zp = zp[:1].reshape(())
    return float(np.count_nonzero(dense.astype(np.int64) == zp)) / dense.size
