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
"""

from __future__ import annotations

import importlib
import os
import re
import struct
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np

from tfcompress.errors import ModelLoadError

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


_schema = _load_schema()

_FILE_IDENTIFIER = b"TFL3"

# Enum value -> name, straight from the schema: TensorType.INT8 -> "int8" (numpy's spelling,
# plus "string", "resource", "int4", "bfloat16", ... where numpy has none), BuiltinOperator -> "CONV_2D".
_DTYPE_NAMES: dict[int, str] = {v: k.lower() for k, v in vars(_schema.TensorType).items() if k.isupper()}
_OP_NAMES: dict[int, str] = {v: k for k, v in vars(_schema.BuiltinOperator).items() if k.isupper()}
_CUSTOM_OP = _schema.BuiltinOperator.CUSTOM

FLOAT_DTYPES: frozenset[str] = frozenset(
    {"float16", "float32", "float64", "bfloat16", "float8_e4m3fn", "float8_e5m2"}
)
"""Tensor dtypes that count as floating point for `OperatorInfo.computes_in_float`."""

BOUNDARY_OPS: frozenset[str] = frozenset({"QUANTIZE", "DEQUANTIZE"})
"""Ops that convert between float and integer; never counted as float compute."""

# Leading bytes of files people mistake for .tflite models -> what they are.
_KNOWN_MAGIC: dict[bytes, str] = {
    b"\x89HDF\r\n\x1a\n": "a Keras HDF5 (.h5) file",
    b"PK\x03\x04": "a zip archive (a .keras model?)",
    b"\x1f\x8b": "a gzip archive (decompress it first)",
    b"\x08\x01\x12": "a protobuf file (a SavedModel's saved_model.pb?)",
}


# ------------------------------------------------------------------ results


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

    def tensor(self, index: int, subgraph: int = 0) -> TensorInfo:
        """The tensor `index` of `subgraph`."""
        return self.subgraphs[subgraph].tensors[index]

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


# ------------------------------------------------------------------ reading


def read_tflite_bytes(source: PathOrBytes) -> bytes:
    """The raw bytes of a .tflite file (or `source` itself when it is bytes).

    Raises:
        ModelLoadError: the path is missing, a directory, or unreadable.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    path = Path(source)
    if not path.exists():
        raise ModelLoadError(f"model file not found: {path}", "check the path")
    if path.is_dir():
        raise ModelLoadError(
            f"{path} is a directory, not a .tflite file", "pass the .tflite file (convert a SavedModel first)"
        )
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"cannot read {path}: {exc.strerror or exc}", "check the file's permissions") from exc


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


def _parse(data: bytes) -> TfliteModel:
    model = _schema.Model.GetRootAs(data, 0)
    buffer_sizes = [_buffer_nbytes(model.Buffers(b), len(data)) for b in range(model.BuffersLength())]
    opcodes = [_opcode(model.OperatorCodes(k)) for k in range(model.OperatorCodesLength())]
    subgraphs = tuple(
        _subgraph(model.Subgraphs(s), s, buffer_sizes, opcodes) for s in range(model.SubgraphsLength())
    )
    if not subgraphs:
        raise _CorruptModel("it has no subgraphs")
    used: dict[int, int] = {t.buffer: t.nbytes for sg in subgraphs for t in sg.tensors if t.is_constant}
    return TfliteModel(
        file_size=len(data),
        version=int(model.Version()),
        description=_text(model.Description()),
        subgraphs=subgraphs,
        buffer_count=len(buffer_sizes),
        constant_bytes=sum(used.values()),
        signature_names=tuple(
            _text(model.SignatureDefs(k).SignatureKey()) for k in range(model.SignatureDefsLength())
        ),
        metadata_names=tuple(_text(model.Metadata(k).Name()) for k in range(model.MetadataLength())),
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


def _opcode(code: Any) -> _Opcode:
    """Builtin op name (or the custom code of a custom op) and version.

    The builtin code is the larger of `builtin_code` and the int8
    `deprecated_builtin_code`, as the TFLite runtime reads it.
    """
    builtin = max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode()))
    version = int(code.Version())
    if builtin == _CUSTOM_OP:
        return _Opcode(_text(code.CustomCode()) or "CUSTOM", version, True)
    return _Opcode(_OP_NAMES.get(builtin, f"BUILTIN_{builtin}"), version, False)


def _subgraph(sg: Any, index: int, buffer_sizes: list[int], opcodes: list[_Opcode]) -> SubgraphInfo:
    tensors = tuple(_tensor(sg.Tensors(t), t, index, buffer_sizes) for t in range(sg.TensorsLength()))
    inputs = _int_vector(sg.InputsAsNumpy, sg.InputsLength())
    outputs = _int_vector(sg.OutputsAsNumpy, sg.OutputsLength())
    for i in inputs + outputs:
        _check_tensor_index(i, len(tensors), f"subgraph {index}")
    operators = tuple(_operator(sg.Operators(k), k, index, tensors, opcodes) for k in range(sg.OperatorsLength()))
    return SubgraphInfo(index, _text(sg.Name()), tensors, operators, inputs, outputs)


