"""Efficient blocks built from one plain convolution's weights: separable, inverted residual, MBConv.

    separable            DW k x k [-> BN [-> ReLU6]] -> PW 1x1                              (MobileNetV1)
    inverted_residual    [1x1 expand (t*cin) -> BN -> ReLU6] -> DW k x k -> BN -> ReLU6
                         -> 1x1 linear projection [+ input]                                 (MobileNetV2)
    mbconv               as inverted_residual with swish / hard-swish, and a squeeze-and-excitation
                         gate (GAP -> 1x1 reduce -> 1x1 expand -> sigmoid) before the projection
                                                                      (EfficientNet / MobileNetV3)

The starting weights come from the original kernel K (kh, kw, cin, cout):
for each input channel c the best rank-1 split of K[:, :, c, :] (SVD) gives
the depthwise filter f_c and the pointwise row v_c (`separable_factors`).
Blocks with a residual add their input, so they factor K minus the identity
tap (`without_identity`): input + separable(K - I) = conv(K) when K - I is
separable.

The expansion carries the signal through the block's non-linearities in
signed pairs: every activation `a` used here (ReLU, ReLU6 up to 6, swish,
hard-swish) has a(u) - a(-u) = u. Channel copies with signs
(in, depthwise, out) = (+,+,+), (+,-,-), (-,+,-), (-,-,+) sum to v_c f_c * x
exactly, so with t >= 4 the block starts equal to the separable split of
the original. When the block's input is known to be >= 0 and the activation
is ReLU-like, a(x) = x already and two copies (t >= 2) suffice. Expansion
channels beyond those copies start fresh (random expand / depthwise weights)
with zero projection rows: they add nothing at the start and learn from the
first step. The squeeze-and-excitation gate starts constant at 0.5 (its expand
kernel and bias are zero) and the projection is doubled to compensate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from tfcompress.surgery.graph import LayerGraph, Replacement, clone_layer

__all__ = [
    "BlockSpec",
    "BlockWeights",
    "build_inverted_residual",
    "build_separable",
    "expanded_weights",
    "input_is_nonnegative",
    "separable_factors",
    "without_identity",
]

Activation = Literal["relu6", "swish", "hard_swish"]
SE_GATE = 0.5  # the squeeze-and-excitation gate at the start (sigmoid(0), hard_sigmoid(0))
# (input sign, depthwise sign, projection sign) of the expansion copies; see the module doc
SIGNED_COPIES = ((1, 1, 1), (1, -1, -1), (-1, 1, -1), (-1, -1, 1))


@dataclass(frozen=True)
class BlockSpec:
    """What one convolution becomes.

    Attributes:
        kind: "inverted_residual" or "mbconv".
        expansion: t; the block is t * cin channels wide inside (1: no expand layer).
        activation: "relu6", "swish" or "hard_swish".
        se_ratio: squeeze channels = max(1, round(cin * se_ratio)); 0: no squeeze-and-excitation.
        batch_norm: a BatchNormalization (starting as the identity) after expand and depthwise.
        residual: add the block's input to its output (stride 1, cin == cout, same padding).
        nonnegative_input: the block's input is >= 0 (it comes from a ReLU): fewer copies are needed.
    """

    kind: str
    expansion: int
    activation: Activation
    se_ratio: float
    batch_norm: bool
    residual: bool
    nonnegative_input: bool

    @property
    def copies(self) -> tuple[tuple[int, int, int], ...]:
        """Sign patterns carrying the original kernel (see the module doc)."""
        needed = 2 if self.nonnegative_input and self.activation == "relu6" else 4
        return SIGNED_COPIES[: min(needed, self.expansion)]

    @property
    def exact(self) -> bool:
        """Whether the start reproduces the separable split (ReLU6: while activations stay within +-6)."""
        needed = 2 if self.nonnegative_input and self.activation == "relu6" else 4
        return self.expansion >= needed


@dataclass(frozen=True)
class BlockWeights:
    """Starting kernels of an inverted residual / MBConv block (numpy, Keras layouts)."""

    expand: np.ndarray | None  # (1, 1, cin, E); None when expansion == 1
    depthwise: np.ndarray  # (kh, kw, E, 1)
    project: np.ndarray  # (1, 1, E, cout)
    carried: int  # expansion channels that carry the original kernel (the rest are fresh)
    energy: float  # fraction of the (residual-adjusted) kernel's squared norm the separable split keeps


def separable_factors(kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(depthwise (kh, kw, cin, 1), pointwise (1, 1, cin, cout), energy kept) of a (kh, kw, cin, cout) kernel."""
    kh, kw, cin, cout = kernel.shape
    depthwise = np.zeros((kh, kw, cin, 1), dtype=kernel.dtype)
    pointwise = np.zeros((1, 1, cin, cout), dtype=kernel.dtype)
    kept = total = 0.0
    for c in range(cin):
        u, s, vt = np.linalg.svd(kernel[:, :, c, :].reshape(kh * kw, cout).astype(np.float64), full_matrices=False)
        root = np.sqrt(s[0])
        depthwise[:, :, c, 0] = (u[:, 0] * root).reshape(kh, kw)
        pointwise[0, 0, c, :] = vt[0] * root
        kept += float(s[0] ** 2)
        total += float(np.sum(s**2))
    return depthwise, pointwise, (kept / total if total > 0 else 1.0)


