"""One table keyed by op type: the one-op model the profiler times, and how the predictor costs the op.

    OP_SPECS["CONV_2D"].features(key)     # the regression's cost features
    kernel_model(key)                     # the one-op tf_keras model of a key (TensorFlow loads here)
    spec_of(key)                          # the spec of any key, measurable or not

The keys of `OP_SPECS` are the measurable ops (`MEASURABLE_OPS`): adding an op
the profiler can time is one entry. Ops not in the table are predicted by
regression only (`REGRESSION_ONLY`); ops whose inputs are all constant
(`DENSIFY` of sparse weights) run once at prepare time (`AT_PREPARE`, 0 ms).
No TensorFlow at import: builders get tf / tf_keras from `kernel_model`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tfcompress.hardware.kernels import KernelKey

__all__ = ["CHANNEL_TILE", "STEM_CHANNELS", "OpSpec", "OP_SPECS", "MEASURABLE_OPS", "REGRESSION_ONLY", "AT_PREPARE", "spec_of",
           "fresh_inputs", "kernel_model"]

CHANNEL_TILE = 16
"""int8 lanes of a 128-bit vector: XNNPACK's int8 channel-wise kernels process channels in tiles of 16, so an op
on 8 channels costs about what it costs on 16. Rounding channels up to it for channel-wise work (depthwise,
convolution input channels, per-channel broadcast MUL) halved the regression's error on unseen depthwise kernels
and 1x1 convolutions (docs/latency.md); plain element-wise ops (ADD, activations) run on the flat tensor."""


STEM_CHANNELS = 4
"""Convolutions on this many input channels or fewer (RGB / grey images) form their own regression group."""


def _up(n: int, tile: int) -> int:
    return -(-n // tile) * tile


def _elements(shape: tuple[int, ...], tile: int = 1) -> int:
    """Elements of `shape` with its last (channel) dimension rounded up to `tile`."""
    if not shape:
        return 0
    n = 1
    for d in shape[:-1]:
        n *= max(d, 1)
    return n * _up(max(shape[-1], 1), tile)


def _millions(n: int) -> float:
    return min(max(n, 0), 10**30) / 1e6


def _positions(key: KernelKey) -> int:
    return _elements(key.out_shape[:-1]) if key.out_shape else 0


# ------------------------------------------------------------------ cost rules


def _conv_macs(key: KernelKey) -> int:
    kh, kw = key.kernel
    return _positions(key) * kh * kw * _up(key.cin, CHANNEL_TILE) * _up(key.cout, 4)


def _depthwise_macs(key: KernelKey) -> int:
    kh, kw = key.kernel
    return _positions(key) * kh * kw * _up(key.cout, CHANNEL_TILE)


def _window_macs(key: KernelKey) -> int:
    """A pooling window's reads: output elements times window size. Activations alone priced a 3x3 average pool at
    stride 1 like one at stride 2 (which reads a quarter as many windows): InceptionV3's stride-1 pools were predicted
    at 2/3 of their time (docs/latency.md)."""
    kh, kw = key.kernel
    return _elements(key.out_shape) * max(kh, 1) * max(kw, 1)


def _key_macs(key: KernelKey) -> int:
    return key.macs


def _never(key: KernelKey) -> bool:
    return False


def _always(key: KernelKey) -> bool:
    return True


def _broadcast(key: KernelKey) -> bool:
    """A per-channel broadcast (squeeze-excite MUL), not an element-wise product."""
    return bool(key.extra) and _elements(key.extra) != _elements(key.in_shape)


def _product_kind(key: KernelKey) -> str:
    """A MUL's regression group: "broadcast" (squeeze-excite scaling), "elementwise" (a swish gate, x * sigmoid(x))
    or "constant" (by a constant per channel: a normalization the converter could not fold into a convolution).

    One line fitted on both, its LUT mostly squeeze-excite products, put EfficientNet's swish products at 1.5x
    their time (0.36 vs 0.20-0.29 ns an element measured; docs/latency.md); DenseNet's normalizations, costed as
    swish products, came out at 0.6x theirs."""
    if not key.extra:
        return "constant"
    return "broadcast" if _broadcast(key) else "elementwise"


# ------------------------------------------------------------------ one-op models


class _Graph:
    """What a builder gets: tf, the layers, the first input, and a way to add a second one."""

    def __init__(self, key: KernelKey) -> None:
        from tfcompress.keras_compat import tf, tf_keras

        self.tf, self.keras, self.L = tf, tf_keras, tf_keras.layers
        self.key = key
        self.inputs = [tf_keras.Input(key.in_shape[1:], batch_size=1)]
        self.x = self.inputs[0]

    def second_input(self) -> Any:
        other = self.keras.Input((self.key.extra or self.key.in_shape)[1:], batch_size=1)
        self.inputs.append(other)
        return other

    def act(self, y: Any) -> Any:
        """The key's fused activation (the converter folds it back into the op)."""
        if self.key.activation == "RELU6":
            return self.L.ReLU(6.0)(y)
        if self.key.activation == "RELU":
            return self.L.ReLU()(y)
        return y


