"""A Keras 3 Transformer block converts to full int8 in `convert`, as it does in `compress` (issue 17).

Keras 3 lowers LayerNormalization with a NEG op that has no int8 kernel; tf_keras lowers it to int8-able ops.
`convert` now retries a Keras 3 model whose int8 file has float ops through its tf_keras rebuild (same weights,
`tfcompress.bridge`), keeps it when it is fully int8, says so in the report, and verifies it against the
original Keras 3 model.
"""

from __future__ import annotations

import numpy as np
import pytest

import tfcompress
from tfcompress.errors import ConversionError
from tfcompress.keras_compat import keras3 as k


def encoder(lambda_layer: bool = False):
    k.utils.set_random_seed(0)
    inp = k.Input((16, 32), name="x")
    h = k.layers.MultiHeadAttention(2, 16, name="mha")(inp, inp)
    x = k.layers.Add(name="res1")([inp, h])
    if lambda_layer:  # Python code in the model: the rebuild refuses it
        x = k.layers.Lambda(lambda t: t * 1.0, name="scale")(x)
    x = k.layers.LayerNormalization(name="ln1")(x)
    f = k.layers.Dense(32, name="ffn_out")(k.layers.Dense(64, activation="gelu", name="ffn_in")(x))
    x = k.layers.LayerNormalization(name="ln2")(k.layers.Add(name="res2")([x, f]))
    return k.Model(inp, k.layers.Dense(4, name="head")(k.layers.GlobalAveragePooling1D(name="pool")(x)))


@pytest.fixture(scope="module")
def data():
    return np.random.default_rng(0).normal(size=(96, 16, 32)).astype(np.float32)


def test_layer_normalization_converts_to_int8(tmp_path, data):
    res = tfcompress.convert(encoder(), data, output=tmp_path / "enc.tflite", verify_samples=32, latency_runs=5)
    report = res.report
    assert report.float_ops == () or not report.float_ops
    assert any("tf_keras rebuild" in n and "ln1" in n for n in report.notes), report.notes
    (o,) = report.verify.outputs
    assert o.snr_db > 20, "verified against the original Keras 3 model"


def test_a_model_the_rebuild_cannot_take_still_names_the_float_ops(data):
    """A Lambda layer cannot be rebuilt in tf_keras: the original error stands."""
    with pytest.raises(ConversionError, match="NEG"):
        tfcompress.convert(encoder(lambda_layer=True), data, verify=False, safe_mode=False)
