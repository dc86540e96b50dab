"""Kernel keys: what decides an op's latency, read from a converted .tflite.

Keys come from the converted flatbuffer, not from the Keras model, so they
follow what the converter fused: Conv2D + BatchNormalization + ReLU6 is ONE
CONV_2D key with `activation="RELU6"`. Every op is keyed (ADD, MEAN, PAD,
RESHAPE, QUANTIZE, ...), not only convolutions: together they are a large part
of a small model's latency.

No TensorFlow here: options are read with the flatbuffer schema that
`tfcompress.export.tflite_file` loads (ai-edge-litert's copy when installed).
Only `to_tflite` of a Keras model converts it (TensorFlow loads then).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from tfcompress.errors import ModelLoadError
from tfcompress.export import tflite_file
from tfcompress.export.tflite_file import PathOrBytes, TfliteModel, read_tflite, read_tflite_bytes

__all__ = ["KernelKey", "KernelUse", "kernels_of", "to_tflite", "CONV_OPS"]

_schema = tflite_file.schema

CONV_OPS: frozenset[str] = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D"})
_WEIGHTED_OPS: frozenset[str] = CONV_OPS | {"FULLY_CONNECTED"}

_ACTIVATIONS: dict[int, str] = {
    v: k for k, v in vars(_schema.ActivationFunctionType).items() if k.isupper()
}
_PADDINGS: dict[int, str] = {v: k for k, v in vars(_schema.Padding).items() if k.isupper()}
_OPTION_NAMES: dict[int, str] = {v: k for k, v in vars(_schema.BuiltinOptions).items() if not k.startswith("_")}


@dataclass(frozen=True, order=True)
class KernelKey:
    """Everything that decides one op's latency on a given runtime and delegate.

    `in_shape` / `out_shape` are the first activation input and the first
    output (batch included). Convolution fields are 0 / "" for other ops;
    `extra` holds the shape of a second activation input (ADD, MUL) so that a
    broadcast MUL (squeeze-excite) is not keyed like an element-wise one.
    """

    op: str
    dtype: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    cin: int = 0
    cout: int = 0
    kernel: tuple[int, int] = (0, 0)
    stride: tuple[int, int] = (0, 0)
    padding: str = ""
    activation: str = ""
    extra: tuple[int, ...] = ()

    @property
    def depthwise(self) -> bool:
        return self.op == "DEPTHWISE_CONV_2D"

    @property
    def in_hw(self) -> tuple[int, int]:
        return (self.in_shape[1], self.in_shape[2]) if len(self.in_shape) == 4 else (0, 0)

    @property
    def in_elements(self) -> int:
        return _numel(self.in_shape) + _numel(self.extra)

    @property
    def out_elements(self) -> int:
        return _numel(self.out_shape)

    @property
    def macs(self) -> int:
        """Multiply-accumulates (0 for ops that are not convolutions or FULLY_CONNECTED)."""
        kh, kw = self.kernel
        if self.op == "CONV_2D":
            return self.out_elements * kh * kw * self.cin
        if self.op == "DEPTHWISE_CONV_2D":
            return self.out_elements * kh * kw
        if self.op == "FULLY_CONNECTED":
            return self.out_elements * self.cin
        return 0

    @property
    def weight_elements(self) -> int:
        kh, kw = self.kernel
        if self.op == "CONV_2D":
            return kh * kw * self.cin * self.cout
        if self.op == "DEPTHWISE_CONV_2D":
            return kh * kw * self.cout
        if self.op == "FULLY_CONNECTED":
            return self.cin * self.cout
        return 0

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> KernelKey:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    def digest(self) -> str:
        """A stable content hash (the LUT cache's file name)."""
        text = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def describe(self) -> str:
        if self.op in CONV_OPS:
            h, w = self.in_hw
            return (
                f"{self.op} {h}x{w}x{self.cin}->{self.cout} k{self.kernel[0]}x{self.kernel[1]} "
                f"s{self.stride[0]} {self.padding} {self.activation} {self.dtype}"
            )
        return f"{self.op} {self.in_shape}->{self.out_shape} {self.activation} {self.dtype}".replace("  ", " ")


@dataclass(frozen=True)
class KernelUse:
    """One op of a model: its key and the Keras layers it came from."""

    op_index: int
    key: KernelKey
    layers: tuple[str, ...]


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= max(int(d), 1)
    return n if shape else 0


def kernels_of(tflite: PathOrBytes, keras_layer_names: Sequence[str] = ()) -> list[KernelUse]:
    """The kernel key of every op of the main subgraph, in execution order.

    Args:
        tflite: a .tflite path or its bytes.
        keras_layer_names: the source model's layer names, to map ops back to
            layers (`layers` is empty without them).
    """
    label = None if isinstance(tflite, (bytes, bytearray, memoryview)) else str(tflite)
    data = read_tflite_bytes(tflite)
    model = read_tflite(data, label=label)
    raw = _schema.Model.GetRootAs(data, 0).Subgraphs(0)
    sg = model.subgraphs[0]
    names = (
        tflite_file.layer_names_for_ops(model, sg.operators, keras_layer_names) if keras_layer_names else {}
    )
    uses = []
    for op in sg.operators:
        try:
            key = _key(model, op, raw.Operators(op.index))
        except (struct.error, IndexError, ValueError, TypeError, OverflowError) as exc:
            # a shape or options table the op cannot have: only a corrupt file gets here
            raise ModelLoadError(
                f"{label or 'model bytes'} is corrupt: op {op.index} ({op.op_type}) has tensors or options "
                f"its kernel cannot have ({type(exc).__name__})",
                "copy the file again or re-export it with the TFLite converter",
            ) from exc
        uses.append(KernelUse(op.index, key, tuple(names.get(op.index, ()))))
    return uses


def _key(model: TfliteModel, op: tflite_file.OperatorInfo, raw_op: Any) -> KernelKey:
    tensors = model.subgraphs[op.subgraph].tensors
    if op.op_type in _WEIGHTED_OPS and len(op.inputs) > 1:
        # input, filter / weights (constant, or the output of a DENSIFY op for sparse weights), bias
        acts, consts = [op.inputs[0]], [op.inputs[1]]
    else:
        acts = [i for i, const in zip(op.inputs, op.constant_inputs) if i >= 0 and not const]
        consts = [i for i, const in zip(op.inputs, op.constant_inputs) if i >= 0 and const]
    in_shape = tensors[acts[0]].shape if acts else ()
    out_shape = tensors[op.outputs[0]].shape if op.outputs else ()
    extra = tensors[acts[1]].shape if len(acts) > 1 else ()
    options = _options(raw_op)
    activation = _ACTIVATIONS.get(options.get("activation", 0), "NONE") if "activation" in options else ""
    if activation == "NONE":
        activation = ""
    fields: dict[str, Any] = {}
    if op.op_type in CONV_OPS and consts:
        w = tensors[consts[0]].shape  # CONV_2D: (cout, kh, kw, cin); DEPTHWISE: (1, kh, kw, cout)
        cin = in_shape[-1] if in_shape else 0
        fields = dict(
            cin=int(cin),
            cout=int(out_shape[-1]),
            kernel=(int(w[1]), int(w[2])),
            stride=(options.get("stride_h", 1), options.get("stride_w", 1)),
            padding=_PADDINGS.get(options.get("padding", 0), ""),
        )
    elif op.op_type == "FULLY_CONNECTED" and consts:
        w = tensors[consts[0]].shape  # (units, in)
        fields = dict(cin=int(w[-1]), cout=int(w[0]))
    elif op.op_type in {"AVERAGE_POOL_2D", "MAX_POOL_2D"}:
        fields = dict(
            kernel=(options.get("filter_h", 1), options.get("filter_w", 1)),
            stride=(options.get("stride_h", 1), options.get("stride_w", 1)),
            padding=_PADDINGS.get(options.get("padding", 0), ""),
        )
    dtype = op.compute_dtype if op.op_type not in {"QUANTIZE", "DEQUANTIZE"} else (
        f"{op.input_dtypes[0]}->{op.output_dtypes[0]}" if op.input_dtypes and op.output_dtypes else op.compute_dtype
    )
    return KernelKey(
        op=op.op_type,
        dtype=dtype,
        in_shape=tuple(int(d) for d in in_shape),
        out_shape=tuple(int(d) for d in out_shape),
        activation=activation,
        extra=tuple(int(d) for d in extra),
        **fields,
    )


def _options(raw_op: Any) -> dict[str, int]:
    """The op's builtin options that matter for latency, as plain ints."""
    kind = _OPTION_NAMES.get(int(raw_op.BuiltinOptionsType()), "NONE")
    table = raw_op.BuiltinOptions()
    cls = getattr(_schema, kind, None)
    if table is None or cls is None or kind == "NONE":
        return {}
    opts = cls()
    opts.Init(table.Bytes, table.Pos)
    out: dict[str, int] = {}
    for name, getter in (
        ("activation", "FusedActivationFunction"),
        ("stride_h", "StrideH"),
        ("stride_w", "StrideW"),
        ("padding", "Padding"),
        ("filter_h", "FilterHeight"),
        ("filter_w", "FilterWidth"),
    ):
        if hasattr(opts, getter):
            out[name] = int(getattr(opts, getter)())
    return out


def to_tflite(source: Any) -> bytes:
    """.tflite bytes of bytes, a path to a .tflite, or a Keras model / model file (converted to int8)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, (str, os.PathLike)) and str(source).endswith(".tflite"):
        return read_tflite_bytes(source)
    from tfcompress.export.converter import convert_int8_random
    from tfcompress.keras_compat import keras3, tf_keras

    model = source
    if isinstance(source, (str, os.PathLike)):
        from tfcompress.loading import load_model

        model = load_model(source)
    if isinstance(model, (keras3.Model, tf_keras.Model)):
        return convert_int8_random(model)
    raise TypeError(f"expected a Keras model, .tflite bytes or path, got {type(source).__name__}")
