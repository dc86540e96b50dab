"""Clustering over TF-MOT: cluster counts, skipped layers, sparsity preservation."""

from __future__ import annotations

import numpy as np
import pytest

from tfcompress.monitoring import kernel_stats
from tfcompress.errors import TfcompressError
from tfcompress.keras_compat import tf_keras
from tfcompress.models import fmnist_cnn
from tfcompress.techniques import clustering

X = np.random.default_rng(0).random((48, 28, 28, 1), dtype=np.float32)
Y = np.random.default_rng(1).integers(0, 10, 48)


def fit(model):
    model.compile("adam", tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(X, Y, epochs=1, batch_size=16, verbose=0)
    return model


def test_clustered_kernels_have_at_most_k_values_and_depthwise_is_skipped():
    model = clustering.strip(fit(clustering.apply(fmnist_cnn("tf_keras"), clustering.Params(clusters=8))))
    stats = kernel_stats(model)
    for name in ("block1_pw", "block4_pw", "logits", "stem_conv"):
        assert stats[name][1] <= 8, name
    assert stats["block1_dw"][1] > 8, "depthwise kernels hold nothing TF-MOT clusters: left alone, not fatal"


def test_sparsity_is_preserved():
    base = fmnist_cnn("tf_keras")
    kernel = base.get_layer("block2_pw").kernel
    mask = np.random.default_rng(0).random(kernel.shape) < 0.6
    kernel.assign(np.where(mask, 0.0, kernel.numpy()))
    model = clustering.strip(fit(clustering.apply(base, clustering.Params(clusters=8, preserve_sparsity=True))))
    zeros = model.get_layer("block2_pw").kernel.numpy() == 0
    assert zeros[mask].all()


def test_min_weights_and_nothing_to_cluster():
    inp = tf_keras.Input((4,))
    tiny = tf_keras.Model(inp, tf_keras.layers.Dense(2)(inp))
    with pytest.raises(TfcompressError, match="no clusterable layer"):
        clustering.apply(tiny, clustering.Params())


def test_params_validation():
    with pytest.raises(ValueError, match="clusters"):
        clustering.Params(clusters=1)


def test_multi_head_attention_is_clustered_not_a_key_error():
    """Issue 17: cluster-16 / CQAT / PCQAT on a Transformer encoder raised KeyError(MultiHeadAttention): TF-MOT
    supports the layer as a whole and clusters its einsum kernels, but has no weight-name entry for it."""
    L = tf_keras.layers
    inp = tf_keras.Input((8, 16))
    x = L.MultiHeadAttention(2, 8, name="mha")(inp, inp)
    model = tf_keras.Model(inp, L.Dense(4, name="head")(L.GlobalAveragePooling1D()(x)))
    assert clustering.is_clusterable(model.get_layer("mha"))
    clustered = clustering.apply(model, clustering.Params(clusters=4, min_weights=0))
    clustered.compile("adam", "mse")
    clustered.fit(np.random.default_rng(0).normal(size=(8, 8, 16)).astype(np.float32), np.zeros((8, 4)), epochs=1,
                  verbose=0)
    mha = clustering.strip(clustered).get_layer("mha")
    kernels = [w.numpy() for w in mha.weights if w.name.split("/")[-1].startswith("kernel")]
    assert len(kernels) == 4 and all(np.unique(k).size <= 4 for k in kernels), [np.unique(k).size for k in kernels]
    # TF-MOT's strip lists MultiHeadAttention's kernels before its biases: the next stage's copy (CQAT) matches
    # weights by name instead of failing on 'weight shape (2, 8) is not compatible with (8, 2, 8)'
    from tfcompress.techniques.rules import fresh_copy

    stripped = clustering.strip(clustered)
    copy = fresh_copy(stripped)
    x = np.random.default_rng(1).normal(size=(4, 8, 16)).astype(np.float32)
    np.testing.assert_allclose(copy.predict(x, verbose=0), stripped.predict(x, verbose=0), atol=1e-6)
