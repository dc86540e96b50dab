"""Weight sharing: tied layers are one layer object, train tied, and the .tflite stores one copy."""

from __future__ import annotations

import numpy as np
import pytest

import tfcompress
from tfcompress.keras_compat import tf_keras
from tfcompress.techniques import StageContext, get_technique
from tfcompress.techniques.sharing import Params, plan_sharing, share_weights, tflite_sharing

from conftest import random_images
from test_surgery import randomize

L = tf_keras.layers


def repeated_blocks(n=4, c=16):
    """n blocks conv 3x3 (no bias) -> BN -> ReLU with the same shapes."""
    inp = tf_keras.Input((8, 8, c))
    x = inp
    for i in range(n):
        x = L.Conv2D(c, 3, padding="same", use_bias=False, name=f"b{i}_conv")(x)
        x = L.BatchNormalization(name=f"b{i}_bn")(x)
        x = L.ReLU(name=f"b{i}_relu")(x)
    x = L.GlobalAveragePooling2D()(x)
    return randomize(tf_keras.Model(inp, L.Dense(3, name="head")(x)), seed=4)


def test_regex_groups_tie_layers_into_one_object():
    model = repeated_blocks()
    tied = share_weights(model, groups=[r"b[1-3]_conv"])
    assert tied.count_params() == model.count_params() - 2 * 16 * 16 * 9
    shared = tied.get_layer("b1_conv")
    assert len(shared.inbound_nodes) == 3
    assert "b2_conv" not in [layer.name for layer in tied.layers]
    mean = np.mean([model.get_layer(f"b{i}_conv").get_weights()[0] for i in (1, 2, 3)], axis=0)
    np.testing.assert_allclose(shared.get_weights()[0], mean, atol=1e-6)
    assert tied(random_images(2, (8, 8, 16))).shape == (2, 3)


def test_identical_kernels_tied_reproduce_outputs():
    model = repeated_blocks()
    w = model.get_layer("b1_conv").get_weights()
    model.get_layer("b2_conv").set_weights(w)
    x = random_images(4, (8, 8, 16))
    tied = share_weights(model, groups=["b[12]_conv"], init="first")
    np.testing.assert_allclose(tied(x).numpy(), model(x).numpy(), atol=1e-5)


def test_cosine_similarity_picks_similar_kernels_only():
    model = repeated_blocks()
    w = model.get_layer("b0_conv").get_weights()[0]
    model.get_layer("b2_conv").set_weights([w + 0.01 * np.random.default_rng(0).normal(size=w.shape)])
    plan = plan_sharing(model, similarity=0.9)
    assert plan.groups == (("b0_conv", "b2_conv"),) and plan.cosine[0] > 0.99
    assert plan.params_saved == 16 * 16 * 9
    assert "b0_conv" in plan.table()
    assert plan_sharing(model, similarity=0.9, min_params=10**6).groups == ()


def test_tied_layers_train_as_one_variable():
    model = repeated_blocks()
    tied = share_weights(model, groups=["b[0-3]_conv"])
    kernels = [w for w in tied.trainable_weights if "kernel" in w.name and "conv" in w.name]
    assert len(kernels) == 1
    tied.compile(optimizer=tf_keras.optimizers.SGD(0.1), loss="mse")
    before = kernels[0].numpy().copy()
    tied.fit(random_images(8, (8, 8, 16)), np.zeros((8, 3), np.float32), epochs=1, verbose=0)
    assert not np.allclose(kernels[0].numpy(), before)


def test_exported_tflite_stores_one_copy():
    model = repeated_blocks()
    data = random_images(16, (8, 8, 16))
    plain = tfcompress.convert(model, data, verify=False, calib_samples=16)
    tied = tfcompress.convert(share_weights(model, groups=["b[1-3]_conv"]), data, verify=False, calib_samples=16)
    report = tflite_sharing(tied.tflite)
    kernel = next(b for b in report.shared if b.nbytes == 16 * 16 * 9)  # int8 kernel
    assert kernel.readers == 3 and set(kernel.op_types) == {"CONV_2D"}
    assert report.bytes_saved >= 2 * 16 * 16 * 9
    assert report.constant_bytes <= tflite_sharing(plain.tflite).constant_bytes - 2 * 16 * 16 * 9
    assert len(tied.tflite) < len(plain.tflite)


def test_tflite_shows_the_copy_when_folded_batchnorms_differ_in_sign():
    model = repeated_blocks()
    gamma, beta, mean, var = model.get_layer("b2_bn").get_weights()
    gamma[:8] *= -1  # BN folding flips those int8 kernel channels for b2 only
    model.get_layer("b2_bn").set_weights([gamma, beta, mean, var])
    tied = tfcompress.convert(share_weights(model, groups=["b[1-3]_conv"]), random_images(16, (8, 8, 16)),
                              verify=False, calib_samples=16)
    kernels = [b for b in tflite_sharing(tied.tflite).shared if b.nbytes == 16 * 16 * 9]
    assert [b.readers for b in kernels] == [2]  # b1 and b3 share; b2 got its own copy


def test_params_validate_and_registry():
    with pytest.raises(ValueError, match="regular expression"):
        Params(groups=("b[",))
    with pytest.raises(ValueError, match="init"):
        Params(init="median")
    entry = get_technique("share_weights")
    tied = entry.apply(repeated_blocks(), Params(groups=("b[23]_conv",)), (), StageContext())
    assert entry.strip(tied) is tied and entry.callbacks(Params(), StageContext()) == []
    assert len(tied.get_layer("b2_conv").inbound_nodes) == 2
