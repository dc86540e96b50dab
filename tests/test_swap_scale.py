"""Compound scaling (`scale`): width multiplier alpha and input-resolution multiplier, data resized by compress."""

from __future__ import annotations

import json

import numpy as np
import pytest

import tfcompress
from tfcompress.errors import TfcompressError
from tfcompress.keras_compat import tf_keras
from tfcompress.recipe import parse_recipe_dict
from tfcompress.report import CompressReport
from tfcompress.surgery import count_flops
from tfcompress.techniques import get_technique
from tfcompress.types import LayerMatch, LayerRule


def cnn(side=12, seed=0):
    tf_keras.utils.set_random_seed(seed)
    L = tf_keras.layers
    inp = tf_keras.Input((side, side, 3))
    x = L.Conv2D(32, 3, padding="same", activation="relu", name="c1")(inp)
    x = L.Conv2D(20, 3, strides=2, padding="same", name="c2")(x)
    x = L.BatchNormalization(name="bn2")(x)
    x = L.ReLU(name="r2")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return tf_keras.Model(inp, L.Dense(3, name="head")(x))


def flat_cnn():
    tf_keras.utils.set_random_seed(0)
    L = tf_keras.layers
    inp = tf_keras.Input((8, 8, 1))
    x = L.Conv2D(4, 3, padding="same", activation="relu", name="c")(inp)
    x = L.Dropout(0.1, name="drop")(L.Flatten(name="flat")(x))
    return tf_keras.Model(inp, L.Dense(3, name="head")(x))


def test_make_divisible_rounds_to_eight_never_below_eight_or_90_percent():
    from tfcompress.techniques.scale import Params, make_divisible, scale_model

    assert [make_divisible(v) for v in (16, 12, 10, 3.2, 36, 100)] == [16, 16, 16, 8, 40, 104]


def test_width_keeps_the_largest_l1_channels_rounded_to_eight():
    from tfcompress.techniques.scale import Params, make_divisible, scale_model

    model = cnn()
    k, b = model.get_layer("c1").get_weights()
    strong = [1, 5, 6, 9, 17, 20, 28, 31, 2, 3, 4, 7, 11, 13, 15, 30]  # 16 channels with large norms
    k = k * 0.01
    k[..., strong] *= 100
    model.get_layer("c1").set_weights([k, b])
    small, details = scale_model(model, Params(width=0.5))
    assert small.get_layer("c1").filters == 16 and small.get_layer("c2").filters == 16, "20 x .5 = 10: 8 < 90%"
    np.testing.assert_array_equal(small.get_layer("c1").get_weights()[0], k[..., sorted(strong)])
    assert small.get_layer("head").get_weights()[0].shape == (16, 3), "the Dense reading c2's channels follows"
    shrunk = {tuple(g["producers"]): (g["channels"], g["kept"]) for g in details["shrunk"]}
    assert shrunk == {("c1",): (32, 16), ("c2",): (20, 16)}
    assert count_flops(small).macs < count_flops(model).macs / 2
    skip = (LayerRule(LayerMatch(name="^c2$"), skip=True),)
    assert scale_model(model, Params(width=0.5), skip)[0].get_layer("c2").filters == 20


