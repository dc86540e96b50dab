"""Block swaps beyond separable: inverted residual, MBConv (SE, swish / hard-swish), Dense bottleneck."""

from __future__ import annotations

import json

import numpy as np
import pytest

import tfcompress
from tfcompress.keras_compat import keras3, tf_keras
from tfcompress.surgery import count_flops
from tfcompress.surgery.blocks import SIGNED_COPIES
from tfcompress.techniques import StageContext
from tfcompress.techniques.lowrank import factorize
from tfcompress.techniques.swap import Params, apply, plan_swaps, swap_blocks
from tfcompress.types import LayerMatch, LayerRule


def cnn(flavor=tf_keras, seed=0):
    """c0 reads the raw (signed) input; c1 reads a ReLU output and keeps its shape (a residual fits); c2 strides."""
    flavor.utils.set_random_seed(seed)
    L = flavor.layers
    inp = flavor.Input((12, 12, 3))
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="c0")(inp)
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="c1")(x)
    x = L.Conv2D(16, 3, strides=2, padding="same", name="c2")(x)
    x = L.BatchNormalization(name="bn2")(x)
    x = L.ReLU(name="r2")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dense(64, activation="relu", name="hidden")(x)
    return flavor.Model(inp, L.Dense(10, name="head")(x))


def make_separable(model, name, identity=False, scale=0.3):
    """A kernel that is rank 1 per input channel (plus the identity tap: then K - I is)."""
    layer = model.get_layer(name)
    k, *rest = layer.get_weights()
    kh, kw, cin, cout = k.shape
    rng = np.random.default_rng(len(name) + cout)
    sep = scale * np.einsum("hwc,co->hwco", rng.normal(size=(kh, kw, cin)), rng.normal(size=(cin, cout)))
    if identity:
        sep[kh // 2, kw // 2, np.arange(cin), np.arange(cin)] += 1.0
    layer.set_weights([sep.astype(np.float32), *rest])


def x_data(n=8, seed=2):
    return np.random.default_rng(seed).random((n, 12, 12, 3), dtype=np.float32)


def only(*names):
    """Rules swapping only `names`."""
    return (*(LayerRule(LayerMatch(name=f"^{n}$")) for n in names), LayerRule(LayerMatch(name=".*"), skip=True))


def test_signed_copies_carry_any_odd_pair_activation_exactly():
    u = np.linspace(-20, 20, 401)
    relu = lambda v: np.maximum(v, 0)  # noqa: E731
    swish = lambda v: v / (1 + np.exp(-v))  # noqa: E731
    hswish = lambda v: v * np.clip(v / 6 + 0.5, 0, 1)  # noqa: E731
    for a in (relu, swish, hswish):
        np.testing.assert_allclose(a(u) - a(-u), u, atol=1e-9)
        f = 0.7  # one depthwise tap: the four copies sum to f * x
        total = sum(so * a(sd * f * a(si * u)) for si, sd, so in SIGNED_COPIES)
        np.testing.assert_allclose(total, f * u, atol=1e-9)


def test_inverted_residual_with_residual_reproduces_a_separable_plus_identity_kernel():
    model = cnn()
    make_separable(model, "c1", identity=True)
    p = Params(target="inverted_residual", expansion=2)
    swapped, plan = swap_blocks(model, p, only("c1"), with_plan=True)
    (s,) = plan.swaps
    assert s.target == "inverted_residual" and s.exact and s.energy == pytest.approx(1.0)
    kinds = {layer.name: type(layer).__name__ for layer in swapped.layers}
    assert kinds["c1_expand"] == "Conv2D" and kinds["c1_dw"] == "DepthwiseConv2D" and kinds["c1_add"] == "Add"
    assert kinds["c1"] == "Activation" and kinds["c1_expand_act"] == "ReLU"
    assert swapped.get_layer("c1_expand").kernel.shape == (1, 1, 8, 16)
    np.testing.assert_allclose(swapped.predict(x_data(), verbose=0), model.predict(x_data(), verbose=0), atol=1e-5)
    assert dict(s.init)["c1_expand"] == "identity copies +-x" and dict(s.init)["c1_project"] == "original"


@pytest.mark.parametrize("activation", ["swish", "hard_swish"])
def test_mbconv_with_se_reproduces_separable_kernels_with_four_copies(activation):
    model = cnn()
    for name in ("c0", "c2"):
        make_separable(model, name)
    make_separable(model, "c1", identity=True)
    p = Params(target="mbconv", expansion=4, activation=activation, se_ratio=0.5)
    swapped, plan = swap_blocks(model, p, with_plan=True)
    assert [s.name for s in plan.swaps] == ["c0", "c1", "c2"] and all(s.exact for s in plan.swaps)
    names = {layer.name for layer in swapped.layers}
    assert {"c0_se_reduce", "c0_se_expand", "c0_se_excite", "c1_add", "c2_expand"} <= names
    assert swapped.get_layer("c0_se_reduce").filters == 2  # round(3 * 0.5); c1 / c2: 8 * 0.5
    np.testing.assert_allclose(swapped.predict(x_data(), verbose=0), model.predict(x_data(), verbose=0), atol=1e-5)
    assert swapped.output_shape == model.output_shape and swapped.get_layer("c2").output_shape == (None, 6, 6, 16)


def test_plan_says_which_layers_start_from_the_original_and_which_fresh():
    model = cnn()
    plan = plan_swaps(model, Params(target="mbconv", expansion=6), only("c1", "c0"))
    c0, c1 = plan.swaps
    assert c0.exact, "c0 reads the signed input: four copies needed, six available"
    init = dict(c1.init)
    # c1's input is a ReLU output but mbconv uses swish: 4 copies of 8 channels carry the kernel, 16 are fresh
    assert init["c1_expand"] == "identity copies +-x (32 of 48 channels), fresh (the rest)"
    assert init["c1_dw"] == "original (32 of 48 channels), fresh (the rest)"
    assert init["c1_se_reduce"] == "fresh" and init["c1_se_expand"].startswith("zero")
    assert init["c1_expand_bn"] == "identity" and init["c1_project"] == "original"
    assert "c1_se_reduce: fresh" in plan.describe()
    # ReLU6 and a ReLU input: two copies suffice; the signed input of c0 needs four
    ir = plan_swaps(model, Params(target="inverted_residual", expansion=2), only("c0", "c1"))
    assert [s.exact for s in ir.swaps] == [False, True]
    assert dict(ir.swaps[0].init)["c0_dw"] == "original"


def test_costs_and_auto_target():
    model = cnn()
    plan = plan_swaps(model, Params(target="auto"))
    targets = {s.name: s.target for s in plan.swaps}
    assert targets == {"c0": "separable", "c1": "inverted_residual", "c2": "separable"}
    c1 = next(s for s in plan.swaps if s.name == "c1")
    assert c1.params_before == 9 * 8 * 8 and c1.params_after == 8 * 16 + 9 * 16 + 16 * 8
    swapped = swap_blocks(model, Params(target="auto"))
    assert count_flops(swapped).macs < count_flops(model).macs
    wide = plan_swaps(model, Params(target="inverted_residual", expansion=6, residual=False), only("c1"))
    assert not any("add" in name for name, _ in wide.swaps[0].init)
    assert wide.swaps[0].params_after > wide.swaps[0].params_before, "t = 6 at equal width costs more than the conv"


def test_dense_bottleneck_reuses_low_rank():
    model = cnn()
    rules = (LayerRule(LayerMatch(class_name="^Dense$"), params={"target": "bottleneck", "rank": 4}),)
    swapped, plan = swap_blocks(model, Params(target="separable"), rules, with_plan=True)
    targets = {s.name: s.target for s in plan.swaps}
    assert targets["hidden"] == "bottleneck" and targets["c1"] == "separable"
    assert targets["head"] == "bottleneck" and targets["c0"] == "separable"
    assert swapped.get_layer("hidden_svd").units == 4 and swapped.get_layer("hidden").kernel.shape == (4, 64)
    reference = factorize(model, rank=4, only_if_smaller=True, min_params=0)  # low_rank on its own, same rank
    np.testing.assert_allclose(swapped.get_layer("hidden_svd").kernel.numpy(),
                               reference.get_layer("hidden_svd").kernel.numpy(), atol=1e-6)
    hidden = next(s for s in plan.swaps if s.name == "hidden")
    assert hidden.params_after == 4 * (16 + 64) and dict(hidden.init) == {"hidden_svd": "original", "hidden": "original"}


def test_stage_writes_the_plan_to_its_log_dir(tmp_path):
    model = cnn()
    apply(model, Params(target="inverted_residual"), (), StageContext(log_dir=str(tmp_path / "stage0_swap")))
    saved = json.loads((tmp_path / "stage0_swap" / "swap_plan.json").read_text())
    assert [s["name"] for s in saved["swaps"]] == ["c0", "c1", "c2"]
    assert saved["swaps"][1]["init"][0] == ["c1_expand", "identity copies +-x"]


@pytest.mark.slow
def test_keras3_model_every_target_converts_to_verified_int8():
    model = cnn(keras3)
    rules = (
        LayerRule(LayerMatch(name="^c0$"), params={"target": "mbconv", "activation": "hard_swish"}),
        LayerRule(LayerMatch(name="^c1$"), params={"target": "inverted_residual", "expansion": 3}),
        LayerRule(LayerMatch(name="^c2$"), params={"target": "mbconv", "activation": "swish"}),
        LayerRule(LayerMatch(name="^hidden$"), params={"target": "bottleneck", "rank": 8}),
    )
    swapped, plan = swap_blocks(model, Params(), rules, with_plan=True)
    assert [s.target for s in plan.swaps] == ["mbconv", "inverted_residual", "mbconv", "bottleneck"]
    assert swapped.get_layer("c2").output_shape == (None, 6, 6, 16) and swapped.output_shape == (None, 10)
    x = np.random.default_rng(3).random((64, 12, 12, 3), dtype=np.float32)
    result = tfcompress.convert(swapped, x, calib_samples=32, verify_samples=32, latency_runs=3, device=None)
    assert result.report.io_dtypes == ("int8", "int8") and not result.report.float_ops
    assert result.report.verify.samples == 32 and result.report.verify.outputs[0].shape == (10,)
