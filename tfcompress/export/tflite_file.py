"""Read a .tflite flatbuffer without TensorFlow.

Only numpy and the generated flatbuffer schema are used: the copy shipped in
`ai_edge_litert.schema_py_generated`, or TensorFlow's copy when LiteRT is not
installed. This module never imports `tfcompress.keras_compat`, so device-side
tools can read models on a machine without TensorFlow.

    tfl = read_tflite("model.tflite")
    tfl.input_details()        # name, shape, dtype, scale, zero_point
    tfl.op_counts()            # {"CONV_2D": 3, ...}
    tfl.float_ops()            # ops that still compute in floating point

Indexing follows the interpreter: tensor and operator indices are positions
inside their subgraph, and `tensors` / `inputs` / `outputs` describe the main
subgraph (0). `operators` lists the operators of every subgraph (subgraph 0
first); each carries its `subgraph`. Every subgraph is in `subgraphs`.

The result types (`TfliteModel`, `TensorInfo`, ...) live in `tflite_model` and
the op -> Keras layer mapping in `op_layers`; both are importable from here too.
`schema` is the generated flatbuffer schema module in use, for readers of
parts not parsed here (op options, sparsity parameters).
"""

from __future__ import annotations

import importlib
import os
import struct
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np

from tfcompress.errors import ModelLoadError
from tfcompress.export.input_files import MAX_TFLITE_BYTES, read_input
from tfcompress.export.op_layers import layer_names_for_ops
from tfcompress.export.tflite_model import (
    BOUNDARY_OPS,
    FLOAT_DTYPES,
    IODetail,
    OpDtypeRow,
    OperatorInfo,
    SubgraphInfo,
    TensorInfo,
    TfliteModel,
)

__all__ = [
    "PathOrBytes",
    "FLOAT_DTYPES",
    "BOUNDARY_OPS",
    "TensorInfo",
    "OperatorInfo",
    "IODetail",
    "OpDtypeRow",
    "SubgraphInfo",
    "TfliteModel",
    "read_tflite",
    "read_tflite_bytes",
    "layer_names_for_ops",
    "schema",
]

PathOrBytes = str | os.PathLike[str] | bytes | bytearray | memoryview

# Where the generated schema lives, in order of preference (the first needs no TensorFlow).
_SCHEMA_MODULES: tuple[str, ...] = (
    "ai_edge_litert.schema_py_generated",
    "tensorflow.lite.python.schema_py_generated",
)


def _load_schema() -> ModuleType:
    """The first importable flatbuffer schema module of `_SCHEMA_MODULES`."""
    for name in _SCHEMA_MODULES:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ModelLoadError(
        "cannot read .tflite files: no TFLite flatbuffer schema is installed",
        "pip install ai-edge-litert",
    )


schema = _load_schema()
_schema = schema  # the former name; hardware/ still reads it

_FILE_IDENTIFIER = b"TFL3"

# Enum value -> name, straight from the schema: TensorType.INT8 -> "int8" (numpy's spelling,
# plus "string", "resource", "int4", "bfloat16", ... where numpy has none), BuiltinOperator -> "CONV_2D".
_DTYPE_NAMES: dict[int, str] = {v: k.lower() for k, v in vars(schema.TensorType).items() if k.isupper()}
_OP_NAMES: dict[int, str] = {v: k for k, v in vars(schema.BuiltinOperator).items() if k.isupper()}
_CUSTOM_OP = schema.BuiltinOperator.CUSTOM

# Leading bytes of files people mistake for .tflite models -> what they are.
_KNOWN_MAGIC: dict[bytes, str] = {
    b"\x89HDF\r\n\x1a\n": "a Keras HDF5 (.h5) file",
    b"PK\x03\x04": "a zip archive (a .keras model?)",
    b"\x1f\x8b": "a gzip archive (decompress it first)",
    b"\x08\x01\x12": "a protobuf file (a SavedModel's saved_model.pb?)",
}


