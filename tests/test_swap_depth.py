"""Depth scaling (`scale: {depth: d}`): residual blocks removed or repeated, copies starting as the identity."""

from __future__ import annotations

import json

import numpy as np
import pytest

import tfcompress
from tfcompress.errors import TfcompressError
from tfcompress.keras_compat import keras3, tf_keras
from tfcompress.recipe import parse_recipe_dict
from tfcompress.report import CompressReport
from tfcompress.surgery.depth import find_stages, scale_depth
from tfcompress.surgery.graph import trace


def resnet(flavor=tf_keras, blocks=3, seed=0):
    """stem -> `blocks` identity blocks (conv-relu-conv-BN, Add, ReLU) -> strided conv -> one more block -> head."""
    if flavor is tf_keras:
        tf_keras.utils.set_random_seed(seed)
    L = flavor.layers
    inp = flavor.Input((12, 12, 3))
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="stem")(inp)
    for i in range(blocks):
        y = L.Conv2D(8, 3, padding="same", activation="relu", name=f"b{i}_a")(x)
        y = L.Conv2D(8, 3, padding="same", name=f"b{i}_b")(y)
        y = L.BatchNormalization(name=f"b{i}_bn")(y)
        x = L.ReLU(name=f"b{i}_out")(L.Add(name=f"b{i}_add")([x, y]))
    x = L.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="down")(x)
    y = L.Conv2D(16, 1, name="c_a")(x)
    x = L.Add(name="c_add")([x, y])  # a second stage: one block, linear Add
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return flavor.Model(inp, L.Dense(4, name="head")(x))


def _randomize_bn(model):
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.3, b.shape),
                               rng.normal(0, 0.3, m.shape), rng.uniform(0.5, 1.5, v.shape)])
    return model


def _adds(model):
    return sorted(layer.name for layer in model.layers if type(layer).__name__ == "Add")


X = np.random.default_rng(0).random((8, 12, 12, 3), dtype=np.float32)


def test_stages_are_chains_of_shape_preserving_residual_blocks():
    stages = find_stages(trace(resnet()))
    graph = trace(resnet())
    names = [[graph.nodes[b.add].name for b in chain] for chain in stages]
    assert names == [["b0_add", "b1_add", "b2_add"], ["c_add"]]
    assert stages[0][0].post is not None and stages[1][0].post is None, "the ReLU after b*_add belongs to the block"


def test_deeper_model_starts_computing_what_the_original_did():
    model = _randomize_bn(resnet())
    deeper, plan = scale_depth(model, 2.0)
    assert len(_adds(deeper)) == 6 + 2, "3 -> 6 and 1 -> 2"
    first, second = plan.stages
    assert (first.before, first.after, first.copied_from) == (3, 6, "b2_add") and len(first.added) == 3
    assert (second.before, second.after) == (1, 2)
    np.testing.assert_allclose(deeper.predict(X, verbose=0), model.predict(X, verbose=0), atol=1e-5)
    assert plan.max_abs_diff is not None and plan.max_abs_diff < 1e-5
    copy_bn = deeper.get_layer(first.added[0].replace("_add", "_bn"))
    gamma, beta, mean, var = copy_bn.get_weights()
    assert not gamma.any() and not beta.any(), "the copy's branch ends in a zeroed BN"
    np.testing.assert_array_equal(mean, model.get_layer("b2_bn").get_weights()[2])
    np.testing.assert_array_equal(deeper.get_layer(first.added[0].replace("_add", "_a")).get_weights()[0],
                                  model.get_layer("b2_a").get_weights()[0]), "other weights are copied"


