"""QAT over TF-MOT: configs for layers TF-MOT lacks, unsupported layers named first, scheme choice."""

from __future__ import annotations


import numpy as np
import pytest

import tfcompress
from tfcompress.bridge.activations import KERAS3_ACTIVATIONS
from tfcompress.export.tflite_file import read_tflite
from tfcompress.keras_compat import tf_keras
from tfcompress.models import fmnist_cnn
from tfcompress.techniques import qat


def se_model():
    """Rescaling + conv + squeeze-and-excitation (Multiply), as in EfficientNet."""
    L = tf_keras.layers
    inp = tf_keras.Input((16, 16, 3))
    x = L.Rescaling(1 / 127.5, offset=-1, name="rescale")(inp)
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="conv")(x)
    s = L.GlobalAveragePooling2D(keepdims=True, name="squeeze")(x)
    s = L.Conv2D(16, 1, activation="sigmoid", name="excite")(s)
    x = L.Multiply(name="gate")([x, s])
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return tf_keras.Model(inp, L.Dense(4, name="head")(x))


def assert_qat_trains_to_full_int8(model, high):
    """QAT-wrap `model`, fit one epoch on 16x16x3 inputs in [0, high), convert: int8 in and out, no float op."""
    q = qat.apply(model, qat.Params())
    x = np.random.default_rng(0).uniform(0, high, (32, 16, 16, 3)).astype(np.float32)
    q.compile("adam", tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    q.fit(x, np.arange(32) % 4, epochs=1, verbose=0)
    tfl = read_tflite(tfcompress.convert(q, x, verify_samples=8, latency_runs=3, safe_mode=False).tflite)
    assert [d.dtype for d in tfl.input_details() + tfl.output_details()] == ["int8", "int8"]
    assert tfl.float_ops() == []


@pytest.mark.slow
def test_layers_tfmot_lacks_get_our_configs_and_convert_to_int8():
    model = se_model()
    p = qat.plan(model, qat.Params())
    assert {"rescale", "gate"} <= set(p.custom_config)
    assert p.unsupported == ()
    assert_qat_trains_to_full_int8(model, high=255)


def test_unsupported_layers_are_named_before_training():
    L = tf_keras.layers
    inp = tf_keras.Input((8,))
    x = L.Dense(8, name="fc")(inp)
    x = L.LayerNormalization(name="ln")(x)
    model = tf_keras.Model(inp, L.Dense(2, name="out")(x))
    assert qat.plan(model, qat.Params()).unsupported == ("ln (LayerNormalization)",)
    with pytest.warns(qat.UnquantizedLayerWarning, match="ln \\(LayerNormalization\\)"):
        qat.apply(model, qat.Params())


def test_auto_scheme_reads_the_weights():
    model = fmnist_cnn("tf_keras")
    assert qat.choose_scheme(model, qat.Params()) == "default"
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if type(layer).__name__ in ("Conv2D", "Dense"):
            k = layer.kernel.numpy()
            levels = np.linspace(-0.1, 0.1, 8)[rng.integers(0, 8, k.shape)]
            layer.kernel.assign(np.where(rng.random(k.shape) < 0.5, 0.0, levels))
    assert qat.choose_scheme(model, qat.Params()) == "prune_cluster_preserve"


def test_auto_scheme_ignores_depthwise_kernels():
    """Unpruned depthwise kernels must not outvote pruned pointwise ones (MobileNet-style)."""
    L = tf_keras.layers
    inp = tf_keras.Input((8, 8, 32))
    x = inp
    for i in range(3):
        x = L.DepthwiseConv2D(3, padding="same", name=f"dw{i}")(x)
        x = L.Conv2D(32, 1, name=f"pw{i}")(x)
    model = tf_keras.Model(inp, L.DepthwiseConv2D(3, padding="same", name="dw_last")(x))
    rng = np.random.default_rng(0)
    for i in range(3):
        k = model.get_layer(f"pw{i}").kernel
        k.assign(np.where(rng.random(k.shape) < 0.6, 0.0, k.numpy()))
    assert qat.choose_scheme(model, qat.Params()) == "prune_preserve"


@pytest.mark.slow
@pytest.mark.skipif(not __import__("os").environ.get("TFCOMPRESS_SLOW_TESTS"), reason="minutes on 2 cores; TFCOMPRESS_SLOW_TESTS=1")
@pytest.mark.parametrize("name", ["EfficientNetB0", "MobileNetV2"])
def test_reference_applications_qat_to_int8(name):
    """The QuantizeConfig registry covers what MobileNetV2 / EfficientNetB0 need (measured: ~1-2 min each)."""
    from tfcompress.keras_compat import keras3
    from tfcompress.loading import load_model

    model = load_model(getattr(keras3.applications, name)(weights=None, input_shape=(64, 64, 3), classes=10))
    assert qat.plan(model, qat.Params()).unsupported == ()
    q = qat.apply(model, qat.Params())
    x = np.random.default_rng(0).uniform(0, 255, (16, 64, 64, 3)).astype(np.float32)
    q.compile("adam", tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    q.fit(x, np.arange(16) % 10, epochs=1, batch_size=8, verbose=0)
    res = tfcompress.convert(q, x, verify_samples=4, latency_runs=3, safe_mode=False)
    assert res.report.io_dtypes == ("int8", "int8") and res.report.float_ops == ()


def densenet_v3_parts():
    """What stock DenseNet121 and MobileNetV3 have and TF-MOT alone trips on: a BatchNormalization after a
    Concatenate (folds into no conv), an Activation whose function TF-MOT's activation config does not know
    (Keras 3's hard_silu, as the bridge makes it), and a transition conv
    followed by AveragePooling2D (int8 average pooling needs the same scale in and out)."""
    L = tf_keras.layers
    inp = tf_keras.Input((16, 16, 3))
    a = L.Conv2D(8, 3, padding="same", use_bias=False, name="conv_a")(inp)
    a = L.BatchNormalization(name="bn_a")(a)
    b = L.Conv2D(8, 3, padding="same", name="conv_b")(inp)
    x = L.Concatenate(name="concat")([a, b])
    x = L.BatchNormalization(name="bn_after_concat")(x)
    x = L.Activation(KERAS3_ACTIVATIONS["hard_silu"], name="hard_silu")(x)
    x = L.Conv2D(16, 1, name="transition")(x)
    x = L.AveragePooling2D(2, name="pool")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return tf_keras.Model(inp, L.Dense(4, name="head")(x))


@pytest.mark.slow
def test_densenet_and_mobilenetv3_patterns_train_and_convert_to_int8():
    """Issue 17: QAT failed on DenseNet121 (BN after Concatenate: 'is not supported'), on MobileNetV3 (hard_silu:
    'not supported by Default8BitActivationQuantizeConfig') and, past those, in the converter (average_pool_2d
    'violate the same scale constraint'). They get our configs and the result is fully int8."""
    model = densenet_v3_parts()
    p = qat.plan(model, qat.Params())
    assert {"bn_after_concat", "hard_silu", "pool"} <= set(p.custom_config), p
    assert "bn_a" in p.annotated and p.unsupported == ()
    assert qat._output_only_reason(model.get_layer("bn_after_concat")) == "after Concatenate"
    assert qat._output_only_reason(model.get_layer("bn_a")) is None
    assert_qat_trains_to_full_int8(model, high=1)


@pytest.mark.parametrize("scheme", ["prune_preserve", "cluster_preserve", "prune_cluster_preserve"])
def test_collaborative_schemes_take_layers_their_registry_cannot_configure(scheme):
    """Issue 17: PQAT / CQAT / PCQAT failed on a Conv1D audio model: their registries claim every layer without
    weights (MaxPooling1D) and then raise in `get_quantize_config` when quantize_apply asks for its output."""
    L = tf_keras.layers
    inp = tf_keras.Input((64, 1))
    x = L.MaxPooling1D(2, name="pool")(L.Conv1D(8, 5, padding="same", activation="relu", name="conv")(inp))
    model = tf_keras.Model(inp, L.Dense(3, name="head")(L.GlobalAveragePooling1D(name="gap")(x)))
    q = qat.apply(model, qat.Params(scheme=scheme))
    assert q.predict(np.zeros((2, 64, 1), np.float32), verbose=0).shape == (2, 3)
