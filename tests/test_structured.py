"""Structured channel pruning: exactness, criteria, allocation, rules, real architectures to int8."""

from __future__ import annotations

import numpy as np
import pytest

import tfcompress
from tfcompress.errors import DataError
from tfcompress.keras_compat import tf_keras
from tfcompress.models import fmnist_cnn
from tfcompress.surgery import count_flops
from tfcompress.techniques import Capability, StageContext, get_technique
from tfcompress.techniques import structured
from tfcompress.techniques.structured import Params, plan_pruning, prune_channels, prune_iteratively
from tfcompress.types import LayerMatch, LayerRule

from conftest import random_images
from test_surgery import block_model, nested_model, randomize

L = tf_keras.layers


@pytest.fixture(scope="module")
def cnn():
    tf_keras.utils.set_random_seed(0)
    return randomize(fmnist_cnn("tf_keras"), seed=1)


@pytest.fixture(scope="module")
def x28():
    return random_images(32, (28, 28, 1), seed=2)


def only(name, ratio):
    """Rules pruning only layer `name` (the stage's ratio is 0)."""
    return (LayerRule(LayerMatch(name=f"^{name}$"), params={"ratio": ratio}),)


def test_params_validate():
    with pytest.raises(ValueError, match="ratio"):
        Params(ratio=1.0)
    with pytest.raises(ValueError, match="criterion"):
        Params(criterion="l3")
    with pytest.raises(ValueError, match="round_to"):
        Params(round_to=0)
    assert get_technique("structured_prune").params_type is Params


def test_zero_ratio_reproduces_outputs(cnn, x28):
    same = prune_channels(cnn, ratio=0.0)
    np.testing.assert_allclose(same(x28).numpy(), cnn(x28).numpy(), atol=1e-5)
    assert same.count_params() == cnn.count_params()


def test_removing_zero_channels_reproduces_outputs(cnn, x28):
    model = tf_keras.models.clone_model(cnn)
    model.set_weights(cnn.get_weights())
    dead = np.arange(0, 128, 4)  # block2_pw filters whose output is exactly 0 all the way to block3_pw
    w = model.get_layer("block2_pw").get_weights()[0]
    w[..., dead] = 0
    model.get_layer("block2_pw").set_weights([w])
    for bn in ("block2_pw_bn", "block3_dw_bn"):
        gamma, beta, mean, var = model.get_layer(bn).get_weights()
        beta[dead], mean[dead] = 0, 0
        model.get_layer(bn).set_weights([gamma, beta, mean, var])
    plan = plan_pruning(model, ratio=0.0, rules=only("block2_pw", 0.25), min_fraction=0)
    assert sorted(set(range(128)) - set(plan.keep["block2_pw"])) == dead.tolist()
    small = prune_channels(model, plan=plan, compensate=False)
    np.testing.assert_allclose(small(x28).numpy(), model(x28).numpy(), atol=1e-5)
    assert small.get_layer("block3_dw").get_weights()[0].shape[2] == 96
    assert small.count_params() < model.count_params()


def constant_channel_model(head):
    """conv -> BN -> ReLU -> (GAP -> Dense | 1x1 conv -> GAP): filters 0..2 output a constant (kernel 0, beta > 0)."""
    inp = tf_keras.Input((6, 6, 3))
    x = L.Conv2D(8, 3, padding="same", use_bias=False, name="conv")(inp)
    x = L.BatchNormalization(name="bn")(x)
    x = L.ReLU(name="relu")(x)
    if head == "dense":
        out = L.Dense(4, name="head")(L.GlobalAveragePooling2D()(x))
    else:
        out = L.GlobalAveragePooling2D()(L.Conv2D(5, 1, use_bias=False, name="head")(x))
    model = randomize(tf_keras.Model(inp, out), seed=3)
    w = model.get_layer("conv").get_weights()[0]
    w[..., :3] = 0
    model.get_layer("conv").set_weights([w])
    gamma, beta, mean, var = model.get_layer("bn").get_weights()
    beta[:3] = [0.5, 1.0, 2.0]
    model.get_layer("bn").set_weights([gamma, beta, mean, var])
    return model


@pytest.mark.parametrize("head", ["dense", "conv1x1"])
def test_removing_constant_channels_folds_them_into_the_next_bias(head):
    model = constant_channel_model(head)
    x = random_images(8, (6, 6, 3))
    plan = plan_pruning(model, ratio=0.0, rules=only("conv", 3 / 8), min_fraction=0, min_channels=1)
    assert plan.keep["conv"] == (3, 4, 5, 6, 7)
    small = prune_channels(model, plan=plan)  # no data: constant channels found on random inputs
    np.testing.assert_allclose(small(x).numpy(), model(x).numpy(), atol=1e-5)
    if head == "conv1x1":
        assert small.get_layer("head").use_bias  # had no bias: one was added for the constants
    plain = prune_channels(model, plan=plan, compensate=False)
    assert np.abs(plain(x).numpy() - model(x).numpy()).max() > 1e-3