def test_shallower_model_drops_the_last_blocks_of_each_stage():
    model = _randomize_bn(resnet(blocks=4))
    shallow, plan = scale_depth(model, 0.5)
    assert _adds(shallow) == ["b0_add", "b1_add", "c_add"], "ceil(0.5 x 4) = 2; ceil(0.5 x 1) = 1 keeps c_add"
    assert plan.stages[0].removed == ("b2_add", "b3_add")
    # the same as the original with the removed blocks' branches silenced (their BN outputs 0)
    silenced = tf_keras.models.clone_model(model)
    silenced.set_weights(model.get_weights())
    for name in ("b2_bn", "b3_bn"):
        g, b, m, v = silenced.get_layer(name).get_weights()
        silenced.get_layer(name).set_weights([0 * g, 0 * b, m, v])
    np.testing.assert_allclose(shallow.predict(X, verbose=0), silenced.predict(X, verbose=0), atol=1e-5)
    assert shallow.count_params() < model.count_params()


def test_mbconv_blocks_with_squeeze_excitation_repeat_as_identity():
    from tfcompress.techniques.swap import Params, swap_blocks

    tf_keras.utils.set_random_seed(2)
    L = tf_keras.layers
    inp = tf_keras.Input((12, 12, 3))
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="stem")(inp)
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="m1")(x)
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="m2")(x)
    plain = tf_keras.Model(inp, L.Dense(4, name="head")(L.GlobalAveragePooling2D(name="gap")(x)))
    mb = swap_blocks(plain, Params(target="mbconv", expansion=4, se_ratio=0.25, min_params=1024))
    assert [len(chain) for chain in find_stages(trace(mb))] == [2], "two MBConv + SE blocks with residuals"
    deeper, plan = scale_depth(mb, 1.5)
    assert plan.stages[0].after == 3 and len(_adds(deeper)) == 3
    np.testing.assert_allclose(deeper.predict(X, verbose=0), mb.predict(X, verbose=0), atol=1e-5)


def test_a_plain_stack_is_an_error_and_a_no_op_multiplier_warns():
    from tests.test_swap import plain_cnn
    from tfcompress.techniques.scale import Params, scale_model

    with pytest.raises(TfcompressError) as err:
        scale_depth(plain_cnn(), 2.0)
    assert "no residual blocks" in str(err.value) and err.value.hint
    with pytest.warns(UserWarning, match="changes no stage"):
        same, details = scale_model(resnet(blocks=1), Params(depth=0.5))
    assert _adds(same) == ["b0_add", "c_add"] and details["blocks"][0]["after"] == 1


@pytest.mark.slow
def test_keras3_model_scales_in_depth_and_converts_to_verified_int8():
    model = resnet(keras3, blocks=2)
    deeper, plan = scale_depth(model, 2.0)
    assert plan.max_abs_diff is not None and plan.max_abs_diff < 1e-5
    result = tfcompress.convert(deeper, X, calib_samples=8, verify_samples=8, latency_runs=3, device=None)
    assert result.report.io_dtypes == ("int8", "int8") and not result.report.float_ops


@pytest.mark.slow
def test_compound_scaling_stage_through_compress_reports_the_blocks():
    recipe = parse_recipe_dict({"name": "compound", "stages": [
        {"technique": "scale", "epochs": 1, "steps_per_epoch": 2, "batch_size": 16,
         "params": {"width": 0.5, "depth": 2.0}}]})
    rng = np.random.default_rng(3)
    x = rng.random((64, 12, 12, 3), dtype=np.float32)
    y = rng.integers(0, 4, 64)
    result = tfcompress.compress(resnet(), recipe, (x, y), measure_stages=False, device=None)
    assert len(_adds(result.model)) == 8
    assert result.model.get_layer("b0_a").filters == 8, "8 x 0.5 rounds up to the minimum of 8"
    details = result.report.stages[0].details
    assert details["depth"] == 2.0 and [s["after"] for s in details["blocks"]] == [6, 2]
    assert details["depth_start_diff"] < 1e-5
    assert result.convert.report.io_dtypes == ("int8", "int8")
    loaded = CompressReport.from_dict(json.loads(json.dumps(result.report.to_dict())))
    assert loaded.stages[0].details == json.loads(json.dumps(details))
    from rich.console import Console

    from tfcompress.render import render_stage_details

    console = Console(width=80, record=True)
    render_stage_details(result.report, console, wide=False)
    text = console.export_text()
    assert "blocks (2):" in text and "b0_add..b2_add: before 3; after 6" in text, text