def read_tflite_bytes(source: PathOrBytes) -> bytes:
    """The raw bytes of a .tflite file (or `source` itself when it is bytes).

    Only a regular file (links resolved) of at most `MAX_TFLITE_BYTES` is read
    (`input_files.read_input`): a FIFO or a link to a device is refused, not read.

    Raises:
        ModelLoadError: the path is missing, a directory, not a regular file,
            too large, or unreadable.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    return read_input(source, what=".tflite file", cap=MAX_TFLITE_BYTES,
                      hint="pass the .tflite file (convert a SavedModel or Keras model first)")


def read_tflite(source: PathOrBytes, *, label: str | None = None) -> TfliteModel:
    """Parse a .tflite model from a path or from its bytes.

    Args:
        source: a file path, or the flatbuffer bytes.
        label: how error messages name the model (default: the path, or "model bytes").

    Raises:
        ModelLoadError: the file is missing, empty, truncated, corrupt, or not a
            TFLite flatbuffer.
    """
    data = read_tflite_bytes(source)
    if label is None:
        label = "model bytes" if isinstance(source, (bytes, bytearray, memoryview)) else str(source)
    _check_header(data, label)
    try:
        return _parse(data)
    except _CorruptModel as exc:
        raise ModelLoadError(f"{label} is a corrupt TFLite model: {exc}", _REEXPORT_HINT) from exc
    except (struct.error, IndexError, ValueError, TypeError, OverflowError) as exc:
        raise ModelLoadError(
            f"{label} is truncated or corrupt: the flatbuffer cannot be parsed ({type(exc).__name__})",
            _REEXPORT_HINT,
        ) from exc


_REEXPORT_HINT = "copy the file again or re-export it with the TFLite converter"


class _CorruptModel(Exception):
    """An index in the flatbuffer points outside what it refers to."""


def _check_header(data: bytes, label: str) -> None:
    """Reject empty, too-short and non-TFLite content before parsing."""
    if not data:
        raise ModelLoadError(f"{label} is empty (0 bytes)", _REEXPORT_HINT)
    if data[4:8] != _FILE_IDENTIFIER:
        for magic, what in _KNOWN_MAGIC.items():
            if data.startswith(magic):
                raise ModelLoadError(f"{label} is {what}, not a TFLite model", "convert it to .tflite first")
        if len(data) < 8:
            raise ModelLoadError(f"{label} is too short to be a TFLite model ({len(data)} bytes)", _REEXPORT_HINT)
        raise ModelLoadError(
            f"{label} is not a TFLite model (no 'TFL3' file identifier; {len(data)} bytes)",
            "pass a .tflite file written by the TFLite converter",
        )
    root = int.from_bytes(data[:4], "little")
    if root >= len(data):
        raise ModelLoadError(f"{label} is truncated ({len(data)} bytes, root table at {root})", _REEXPORT_HINT)


class _Budget:
    """How many tables and vector elements the parser may still read.

    A vector's length is a field of the file: a mutated one can claim billions
    of elements, and a crafted file can point many tables at one long vector.
    Every element read costs one unit, so parsing stays linear in the file size
    whatever the lengths say (a real model reads far less than its byte count).
    """

    PER_BYTE = 4
    FLOOR = 1 << 20
    CEILING = 1 << 26

    def __init__(self, file_size: int) -> None:
        self.left = min(self.PER_BYTE * file_size + self.FLOOR, self.CEILING)

    def take(self, n: int, what: str) -> int:
        if n < 0 or n > self.left:
            raise _CorruptModel(f"{what} claims {n} elements, more than a file of this size can hold")
        self.left -= n
        return n


def _parse(data: bytes) -> TfliteModel:
    model = schema.Model.GetRootAs(data, 0)
    budget = _Budget(len(data))
    buffer_sizes = [
        _buffer_nbytes(model.Buffers(b), len(data)) for b in range(budget.take(model.BuffersLength(), "buffers"))
    ]
    opcodes = [_opcode(model.OperatorCodes(k), budget)
               for k in range(budget.take(model.OperatorCodesLength(), "operator codes"))]
    subgraphs = tuple(
        _subgraph(model.Subgraphs(s), s, buffer_sizes, opcodes, budget)
        for s in range(budget.take(model.SubgraphsLength(), "subgraphs"))
    )
    if not subgraphs:
        raise _CorruptModel("it has no subgraphs")
    used: dict[int, int] = {t.buffer: t.nbytes for sg in subgraphs for t in sg.tensors if t.is_constant}
    return TfliteModel(
        file_size=len(data),
        version=int(model.Version()),
        description=_text(model.Description(), budget),
        subgraphs=subgraphs,
        buffer_count=len(buffer_sizes),
        constant_bytes=sum(used.values()),
        signature_names=tuple(
            _text(model.SignatureDefs(k).SignatureKey(), budget)
            for k in range(budget.take(model.SignatureDefsLength(), "signatures"))
        ),
        metadata_names=tuple(_text(model.Metadata(k).Name(), budget)
                             for k in range(budget.take(model.MetadataLength(), "metadata"))),
    )


def _buffer_nbytes(buf: Any, file_size: int) -> int:
    """Bytes of a buffer's data, inline or (for models over 2 GB) appended after the flatbuffer."""
    offset, size = int(buf.Offset()), int(buf.Size())
    if offset > 1:
        if offset + size > file_size:
            raise _CorruptModel(f"a buffer ends at byte {offset + size}, past the end of the file")
        return size
    if buf.DataLength() == 0:
        return 0
    return int(buf.DataAsNumpy().nbytes)  # a view; raises ValueError when the file is cut short


class _Opcode(NamedTuple):
    name: str
    version: int
    is_custom: bool


def _opcode(code: Any, budget: _Budget) -> _Opcode:
    """Builtin op name (or the custom code of a custom op) and version.

    The builtin code is the larger of `builtin_code` and the int8
    `deprecated_builtin_code`, as the TFLite runtime reads it.
    """
    builtin = max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode()))
    version = int(code.Version())
    if builtin == _CUSTOM_OP:
        return _Opcode(_text(code.CustomCode(), budget) or "CUSTOM", version, True)
    return _Opcode(_OP_NAMES.get(builtin, f"BUILTIN_{builtin}"), version, False)


