"""Per-op precision: int8, int16x8, int4 weights or float, chosen by rules, built by ai-edge-quantizer.

A rule matches ops by a regex searched in the op's Keras layer name(s) and / or
its TFLite op type; the first matching rule gives the op its precision, other
ops get the default. The float32 .tflite from the converter goes through
ai-edge-quantizer (AEQ) with one per-op entry per op (its scope: the op's
output tensor names), calibrated on the given samples:

    int8     int8 weights and activations (static)
    int16x8  int16 activations, int8 weights (static)
    int4     int4 weights, int8 activations: CONV_2D, FULLY_CONNECTED
    int4w    int4 weights only, float compute: CONV_2D, FULLY_CONNECTED, BATCH_MATMUL, EMBEDDING_LOOKUP
    float    left as it is

Plans of int8 and float only go through the TFLite converter's own quantizer
instead (the float ops deny-listed): it kept twice the output SNR of AEQ's int8
where we measured both (see `_converter_quantize`). The result keeps float
inputs and outputs (quantized at the boundary);
every op's dtypes are read back from the file (`plan` says what was asked,
`tfcompress inspect` / the report show what is there). AEQ is the optional
extra `tfcompress[mixed]` (it pins ai-edge-litert exactly; see README).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, Sequence

from tfcompress.errors import ConversionError, TfcompressError

Precision = Literal["int8", "int16x8", "int4", "int4w", "float"]
PRECISIONS: tuple[str, ...] = ("int8", "int16x8", "int4", "int4w", "float")

# precision -> (activation bits, weight bits, weight-only), and the op types AEQ does it for (None: any it knows)
_AEQ: dict[str, tuple[int | None, int, bool, frozenset[str] | None]] = {
    "int8": (8, 8, False, None),
    "int16x8": (16, 8, False, None),
    "int4": (8, 4, False, frozenset({"CONV_2D", "FULLY_CONNECTED"})),
    "int4w": (None, 4, True, frozenset({"CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL", "EMBEDDING_LOOKUP"})),
}
_NEVER = frozenset({"QUANTIZE", "DEQUANTIZE"})


@dataclass(frozen=True)
class PrecisionRule:
    """Ops whose layer name / op type match get `precision` (regexes, re.search; both given: both must match)."""

    precision: Precision
    layer: str | None = None
    op: str | None = None

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.layer is None and self.op is None:
            raise ValueError("a precision rule needs a layer and / or an op regex")

    def matches(self, op_type: str, layers: Sequence[str]) -> bool:
        if self.op is not None and not re.search(self.op, op_type):
            return False
        return self.layer is None or any(re.search(self.layer, name) for name in layers)

    @classmethod
    def parse(cls, text: str) -> PrecisionRule:
        """'REGEX=PRECISION' (layer name) or 'op:REGEX=PRECISION' (op type), as on the command line."""
        pattern, sep, precision = text.rpartition("=")
        if not sep or not pattern:
            raise TfcompressError(f"precision rule {text!r} is not PATTERN=PRECISION",
                                  f"e.g. --precision 'head=float' or --precision 'op:FULLY_CONNECTED=int4' "
                                  f"({', '.join(PRECISIONS)})")
        try:
            if pattern.startswith("op:"):
                re.compile(pattern[3:])
                return cls(precision.strip(), op=pattern[3:])  # type: ignore[arg-type]
            re.compile(pattern)
            return cls(precision.strip(), layer=pattern)  # type: ignore[arg-type]
        except (ValueError, re.error) as e:
            raise TfcompressError(f"precision rule {text!r}: {e}", f"precisions: {', '.join(PRECISIONS)}") from None


@dataclass(frozen=True)
class OpPrecision:
    """What one op was asked to be."""

    op_index: int
    op_type: str
    tensor: str
    layers: tuple[str, ...]
    precision: str
    rule: int | None  # index of the rule that chose it; None: the default


@dataclass(frozen=True)
class MixedModel:
    """A per-op precision .tflite and the plan it was built from."""

    tflite: bytes
    plan: tuple[OpPrecision, ...]


def plan_precision(float_tflite: bytes, layer_names: Sequence[str], rules: Sequence[PrecisionRule],
                   default: Precision = "int8") -> tuple[OpPrecision, ...]:
    """Each op's precision (first matching rule, else `default`); an impossible choice is an error naming the op."""
    from tfcompress.export.op_layers import layer_names_for_ops
    from tfcompress.export.tflite_file import read_tflite

    tfl = read_tflite(float_tflite)
    layers_by_op = layer_names_for_ops(tfl, None, list(layer_names))
    plan = []
    for op in tfl.operators:
        if op.op_type in _NEVER or not op.outputs:
            continue
        layers = tuple(layers_by_op.get(op.index, ()))
        rule = next((i for i, r in enumerate(rules) if r.matches(op.op_type, layers)), None)
        precision = rules[rule].precision if rule is not None else default
        if precision != "float":
            supported = _AEQ[precision][3]
            if supported is not None and op.op_type not in supported:
                if rule is None:
                    precision = "int8"  # the default reaches every op: int4 where it can, int8 elsewhere
                else:
                    raise TfcompressError(
                        f"{precision} is not available for {op.op_type} (layer {', '.join(layers) or '?'}), "
                        f"chosen by precision rule {rule + 1}",
                        f"{precision} covers {', '.join(sorted(supported))}; narrow the rule, e.g. with op:",
                    )
        tensor = ";".join(tfl.tensors[i].name for i in op.outputs)
        plan.append(OpPrecision(op.index, op.op_type, tensor, layers, precision, rule))
    return tuple(plan)


