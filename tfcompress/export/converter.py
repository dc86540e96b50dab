"""The one place that calls `tf.lite.TFLiteConverter`.

A declarative table says how each `Mode` sets the converter up; after
conversion the flatbuffer is read back and checked against what the mode
promises (I/O dtypes, no float compute in integer modes, weight dtypes), so a
silently-float op or float I/O never reaches a device unnoticed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

from tfcompress.errors import ConversionError
from tfcompress.quiet import captured_output
from tfcompress.types import ALLOWED_IO, DEFAULT_IO, IOType, Mode

# ----------------------------------------------------------- mode settings


@dataclass(frozen=True)
class ModeSpec:
    """How a mode configures the converter and what its output must look like.

    Attributes:
        ops: names of `tf.lite.OpsSet` members for the integer kernels (empty = builtins).
        supported_types: `tf.dtypes` names for `target_spec.supported_types`.
        calibrated: uses a representative dataset.
        activation_dtypes: dtypes compute ops may read/write (integer modes).
        weight_dtypes: dtypes the large constant tensors (weights) must have.
        weight_min_elements: smaller constants are exempt (the converter keeps
            them float in dynamic mode, and they are biases / shapes elsewhere).
    """

    ops: tuple[str, ...]
    supported_types: tuple[str, ...]
    calibrated: bool
    activation_dtypes: frozenset[str]
    weight_dtypes: frozenset[str]
    weight_min_elements: int = 64


MODE_SPECS: dict[Mode, ModeSpec] = {
    Mode.INT8: ModeSpec(("TFLITE_BUILTINS_INT8",), (), True, frozenset({"int8"}), frozenset({"int8"})),
    Mode.INT16X8: ModeSpec(
        ("EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8",), (), True, frozenset({"int16"}), frozenset({"int8"})
    ),
    Mode.FLOAT16: ModeSpec((), ("float16",), False, frozenset({"float32"}), frozenset({"float16"})),
    # dynamic-range quantization leaves tensors under 1024 elements float
    Mode.DYNAMIC: ModeSpec((), (), False, frozenset({"float32"}), frozenset({"int8"}), 1024),
}

_TF_IO_DTYPES: dict[IOType, str] = {
    IOType.INT8: "int8",
    IOType.UINT8: "uint8",
    IOType.INT16: "int16",
    IOType.FLOAT32: "float32",
}


def resolve_io(mode: Mode, io: IOType | str | None) -> IOType:
    """The I/O dtype for `mode`, validating the user's choice.

    Raises:
        ConversionError: the mode cannot produce that I/O dtype.
    """
    if io is None:
        return DEFAULT_IO[mode]
    io = IOType(io)
    if io not in ALLOWED_IO[mode]:
        allowed = ", ".join(t.value for t in ALLOWED_IO[mode])
        raise ConversionError(f"mode {mode.value} cannot have {io.value} input/output", f"use --io {allowed}")
    return io


# --------------------------------------------------------------- converting


def build_converter(
    source: Any, mode: Mode, io: IOType, representative: Callable[[], Iterator] | None, sparse: bool = False
) -> Any:
    """A configured TFLiteConverter for a `SourceModel`.

    Integer modes always allow builtin float kernels as a fallback so that the
    converter never fails opaquely; `check_promises` then names every op that
    stayed float and the caller decides (error, or report with
    --allow-float-fallback).
    """
    from tfcompress.keras_compat import tf

    if source.model is not None:
        converter = tf.lite.TFLiteConverter.from_keras_model(source.model)
    else:
        converter = tf.lite.TFLiteConverter.from_saved_model(source.path)
    spec = MODE_SPECS[mode]
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if sparse:
        converter.optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    if spec.ops:
        converter.target_spec.supported_ops = [getattr(tf.lite.OpsSet, o) for o in spec.ops] + [
            tf.lite.OpsSet.TFLITE_BUILTINS
        ]
    if spec.supported_types:
        converter.target_spec.supported_types = [getattr(tf, t) for t in spec.supported_types]
    if spec.calibrated:
        converter.representative_dataset = representative
    if io is not IOType.FLOAT32:
        converter.inference_input_type = getattr(tf, _TF_IO_DTYPES[io])
        converter.inference_output_type = getattr(tf, _TF_IO_DTYPES[io])
    return converter


def run_converter(converter: Any, what: str) -> bytes:
    """Convert with the converter's chatter captured; its last error line goes into our error."""
    err: Exception | None = None
    with captured_output() as log:
        try:
            return converter.convert()
        except Exception as e:  # the converter raises ConverterError, ValueError, RuntimeError...
            err = e
    detail = _last_error_line(str(err)) or _last_error_line(log.text)
    raise ConversionError(
        f"the TFLite converter failed on {what}: {detail}",
        "run `tfcompress inspect` on the model to find the layer; try --mode dynamic or --allow-float-fallback",
    ) from None


def calibrate(source: Any, representative: Callable[[], Iterator]) -> bytes:
    """The model with int8 calibration statistics recorded, not yet quantized (for `quantize_calibrated`).

    Calibration runs the representative data once; quantizing afterwards takes
    milliseconds, so per-layer variants (which ops stay float) cost one calibration.
    """
    converter = build_converter(source, Mode.INT8, IOType.INT8, representative)
    converter._experimental_calibrate_only = True  # public in effect: what tf.lite's QuantizationDebugger sets
    return run_converter(converter, f"model '{source.name}' (calibration)")


def convert_float32(source: Any) -> bytes:
    """The model as a plain float32 .tflite (no optimization): the input of ai-edge-quantizer's per-op recipes."""
    from tfcompress.keras_compat import tf

    if source.model is not None:
        converter = tf.lite.TFLiteConverter.from_keras_model(source.model)
    else:
        converter = tf.lite.TFLiteConverter.from_saved_model(source.path)
    return run_converter(converter, f"model '{source.name}' (float32)")