def _tensor(t: Any, index: int, subgraph: int, buffer_sizes: list[int]) -> TensorInfo:
    shape = _int_vector(t.ShapeAsNumpy, t.ShapeLength())
    signature = _int_vector(t.ShapeSignatureAsNumpy, t.ShapeSignatureLength()) or shape
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
        if q.ScaleLength():
            scales = tuple(float(s) for s in q.ScaleAsNumpy())
        if q.ZeroPointLength():
            zero_points = tuple(int(z) for z in q.ZeroPointAsNumpy())
        qdim = int(q.QuantizedDimension())
    type_code = int(t.Type())
    return TensorInfo(
        index=index,
        subgraph=subgraph,
        name=_text(t.Name()),
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
    op: Any, index: int, subgraph: int, tensors: tuple[TensorInfo, ...], opcodes: list[_Opcode]
) -> OperatorInfo:
    opcode = int(op.OpcodeIndex())
    if not 0 <= opcode < len(opcodes):
        raise _CorruptModel(f"operator {index} of subgraph {subgraph} uses op code {opcode} of {len(opcodes)}")
    inputs = _int_vector(op.InputsAsNumpy, op.InputsLength())
    outputs = _int_vector(op.OutputsAsNumpy, op.OutputsLength())
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


def _int_vector(as_numpy: Any, length: int) -> tuple[int, ...]:
    """A flatbuffer int vector as a tuple (its accessor returns 0, not [], when absent)."""
    return tuple(int(v) for v in as_numpy()) if length else ()


def _text(raw: bytes | None) -> str:
    return raw.decode("utf-8", errors="replace") if raw else ""


# ------------------------------------------------------ ops -> Keras layers

_SCOPE_SUFFIX = re.compile(r"^(?P<base>.+)_\d+$")
_OUTPUT_SUFFIX = re.compile(r":\d+$")


def layer_names_for_ops(
    model: TfliteModel, ops: Iterable[OperatorInfo] | None, keras_layer_names: Sequence[str]
) -> dict[int, list[str]]:
    """Map operators back to the Keras layers they came from, via tensor names.

    The converter names tensors after the TF ops they came from, joining the
    names of fused ops with ";", e.g.
    "sequential/conv2d_1/Conv2D;sequential/batch_normalization/FusedBatchNormV3".
    Heuristics:

    * Names looked at: the op's constant inputs (weights carry their layer's
      scope), then its outputs. Only when those name no layer, its
      non-constant inputs: they are the previous op's outputs, so this names
      the layer feeding the op. That is right for a fused activation on the
      model output (whose tensor is renamed "StatefulPartitionedCall:0"),
      and the nearest guess otherwise.
    * Each ";"-separated part yields at most one layer: its deepest "/" path
      component that names a layer (nested scopes are more specific).
    * Keras 3 models trace each layer in a uniquified scope, "conv2d" becoming
      "conv2d_1"; tf_keras uses the layer name as is. A component matches a
      layer exactly or with one "_<n>" suffix removed; which of the two wins
      is decided once per model, by which explains more of `keras_layer_names`
      (ties go to exact); the other reading is the fallback. So in a tf_keras
      model "conv2d_1" is layer conv2d_1 (the longest match), in a Keras 3
      model it is layer conv2d.
    * Layers are listed once each, in the order found; ops with no match get [].

    Args:
        model: the model the operators belong to.
        ops: the operators to map (default: the main subgraph's).
        keras_layer_names: names of the source model's layers.

    Returns:
        {op.index: [layer name, ...]} for every op in `ops`. Ops of different
        subgraphs that share an index share an entry (their names merged);
        pass one subgraph's ops where that matters.
    """
    layers = frozenset(keras_layer_names)
    ops = list(model.subgraphs[0].operators if ops is None else ops)
    suffixed_first = _prefers_suffixed_scopes(model, layers)
    result: dict[int, list[str]] = {}
    for op in ops:
        tensors = model.subgraphs[op.subgraph].tensors
        constants = [i for i, const in zip(op.inputs, op.constant_inputs) if const]
        activations = [i for i, const in zip(op.inputs, op.constant_inputs) if i >= 0 and not const]
        found = _layers_in_names([tensors[i].name for i in constants + list(op.outputs)], layers, suffixed_first)
        found = found or _layers_in_names([tensors[i].name for i in activations], layers, suffixed_first)
        merged = result.setdefault(op.index, [])
        merged.extend(name for name in found if name not in merged)
    return result


def _layers_in_names(names: list[str], layers: frozenset[str], suffixed_first: bool) -> list[str]:
    """Layers named by the ";"-separated parts of `names`, once each, in order."""
    found: list[str] = []
    for name in names:
        for part in name.split(";"):
            layer = _layer_in_part(part, layers, suffixed_first)
            if layer is not None and layer not in found:
                found.append(layer)
    return found


def _components(part: str) -> list[str]:
    return [_OUTPUT_SUFFIX.sub("", c) for c in part.split("/") if c]


def _candidates(component: str, suffixed_first: bool) -> list[str]:
    """Layer names a scope component may stand for, preferred first."""
    m = _SCOPE_SUFFIX.match(component)
    stripped = [m.group("base")] if m else []
    return stripped + [component] if suffixed_first else [component] + stripped


def _layer_in_part(part: str, layers: frozenset[str], suffixed_first: bool) -> str | None:
    for component in reversed(_components(part)):
        for candidate in _candidates(component, suffixed_first):
            if candidate in layers:
                return candidate
    return None


def _prefers_suffixed_scopes(model: TfliteModel, layers: frozenset[str]) -> bool:
    """Whether tensor scopes look like Keras 3's ("<layer>_<n>") rather than tf_keras' ("<layer>")."""
    components = {
        c for sg in model.subgraphs for t in sg.tensors for part in t.name.split(";") for c in _components(part)
    }
    exact = len(layers & components)
    suffixed = len(layers & {m.group("base") for c in components if (m := _SCOPE_SUFFIX.match(c))})
    return suffixed > exact
