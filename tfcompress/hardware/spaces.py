"""Model families to build latency LUTs from and to check predictions on (random weights, seeded, int8).

    arch = random_arch(rng)                  # MobileNetV2/V3 / EfficientNet-like (MBConv) architecture
    space_models(40)                         # the default LUT space: 40 of them, 10 ResNet-style, 10 plain
                                             # 3x3-conv models and FMNIST-CNN, as int8 .tflite
    family_models(10, seed=2)                # held-out ResNet-style and plain-conv models (other draws)
    application_models()                     # outside the space: stock keras.applications, small resolutions

Every model is seeded (architecture and weights), so the same call gives the same .tflite bytes on every run.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from collections.abc import Collection
from typing import Any, Callable

import numpy as np

from tfcompress.export.converter import convert_int8_random as convert_int8

__all__ = ["Block", "Arch", "random_arch", "build_arch", "arch_tflites", "space_models", "LUT_SEED",
           "VALIDATION_SEED", "OUTSIDE_SEED", "APPLICATIONS", "family_models", "heavy_models", "coverage_models",
           "application_models"]

LUT_SEED = 100
"""Seed of the random architectures a LUT is built from (`tfcompress profile` without models)."""
VALIDATION_SEED = 1
"""Seed of the held-out architectures `validate` draws: none of them is a LUT-building one."""
OUTSIDE_SEED = 2
"""Seed of the held-out ResNet-style and plain-convolution models (the LUT's own draw from LUT_SEED)."""

Progress = Callable[[int, int, str], None]

RESOLUTIONS = (96, 128, 160)
WIDTHS = (8, 16, 24, 32, 40, 48, 64, 80, 96)


@dataclass(frozen=True)
class Block:
    """One inverted-residual (MBConv) block."""

    out: int
    kernel: int
    stride: int
    expand: int
    se: bool


@dataclass(frozen=True)
class Arch:
    resolution: int
    stem: int
    blocks: tuple[Block, ...]
    activation: str  # "relu6" | "hswish"
    classes: int = 10


def random_arch(rng: np.random.Generator, max_blocks: int = 7) -> Arch:
    """A random MobileNetV2/V3 / EfficientNet-like architecture."""
    n = int(rng.integers(3, max_blocks + 1))
    widths = sorted(int(w) for w in rng.choice(WIDTHS, size=n))
    strides_left = int(rng.integers(2, 4))
    blocks = []
    for w in widths:
        stride = 2 if strides_left and rng.random() < 0.5 else 1
        strides_left -= stride == 2
        blocks.append(Block(w, int(rng.choice((3, 5))), stride, int(rng.choice((1, 3, 4, 6))), bool(rng.random() < 0.5)))
    return Arch(int(rng.choice(RESOLUTIONS)), int(rng.choice((8, 16, 24))), tuple(blocks),
                str(rng.choice(("relu6", "hswish"))))


def build_arch(arch: Arch) -> Any:
    """The tf_keras model of `arch` (random weights)."""
    from tfcompress.keras_compat import tf, tf_keras

    L = tf_keras.layers

    def act(y: Any) -> Any:
        if arch.activation == "relu6":
            return L.ReLU(6.0)(y)
        return L.Lambda(lambda t: t * tf.nn.relu6(t + 3.0) / 6.0)(y)

    x = tf_keras.Input((arch.resolution, arch.resolution, 3), batch_size=1)
    y = act(L.BatchNormalization()(L.Conv2D(arch.stem, 3, strides=2, padding="same", use_bias=False)(x)))
    cin = arch.stem
    for b in arch.blocks:
        inp = y
        if b.expand > 1:
            y = act(L.BatchNormalization()(L.Conv2D(cin * b.expand, 1, use_bias=False)(y)))
        y = act(L.BatchNormalization()(L.DepthwiseConv2D(b.kernel, strides=b.stride, padding="same",
                                                         use_bias=False)(y)))
        if b.se:
            mid = max(cin * b.expand // 4, 8)
            s = L.GlobalAveragePooling2D(keepdims=True)(y)
            s = L.Conv2D(mid, 1, activation="relu")(s)
            s = L.Conv2D(cin * b.expand, 1, activation="sigmoid")(s)
            y = L.Multiply()([y, s])
        y = L.BatchNormalization()(L.Conv2D(b.out, 1, use_bias=False)(y))
        if b.stride == 1 and b.out == cin:
            y = L.Add()([y, inp])
        cin = b.out
    y = L.GlobalAveragePooling2D()(y)
    y = L.Dense(arch.classes)(y)
    return tf_keras.Model(x, y)


def arch_tflites(n: int, seed: int, on_progress: Progress | None = None) -> list[tuple[Arch, bytes]]:
    """`n` random architectures from `seed`, converted to int8."""
    from tfcompress.keras_compat import tf_keras

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        arch = random_arch(rng)
        tf_keras.utils.set_random_seed(seed * 10_000 + i)  # weights too: the same .tflite every time
        out.append((arch, convert_int8(build_arch(arch))))
        if on_progress is not None:
            on_progress(i + 1, n, f"converted architecture {i + 1}/{n}")
    return out


def space_models(n: int = 20, seed: int = LUT_SEED, on_progress: Progress | None = None,
                 families: bool = True) -> list[bytes]:
    """The default LUT space as int8 .tflite: `n` random MBConv architectures, `n // 4` ResNet-style and `n // 4`
    plain 3x3-convolution models, `n // 5` weight-heavy ones and `n // 4` kernel-coverage ones (`families`), and
    the reference FMNIST-CNN.

    The two extra families put full 3x3 convolutions of every width into the LUT: without them, the only 3x3
    CONV_2D kernels measured were MBConv stems (3 input channels), a poor guide to a 64-channel convolution.
    The heavy models (2-64 MB of weights, HEAVY_MB) let the calibration see weights that do not stay in cache; the
    coverage models (`_coverage`) measure wide, large-kernel and standalone element-wise kernels.
    """
    from tfcompress.models import fmnist_cnn

    out = [c for _, c in arch_tflites(n, seed, on_progress)]
    if families and n >= 4:
        out += [c for _, c in family_models(n // 4, seed=seed)]
        out += [c for _, c in heavy_models(max(n // 5, 1), seed=seed)]
        out += [c for _, c in coverage_models(max(n // 4, 1), seed=seed)]
    return out + [convert_int8(fmnist_cnn("tf_keras"))]


def _resnet_style(rng: np.random.Generator, tf_keras: Any) -> tuple[str, Any]:
    """A ResNet-style model: 3x3 stem, stages of basic blocks (two 3x3 convolutions + shortcut)."""
    L = tf_keras.layers
    res, w = int(rng.choice((32, 64, 96))), int(rng.choice((16, 24, 32, 48)))
    x = tf_keras.Input((res, res, 3), batch_size=1)
    y = L.ReLU()(L.BatchNormalization()(L.Conv2D(w, 3, padding="same", use_bias=False)(x)))
    stages = int(rng.integers(2, 4))
    for s in range(stages):
        for b in range(int(rng.integers(1, 3))):
            down = b == 0 and s > 0
            wo, stride = (w * 2, 2) if down else (w, 1)
            shortcut = L.Conv2D(wo, 1, strides=stride)(y) if down else y
            z = L.ReLU()(L.BatchNormalization()(L.Conv2D(wo, 3, strides=stride, padding="same", use_bias=False)(y)))
            z = L.BatchNormalization()(L.Conv2D(wo, 3, padding="same", use_bias=False)(z))
            y = L.ReLU()(L.Add()([z, shortcut]))
            w = wo
    y = L.Dense(10)(L.GlobalAveragePooling2D()(y))
    return f"resnet-style {res}px {stages} stages", tf_keras.Model(x, y)


def _plain_conv(rng: np.random.Generator, tf_keras: Any) -> tuple[str, Any]:
    """A VGG-like model: 3x3 convolutions + max pooling, flatten, two Dense layers."""
    L = tf_keras.layers
    res, w = int(rng.choice((28, 32, 64, 96))), int(rng.choice((8, 16, 32)))
    x = tf_keras.Input((res, res, 1 if res == 28 else 3), batch_size=1)
    y = x
    stages = int(rng.integers(2, 5))
    for _ in range(stages):
        y = L.Conv2D(w, 3, padding="same", activation="relu")(y)
        if rng.random() < 0.5:
            y = L.Conv2D(w, 3, padding="same", activation="relu")(y)
        y = L.MaxPooling2D()(y)
        w = min(w * 2, 128)
    y = L.Dense(10)(L.Dense(64, activation="relu")(L.Flatten()(y)))
    return f"plain-conv {res}px {stages} stages", tf_keras.Model(x, y)


APPLICATIONS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("MobileNet a0.25 96px", "MobileNet", {"input_shape": (96, 96, 3), "alpha": 0.25}),
    ("MobileNet a0.5 128px", "MobileNet", {"input_shape": (128, 128, 3), "alpha": 0.5}),
    ("MobileNet a0.75 160px", "MobileNet", {"input_shape": (160, 160, 3), "alpha": 0.75}),
    ("MobileNet a1.0 96px", "MobileNet", {"input_shape": (96, 96, 3), "alpha": 1.0}),
    ("MobileNetV2 a0.35 96px", "MobileNetV2", {"input_shape": (96, 96, 3), "alpha": 0.35}),
    ("MobileNetV2 a0.5 128px", "MobileNetV2", {"input_shape": (128, 128, 3), "alpha": 0.5}),
    ("MobileNetV2 a0.75 96px", "MobileNetV2", {"input_shape": (96, 96, 3), "alpha": 0.75}),
    ("MobileNetV2 a1.0 128px", "MobileNetV2", {"input_shape": (128, 128, 3), "alpha": 1.0}),
    ("MobileNetV3Small 96px", "MobileNetV3Small", {"input_shape": (96, 96, 3), "include_preprocessing": False}),
    ("MobileNetV3Small min 128px", "MobileNetV3Small",
     {"input_shape": (128, 128, 3), "minimalistic": True, "include_preprocessing": False}),
    ("MobileNetV3Small a0.75 128px", "MobileNetV3Small",
     {"input_shape": (128, 128, 3), "alpha": 0.75, "include_preprocessing": False}),
    ("MobileNetV3Large a0.75 96px", "MobileNetV3Large",
     {"input_shape": (96, 96, 3), "alpha": 0.75, "include_preprocessing": False}),
    ("MobileNetV3Large min 128px", "MobileNetV3Large",
     {"input_shape": (128, 128, 3), "minimalistic": True, "include_preprocessing": False}),
    ("EfficientNetB0 96px", "EfficientNetB0", {"input_shape": (96, 96, 3)}),
    ("EfficientNetB1 96px", "EfficientNetB1", {"input_shape": (96, 96, 3)}),
    ("ResNet50 64px", "ResNet50", {"input_shape": (64, 64, 3)}),
    ("ResNet50V2 96px", "ResNet50V2", {"input_shape": (96, 96, 3)}),
    ("DenseNet121 64px", "DenseNet121", {"input_shape": (64, 64, 3)}),
    ("NASNetMobile 96px", "NASNetMobile", {"input_shape": (96, 96, 3)}),
    ("VGG16 64px", "VGG16", {"input_shape": (64, 64, 3)}),
    ("InceptionV3 96px", "InceptionV3", {"input_shape": (96, 96, 3)}),
    ("Xception 96px", "Xception", {"input_shape": (96, 96, 3)}),
)
"""Stock keras.applications (random weights: nothing downloads) at small resolutions: (name, class, kwargs)."""


HEAVY_MB = (2.0, 64.0)
"""The weight sizes the heavy models span (geometrically, one target each): the host's caches hold some of them and
not others, and the calibration finds where weights stop staying in cache between invokes."""


def _heavy(rng: np.random.Generator, tf_keras: Any, target_mb: float = 8.0) -> tuple[str, Any]:
    """A weight-heavy model of about `target_mb` MB of int8 weights: wide 3x3 / 1x1 convolutions at low resolution,
    then wide Dense layers."""
    L = tf_keras.layers
    res = int(rng.choice((16, 32)))
    x = tf_keras.Input((res, res, 3), batch_size=1)
    cin = int(rng.choice((32, 64)))
    y = L.Conv2D(cin, 3, strides=2, padding="same", activation="relu")(x)
    mb = 0.0
    for i in range(8):  # convolutions up to ~60% of the target (a draw that overshoots is skipped), at least one
        width, k = int(rng.choice((256, 512, 768, 1024))), int(rng.choice((1, 3)))
        if i and mb + cin * width * k * k / 1e6 > 0.6 * target_mb:
            continue
        y = L.Conv2D(width, k, padding="same", activation="relu")(y)
        mb, cin = mb + cin * width * k * k / 1e6, width
    y = L.GlobalAveragePooling2D()(y)
    for _ in range(3):  # Dense layers up to the target
        if mb >= 0.8 * target_mb:
            break
        width = int(rng.choice((1024, 2048, 4096)))
        y = L.Dense(width, activation="relu")(y)
        mb, cin = mb + cin * width / 1e6, width
    classes = int(rng.choice((10, 1000)))
    y = L.Dense(classes)(y)
    return f"heavy {res}px {mb + cin * classes / 1e6:.0f}MB", tf_keras.Model(x, y)


def _coverage(rng: np.random.Generator, tf_keras: Any) -> tuple[str, Any]:
    """Kernels the other families do not reach, in random chains: wide (up to 2048-channel) 1x1 and 3x3
    convolutions at 2-48 px, separable convolutions with 3x3 / 5x5 / 7x7 depthwise kernels behind a standalone ReLU,
    3x3 average pooling, explicit zero padding before a valid convolution (and before a 7x7 stem), sigmoid (swish)
    gates, one at least, normalized concatenations (products with constants), odd channel counts.

    The held-out keras.applications models (ResNet50, Xception, NASNetMobile, ...) were under-predicted 2-10x
    with these kernels unmeasured: the regressions, fitted on MBConv-sized kernels, put a 512-channel 1x1
    convolution at 6x6 at 7x less than its time, and a standalone int8 ReLU at 1/70 (docs/latency.md).
    """
    L = tf_keras.layers
    res = int(rng.choice((8, 12, 16, 24, 32, 48)))
    x = tf_keras.Input((res, res, 3), batch_size=1)
    if res >= 16 and rng.random() < 0.5:  # a ResNet / DenseNet stem: 3-channel padding, 7x7 stride-2 convolution
        y = L.Conv2D(int(rng.integers(8, 129)), 7, strides=2, activation="relu")(L.ZeroPadding2D(3)(x))
        side = res // 2
    else:
        y = L.Conv2D(int(rng.integers(8, 129)), 3, padding="same", activation="relu")(x)
        side = res
    seps = int(rng.integers(0, 3))  # separable blocks cycle through the depthwise kernel sizes from a random one
    for _ in range(int(rng.integers(3, 7))):
        kind = str(rng.choice(("wide1x1", "wide3x3", "sep", "pool", "pad", "gate", "norm"),
                              p=(0.14, 0.14, 0.3, 0.1, 0.1, 0.1, 0.12)))
        if kind == "wide1x1":
            y = L.Conv2D(int(rng.choice((128, 256, 384, 512, 728, 1024, 2048))), 1, activation="relu")(y)
        elif kind == "wide3x3":
            y = L.Conv2D(int(rng.choice((64, 128, 256, 384, 512))), 3, padding="same", activation="relu")(y)
        elif kind == "sep":  # the ReLU's input also feeds the shortcut: the converter cannot fuse it into a conv;
            # its input has both signs, as after a BatchNormalization (an all-positive one runs 2.5x faster)
            t = L.Conv2D(int(y.shape[-1]), 1)(y)
            size, seps = (3, 5, 7)[seps % 3], seps + 1
            stride = 2 if side >= 8 and rng.random() < 0.3 else 1  # NASNet's reduction cells: 5x5 / 7x7 at stride 2
            z = L.DepthwiseConv2D(size, strides=stride, padding="same")(L.ReLU()(t))
            shortcut = L.AveragePooling2D(3, strides=2, padding="same")(t) if stride == 2 else t
            y = L.Add()([L.Conv2D(int(y.shape[-1]), 1)(z), shortcut])
            side = -(-side // stride)
        elif kind == "norm":  # DenseNet's transition: normalization of a concatenation is a product with constants
            z = L.Conv2D(int(rng.integers(8, 129)), 1)(y)
            bn = L.BatchNormalization(gamma_initializer=tf_keras.initializers.RandomUniform(0.5, 1.5),
                                      beta_initializer=tf_keras.initializers.RandomNormal(stddev=0.5))
            y = L.ReLU()(bn(L.Concatenate()([y, z])))
        elif kind == "pool":
            stride = 2 if side >= 8 and rng.random() < 0.5 else 1
            y = L.AveragePooling2D(3, strides=stride, padding="same")(y)
            side = -(-side // stride)
        elif kind == "pad":  # symmetric padding before a strided / larger valid window is not SAME: a PAD op
            stride = 2 if side >= 4 else 1
            y = L.ZeroPadding2D(1 if stride == 2 else 2)(y)
            y = L.Conv2D(int(rng.integers(8, 257)), 3, strides=stride, activation="relu")(y)
            side = (side + 2 - 3) // 2 + 1 if stride == 2 else side + 2
        else:
            y = L.Multiply()([y, L.Activation("sigmoid")(y)])
    # every model ends with a swish gate: a LUT whose draws held two had no MUL/elementwise line, and the all-MUL
    # line put EfficientNetB0's 49 swish products at 1.65x theirs (+28% on the model)
    y = L.Multiply()([y, L.Activation("sigmoid")(y)])
    y = L.GlobalAveragePooling2D()(y)
    y = L.Dense(int(rng.choice((10, 1000))))(y)
    return f"coverage {res}px", tf_keras.Model(x, y)


def coverage_models(n: int, seed: int = LUT_SEED) -> list[tuple[str, bytes]]:
    """(name, int8 .tflite) of `n` kernel-coverage models (`_coverage`)."""
    return _draw([_coverage] * n, np.random.default_rng(seed + 11), seed * 10_000 + 7_000)


def _draw(builders: list[Callable[[np.random.Generator, Any], tuple[str, Any]]], rng: np.random.Generator,
          first_seed: int, on_progress: Progress | None = None) -> list[tuple[str, bytes]]:
    """(name #i, int8 .tflite) of builders[i](rng, tf_keras), its weights seeded by first_seed + i."""
    from tfcompress.keras_compat import tf_keras

    out = []
    for i, build in enumerate(builders):
        tf_keras.utils.set_random_seed(first_seed + i)
        name, model = build(rng, tf_keras)
        out.append((f"{name} #{i}", convert_int8(model)))
        if on_progress is not None:
            on_progress(i + 1, len(builders), f"converted {name}")
    return out


def heavy_models(n: int, seed: int = OUTSIDE_SEED) -> list[tuple[str, bytes]]:
    """(name, int8 .tflite) of `n` weight-heavy models (`_heavy`), their weight targets spread geometrically over
    HEAVY_MB."""
    lo, hi = HEAVY_MB
    targets = [lo * (hi / lo) ** (i / max(n - 1, 1)) for i in range(n)]
    return _draw([functools.partial(_heavy, target_mb=t) for t in targets], np.random.default_rng(seed + 7),
                 seed * 10_000 + 5_000)


def family_models(n: int, seed: int = OUTSIDE_SEED, on_progress: Progress | None = None) -> list[tuple[str, bytes]]:
    """(name, int8 .tflite) of `n` ResNet-style and `n` plain-convolution models, alternating."""
    return _draw([(_resnet_style, _plain_conv)[i % 2] for i in range(2 * n)], np.random.default_rng(seed),
                 seed * 10_000, on_progress)


def application_models(on_progress: Progress | None = None,
                       names: Collection[str] | None = None) -> list[tuple[str, bytes]]:
    """(name, int8 .tflite) of every entry of APPLICATIONS, or of those in `names` (random weights, seeded by the
    entry's index: a subset gives the same files as the whole)."""
    from tfcompress.keras_compat import tf_keras

    out = []
    for i, (name, cls, kwargs) in enumerate(APPLICATIONS):
        if names is not None and name not in names:
            continue
        tf_keras.utils.set_random_seed(i)
        inner = getattr(tf_keras.applications, cls)(weights=None, **kwargs)
        x = tf_keras.Input(kwargs["input_shape"], batch_size=1)
        out.append((name, convert_int8(tf_keras.Model(x, inner(x)))))
        if on_progress is not None:
            on_progress(i + 1, len(APPLICATIONS), f"converted {name}")
    return out
