"""FLOP / parameter counts per layer and in total."""

from __future__ import annotations

from tfcompress.keras_compat import tf_keras
from tfcompress.models import fmnist_cnn
from tfcompress.surgery import count_flops

L = tf_keras.layers


def test_hand_counted_layers():
    inp = tf_keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, strides=2, padding="same", name="conv")(inp)  # out 4x4x4
    x = L.BatchNormalization(name="bn")(x)
    x = L.DepthwiseConv2D(3, padding="same", use_bias=False, depth_multiplier=2, name="dw")(x)  # 4x4x8
    x = L.SeparableConv2D(5, 3, padding="valid", name="sep")(x)  # 2x2x5
    x = L.ReLU(name="relu")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    model = tf_keras.Model(inp, L.Dense(2, name="head")(x))
    table = count_flops(model)
    conv = table.row("conv")
    assert conv.macs == 4 * 4 * 4 * (3 * 3 * 3) and conv.flops == 2 * conv.macs + 4 * 4 * 4
    assert conv.params == 3 * 3 * 3 * 4 + 4 and conv.output_shape == (None, 4, 4, 4)
    assert table.row("bn").flops == 2 * 4 * 4 * 4 and table.row("bn").macs == 0
    assert table.row("dw").macs == 4 * 4 * 8 * 9
    assert table.row("sep").macs == 2 * 2 * 8 * 9 + 2 * 2 * 8 * 5
    assert table.row("relu").flops == 2 * 2 * 5
    assert table.row("gap").flops == 2 * 2 * 5
    assert table.row("head").macs == 5 * 2
    assert table.params == model.count_params()
    assert table.macs == sum(r.macs for r in table.rows)
    text = table.format()
    assert "conv" in text and "total" in text
    assert table.to_dict()["layers"][0]["name"] == "conv"


def test_shared_layer_params_once_flops_per_call_and_nested_models():
    inner_in = tf_keras.Input((6,))
    inner = tf_keras.Model(inner_in, L.Dense(6, name="fc")(inner_in), name="inner")
    inp = tf_keras.Input((6,))
    model = tf_keras.Model(inp, inner(inner(inp)))
    table = count_flops(model)
    fc = table.row("fc")
    assert fc.calls == 2 and fc.params == 42 and fc.macs == 2 * 36
    assert table.params == model.count_params()


def test_fmnist_cnn_totals():
    model = fmnist_cnn("tf_keras")
    table = count_flops(model)
    assert table.params == model.count_params() == 69_258
    assert table.row("stem_conv").macs == 14 * 14 * 32 * 9
    assert table.row("block4_pw").macs == 4 * 4 * 128 * 256
    assert 2_000_000 < table.macs < 4_000_000
