"""Kernel keys read from converted .tflite files (no timing)."""

from __future__ import annotations

import numpy as np


def _block_model():
    from tfcompress.keras_compat import tf_keras

    L = tf_keras.layers
    x = tf_keras.Input((16, 16, 8), batch_size=1)
    y = L.Conv2D(16, 3, strides=2, padding="same", use_bias=False, name="c1")(x)
    y = L.BatchNormalization(name="bn")(y)
    y = L.ReLU(6.0, name="r6")(y)
    y = L.DepthwiseConv2D(5, padding="same", name="dw")(y)
    y = L.GlobalAveragePooling2D(name="gap")(y)
    y = L.Dense(4, name="fc")(y)
    return tf_keras.Model(x, y)


def test_conv_bn_relu6_is_one_conv_key_with_fused_relu6():
    from tfcompress.hardware.kernels import kernels_of
    from tfcompress.export.converter import convert_int8_random as convert_int8

    model = _block_model()
    uses = kernels_of(convert_int8(model), [layer.name for layer in model.layers])
    ops = [u.key.op for u in uses]
    assert ops == ["CONV_2D", "DEPTHWISE_CONV_2D", "MEAN", "FULLY_CONNECTED"]
    conv = uses[0]
    assert conv.key.activation == "RELU6"
    assert (conv.key.in_hw, conv.key.cin, conv.key.cout) == ((16, 16), 8, 16)
    assert conv.key.kernel == (3, 3) and conv.key.stride == (2, 2) and conv.key.padding == "SAME"
    assert conv.key.dtype == "int8"
    assert "c1" in conv.layers
    dw = uses[1].key
    assert dw.depthwise and dw.kernel == (5, 5) and dw.cout == 16
    assert uses[3].key.cin == 16 and uses[3].key.cout == 4
    assert conv.key.macs == 8 * 8 * 16 * 9 * 8


def test_key_json_round_trip_and_digest_stable():
    from tfcompress.hardware.kernels import KernelKey

    k = KernelKey("CONV_2D", "int8", (1, 8, 8, 4), (1, 8, 8, 8), 4, 8, (3, 3), (1, 1), "SAME", "RELU6")
    again = KernelKey.from_json(k.to_json())
    assert again == k and again.digest() == k.digest()
    assert np.isclose(k.macs, 8 * 8 * 8 * 9 * 4)