def _subgraph(sg: Any, index: int, buffer_sizes: list[int], opcodes: list[_Opcode], budget: _Budget) -> SubgraphInfo:
    tensors = tuple(_tensor(sg.Tensors(t), t, index, buffer_sizes, budget)
                    for t in range(budget.take(sg.TensorsLength(), "tensors")))
    inputs = _int_vector(sg.InputsAsNumpy, budget)
    outputs = _int_vector(sg.OutputsAsNumpy, budget)
    for i in inputs + outputs:
        _check_tensor_index(i, len(tensors), f"subgraph {index}")
    operators = tuple(_operator(sg.Operators(k), k, index, tensors, opcodes, budget)
                      for k in range(budget.take(sg.OperatorsLength(), "operators")))
    return SubgraphInfo(index, _text(sg.Name(), budget), tensors, operators, inputs, outputs)


def _tensor(t: Any, index: int, subgraph: int, buffer_sizes: list[int], budget: _Budget) -> TensorInfo:
    shape = _int_vector(t.ShapeAsNumpy, budget)
    signature = _int_vector(t.ShapeSignatureAsNumpy, budget) or shape
    buffer = int(t.Buffer())
    if not 0 <= buffer < len(buffer_sizes):
        raise _CorruptModel(f"tensor {index} of subgraph {subgraph} uses buffer {buffer} of {len(buffer_sizes)}")
    is_variable = bool(t.IsVariable())
    nbytes = 0 if is_variable else buffer_sizes[buffer]
    q = t.Quantization()
    scales: tuple[float, ...] = ()
    zero_points: tuple[int, ...] = ()
    qdim = 0
    if q is not None:
        if (raw := _vector(q.ScaleAsNumpy, budget, "a scale vector")) is not None:
            scales = tuple(raw.astype(float).tolist())  # .tolist(): Python floats, fast
        if (raw := _vector(q.ZeroPointAsNumpy, budget, "a zero point vector")) is not None:
            zero_points = tuple(raw.astype(np.int64).tolist())
        qdim = int(q.QuantizedDimension())
    type_code = int(t.Type())
    return TensorInfo(
        index=index,
        subgraph=subgraph,
        name=_text(t.Name(), budget),
        shape=shape,
        shape_signature=signature,
        dtype=_DTYPE_NAMES.get(type_code, f"unknown({type_code})"),
        scales=scales,
        zero_points=zero_points,
        quantized_dimension=qdim,
        buffer=buffer,
        nbytes=nbytes,
        is_constant=nbytes > 0,
        is_variable=is_variable,
        sparsity=t.Sparsity() is not None,
    )


def _operator(
    op: Any, index: int, subgraph: int, tensors: tuple[TensorInfo, ...], opcodes: list[_Opcode], budget: _Budget
) -> OperatorInfo:
    opcode = int(op.OpcodeIndex())
    if not 0 <= opcode < len(opcodes):
        raise _CorruptModel(f"operator {index} of subgraph {subgraph} uses op code {opcode} of {len(opcodes)}")
    inputs = _int_vector(op.InputsAsNumpy, budget)
    outputs = _int_vector(op.OutputsAsNumpy, budget)
    code = opcodes[opcode]
    where = f"operator {index} ({code.name}) of subgraph {subgraph}"
    for i in inputs:
        if i != -1:
            _check_tensor_index(i, len(tensors), where)
    for i in outputs:
        _check_tensor_index(i, len(tensors), where)
    return OperatorInfo(
        index=index,
        subgraph=subgraph,
        op_type=code.name,
        version=code.version,
        is_custom=code.is_custom,
        inputs=inputs,
        outputs=outputs,
        input_dtypes=tuple(tensors[i].dtype if i >= 0 else "" for i in inputs),
        output_dtypes=tuple(tensors[i].dtype for i in outputs),
        constant_inputs=tuple(i >= 0 and tensors[i].is_constant for i in inputs),
    )


def _check_tensor_index(i: int, count: int, where: str) -> None:
    if not 0 <= i < count:
        raise _CorruptModel(f"{where} refers to tensor {i}, but there are {count}")


def _vector(as_numpy: Any, budget: _Budget, what: str = "a vector") -> Any:
    """A flatbuffer vector as a numpy view, None when absent or empty (its accessor returns 0, not [], when absent).

    One accessor call, not a length and then the data (parsing is most of a latency prediction's time); a length
    past the end of the file raises ValueError in numpy before anything is allocated."""
    raw = as_numpy()
    if isinstance(raw, int) or not len(raw):
        return None
    budget.take(len(raw), what)
    return raw


def _int_vector(as_numpy: Any, budget: _Budget) -> tuple[int, ...]:
    """A flatbuffer int vector as a tuple (empty when absent)."""
    raw = _vector(as_numpy, budget)
    return () if raw is None else tuple(raw.astype(np.int64).tolist())


def _text(raw: bytes | None, budget: _Budget | None = None) -> str:
    """A flatbuffer string; a shared long one costs its length in the budget (one unit per 16 bytes)."""
    if not raw:
        return ""
    if budget is not None:
        budget.take(len(raw) // 16 + 1, "a string")
    return raw.decode("utf-8", errors="replace")
