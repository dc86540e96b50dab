"""Reference models built in code (no downloads).

FMNIST-CNN is the model every accuracy figure in tfcompress refers to: a
MobileNet-style CNN of ~69k parameters for 28x28x1 Fashion-MNIST.
"""

from __future__ import annotations

from typing import Any

# (filters, stride) of the depthwise-separable blocks after the stem.
FMNIST_CNN_BLOCKS: tuple[tuple[int, int], ...] = ((64, 1), (128, 2), (128, 1), (256, 2))


def fmnist_cnn(flavor: str = "tf_keras", *, width: float = 1.0, num_classes: int = 10, name: str = "fmnist_cnn") -> Any:
    """Build the reference FMNIST-CNN.

    Args:
        flavor: "tf_keras" (Keras 2) or "keras3".
        width: channel multiplier (1.0 = reference, 0.5 = half width).
        num_classes: size of the final Dense layer.
        name: model name.

    Returns:
        An uncompiled functional model taking (None, 28, 28, 1) float32 in [0, 1].
    """
    from tfcompress.keras_compat import keras3, tf_keras

    k = {"tf_keras": tf_keras, "keras3": keras3}[flavor]
    layers = k.layers

    def bn(name: str) -> Any:
        # momentum 0.9 (PyTorch's 0.1): moving statistics settle within a few
        # hundred steps, so short test / fine-tune runs evaluate sensibly too.
        return layers.BatchNormalization(momentum=0.9, name=name)

    def ch(n: int) -> int:
        return max(1, int(round(n * width)))

    inputs = k.Input((28, 28, 1), name="image")
    x = layers.Conv2D(ch(32), 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = bn("stem_bn")(x)
    x = layers.ReLU(6.0, name="stem_relu")(x)
    for i, (filters, stride) in enumerate(FMNIST_CNN_BLOCKS, start=1):
        x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"block{i}_dw")(x)
        x = bn(f"block{i}_dw_bn")(x)
        x = layers.ReLU(6.0, name=f"block{i}_dw_relu")(x)
        x = layers.Conv2D(ch(filters), 1, use_bias=False, name=f"block{i}_pw")(x)
        x = bn(f"block{i}_pw_bn")(x)
        x = layers.ReLU(6.0, name=f"block{i}_pw_relu")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(0.2, name="dropout")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return k.Model(inputs, outputs, name=name)
