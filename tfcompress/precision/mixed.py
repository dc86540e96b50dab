"""Per-op precision: int8, int16x8, int4 weights or float, chosen by rules, built by ai-edge-quantizer.

A rule matches ops by regexes (run by RE2) searched in the op's Keras layer
name(s), their classes and / or its TFLite op type; the first matching rule
gives the op its precision, other ops get the default. Ops are mapped to layers
through tensor names (`export.op_layers`), and a layer's class is that of the
Keras layer of that name: class rules need a Keras model. The float32 .tflite from the converter goes through
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
from typing import Any, Mapping, Sequence

from tfcompress.errors import ConversionError, TfcompressError
from tfcompress.types import PRECISIONS, Precision, PrecisionRule

__all__ = ["PRECISIONS", "MixedModel", "OpPrecision", "Precision", "PrecisionRule", "check_class_rules",
           "keras_layer_classes", "parse_rule", "plan_precision", "quantize_mixed", "quantize_source",
           "require_quantizer"]

# precision -> (activation bits, weight bits, weight-only), and the op types AEQ does it for (None: any it knows)
_AEQ: dict[str, tuple[int | None, int, bool, frozenset[str] | None]] = {
    "int8": (8, 8, False, None),
    "int16x8": (16, 8, False, None),
    "int4": (8, 4, False, frozenset({"CONV_2D", "FULLY_CONNECTED"})),
    "int4w": (None, 4, True, frozenset({"CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL", "EMBEDDING_LOOKUP"})),
}
INT4_OPS = _AEQ["int4"][3]
_NEVER = frozenset({"QUANTIZE", "DEQUANTIZE"})


def parse_rule(text: str) -> PrecisionRule:
    """A `--precision` value: 'LAYER=PREC', 'class:CLASS=PREC', 'op:OP=PREC', 'op:OP@LAYER=PREC', ... as a rule."""
    try:
        return PrecisionRule.parse(text)
    except ValueError as e:
        reason = e.errors()[0]["msg"].removeprefix("Value error, ") if hasattr(e, "errors") else str(e)
        raise TfcompressError(f"precision rule {text!r}: {reason}",
                              f"e.g. --precision 'head=float', 'class:^Dense$=int4' or 'op:FULLY_CONNECTED=int4' "
                              f"({', '.join(PRECISIONS)})") from None


def check_class_rules(rules: Sequence[PrecisionRule], has_classes: bool, what: str) -> None:
    """TfcompressError naming the first class rule when `what` (a model, a file) has no Keras layer classes."""
    if has_classes:
        return
    i, rule = next(((i, r) for i, r in enumerate(rules) if r.class_name is not None), (None, None))
    if rule is not None:
        raise TfcompressError(
            f"precision rule {i + 1} ({rule.text()!r}) matches Keras layer classes, and {what} has none",
            "convert the Keras model (.keras / .h5 / tf_keras SavedModel) it came from, or match layer names "
            "('LAYER=P') or op types ('op:OP=P') instead")


def keras_layer_classes(source: Any) -> dict[str, str] | None:
    """Layer name -> Keras class name of a loaded model (`loading.load_source`); None for a plain SavedModel."""
    from tfcompress.loading.source import walk_layers

    return None if source.model is None else {ref.name: ref.class_name for ref in walk_layers(source.model)}


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
                   default: Precision = "int8", layer_classes: Mapping[str, str] | None = None
                   ) -> tuple[OpPrecision, ...]:
    """Each op's precision (first matching rule, else `default`); an impossible choice is an error naming the op.

    `layer_classes`: layer name -> Keras class name, for class rules (None: the model has no Keras layers, and a
    class rule is an error naming it).
    """
    from tfcompress.export.op_layers import layer_names_for_ops
    from tfcompress.export.tflite_file import read_tflite

    check_class_rules(rules, layer_classes is not None, "this model")
    classes = dict(layer_classes or {})
    tfl = read_tflite(float_tflite)
    layers_by_op = layer_names_for_ops(tfl, None, list(layer_names))
    plan = []
    for op in tfl.operators:
        if op.op_type in _NEVER or not op.outputs:
            continue
        layers = tuple(layers_by_op.get(op.index, ()))
        kinds = tuple(classes.get(name, "") for name in layers)
        rule = next((i for i, r in enumerate(rules) if r.matches(op.op_type, layers, kinds)), None)
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
    from tfcompress.loading import load_source

    source = load_source(model, safe_mode=safe_mode)
    samples = data_mod.load_samples(data, source.input_specs(), max_samples=calib_samples)
    return quantize_source(source, samples.take(0, calib_samples), rules, default=default)


def quantize_source(source: Any, calib: Any, rules: Sequence[PrecisionRule], *, default: Precision = "int8",
                    float_tflite: bytes | None = None) -> MixedModel:
    """A loaded model (`loading.load_source`) quantized per `rules`, calibrated on `calib` (a `data.Samples`).

    `float_tflite`: the model's float32 conversion when the caller already has it (it is reused).
    """
    from tfcompress.export.converter import convert_float32

    if default not in ("int8", "int16x8"):
        raise TfcompressError(f"the default precision must be int8 or int16x8, got {default!r}",
                              "the ops no rule matches get it; give float / int4 ops with rules")
    check_class_rules(rules, source.model is not None, f"the {source.format} model {source.name!r}")
    float_tflite = float_tflite if float_tflite is not None else convert_float32(source)
    plan = plan_precision(float_tflite, source.layer_names(), rules, default, keras_layer_classes(source))
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


def require_quantizer(what: str = "per-op precision") -> None:
    """TfcompressError naming the extra `tfcompress[mixed]` when ai-edge-quantizer (int4, int16x8) cannot be
    imported."""
    try:
        import ai_edge_quantizer  # noqa: F401
    except ImportError:
        raise TfcompressError(f"{what} needs ai-edge-quantizer, which is not installed",
                              "pip install 'tfcompress[mixed]'") from None


def _aeq_quantize(float_tflite: bytes, plan: Sequence[OpPrecision], calib: Any) -> bytes:
    require_quantizer()
    from ai_edge_quantizer import quantizer, qtyping

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