def test_resolution_rebuilds_a_convolutional_model_with_every_weight():
    from tfcompress.techniques.scale import Params, make_divisible, scale_model

    model = cnn(side=12)
    big, details = scale_model(model, Params(resolution=1.5))
    assert big.input_shape == (None, 18, 18, 3), "12 x 1.5 = 18, a multiple of the total stride 2"
    assert details["input"] == {"input_before": [12, 12], "input_after": [18, 18], "multiple": 2, "substituted": []}
    for a, b in zip(model.get_weights(), big.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert scale_model(model, Params(resolution=1.5, resolution_multiple=8))[0].input_shape[1:3] == (16, 16)


def test_flatten_is_an_error_or_a_global_average_pooling_exact_on_constant_maps():
    from tfcompress.techniques.scale import Params, make_divisible, scale_model

    model = flat_cnn()
    with pytest.raises(TfcompressError, match="Flatten 'flat'"):
        scale_model(model, Params(resolution=2.0))
    model.get_layer("c").set_weights([np.zeros((3, 3, 1, 4), np.float32), np.arange(1, 5, dtype=np.float32)])
    big, details = scale_model(model, Params(resolution=2.0, flatten="gap"))
    assert details["input"]["substituted"] == [{"flatten": "flat", "dense": ["head"]}]
    assert type(big.get_layer("flat")).__name__ == "GlobalAveragePooling2D" and big.input_shape == (None, 16, 16, 1)
    x = np.ones((2, 8, 8, 1), np.float32)  # c's output is constant over space: the collapsed Dense is exact
    np.testing.assert_allclose(big.predict(np.ones((2, 16, 16, 1), np.float32), verbose=0),
                               model.predict(x, verbose=0), rtol=1e-5)


@pytest.mark.slow
def test_compress_resizes_training_calibration_and_verification_data():
    recipe = parse_recipe_dict({"name": "sc", "stages": [
        {"technique": "scale", "epochs": 1, "batch_size": 16, "params": {"width": 0.5, "resolution": 2.0}}]})
    rng = np.random.default_rng(0)
    x = rng.random((80, 12, 12, 3), dtype=np.float32)
    y = (x[:, :6].mean(axis=(1, 2, 3)) > x[:, 6:].mean(axis=(1, 2, 3))).astype(int)
    result = tfcompress.compress(cnn(), recipe, (x, y), device=None)
    assert result.model.input_shape == (None, 24, 24, 3)
    assert result.convert.report.io_dtypes == ("int8", "int8")
    assert result.convert.report.verify.accuracy is not None, "verified on validation data resized to 24 x 24"
    stage = result.report.stages[0]
    assert stage.int8_accuracy is not None, "the per-stage int8 model was calibrated and measured at 24 x 24"
    assert stage.details["input_before"] == [12, 12] and stage.details["input_after"] == [24, 24]
    assert {tuple(g["producers"]) for g in stage.details["shrunk"]} == {("c1",), ("c2",)}
    assert CompressReport.from_dict(json.loads(json.dumps(result.report.to_dict()))) == result.report


def test_swap_stage_reports_params_flops_and_how_each_block_started():
    from tests.test_swap import plain_cnn

    recipe = parse_recipe_dict({"name": "sw", "stages": [
        {"technique": "swap", "epochs": 0, "params": {"target": "auto"}}]})
    x = np.random.default_rng(4).random((40, 16, 16, 3), dtype=np.float32)
    y = np.random.default_rng(5).integers(0, 10, 40)
    model = plain_cnn()
    result = tfcompress.compress(model, recipe, (x, y), measure_stages=False, verify=False, device=None)
    details = result.report.stages[0].details
    before, after = count_flops(model), count_flops(result.model)
    assert (details["params_before"], details["params_after"]) == (before.params, after.params)
    assert (details["flops_before"], details["flops_after"]) == (before.flops, after.flops)
    assert details["flops_after"] < details["flops_before"]
    swaps = {s["name"]: s for s in details["swaps"]}
    assert set(swaps) == {"c1", "c2"} and "c3" in details["skipped"]
    assert swaps["c2"]["target"] == "separable" and swaps["c2"]["init"]["c2_dw"] == "original"
    assert get_technique("swap").details is not None
    loaded = CompressReport.from_dict(json.loads(json.dumps(result.report.to_dict())))
    assert loaded.stages[0].details == json.loads(json.dumps(details))


def test_compress_help_lists_the_shipped_recipes_from_the_folder(tmp_path, monkeypatch):
    from click.testing import CliRunner

    import tfcompress.recipe as recipe_mod
    from tfcompress.cli import main

    (tmp_path / "tiny-extra.yaml").write_text("name: tiny-extra\nstages:\n- technique: prune\n")
    monkeypatch.setattr(recipe_mod, "RECIPE_DIRS", (*recipe_mod.RECIPE_DIRS, tmp_path))
    text = " ".join(CliRunner().invoke(main, ["compress", "--help"], terminal_width=200).output.split())
    for name in ("mobilenet-swap", "mobile-int8", "tiny-extra"):
        assert name in text


def test_data_follows_the_model_input_size_keeping_dtype():
    from tfcompress.data import Samples, fits_inputs, follow_inputs

    x = np.random.default_rng(0).integers(0, 256, (5, 12, 12, 3)).astype(np.uint8)
    samples = Samples((x, np.zeros((5, 4), np.float32)), np.arange(5), "test")
    assert follow_inputs(samples, [(None, 12, 12, 3), (None, 4)]) is samples
    resized = follow_inputs(samples, [(None, 24, 24, 3), (None, 4)])
    assert resized.x[0].shape == (5, 24, 24, 3) and resized.x[0].dtype == np.uint8
    assert resized.x[1] is samples.x[1] and resized.y is samples.y
    assert resized.preprocessing["resized"] == [{"input": 0, "from": [12, 12], "to": [24, 24]}]
    assert fits_inputs(resized, [(None, 24, 24, 3), (None, 4)]) and not fits_inputs(samples, [(None, 24, 24, 3)])
    flat = np.full((1, 12, 12, 3), 77, np.uint8)
    assert (follow_inputs(Samples((flat,), None, "t"), [(None, 6, 6, 3)]).x[0] == 77).all(), "constant stays"
