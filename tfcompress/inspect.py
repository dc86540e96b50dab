"""Backend of `tfcompress inspect FILE`: per-op (.tflite) or per-layer (Keras) tables.

    ins = inspect_tflite("model.tflite")      # reads the flatbuffer, no TensorFlow
    render_tflite(ins, rich.console.Console())
    json.dumps(ins.to_dict())

    ins = inspect_keras(model)                 # tf_keras or Keras 3, by duck typing
    render_keras(ins, console)

Neither function imports TensorFlow: the .tflite side goes through
`tfcompress.export.tflite_file`, the Keras side only touches the model it is
given (`model.layers`, `layer.weights`, `layer.output.shape`).
"""

from __future__ import annotations

import dataclasses
import gzip
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tfcompress.export.tflite_file import (
    FLOAT_DTYPES,
    IODetail,
    OperatorInfo,
    PathOrBytes,
    TensorInfo,
    TfliteModel,
    read_tflite,
    read_tflite_bytes,
)
from tfcompress.precision.readback import found_precision

__all__ = [
    "TfliteOpRow",
    "QuantizedTensor",
    "TfliteTotals",
    "TfliteInspection",
    "KerasLayerRow",
    "KerasTotals",
    "KerasInspection",
    "inspect_tflite",
    "inspect_keras",
    "render_tflite",
    "render_keras",
    "quantization_summary",
]

Shape = tuple[int | None, ...]


