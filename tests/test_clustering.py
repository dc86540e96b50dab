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
