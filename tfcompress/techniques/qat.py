"""Quantization-aware training, over TF-MOT (`technique: qat`), incl. PQAT / CQAT / PCQAT.

TF-MOT's default 8-bit registry lacks some layers that real models use
(EfficientNet's Rescaling / Normalization / SE Multiply, ...). `QUANTIZE_CONFIGS`
adds QuantizeConfigs for them: one line per layer class. Layers that still
cannot be quantized are listed by name before training starts and left
float; the converter calibrates them afterwards.

The collaborative schemes keep what earlier stages made: `prune_preserve`
(PQAT) keeps zeros, `cluster_preserve` (CQAT) keeps cluster centroids,
`prune_cluster_preserve` (PCQAT) keeps both. `auto` picks by reading the
weights.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt

from tfcompress.techniques import load_tfmot
from tfcompress.techniques.base import Capability, StageContext, Technique
from tfcompress.types import LayerRule

SCHEMES = ("auto", "default", "prune_preserve", "cluster_preserve", "prune_cluster_preserve")


class Params(BaseModel):
    """Recipe `params:` of a qat stage (field descriptions are the docs and the JSON Schema)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scheme: Literal["auto", "default", "prune_preserve", "cluster_preserve", "prune_cluster_preserve"] = Field(
        "auto", description='which TF-MOT scheme; "auto" reads sparsity / cluster counts from the weights')
    sparsity_threshold: StrictFloat = Field(
        0.2, gt=0.0, lt=1.0, description='"auto" treats kernels with at least this fraction of zeros as pruned')
    max_clusters: StrictInt = Field(
        256, ge=2, le=65536, description='"auto" treats kernels with at most this many unique values as clustered')


class UnquantizedLayerWarning(UserWarning):
    """Layers QAT leaves float (the converter calibrates them afterwards)."""


def _output_only_config() -> type:
    """A QuantizeConfig that quantizes a layer's output activations only (no weights)."""
    tfmot = load_tfmot()
    q = tfmot.quantization.keras

    class OutputQuantizeConfig(q.QuantizeConfig):
        """8-bit moving-average fake-quant on the output; weights (if any) untouched."""

        def get_weights_and_quantizers(self, layer: Any) -> list:
            return []

        def get_activations_and_quantizers(self, layer: Any) -> list:
            return []

        def set_quantize_weights(self, layer: Any, quantize_weights: list) -> None:
            pass

        def set_quantize_activations(self, layer: Any, quantize_activations: list) -> None:
            pass

        def get_output_quantizers(self, layer: Any) -> list:
            return [q.quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False, narrow_range=False)]

        def get_config(self) -> dict:
            return {}

    return OutputQuantizeConfig


def _pass_through_config() -> type:
    """A QuantizeConfig that quantizes nothing: the layer's output keeps its input's quantization."""
    base = _output_only_config()

    class PassThroughQuantizeConfig(base):  # type: ignore[misc, valid-type]
        """No fake-quant at all: int8 average pooling must have the same scale in and out."""

        def get_output_quantizers(self, layer: Any) -> list:
            return []

    return PassThroughQuantizeConfig


# Layer classes TF-MOT's default 8-bit registry lacks (or gets wrong) -> QuantizeConfig factory.
QUANTIZE_CONFIGS: dict[str, Any] = {
    "Multiply": _output_only_config,  # squeeze-and-excitation gates (EfficientNet, MobileNetV3)
    "Rescaling": _output_only_config,  # input scaling (EfficientNet)
    "Normalization": _output_only_config,  # input normalization (EfficientNet)
    "Subtract": _output_only_config,
    "Average": _output_only_config,
    "Maximum": _output_only_config,
    "Minimum": _output_only_config,
    "Cropping2D": _output_only_config,
    # TF-MOT gives average pooling its own output range; the converter then refuses the model ("average_pool_2d
    # op quantization parameters violate the same scale constraint", DenseNet's transitions).
    "AveragePooling1D": _pass_through_config,
    "AveragePooling2D": _pass_through_config,
}