@pytest.mark.parametrize("criterion", ["l1", "l2", "bn_gamma", "taylor", "activation"])
def test_every_criterion_prunes_residual_se_concat_blocks(criterion):
    model = block_model()
    x = random_images(16, (8, 8, 3))
    y = np.arange(16) % 4
    small = prune_channels(model, ratio=0.5, criterion=criterion, data=(x, y), min_channels=1, min_fraction=0)
    assert small(x).shape == (16, 4)
    assert small.get_layer("stem").filters == small.get_layer("res_conv").filters == 4
    assert small.get_layer("se_expand").filters == 4 and small.get_layer("se_reduce").filters == 2
    assert count_flops(small).flops < count_flops(model).flops


def test_nested_models_are_pruned_flat():
    model = nested_model()
    small = prune_channels(model, ratio=0.5, min_channels=1, min_fraction=0)
    assert small.get_layer("seq_conv").filters == 3  # 5 channels -> 3 (rounded half up)
    assert small(random_images(2, (8, 8, 6))).shape == (2, 3)


def test_floors_rounding_and_rules(cnn):
    plan = plan_pruning(cnn, ratio=0.9, min_channels=8, min_fraction=0.0)
    kept = {g.producers[0]: g.kept for g in plan.groups}
    assert kept["stem_conv"] == 8 and kept["block4_pw"] == 26
    plan = plan_pruning(cnn, ratio=0.3, round_to=8)
    assert all(g.kept % 8 == 0 for g in plan.groups if not g.note)
    rules = (LayerRule(LayerMatch(name="stem"), skip=True), LayerRule(LayerMatch(name="block4"), params={"ratio": 0.75}))
    plan = plan_pruning(cnn, ratio=0.5, rules=rules)
    kept = {g.producers[0]: (g.kept, g.note) for g in plan.groups}
    assert kept["stem_conv"] == (32, "skipped by a rule on 'stem_conv'")
    assert kept["block4_pw"][0] == 64 and kept["block1_pw"][0] == 32
    assert "logits" in plan.table()


def test_global_allocation_removes_the_ratio_in_total(cnn):
    plan = plan_pruning(cnn, ratio=0.5, allocation="global", min_fraction=0.1)
    assert plan.channels_after == pytest.approx(plan.channels_before / 2, abs=1)
    assert len({g.kept / g.channels for g in plan.groups if not g.note}) > 1  # not uniform


def test_data_criteria_need_data(cnn, x28):
    with pytest.raises(DataError, match="needs data"):
        plan_pruning(cnn, criterion="activation")
    with pytest.raises(DataError, match="labels"):
        plan_pruning(cnn, criterion="taylor", data=x28)
    plan = plan_pruning(cnn, criterion="activation", data=x28)  # no labels needed
    assert plan.channels_after < plan.channels_before


def test_iterative_rounds_fine_tune_between(cnn):
    seen = []

    def fine_tune(model, round_index):
        seen.append((round_index, model.count_params()))
        return model

    small = prune_iteratively(cnn, fine_tune, ratio=0.75, rounds=2, min_fraction=0, min_channels=1)
    assert [r for r, _ in seen] == [0, 1] and seen[0][1] > seen[1][1]
    assert small.get_layer("block4_pw").filters == 64  # 256 * 0.5 * 0.5


def test_registry_contract(cnn):
    entry = get_technique("structured_prune")
    assert entry is structured.TECHNIQUE and entry.params_type is Params
    small = entry.apply(cnn, Params(ratio=0.5), (), StageContext())
    assert entry.strip(small) is small and entry.callbacks(Params(), StageContext()) == []
    assert entry.can(Capability.CHANGES_STRUCTURE) and entry.can(Capability.USES_DATA)
    assert small.get_layer("block4_pw").filters == 128


@pytest.mark.slow
@pytest.mark.parametrize("name", ["MobileNetV2", "EfficientNetB0"])
def test_applications_pruned_half_and_converted_to_int8(name):
    model = getattr(tf_keras.applications, name)(weights=None, input_shape=(96, 96, 3))
    small = prune_channels(model, ratio=0.5)
    assert small.count_params() < 0.45 * model.count_params()
    data = np.random.default_rng(0).uniform(-1, 1, (4, 96, 96, 3)).astype(np.float32)
    result = tfcompress.convert(small, data, verify=False, calib_samples=4)
    assert result.report.size.tflite_bytes > 0


def test_taylor_global_prunes_groups_without_a_measuring_point_uniformly():
    """A shared producer has no single output to measure: L1-ranked, pruned by the plain ratio."""
    inp = tf_keras.Input((6,))
    shared = L.Dense(8, activation="relu", name="shared")
    x = L.Concatenate(name="cat")([shared(inp), shared(L.Dense(6, name="pre")(inp))])
    model = randomize(tf_keras.Model(inp, L.Dense(3, name="head")(L.Dense(16, name="mid")(x))))
    rng = np.random.default_rng(0)
    data = (rng.normal(size=(32, 6)).astype(np.float32), rng.integers(0, 3, 32))
    plan = plan_pruning(model, ratio=0.5, criterion="taylor", allocation="global", data=data, min_fraction=0)
    kept = {g.producers: g.kept for g in plan.groups}
    assert kept[("shared",)] == 4
    assert prune_channels(model, plan=plan)(data[0]).shape == (32, 3)