def without_identity(kernel: np.ndarray) -> np.ndarray:
    """K minus the identity tap (the one a 'same'-padded stride-1 conv reads at the output's own pixel)."""
    kh, kw, cin, cout = kernel.shape
    out = kernel.copy()
    idx = np.arange(min(cin, cout))
    out[(kh - 1) // 2, (kw - 1) // 2, idx, idx] -= 1.0
    return out


def expanded_weights(kernel: np.ndarray, spec: BlockSpec, seed: int = 0) -> BlockWeights:
    """The block's starting kernels from the original (kh, kw, cin, cout) kernel (module doc)."""
    kh, kw, cin, cout = kernel.shape
    dw, pw, energy = separable_factors(without_identity(kernel) if spec.residual else kernel)
    gate = SE_GATE if spec.se_ratio > 0 else 1.0
    if spec.expansion == 1:
        return BlockWeights(None, dw, pw / gate, cin, energy)
    width = spec.expansion * cin
    rng = np.random.default_rng(seed)
    limit = np.sqrt(6.0 / (cin + width))
    expand = rng.uniform(-limit, limit, (1, 1, cin, width)).astype(np.float32)  # fresh channels: Glorot
    depthwise = (rng.standard_normal((kh, kw, width, 1)) * np.sqrt(2.0 / (kh * kw))).astype(np.float32)
    project = np.zeros((1, 1, width, cout), np.float32)
    for j, (s_in, s_dw, s_out) in enumerate(spec.copies):
        block = slice(j * cin, (j + 1) * cin)
        expand[0, 0, :, block] = s_in * np.eye(cin, dtype=np.float32)
        depthwise[:, :, block, 0] = s_dw * dw[:, :, :, 0]
        project[0, 0, block, :] = s_out * pw[0, 0] / gate
    return BlockWeights(expand, depthwise, project, len(spec.copies) * cin, energy)


# ------------------------------------------------------------------ the sign of a block's input

_PASS_SIGN = {"MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D", "ZeroPadding2D",
              "Dropout", "SpatialDropout2D", "Cropping2D", "UpSampling2D", "Concatenate", "Add", "Maximum"}


def input_is_nonnegative(graph: LayerGraph, key: int) -> bool:
    """Whether tensor `key` is >= 0 by construction (a ReLU's output, possibly pooled / padded / merged)."""
    producers = graph.producer()
    seen: set[int] = set()

    def nonneg(k: int) -> bool:
        if k in seen or k not in producers:
            return False  # a model input: unknown sign
        seen.add(k)
        node = graph.nodes[producers[k]]
        config = node.layer.get_config()
        if node.class_name == "ReLU":
            return not config.get("negative_slope") and not config.get("threshold")
        activation = config.get("activation")
        if activation in ("relu", "relu6", "sigmoid", "softmax", "hard_sigmoid"):
            return True
        if node.class_name in _PASS_SIGN:
            return all(nonneg(i) for i in node.inputs)
        return False

    return nonneg(key)


# ------------------------------------------------------------------ building the layers


def _identity_bn(bn: Any, channels: int) -> list[np.ndarray]:
    ones, zeros = np.ones(channels, np.float32), np.zeros(channels, np.float32)
    return [ones, zeros, zeros, ones - bn.epsilon]  # (x - 0) / sqrt(1 - eps + eps) = x


def build_separable(layer: Any, mid: str) -> tuple[Replacement, float, tuple[tuple[str, str], ...]]:
    """DW k x k [-> BN [-> ReLU6]] -> PW 1x1 replacing Conv2D `layer`; (replacement, energy, init per layer)."""
    from tfcompress.keras_compat import tf_keras

    weights = layer.get_weights()
    depthwise, pointwise, energy = separable_factors(weights[0])
    config = layer.get_config()
    dw = tf_keras.layers.DepthwiseConv2D(
        layer.kernel_size, strides=layer.strides, padding=config["padding"], dilation_rate=layer.dilation_rate,
        use_bias=False, name=f"{layer.name}_dw",
    )
    chain, chain_weights, init = [dw], [[depthwise]], [(dw.name, "original")]
    if mid in ("bn", "bn_relu6"):
        bn = tf_keras.layers.BatchNormalization(name=f"{layer.name}_dw_bn")
        chain.append(bn)
        chain_weights.append(_identity_bn(bn, depthwise.shape[2]))
        init.append((bn.name, "identity"))
        if mid == "bn_relu6":
            chain.append(tf_keras.layers.ReLU(6.0, name=f"{layer.name}_dw_relu"))
            chain_weights.append(None)
    pw = clone_layer(layer, kernel_size=(1, 1), strides=(1, 1), padding="valid", dilation_rate=(1, 1))
    chain.append(pw)
    chain_weights.append([pointwise, *weights[1:]])
    init.append((layer.name, "original"))
    return Replacement(tuple(chain), tuple(chain_weights)), energy, tuple(init)


class _Builder:
    """Collects a block's layers with their starting weights and init notes, in call order."""

    def __init__(self) -> None:
        self.layers: list[Any] = []
        self.weights: list[Any] = []
        self.init: list[tuple[str, str]] = []

    def add(self, layer: Any, weights: Any = None, how: str = "") -> Any:
        self.layers.append(layer)
        self.weights.append(weights)
        if how:
            self.init.append((layer.name, how))
        return layer


def _activation(b: _Builder, kind: str, name: str) -> Any:
    """x -> a(x) with layers every int8 converter kernel handles (hard-swish: x * clip(x / 6 + 1/2, 0, 1))."""
    from tfcompress.keras_compat import tf_keras

    L = tf_keras.layers
    if kind == "relu6":
        return b.add(L.ReLU(6.0, name=name))
    if kind == "swish":
        return b.add(L.Activation("swish", name=name))
    scale = b.add(L.Rescaling(1.0 / 6.0, offset=0.5, name=f"{name}_scale"))
    clip = b.add(L.ReLU(1.0, name=f"{name}_gate"))
    mul = b.add(L.Multiply(name=name))
    return lambda x: mul([x, clip(scale(x))])


def build_inverted_residual(layer: Any, spec: BlockSpec, seed: int = 0) -> tuple[Replacement, BlockWeights,
                                                                                   tuple[tuple[str, str], ...]]:
    """An inverted residual / MBConv block replacing Conv2D `layer` (module doc); (replacement, weights, init)."""
    from tfcompress.keras_compat import tf_keras

    L = tf_keras.layers
    name, config = layer.name, layer.get_config()
    old = layer.get_weights()
    kernel, bias = old[0], (old[1] if len(old) > 1 else None)
    cin, cout = kernel.shape[2], kernel.shape[3]
    w = expanded_weights(kernel, spec, seed)
    width = w.depthwise.shape[2]
    mixed = f"original ({w.carried} of {width} channels), fresh (the rest)" if w.carried < width else "original"
    b = _Builder()
    expand = expand_bn = None
    if w.expand is not None:
        how = (f"identity copies +-x ({w.carried} of {width} channels), fresh (the rest)" if w.carried < width
               else "identity copies +-x")
        expand = b.add(L.Conv2D(width, 1, use_bias=False, name=f"{name}_expand"), [w.expand], how)
        if spec.batch_norm:
            expand_bn = L.BatchNormalization(name=f"{name}_expand_bn")
            b.add(expand_bn, _identity_bn(expand_bn, width), "identity")
        expand_act = _activation(b, spec.activation, f"{name}_expand_act")
    dw = b.add(L.DepthwiseConv2D(layer.kernel_size, strides=layer.strides, padding=config["padding"],
                                 dilation_rate=layer.dilation_rate, use_bias=False, name=f"{name}_dw"),
               [w.depthwise], mixed)
    dw_bn = None
    if spec.batch_norm:
        dw_bn = L.BatchNormalization(name=f"{name}_dw_bn")
        b.add(dw_bn, _identity_bn(dw_bn, width), "identity")
    dw_act = _activation(b, spec.activation, f"{name}_dw_act")
    se = None
    if spec.se_ratio > 0:
        squeeze = max(1, int(round(cin * spec.se_ratio)))
        gap = b.add(L.GlobalAveragePooling2D(keepdims=True, name=f"{name}_se_squeeze"))
        reduce = b.add(L.Conv2D(squeeze, 1, activation="swish" if spec.activation == "swish" else "relu",
                                name=f"{name}_se_reduce"), None, "fresh")
        zero = [np.zeros((1, 1, squeeze, width), np.float32), np.zeros(width, np.float32)]
        if spec.activation == "swish":
            excite = b.add(L.Conv2D(width, 1, activation="sigmoid", name=f"{name}_se_expand"), zero,
                           "zero (gate 0.5, projection doubled)")
            gate = excite
        else:
            excite = b.add(L.Conv2D(width, 1, name=f"{name}_se_expand"), zero, "zero (gate 0.5, projection doubled)")
            scale = b.add(L.Rescaling(1.0 / 6.0, offset=0.5, name=f"{name}_se_hsig"))
            clip = b.add(L.ReLU(1.0, name=f"{name}_se_gate"))

            def gate(s: Any) -> Any:
                return clip(scale(excite(s)))

        mul = b.add(L.Multiply(name=f"{name}_se_excite"))

        def se(h: Any) -> Any:
            return mul([h, gate(reduce(gap(h)))])

    project_weights = [w.project] + ([bias] if bias is not None else [])
    activation = config.get("activation", "linear")
    if not spec.residual:
        project = b.add(clone_layer(layer, kernel_size=(1, 1), strides=(1, 1), padding="valid", dilation_rate=(1, 1)),
                        project_weights, "original")
        add = out_act = None
    else:
        project = b.add(clone_layer(layer, kernel_size=(1, 1), strides=(1, 1), padding="valid", dilation_rate=(1, 1),
                                    activation="linear", name=f"{name}_project"), project_weights, "original")
        plain = activation in (None, "linear")
        add = b.add(L.Add(name=name if plain else f"{name}_add"))
        out_act = None if plain else b.add(L.Activation(layer.activation, name=name))

    def call(x: Any) -> Any:
        h = x
        if expand is not None:
            h = expand(h)
            h = expand_bn(h) if expand_bn is not None else h
            h = expand_act(h)
        h = dw(h)
        h = dw_bn(h) if dw_bn is not None else h
        h = dw_act(h)
        h = se(h) if se is not None else h
        h = project(h)
        if add is not None:
            h = add([x, h])
            h = out_act(h) if out_act is not None else h
        return h

    return Replacement(tuple(b.layers), tuple(b.weights), call=call), w, tuple(b.init)
