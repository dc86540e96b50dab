"""Pruning over TF-MOT: schedules, per-layer rules, block / 2:4 sparsity, XNNPACK policy."""

from __future__ import annotations

import numpy as np
import pytest

from tfcompress.monitoring import kernel_stats
from tfcompress.errors import TfcompressError
from tfcompress.keras_compat import tf_keras
from tfcompress.models import fmnist_cnn
from tfcompress.techniques import pruning
from tfcompress.types import LayerMatch, LayerRule

X = np.random.default_rng(0).random((64, 28, 28, 1), dtype=np.float32)
Y = np.random.default_rng(1).integers(0, 10, 64)


def train(model, params, epochs=2):
    model.compile("adam", tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(X, Y, epochs=epochs, batch_size=16, verbose=0, callbacks=pruning.callbacks(params))
    return pruning.strip(model)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"begin_step": 100, "end_step": 50}, "ends .* before it begins"),
        ({"final_sparsity": 1.0}, "final_sparsity"),
        ({"initial_sparsity": 0.6, "final_sparsity": 0.5}, "above final_sparsity"),
        ({"m_by_n": (4, 2)}, "0 < m < n"),
        ({"m_by_n": (2, 4), "block_size": (1, 2)}, "cannot be combined"),
    ],
)
def test_params_reject_nonsense(kwargs, match):
    with pytest.raises(ValueError, match=match):
        pruning.Params(**kwargs)


def test_schedule_rules_and_targets_reach_the_kernels():
    params = pruning.resolve(pruning.Params(schedule="constant", final_sparsity=0.5), total_steps=8)
    rules = (
        LayerRule(LayerMatch(name="^logits$"), skip=True),
        LayerRule(LayerMatch(name="block4_pw"), params={"final_sparsity": 0.8}),
    )
    base = fmnist_cnn("tf_keras")
    model = pruning.apply(base, params, rules)
    wrapped = {l.layer.name for l in model.layers if hasattr(l, "pruning_vars")}
    assert "logits" not in wrapped and "block4_pw" in wrapped and "stem_conv" in wrapped
    stats = kernel_stats(train(model, params))
    assert stats["block4_pw"][0] == pytest.approx(0.8, abs=0.02)
    assert stats["block1_pw"][0] == pytest.approx(0.5, abs=0.02)
    assert stats["logits"][0] == 0.0
    assert kernel_stats(base)["block1_pw"][0] == 0.0, "the caller's model is not touched"


@pytest.mark.slow
def test_two_of_four_sparsity_pattern():
    params = pruning.resolve(pruning.Params(schedule="constant", m_by_n=(2, 4)), total_steps=8)
    skip_dw = (LayerRule(LayerMatch(class_name="Depthwise"), skip=True),)
    model = train(pruning.apply(fmnist_cnn("tf_keras"), params, skip_dw), params)
    kernel = model.get_layer("block2_pw").kernel.numpy()  # (1, 1, 64, 128): groups of 4 along input channels
    groups = kernel.reshape(64 // 4, 4, 128)
    assert np.all((groups == 0).sum(axis=1) >= 2)


def test_block_sparsity_zeros_whole_blocks():
    params = pruning.resolve(pruning.Params(schedule="constant", final_sparsity=0.5, block_size=(1, 4)), total_steps=8)
    model = train(pruning.apply(fmnist_cnn("tf_keras"), params), params)
    kernel = model.get_layer("logits").kernel.numpy()  # (256, 10): blocks of 1x4 along the outputs
    blocks = kernel[:, :8].reshape(256, 2, 4) == 0
    assert blocks.any(), "the Dense kernel is pruned"
    assert np.all(blocks.all(axis=2) | ~blocks.any(axis=2)), "a block is all zero or all kept"
    assert kernel_stats(model)["block1_pw"][0] == 0.0, "convolutions cannot take blocks: left dense"


def test_xnnpack_policy_refuses_a_model_it_cannot_accelerate():
    inp = tf_keras.Input((8,))
    model = tf_keras.Model(inp, tf_keras.layers.Dense(4)(inp))
    with pytest.raises(TfcompressError, match="XNNPACK"):
        pruning.apply(model, pruning.Params(policy="xnnpack"))


def test_nothing_prunable_is_an_error():
    inp = tf_keras.Input((8,))
    model = tf_keras.Model(inp, tf_keras.layers.ReLU()(inp))
    with pytest.raises(TfcompressError, match="no prunable layer"):
        pruning.apply(model, pruning.Params())


def test_two_of_four_leaves_kernels_tfmot_cannot_pattern_dense_and_says_so():
    """Issue 17: prune-2of4 failed mid-training on a Conv1D audio model ('weight tensor with shape: (9, 1, 16) is
    not supported'): TF-MOT's m-by-n masks take 2-D and 4-D kernels only. Such layers now stay dense, named."""
    L = tf_keras.layers
    inp = tf_keras.Input((64, 1))
    x = L.GlobalAveragePooling1D()(L.Conv1D(16, 9, padding="same", name="conv1d")(inp))
    model = tf_keras.Model(inp, L.Dense(8, name="head")(x))
    params = pruning.resolve(pruning.Params(schedule="constant", m_by_n=(2, 4)), total_steps=4)
    with pytest.warns(pruning.UnprunedLayerWarning, match=r"2:4 sparsity leaves 1 layer\(s\) dense.*conv1d \(Conv1D, 3-D kernel\)"):
        wrapped = pruning.apply(model, params)
    assert [type(layer).__name__ for layer in wrapped.layers][1:] == ["Conv1D", "GlobalAveragePooling1D", "PruneLowMagnitude"]
    wrapped.compile("adam", "mse")
    wrapped.fit(np.zeros((8, 64, 1), np.float32), np.zeros((8, 8), np.float32), epochs=1, verbose=0,
                callbacks=pruning.callbacks(params))
    head = pruning.strip(wrapped).get_layer("head").kernel.numpy()  # (16, 8): groups of 4 along the inputs
    assert np.all((head.reshape(4, 4, 8) == 0).sum(axis=1) >= 2)
