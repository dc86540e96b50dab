"""Block swaps: k x k Conv2D -> depthwise-separable, initialised from the original kernel."""

from __future__ import annotations

import numpy as np
import pytest

import tfcompress
from tfcompress.keras_compat import keras3, tf_keras
from tfcompress.recipe import parse_recipe_dict
from tfcompress.techniques import get_technique
from tfcompress.techniques.swap import Params, plan_swaps, separable_factors, swap_blocks


def plain_cnn(flavor=tf_keras, seed=0):
    flavor.utils.set_random_seed(seed)
    L = flavor.layers
    inp = flavor.Input((16, 16, 3))
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="c1")(inp)
    x = L.Conv2D(32, 3, strides=2, padding="same", name="c2")(x)
    x = L.BatchNormalization(name="bn2")(x)
    x = L.ReLU(name="r2")(x)
    x = L.Conv2D(32, 1, name="c3")(x)  # 1x1: nothing to swap
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return flavor.Model(inp, L.Dense(10, name="head")(x))


def make_separable(model, name):
    """Replace a layer's kernel by one that is rank 1 per input channel (so the swap is exact)."""
    layer = model.get_layer(name)
    k, *rest = layer.get_weights()
    rng = np.random.default_rng(1)
    kh, kw, cin, cout = k.shape
    sep = np.einsum("hwc,co->hwco", rng.normal(size=(kh, kw, cin)), rng.normal(size=(cin, cout))).astype(np.float32)
    layer.set_weights([sep, *rest])


def test_factors_reproduce_a_separable_kernel_exactly():
    rng = np.random.default_rng(0)
    k = np.einsum("hwc,co->hwco", rng.normal(size=(5, 5, 4)), rng.normal(size=(4, 7)))
    dw, pw, energy = separable_factors(k)
    assert energy == pytest.approx(1.0) and dw.shape == (5, 5, 4, 1) and pw.shape == (1, 1, 4, 7)
    np.testing.assert_allclose(np.einsum("hwc,co->hwco", dw[..., 0], pw[0, 0]), k, atol=1e-10)
    _, _, random_energy = separable_factors(rng.normal(size=(3, 3, 4, 8)))
    assert 0.1 < random_energy < 1.0


@pytest.mark.parametrize("mid", ["none", "bn"])
def test_exactly_separable_convolutions_are_reproduced(mid):
    model = plain_cnn()
    for name in ("c1", "c2"):
        make_separable(model, name)
    x = np.random.default_rng(2).random((8, 16, 16, 3), dtype=np.float32)
    swapped = swap_blocks(model, Params(mid=mid))
    kinds = [type(layer).__name__ for layer in swapped.layers]
    assert kinds.count("DepthwiseConv2D") == 2 and swapped.get_layer("c3").kernel_size == (1, 1)
    np.testing.assert_allclose(swapped.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)
    assert swapped.count_params() < model.count_params()


def test_plan_reports_costs_and_initialisation_and_rules_skip_layers():
    from tfcompress.types import LayerMatch, LayerRule

    model = plain_cnn()
    plan = plan_swaps(model)
    assert [s.name for s in plan.swaps] == ["c1", "c2"] and "c3" in plan.skipped
    c2 = plan.swaps[1]
    assert c2.params_after == 3 * 3 * 16 + 16 * 32 < c2.params_before == 3 * 3 * 16 * 32
    assert c2.macs_after < c2.macs_before and 0 < c2.energy < 1, "a random kernel is not separable"
    skip = (LayerRule(LayerMatch(name="^c1$"), skip=True),)
    assert [s.name for s in plan_swaps(model, Params(), skip).swaps] == ["c2"]
    assert "c1" in plan.describe()


@pytest.mark.slow
def test_keras3_model_swaps_and_converts_to_verified_int8():
    model = plain_cnn(keras3)
    x = np.random.default_rng(3).random((64, 16, 16, 3), dtype=np.float32)
    swapped = swap_blocks(model, Params(mid="bn_relu6"))
    assert any(type(layer).__name__ == "ReLU" and layer.name == "c2_dw_relu" for layer in swapped.layers)
    result = tfcompress.convert(swapped, x, calib_samples=32, verify_samples=32, latency_runs=3, device=None)
    assert result.report.io_dtypes == ("int8", "int8") and not result.report.float_ops


@pytest.mark.slow
def test_swap_stage_in_a_recipe_runs_through_compress():
    assert get_technique("swap").params_type is Params
    recipe = parse_recipe_dict({"name": "sw", "stages": [
        {"technique": "swap", "epochs": 1, "steps_per_epoch": 2, "batch_size": 16, "params": {"mid": "bn"}}]})
    x = np.random.default_rng(4).random((96, 16, 16, 3), dtype=np.float32)
    y = np.random.default_rng(5).integers(0, 10, 96)
    result = tfcompress.compress(plain_cnn(), recipe, (x, y), measure_stages=False, device=None)
    assert [type(layer).__name__ for layer in result.model.layers].count("DepthwiseConv2D") == 2
    assert result.convert.report.io_dtypes == ("int8", "int8")