class _AsDict:
    """`to_dict()` for the result dataclasses: plain dicts / lists, ready for JSON."""

    def to_dict(self) -> dict[str, Any]:
        """This result as JSON-ready dicts and lists."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]


# ------------------------------------------------------------------ .tflite


@dataclass(frozen=True)
class TfliteOpRow(_AsDict):
    """One operator of a .tflite model.

    `input_dtypes` are the dtypes of its non-constant inputs; `params` and
    `weight_bytes` count its constant inputs (weights, biases, shape
    operands); `quantization` is `quantization_summary` of the op.
    """

    index: int
    subgraph: int
    op_type: str
    input_dtypes: tuple[str, ...]
    output_dtype: str
    output_shape: tuple[int, ...]
    params: int
    weight_bytes: int
    quantization: str
    is_float: bool
    precision: str = ""  # int8 | int16x8 | int4 | int4w | float ... (`precision.readback.found_precision`)


@dataclass(frozen=True)
class QuantizedTensor(_AsDict):
    """A tensor stored in a dtype other than int8 / uint8 (int4 weights, int16 activations), with its quantization."""

    index: int
    name: str
    dtype: str
    shape: tuple[int, ...]
    is_constant: bool
    scales: tuple[float, ...]
    zero_points: tuple[int, ...]
    quantized_dimension: int


@dataclass(frozen=True)
class TfliteTotals(_AsDict):
    """Whole-model numbers; constants shared between ops count once."""

    ops: int
    float_ops: int
    params: int
    weight_bytes: int
    file_bytes: int
    gzip_bytes: int
    bytes_by_dtype: dict[str, int]


@dataclass(frozen=True)
class TfliteInspection(_AsDict):
    """What `inspect_tflite` found in a .tflite file."""

    source: str
    ops: tuple[TfliteOpRow, ...]
    inputs: tuple[IODetail, ...]
    outputs: tuple[IODetail, ...]
    op_counts: dict[str, int]
    totals: TfliteTotals
    subgraphs: int
    signature_names: tuple[str, ...]
    description: str
    quantized_tensors: tuple[QuantizedTensor, ...] = ()  # int4 / int16: what a mixed-precision model adds


def inspect_tflite(path_or_bytes: PathOrBytes) -> TfliteInspection:
    """Per-op table and totals of a .tflite model.

    Raises:
        ModelLoadError: the file is missing, empty, truncated or not a TFLite model.
    """
    is_bytes = isinstance(path_or_bytes, (bytes, bytearray, memoryview))
    source = "model bytes" if is_bytes else str(path_or_bytes)
    data = read_tflite_bytes(path_or_bytes)
    model = read_tflite(data, label=source)
    constants = model.constant_tensors()
    totals = TfliteTotals(
        ops=len(model.operators),
        float_ops=len(model.float_ops()),
        params=sum(t.num_elements for t in constants),
        weight_bytes=model.constant_bytes,
        file_bytes=len(data),
        gzip_bytes=len(gzip.compress(data, compresslevel=9, mtime=0)),
        bytes_by_dtype=model.weight_bytes_by_dtype(),
    )
    return TfliteInspection(
        source=source,
        ops=tuple(_op_row(model, op) for op in model.operators),
        inputs=tuple(model.input_details()),
        outputs=tuple(model.output_details()),
        op_counts=model.op_counts(),
        totals=totals,
        subgraphs=model.subgraph_count,
        signature_names=model.signature_names,
        description=model.description,
        quantized_tensors=tuple(
            QuantizedTensor(t.index, t.name, t.dtype, t.shape, t.is_constant, t.scales, t.zero_points,
                            t.quantized_dimension)
            for t in model.tensors if t.is_quantized and t.dtype not in ("int8", "uint8", "int32")),
    )


def _op_row(model: TfliteModel, op: OperatorInfo) -> TfliteOpRow:
    tensors = model.subgraphs[op.subgraph].tensors
    consts = {i: tensors[i] for i, const in zip(op.inputs, op.constant_inputs) if const}
    first_out = tensors[op.outputs[0]] if op.outputs else None
    return TfliteOpRow(
        index=op.index,
        subgraph=op.subgraph,
        op_type=op.op_type,
        input_dtypes=op.activation_input_dtypes,
        output_dtype=first_out.dtype if first_out else "",
        output_shape=first_out.shape if first_out else (),
        params=sum(t.num_elements for t in consts.values()),
        weight_bytes=sum(t.nbytes for t in consts.values()),
        quantization=quantization_summary(model, op),
        is_float=op.computes_in_float,
        precision=found_precision(model, op)[0],
    )


def quantization_summary(model: TfliteModel, op: OperatorInfo) -> str:
    """How an op's weights (or, without weights, its output) are stored.

    The subject is the op's largest constant input that is floating point or
    quantized (its weights; int32 shape / axis operands are skipped), else its
    first output. The result reads "per-channel int8 (32 scales)",
    "per-tensor int8", or just the dtype ("float32", "float16") when the
    subject is not quantized; "-" for an op with neither.
    """
    tensors = model.subgraphs[op.subgraph].tensors
    weights = [
        tensors[i]
        for i, const in zip(op.inputs, op.constant_inputs)
        if const and (tensors[i].is_quantized or tensors[i].dtype in FLOAT_DTYPES)
    ]
    subject: TensorInfo | None = max(weights, key=lambda t: t.num_elements, default=None)
    if subject is None and op.outputs:
        subject = tensors[op.outputs[0]]
    if subject is None:
        return "-"
    if subject.per_channel:
        return f"per-channel {subject.dtype} ({len(subject.scales)} scales)"
    if subject.is_quantized:
        return f"per-tensor {subject.dtype}"
    return subject.dtype


# ------------------------------------------------------------------ Keras

# Root package of a model class's module -> the Keras it belongs to.
_FLAVORS: dict[str, str] = {"tf_keras": "tf_keras", "keras": "keras3"}

# Bytes per element for weight dtypes numpy does not know.
_EXTRA_ITEMSIZE: dict[str, int] = {"bfloat16": 2}


@dataclass(frozen=True)
class KerasLayerRow(_AsDict):
    """One top-level layer of a Keras model.

    `output_shapes` has one shape per output (empty when the layer has no
    single well-defined output, e.g. a shared layer or a subclassed model's);
    `float32_bytes` is params x 4, the layer's size as float32 weights.
    """

    name: str
    class_name: str
    output_shapes: tuple[Shape, ...]
    params: int
    trainable_params: int
    weight_dtypes: tuple[str, ...]
    float32_bytes: int


@dataclass(frozen=True)
class KerasTotals(_AsDict):
    """Whole-model numbers; weights shared between layers count once.

    `weight_bytes` uses each weight's own dtype, `float32_bytes` 4 bytes per
    parameter.
    """

    layers: int
    params: int
    trainable_params: int
    non_trainable_params: int
    float32_bytes: int
    weight_bytes: int


@dataclass(frozen=True)
class KerasInspection(_AsDict):
    """What `inspect_keras` found in an in-memory Keras model."""

    name: str
    flavor: str
    layers: tuple[KerasLayerRow, ...]
    totals: KerasTotals


def inspect_keras(model: Any) -> KerasInspection:
    """Per-layer table and totals of a tf_keras or Keras 3 model (built).

    Works by duck typing on `model.layers`, `model.weights`,
    `layer.weights` / `layer.trainable_weights` and `layer.output.shape`.
    """
    rows = tuple(_layer_row(layer) for layer in model.layers)
    weights = _unique(model.weights)
    trainable_ids = {id(w) for w in model.trainable_weights}
    params = sum(_numel(w) for w in weights)
    trainable = sum(_numel(w) for w in weights if id(w) in trainable_ids)
    totals = KerasTotals(
        layers=len(rows),
        params=params,
        trainable_params=trainable,
        non_trainable_params=params - trainable,
        float32_bytes=4 * params,
        weight_bytes=sum(_numel(w) * _itemsize(_dtype_name(w.dtype)) for w in weights),
    )
    return KerasInspection(name=str(model.name), flavor=_flavor(model), layers=rows, totals=totals)


def _layer_row(layer: Any) -> KerasLayerRow:
    weights = _unique(layer.weights)
    params = sum(_numel(w) for w in weights)
    dtypes = tuple(dict.fromkeys(_dtype_name(w.dtype) for w in weights))
    return KerasLayerRow(
        name=str(layer.name),
        class_name=type(layer).__name__,
        output_shapes=_output_shapes(layer),
        params=params,
        trainable_params=sum(_numel(w) for w in _unique(layer.trainable_weights)),
        weight_dtypes=dtypes,
        float32_bytes=4 * params,
    )


def _output_shapes(layer: Any) -> tuple[Shape, ...]:
    try:
        out = layer.output
    except (AttributeError, ValueError, RuntimeError, TypeError):
        return ()  # never called, shared between calls, or a subclassed model's layer
    if isinstance(out, dict):
        out = list(out.values())
    outs = out if isinstance(out, (list, tuple)) else [out]
    return tuple(tuple(None if d is None else int(d) for d in o.shape) for o in outs)


def _unique(weights: Iterable[Any]) -> list[Any]:
    """Weights with duplicates (the same variable twice) removed, order kept."""
    return list({id(w): w for w in weights}.values())


def _numel(weight: Any) -> int:
    return int(np.prod([int(d) for d in weight.shape], dtype=np.int64))


def _dtype_name(dtype: Any) -> str:
    """'float32' from a tf.DType (tf_keras) or a dtype string (Keras 3)."""
    return str(getattr(dtype, "name", dtype))


def _itemsize(dtype: str) -> int:
    if dtype in _EXTRA_ITEMSIZE:
        return _EXTRA_ITEMSIZE[dtype]
    try:
        return int(np.dtype(dtype).itemsize)
    except TypeError:
        return 4


def _flavor(model: Any) -> str:
    """'tf_keras' or 'keras3' from the first Keras class in the model's MRO, else 'other'."""
    for cls in type(model).__mro__:
        flavor = _FLAVORS.get(cls.__module__.split(".")[0])
        if flavor:
            return flavor
    return "other"


# ------------------------------------------------------------------ rendering


def _size(n: int) -> str:
    """'812 B', '3.1 KiB', '4.20 MiB'."""
    if n < 1024:
        return f"{n} B"
    if n < 1024**2:
        return f"{n / 1024:.1f} KiB"
    return f"{n / 1024**2:.2f} MiB"


def _shape(shape: Iterable[int | None]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def render_tflite(ins: TfliteInspection, console: Any) -> None:
    """Print a `TfliteInspection` as rich tables on `console`."""
    from rich.table import Table

    t = ins.totals
    summary = Table(title=f"tfcompress inspect: {ins.source}", show_header=False, title_justify="left")
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row("file", f"{t.file_bytes:,} B ({_size(t.file_bytes)}), gzip -9 {_size(t.gzip_bytes)}")
    summary.add_row("weights", f"{t.params:,} params, {_size(t.weight_bytes)}")
    summary.add_row("by dtype", ", ".join(f"{d} {_size(n)}" for d, n in t.bytes_by_dtype.items()) or "-")
    summary.add_row("ops", f"{t.ops}: " + ", ".join(f"{op} x{n}" for op, n in ins.op_counts.items()))
    summary.add_row("float ops", f"{t.float_ops} of {t.ops}")
    if ins.subgraphs > 1:
        summary.add_row("subgraphs", str(ins.subgraphs))
    summary.add_row("signatures", ", ".join(ins.signature_names) or "-")
    console.print(summary)

    io = Table(title="inputs / outputs", title_justify="left")
    for col in ("", "name", "shape", "dtype", "scale", "zero point"):
        io.add_column(col)
    for kind, details in (("in", ins.inputs), ("out", ins.outputs)):
        for d in details:
            quant = (f"{d.scale:.6g}", str(d.zero_point)) if d.scales else ("-", "-")
            io.add_row(kind, d.name, _shape(d.shape_signature), d.dtype, *quant)
    console.print(io)

    ops = Table(title="ops", title_justify="left")
    for col, justify in _TFLITE_OP_COLUMNS:
        ops.add_column(col, justify=justify)
    mixed = 0 < t.float_ops < t.ops
    for r in ins.ops:
        ops.add_row(
            str(r.index) if ins.subgraphs == 1 else f"{r.subgraph}:{r.index}",
            r.op_type,
            ", ".join(r.input_dtypes) or "-",
            r.output_dtype or "-",
            _shape(r.output_shape),
            f"{r.params:,}" if r.params else "",
            _size(r.weight_bytes) if r.weight_bytes else "",
            r.quantization,
            r.precision,
            style="yellow" if mixed and r.is_float else None,
        )
    console.print(ops)
    if ins.quantized_tensors:
        qt = Table(title="int4 / int16 tensors", title_justify="left")
        for col in ("#", "name", "dtype", "shape", "scales", "zero points"):
            qt.add_column(col)
        for q in ins.quantized_tensors:
            scales = f"{q.scales[0]:.4g}" if len(q.scales) == 1 else \
                f"{len(q.scales)} (axis {q.quantized_dimension}): {min(q.scales):.4g}..{max(q.scales):.4g}"
            zps = sorted(set(q.zero_points))
            qt.add_row(str(q.index), q.name[:48], q.dtype, _shape(q.shape), scales,
                       ", ".join(map(str, zps[:4])) + (" ..." if len(zps) > 4 else ""))
        console.print(qt)
    if mixed:
        console.print(f"[yellow]{t.float_ops} op(s) compute in floating point (highlighted).[/]")


_TFLITE_OP_COLUMNS: tuple[tuple[str, str], ...] = (
    ("#", "right"),
    ("op", "left"),
    ("in", "left"),
    ("out", "left"),
    ("out shape", "left"),
    ("params", "right"),
    ("bytes", "right"),
    ("quantization", "left"),
    ("precision", "left"),
)

_KERAS_COLUMNS: tuple[tuple[str, str], ...] = (
    ("layer", "left"),
    ("class", "left"),
    ("output shape", "left"),
    ("params", "right"),
    ("trainable", "right"),
    ("dtypes", "left"),
    ("float32 bytes", "right"),
)


def render_keras(ins: KerasInspection, console: Any) -> None:
    """Print a `KerasInspection` as a rich table on `console`."""
    from rich.table import Table

    t = ins.totals
    table = Table(title=f"tfcompress inspect: {ins.name} ({ins.flavor})", title_justify="left")
    for col, justify in _KERAS_COLUMNS:
        table.add_column(col, justify=justify)
    for r in ins.layers:
        table.add_row(
            r.name,
            r.class_name,
            ", ".join(_shape(s) for s in r.output_shapes) or "-",
            f"{r.params:,}",
            f"{r.trainable_params:,}",
            ", ".join(r.weight_dtypes) or "-",
            _size(r.float32_bytes) if r.float32_bytes else "",
        )
    table.add_section()
    table.add_row(
        f"total ({t.layers} layers)", "", "", f"{t.params:,}", f"{t.trainable_params:,}", "", _size(t.float32_bytes),
        style="bold",
    )
    console.print(table)
    if t.non_trainable_params:
        console.print(f"{t.non_trainable_params:,} non-trainable params; weights as stored: {_size(t.weight_bytes)}")