# Handled by TF-MOT's layout transforms (folded into the preceding conv), not by the registry.
_FOLDED = ("BatchNormalization",)
# What the folding transforms fold a BatchNormalization into (a linear conv / dense right before it).
_FOLDS_INTO = ("Conv2D", "DepthwiseConv2D", "Dense")
# Activation functions TF-MOT's Default8BitActivationQuantizeConfig knows (it raises on any other).
_TFMOT_ACTIVATIONS = ("relu", "swish", "gelu", "relu6", "linear", "softmax", "sigmoid", "tanh")


def _output_only_reason(layer: Any) -> str | None:
    """Why a layer TF-MOT would take by class needs the output-only config instead, or None.

    An Activation whose function TF-MOT's activation config does not know (Keras 3's hard_silu in MobileNetV3,
    elu, ...) makes quantize_apply raise; a BatchNormalization that follows no linear conv / dense
    (DenseNet's BN after Concatenate, a BN on the input) is folded by no transform and TF-MOT refuses it."""
    cls = type(layer).__name__
    if cls == "Activation":
        name = getattr(layer.activation, "__name__", None)
        return None if name in _TFMOT_ACTIVATIONS else f"activation {name or layer.activation!r}"
    if cls in _FOLDED:
        nodes = getattr(layer, "_inbound_nodes", [])
        before = _as_list(nodes[0].inbound_layers) if nodes else []
        prev = before[0] if len(before) == 1 else None
        if type(prev).__name__ in _FOLDS_INTO and getattr(prev.activation, "__name__", None) == "linear":
            return None
        return f"after {type(prev).__name__ if prev is not None else 'the input'}"
    return None


def _as_list(x: Any) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _registry() -> Any:
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry,
    )

    return default_8bit_quantize_registry.Default8BitQuantizeRegistry()


def _is_input(layer: Any) -> bool:
    from tfcompress.keras_compat import tf_keras

    return isinstance(layer, tf_keras.layers.InputLayer)


def choose_scheme(model: Any, params: Params) -> str:
    """The scheme `auto` means for this model: read sparsity and unique-value counts of kernels."""
    if params.scheme != "auto":
        return params.scheme
    # Conv / Dense kernels only: depthwise kernels are never pruned or clustered by TF-MOT
    # and would outvote the real evidence in MobileNet-style models.
    kernels = [
        w.numpy()
        for layer in model.layers
        for w in layer.trainable_weights
        if w.name.split("/")[-1].startswith("kernel") and w.shape.rank >= 2
    ]
    kernels = [k for k in kernels if k.size >= 256]
    if not kernels:
        return "default"
    sparse = np.mean([float(np.mean(k == 0)) >= params.sparsity_threshold for k in kernels]) >= 0.5
    clustered = np.mean([np.unique(k).size <= params.max_clusters for k in kernels]) >= 0.5
    return {(False, False): "default", (True, False): "prune_preserve", (False, True): "cluster_preserve", (True, True): "prune_cluster_preserve"}[
        (bool(sparse), bool(clustered))
    ]


def _scheme_object(name: str) -> Any:
    tfmot = load_tfmot()
    combine = tfmot.experimental.combine
    q = tfmot.quantization.keras
    scheme = {
        "default": q.default_8bit.Default8BitQuantizeScheme,
        "prune_preserve": combine.Default8BitPrunePreserveQuantizeScheme,
        "cluster_preserve": lambda: combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=False),
        "prune_cluster_preserve": lambda: combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=True),
    }[name]()

    class Registry:
        """The scheme's registry, claiming only layers it can give a working config.

        quantize_apply quantizes the output of an unannotated layer that feeds an annotated one whenever the
        registry `supports` it; TF-MOT's registries claim layers they then fail on: the collaborative ones every
        layer without weights (MaxPooling1D, TFOpLambda: `get_quantize_config` raises), the default one every
        Activation (its config raises on functions it does not know, e.g. Keras 3's hard_silu)."""

        def __init__(self, inner: Any) -> None:
            self._inner = inner

        def supports(self, layer: Any) -> bool:
            if not self._inner.supports(layer):
                return False
            try:
                self._inner.get_quantize_config(layer).get_output_quantizers(layer)
            except (ValueError, RuntimeError, KeyError):
                return False
            return True

        def __getattr__(self, attr: str) -> Any:
            return getattr(self._inner, attr)

    class Scheme(q.QuantizeScheme):
        def get_layout_transformer(self) -> Any:
            return scheme.get_layout_transformer()

        def get_quantize_registry(self) -> Any:
            return Registry(scheme.get_quantize_registry())

    return Scheme()


