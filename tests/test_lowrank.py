"""Low-rank factorization: exact at full rank, ranks by energy / rank / model-wide reduction, skips reported."""

from __future__ import annotations

import numpy as np
import pytest

from tfcompress.keras_compat import tf_keras
from tfcompress.surgery import count_flops
from tfcompress.techniques import StageContext, get_technique
from tfcompress.techniques.lowrank import (
    Params,
    factorize,
    plan_factorization,
    spatial_factors,
    svd_factors,
    tucker_factors,
)

from conftest import random_images
from test_surgery import randomize

L = tf_keras.layers
FULL = {"energy": 1.0, "only_if_smaller": False, "min_params": 0}


def conv_model():
    """Strided, dilated, 'valid' and non-square convolutions, a 1x1 conv and a Dense head."""
    inp = tf_keras.Input((13, 11, 6))
    x = L.Conv2D(12, 3, strides=2, padding="same", activation="relu", name="strided")(inp)
    x = L.Conv2D(10, (3, 5), padding="valid", name="wide")(x)
    x = L.Conv2D(8, 3, dilation_rate=(2, 1), padding="same", use_bias=False, name="dilated")(x)
    x = L.Conv2D(9, 1, name="pointwise")(x)
    x = L.Flatten()(x)
    return randomize(tf_keras.Model(inp, L.Dense(5, activation="tanh", name="head")(x)))


def mlp():
    inp = tf_keras.Input((64,))
    x = L.Dense(96, activation="relu", name="fc1")(inp)
    x = L.Dense(80, activation="relu", name="fc2")(x)
    return randomize(tf_keras.Model(inp, L.Dense(10, name="out")(x)))


def test_factor_maths_is_exact_at_full_rank():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(20, 12)).astype(np.float32)
    a, b = svd_factors(w, 12)
    np.testing.assert_allclose(a @ b, w, atol=1e-4)
    k = rng.normal(size=(3, 5, 4, 6)).astype(np.float32)
    v, h = spatial_factors(k, min(3 * 4, 5 * 6))
    np.testing.assert_allclose(np.einsum("hcr,wro->hwco", v[:, 0], h[0]), k, atol=1e-4)
    first, core, last = tucker_factors(k, 4, 6)
    np.testing.assert_allclose(np.einsum("ir,hwrs,so->hwio", first[0, 0], core, last[0, 0]), k, atol=1e-4)


@pytest.mark.parametrize("method", ["spatial", "tucker"])
def test_full_rank_reproduces_outputs(method):
    model = conv_model()
    x = random_images(4, (13, 11, 6))
    plan = plan_factorization(model, conv_method=method, **FULL)
    assert {d.method for d in plan.factorized} == {method, "svd"}
    new = factorize(model, plan=plan)
    np.testing.assert_allclose(new(x).numpy(), model(x).numpy(), atol=1e-4)
    names = [layer.name for layer in new.layers]
    assert "strided" in names and ("strided_v" in names or "strided_core" in names)
    assert new.get_layer("head").activation.__name__ == "tanh"  # activation on the last layer


def test_dense_full_rank_svd_reproduces_outputs():
    model = mlp()
    x = np.random.default_rng(1).normal(size=(8, 64)).astype(np.float32)
    new = factorize(model, **FULL)
    np.testing.assert_allclose(new(x).numpy(), model(x).numpy(), atol=1e-4)
    assert new.get_layer("fc1_svd").units == 64


def test_layers_that_would_not_shrink_are_skipped_and_reported():
    plan = plan_factorization(mlp(), energy=1.0, min_params=1000)
    notes = {d.name: d.note for d in plan.skipped}
    assert "would not reduce params" in notes["fc1"]
    assert "min_params" in notes["out"]
    assert plan.factorized == ()
    assert "skipped" in plan.table()


def test_explicit_rank_and_rank_multiple():
    plan = plan_factorization(mlp(), rank=5, rank_multiple=8)
    ranks = {d.name: d.ranks for d in plan.factorized}
    assert ranks == {"fc1": (8,), "fc2": (8,)}
    new = factorize(mlp(), plan=plan)
    assert new.get_layer("fc2_svd").units == 8
    assert new.count_params() < mlp().count_params()


def test_energy_picks_smaller_ranks_for_low_rank_kernels():
    model = mlp()
    rng = np.random.default_rng(2)
    low = (rng.normal(size=(64, 4)) @ rng.normal(size=(4, 96))).astype(np.float32)
    model.get_layer("fc1").set_weights([low, np.zeros(96, np.float32)])
    plan = plan_factorization(model, energy=0.999)
    d = next(d for d in plan.factorized if d.name == "fc1")
    assert d.ranks == (4,) and d.energy > 0.999
    x = rng.normal(size=(4, 64)).astype(np.float32)
    np.testing.assert_allclose(factorize(model, plan=plan).get_layer("fc1")(
        factorize(model, plan=plan).get_layer("fc1_svd")(x)).numpy(), model.get_layer("fc1")(x).numpy(), atol=1e-3)


@pytest.mark.parametrize("objective", ["params", "flops"])
def test_reduction_target_is_met_model_wide(objective):
    model = conv_model()
    plan = plan_factorization(model, reduction=0.4, objective=objective, min_params=0)
    new = factorize(model, plan=plan)
    before, after = count_flops(model), count_flops(new)
    if objective == "params":
        assert after.params <= 0.6 * before.params + 1
    else:
        assert after.flops <= 0.6 * before.flops * 1.02  # bias adds are outside the kernel cost
    assert new(random_images(2, (13, 11, 6))).shape == (2, 5)


def test_params_validate_and_registry():
    with pytest.raises(ValueError, match="energy"):
        Params(energy=0.0)
    with pytest.raises(ValueError, match="conv_method"):
        Params(conv_method="cp")
    entry = get_technique("low_rank")
    assert entry.params_type is Params
    new = entry.apply(mlp(), Params(rank=4), (), StageContext())
    assert entry.strip(new) is new and entry.callbacks(Params(), StageContext()) == []