def quantize_mixed(model: Any, data: Any, rules: Sequence[PrecisionRule], *, default: Precision = "int8",
                   calib_samples: int = 200, safe_mode: bool = True) -> MixedModel:
    """`model` quantized op by op following `rules` (see the module doc), calibrated on `data`."""
    from tfcompress import data as data_mod
    from tfcompress.export.converter import convert_float32
    from tfcompress.loading import load_source

    source = load_source(model, safe_mode=safe_mode)
    samples = data_mod.load_samples(data, source.input_specs(), max_samples=calib_samples)
    calib = samples.take(0, calib_samples)
    float_tflite = convert_float32(source)
    plan = plan_precision(float_tflite, source.layer_names(), rules, default)
    if {op.precision for op in plan} <= {"int8", "float"}:
        return MixedModel(_converter_quantize(source, plan, calib), plan)
    return MixedModel(_aeq_quantize(float_tflite, plan, calib), plan)


def _converter_quantize(source: Any, plan: Sequence[OpPrecision], calib: Any) -> bytes:
    """int8 + float only: the TFLite converter's own quantizer with the float ops deny-listed.

    Measured (`python benchmarks/int8_quantizers.py`): on a 64-256-256-10 MLP it kept 29.4 dB output SNR in
    int8 where ai-edge-quantizer 0.10's static int8 kept 15.1 dB (same 64 calibration samples), so AEQ is used only for what the converter
    cannot do per op (int4, int16x8).
    """
    from tfcompress import data as data_mod
    from tfcompress.export.converter import calibrate, quantize_calibrated
    from tfcompress.types import IOType

    calibrated = calibrate(source, lambda: data_mod.representative_dataset(calib))
    return quantize_calibrated(calibrated, IOType.FLOAT32, tuple(op.tensor for op in plan if op.precision == "float"))


def _aeq_quantize(float_tflite: bytes, plan: Sequence[OpPrecision], calib: Any) -> bytes:
    try:
        from ai_edge_quantizer import quantizer, qtyping
    except ImportError:
        raise TfcompressError("per-op precision needs ai-edge-quantizer", "pip install 'tfcompress[mixed]'") from None
    from tfcompress.quiet import captured_output
    from tfcompress.runtime import make_interpreter

    qt = quantizer.Quantizer(float_tflite)
    configured = 0
    for op in plan:
        if op.precision == "float" or op.op_type not in qtyping.TFLOperationName.__members__:
            continue
        act_bits, weight_bits, weight_only, _ = _AEQ[op.precision]
        scope = "^" + re.escape(op.tensor) + ";"  # AEQ's op scope: output tensor names joined by ';' plus ';'
        name = qtyping.TFLOperationName[op.op_type]
        if weight_only:
            qt.add_weight_only_config(scope, name, weight_bits)
        else:
            qt.add_static_config(scope, name, act_bits, weight_bits)
        configured += 1
    if not configured:
        return float_tflite
    signature = make_interpreter(float_tflite).get_signature_list()
    key, spec = next(iter(signature.items()))
    dataset = [{name: x[i : i + 1] for name, x in zip(spec["inputs"], calib.x)} for i in range(len(calib))]
    with captured_output() as log:
        try:
            qsv = qt.calibrate({key: dataset}) if qt.need_calibration else None
            return bytes(qt.quantize(qsv, enable_progress_report=False).quantized_model)
        except Exception as e:  # AEQ raises RuntimeError / ValueError with its own text
            err: Exception = e
    raise ConversionError(f"ai-edge-quantizer failed: {str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__}",
                          f"report this with the model and the precision rules; {log.text[-200:].strip()}")