@dataclass(frozen=True)
class QatPlan:
    """Which layers QAT quantizes, which it leaves float and why."""

    scheme: str
    annotated: tuple[str, ...]
    custom_config: tuple[str, ...]
    skipped: tuple[str, ...]
    unsupported: tuple[str, ...]


def plan(model: Any, params: Params, rules: tuple[LayerRule, ...] = ()) -> QatPlan:
    """Decide per layer before any training: default config, our config, skip, or unsupported."""
    from tfcompress.techniques.rules import matches

    registry = _registry()
    annotated, custom, skipped, unsupported = [], [], [], []
    for layer in model.layers:
        if _is_input(layer):
            continue
        rule = next((r for r in rules if matches(r.match, layer)), None)
        cls = type(layer).__name__
        if rule is not None and rule.skip:
            skipped.append(layer.name)
        elif cls in QUANTIZE_CONFIGS or _output_only_reason(layer) is not None:
            custom.append(layer.name)
        elif registry.supports(layer) or cls in _FOLDED:
            annotated.append(layer.name)
        else:
            unsupported.append(f"{layer.name} ({cls})")
    return QatPlan(choose_scheme(model, params), tuple(annotated), tuple(custom), tuple(skipped), tuple(unsupported))


def apply(model: Any, params: Params, rules: tuple[LayerRule, ...] = (), ctx: StageContext = StageContext()) -> Any:
    """Annotate and wrap the model for QAT with the chosen scheme.

    Layers without a QuantizeConfig are named in an `UnquantizedLayerWarning`
    (before training) and left float.
    """
    from tfcompress.keras_compat import tf_keras
    from tfcompress.techniques.rules import fresh_copy

    tfmot = load_tfmot()
    q = tfmot.quantization.keras
    model = fresh_copy(model)
    p = plan(model, params, rules)
    if p.unsupported:
        warnings.warn(
            f"QAT leaves {len(p.unsupported)} layer(s) float (no QuantizeConfig): {', '.join(p.unsupported)}; "
            "the converter calibrates them afterwards",
            UnquantizedLayerWarning,
            stacklevel=2,
        )
    annotate = set(p.annotated)
    custom = set(p.custom_config)
    # one QuantizeConfig class per factory (a factory makes a new class per call); layers given the output-only
    # config by `_output_only_reason` rather than by class use that factory's
    classes = {f: f() for f in dict.fromkeys([*QUANTIZE_CONFIGS.values(), _output_only_config])}

    def wrap(layer: Any) -> Any:
        if layer.name in custom:
            config = classes[QUANTIZE_CONFIGS.get(type(layer).__name__, _output_only_config)]
            return q.quantize_annotate_layer(layer, quantize_config=config())
        if layer.name in annotate:
            return q.quantize_annotate_layer(layer)
        return layer

    annotated = tf_keras.models.clone_model(model, clone_function=wrap)
    scope = {cfg.__name__: cfg for cfg in classes.values()}
    with q.quantize_scope(scope):
        return q.quantize_apply(annotated, _scheme_object(p.scheme))


# Nothing to strip (QAT models convert as they are: fake-quant carries the ranges) and no callbacks.
TECHNIQUE = Technique(
    name="qat",
    summary="quantization-aware training (TF-MOT), incl. PQAT/CQAT/PCQAT",
    params_type=Params,
    apply=apply,
    capabilities=frozenset({Capability.WRAPS_LAYERS, Capability.STAYS_WRAPPED}),
    size_advice="QAT fixes each quantized layer's output range while training, so where the converter alone would "
                "give tensors one scale (a Concatenate's inputs) it requantizes (QUANTIZE ops), and what it would fold "
                "into the layer before (a constant added after a conv: MobileNetV3's hard-sigmoid x + 3) stays an "
                "op: graph bytes and a little latency, not weights",
)