def quantize_calibrated(calibrated: bytes, io: IOType = IOType.INT8, float_ops: tuple[str, ...] = ()) -> bytes:
    """Full int8 from a `calibrate` result, except the ops named in `float_ops` (their output tensor names), left float.

    With `float_ops` empty this computes what `build_converter` + `run_converter` ship in int8 mode.
    """
    from tfcompress.keras_compat import tf, tflite_quantizer

    dtype = getattr(tf, _TF_IO_DTYPES[io]) if io is not IOType.FLOAT32 else tf.float32
    with captured_output() as log:
        try:
            return tflite_quantizer()(
                calibrated, input_data_type=dtype, output_data_type=dtype, denylisted_nodes=list(float_ops) or None
            )
        except Exception as e:  # the quantizer raises RuntimeError / ValueError with C++ text
            err: Exception = e
    raise ConversionError(
        f"quantizing the calibrated model failed: {_last_error_line(str(err)) or _last_error_line(log.text)}",
        "report this with the model; `tfcompress convert --allow-float-fallback` shows which ops resist int8",
    )


def convert_int8_random(model: Any, *, samples: int = 4, seed: int = 0, what: str = "") -> bytes:
    """Full-integer int8 (int8 kernels only, int8 in / out) calibrated on random data.

    For latency work (one-op profiling models, models whose kernels the predictor
    reads): latency does not depend on weight or activation values, so no data is needed.

    Raises:
        ConversionError: an input has a variable size, or the converter fails.
    """
    import numpy as np

    from tfcompress.keras_compat import tf

    what = what or f"model '{model.name}'"
    shapes = [(1, *(_fixed_dim(d, what, t) for d in t.shape[1:])) for t in model.inputs]  # batch 1
    dtypes = [np.dtype(getattr(t.dtype, "as_numpy_dtype", t.dtype)) for t in model.inputs]
    rng = np.random.default_rng(seed)

    def sample(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        if np.issubdtype(dtype, np.integer) or dtype == np.bool_:  # token ids, indices, masks: 0 / 1 are valid
            return rng.integers(0, 2, size=shape).astype(dtype)
        return rng.uniform(-1, 1, size=shape).astype(np.float32)

    def representative() -> Iterator[list[Any]]:
        for _ in range(samples):
            yield [sample(s, d) for s, d in zip(shapes, dtypes)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return run_converter(converter, what)


def _fixed_dim(dim: Any, what: str, tensor: Any) -> int:
    if dim is None:
        raise ConversionError(
            f"{what} input {tensor.name} has a variable size {tuple(tensor.shape)}: latency depends on it",
            "build the model with a fixed input shape (e.g. Input((224, 224, 3))) to predict its latency",
        )
    return int(dim)


def _last_error_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "error" in ln.lower():
            return ln[:300]
    return lines[-1][:300] if lines else ""


# ------------------------------------------------------------ promise checks


@dataclass(frozen=True)
class FloatOp:
    """An op that computes in floating point inside an integer model."""

    index: int
    op_type: str
    layers: tuple[str, ...]

    def describe(self) -> str:
        where = ", ".join(self.layers) if self.layers else "unknown layer"
        return f"{self.op_type} (layer {where})"


@dataclass(frozen=True)
class PromiseCheck:
    """What reading the converted model back found."""

    io_ok: bool
    io_found: tuple[str, ...]
    float_ops: tuple[FloatOp, ...]
    weight_dtypes: tuple[str, ...]
    problems: tuple[str, ...]


def check_promises(tfl: Any, mode: Mode, io: IOType, layer_names: list[str], float_inputs: list[bool]) -> PromiseCheck:
    """Check a converted model (a `TfliteModel`) against what `mode` promises.

    Args:
        tfl: the model read back with `tflite_file.read_tflite`.
        mode: the requested mode.
        io: the requested I/O dtype.
        layer_names: source Keras layer names, to name float ops.
        float_inputs: per source input, whether it is floating point (only
            those get the requested I/O dtype; integer inputs such as token ids
            keep theirs).
    """
    from tfcompress.export.tflite_file import layer_names_for_ops

    spec = MODE_SPECS[mode]
    problems: list[str] = []
    ins = tfl.input_details()
    outs = tfl.output_details()
    io_found = tuple(d.dtype for d in ins) + tuple(d.dtype for d in outs)
    wanted = _TF_IO_DTYPES[io]
    checked = [d for d, is_float in zip(ins, float_inputs) if is_float] + list(outs)
    bad_io = [d for d in checked if d.dtype != wanted]
    for d in bad_io:
        problems.append(f"tensor '{d.name}' is {d.dtype}, expected {wanted}")

    float_ops: tuple[FloatOp, ...] = ()
    if spec.calibrated:
        ops = tfl.float_ops()
        mapping = layer_names_for_ops(tfl, ops, layer_names)
        float_ops = tuple(FloatOp(op.index, op.op_type, tuple(mapping.get(op.index, ()))) for op in ops)

    weights = _weight_dtypes(tfl, spec.weight_min_elements)
    stray = sorted(set(weights) - spec.weight_dtypes - {"int32", "int64"})
    if stray and not float_ops:
        problems.append(f"weights of dtype {', '.join(stray)} left where {mode.value} promises {'/'.join(sorted(spec.weight_dtypes))}")
    return PromiseCheck(not bad_io, io_found, float_ops, tuple(sorted(set(weights))), tuple(problems))


def _weight_dtypes(tfl: Any, min_elements: int) -> list[str]:
    return [t.dtype for t in tfl.tensors if t.is_constant and _numel(t.shape) >= min_elements]


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= max(int(d), 1)
    return n