def _conv(g: _Graph, k: KernelKey) -> Any:
    return g.act(g.L.Conv2D(k.cout, k.kernel, strides=k.stride, padding=k.padding.lower())(g.x))


def _depthwise(g: _Graph, k: KernelKey) -> Any:
    mult = max(k.cout // max(k.cin, 1), 1)
    return g.act(g.L.DepthwiseConv2D(k.kernel, strides=k.stride, padding=k.padding.lower(),
                                     depth_multiplier=mult)(g.x))


def _dense(g: _Graph, k: KernelKey) -> Any:
    return g.act(g.L.Dense(k.cout)(g.L.Reshape((k.cin,))(g.x) if len(k.in_shape) != 2 else g.x))


def _binary(name: str) -> Callable[[_Graph, KernelKey], Any]:
    def build(g: _Graph, k: KernelKey) -> Any:
        fn = getattr(g.tf, name)
        if not k.extra:  # the other operand is constant (a folded normalization): one value a channel
            c = np.random.default_rng(0).uniform(0.5, 1.5, size=(max(k.in_shape[-1], 1),)).astype(np.float32)
            return g.act(g.L.Lambda(lambda t: fn(t, g.tf.constant(c)))(g.x))
        return g.act(g.L.Lambda(lambda ab: fn(ab[0], ab[1]))([g.x, g.second_input()]))

    return build


def _mean(g: _Graph, k: KernelKey) -> Any:
    keep = len(k.out_shape) == len(k.in_shape)
    return g.L.Lambda(lambda t: g.tf.reduce_mean(t, axis=[1, 2], keepdims=keep))(g.x)


def _hard_swish(g: _Graph, k: KernelKey) -> Any:
    return g.L.Lambda(lambda t: t * g.tf.nn.relu6(t + 3.0) / 6.0)(g.x)


def _pad(g: _Graph, k: KernelKey) -> Any:
    h, w = k.in_hw
    return g.L.ZeroPadding2D(((0, k.out_shape[1] - h), (0, k.out_shape[2] - w)))(g.x)


def _pool(layer: str) -> Callable[[_Graph, KernelKey], Any]:
    def build(g: _Graph, k: KernelKey) -> Any:
        return getattr(g.L, layer)(k.kernel, strides=k.stride, padding=k.padding.lower())(g.x)

    return build


def _layer(make: Callable[[Any, KernelKey], Any]) -> Callable[[_Graph, KernelKey], Any]:
    """A builder applying one Keras layer, `make(layers, key)`, to the input."""
    return lambda g, k: make(g.L, k)(g.x)


# ------------------------------------------------------------------ the table


@dataclass(frozen=True)
class OpSpec:
    """How the profiler builds one op type and how the predictor's regression sees it.

    Attributes:
        build: (graph, key) -> output of the one-op model; None: not measurable.
        macs: the MACs the regression sees (channel-tiled where the kernel tiles channels).
        channel_tiled: whether activations count in tiles of CHANNEL_TILE channels.
        kernel_groups: fit one regression per kernel size ("CONV_2D/k3") before the per-op one.
        subgroup: another split before the per-op regression ("MUL/broadcast"); None: none.
        neighbours: an unmeasured key's regression is corrected by the measured keys nearest in shape
            (`predict.LatencyModel`): ops whose speed varies with shape in ways MACs and bytes miss (GEMMs).
        at_prepare: runs once when the interpreter is prepared: 0 ms per invoke.
        fresh_inputs: the kernel's speed depends on the data (LiteRT's int8 RELU branches on every element): timed
            on new inputs every invoke (`edge_profile.FreshInputs`), as inside a model.
    """

    build: Callable[[_Graph, KernelKey], Any] | None = None
    macs: Callable[[KernelKey], int] = _key_macs
    channel_tiled: Callable[[KernelKey], bool] = _never
    kernel_groups: bool = False
    subgroup: Callable[[KernelKey], str] | None = None
    neighbours: bool = False
    at_prepare: bool = False
    fresh_inputs: bool = False

    def groups(self, key: KernelKey) -> tuple[str, ...]:
        """Regression groups, most specific first ("all" last).

        With `kernel_groups`, a convolution on at most STEM_CHANNELS input channels (an image stem) is a group of
        its own: XNNPACK runs it with another kernel, several times slower per MAC than a 64-channel convolution,
        and fitting both on one line predicted ResNet-style 3x3 convolutions at twice their time.
        """
        if self.kernel_groups:
            stem = "/stem" if 0 < key.cin <= STEM_CHANNELS and key.op == "CONV_2D" else ""
            return f"{key.op}/k{key.kernel[0]}{stem}", key.op, "all"
        if self.subgroup is not None:
            return f"{key.op}/{self.subgroup(key)}", key.op, "all"
        return key.op, "all"

    def features(self, key: KernelKey) -> np.ndarray:
        """Cost features: [1, MACs, activation elements in+out, weight elements] (in millions).

        Each is clipped to [0, 1e24]: a key with dynamic (-1) channels or absurd shapes costs nothing
        negative and nothing a float cannot hold, so predictions stay finite and non-negative.
        """
        tile = CHANNEL_TILE if self.channel_tiled(key) else 1
        activations = _elements(key.in_shape, tile) + _elements(key.extra, tile) + _elements(key.out_shape, tile)
        return np.array([1.0, _millions(self.macs(key)), _millions(activations), _millions(key.weight_elements)])


OP_SPECS: dict[str, OpSpec] = {
    "CONV_2D": OpSpec(_conv, macs=_conv_macs, kernel_groups=True, neighbours=True),
    "DEPTHWISE_CONV_2D": OpSpec(_depthwise, macs=_depthwise_macs, channel_tiled=_always, kernel_groups=True,
                                neighbours=True),
    "FULLY_CONNECTED": OpSpec(_dense, neighbours=True),
    "ADD": OpSpec(_binary("add")),
    "MUL": OpSpec(_binary("multiply"), channel_tiled=_broadcast, subgroup=_product_kind),
    "MEAN": OpSpec(_mean),
    "LOGISTIC": OpSpec(_layer(lambda L, k: L.Activation("sigmoid"))),
    "HARD_SWISH": OpSpec(_hard_swish),
    "RELU": OpSpec(_layer(lambda L, k: L.ReLU()), fresh_inputs=True),
    "RELU6": OpSpec(_layer(lambda L, k: L.ReLU(6.0)), fresh_inputs=True),
    # PAD's work column counts output positions: LiteRT copies a padded tensor a position at a time, and a 3-channel
    # image stem padded 64x64 -> 70x70 took 0.044 ms where a 64-channel 32x32 -> 34x34 one took 0.012 ms
    "PAD": OpSpec(_pad, macs=_positions),
    "AVERAGE_POOL_2D": OpSpec(_pool("AveragePooling2D"), macs=_window_macs),
    "MAX_POOL_2D": OpSpec(_pool("MaxPooling2D"), macs=_window_macs),
    "RESHAPE": OpSpec(_layer(lambda L, k: L.Reshape(k.out_shape[1:]))),
    "SOFTMAX": OpSpec(_layer(lambda L, k: L.Softmax())),
}
"""Measurable op type -> its spec. Other op types get REGRESSION_ONLY."""

MEASURABLE_OPS: frozenset[str] = frozenset(OP_SPECS)
"""Op types the profiler can build a one-op model for; others are predicted by regression only."""

REGRESSION_ONLY = OpSpec()
"""An op the profiler cannot build: predicted from the regressions of its op type, else of all ops."""

AT_PREPARE = OpSpec(at_prepare=True)
"""An op without activation inputs (DENSIFY of sparse weights): the interpreter runs it once, at prepare."""


def fresh_inputs(key: KernelKey) -> bool:
    """Whether `key` is timed on new inputs every invoke (its op's `OpSpec.fresh_inputs`)."""
    spec = OP_SPECS.get(key.op)
    return spec is not None and spec.fresh_inputs


def spec_of(key: KernelKey) -> OpSpec:
    """The spec of any key: AT_PREPARE without activation input, else its op's, else REGRESSION_ONLY."""
    if not key.in_shape:
        return AT_PREPARE
    return OP_SPECS.get(key.op, REGRESSION_ONLY)


def kernel_model(key: KernelKey) -> Any:
    """A tf_keras model that converts to (essentially) the single op `key`.

    Raises:
        ValueError: `key.op` is not measurable.
    """
    spec = OP_SPECS.get(key.op)
    if spec is None or spec.build is None:
        raise ValueError(f"cannot build a one-op model for {key.op}")
    g = _Graph(key)
    return g.keras.Model(g.inputs, spec.build(g, key))
