"""The search space: which layers get which knobs, genomes, and genome -> recipe stages -> model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tfcompress.errors import TfcompressError
from tfcompress.keras_compat import tf_keras
from tfcompress.recipe import parse_recipe_dict
from tfcompress.search.space import (INPUT, RESOLUTION_LEVELS, Genome, Knob, genome_from_json, genome_stages,
                                     read_space)
from tfcompress.search.trial import build


def small_cnn():
    """stem (1 input channel) -> c2 3x3 (+BN) -> p1 1x1 to 8 channels -> c3 3x3 -> fc -> small -> logits.

    Expected knobs: keep stem / c2 / c3 / fc / small (groups of >= 16 channels; p1 has 8); swap c2 / c3
    (3x3 reading >= 8 channels; not the 1-channel stem, not the 1x1 p1); rank fc (64 x 128 weights;
    small has 128 x 16 = 2048 < 4096; logits has 16 x 300 = 4800 but is the model's output).
    """
    tf_keras.utils.set_random_seed(0)
    L = tf_keras.layers
    inp = tf_keras.Input((16, 16, 1), name="img")
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="stem")(inp)
    x = L.Conv2D(32, 3, strides=2, padding="same", name="c2")(x)
    x = L.BatchNormalization(name="bn2")(x)
    x = L.ReLU(name="r2")(x)
    x = L.Conv2D(8, 1, activation="relu", name="p1")(x)
    x = L.Conv2D(64, 3, strides=2, padding="same", activation="relu", name="c3")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dense(128, activation="relu", name="fc")(x)
    x = L.Dense(16, activation="relu", name="small")(x)
    return tf_keras.Model(inp, L.Dense(300, name="logits")(x))


@pytest.fixture(scope="module")
def model():
    return small_cnn()


@pytest.fixture(scope="module")
def space(model):
    return read_space(model)


def knobs(space, kind):
    return {k.layer: k for k in space.knobs if k.kind == kind}


def test_read_space_finds_the_knobs_each_layer_allows(space):
    keep, swap, rank = knobs(space, "keep"), knobs(space, "swap"), knobs(space, "rank")
    assert set(keep) == {"stem", "c2", "c3", "fc", "small"}, space.table()  # p1 (8 channels) and logits: none
    assert {n: k.size for n, k in keep.items()} == {"stem": 16, "c2": 32, "c3": 64, "fc": 128, "small": 16}
    assert set(swap) == {"c2", "c3"}, "the 1-channel stem and the 1x1 p1 are not swapped"
    assert swap["c2"].size == 3 * 3 * 16 * 32 and swap["c2"].levels == (False, True)
    assert set(rank) == {"fc"}, "small has 128 x 16 < 4096 weights; logits is the output"
    assert rank["fc"].size == 64 and rank["fc"].levels[0] == 1.0
    assert all(k.levels[0] == 1.0 for k in keep.values())
    (res,) = knobs(space, "resolution").values()
    assert res.layer == INPUT and res.size == 16 and res.levels == RESOLUTION_LEVELS
    kinds = [k.kind for k in space.knobs]
    assert kinds == sorted(kinds, key=("resolution", "keep", "swap", "rank").index)
    assert "keep" in space.table() and "fc" in space.table()


def test_read_space_options(model):
    sp = read_space(model, keep_levels=(1.0, 0.5), swaps=False, rank_levels=(1.0,), resolution_levels=(1.0,))
    assert {k.kind for k in sp.knobs} == {"keep"}
    assert all(k.levels == (1.0, 0.5) for k in sp.knobs)
    assert not [k for k in read_space(model, keep_levels=(1.0,)).knobs if k.kind == "keep"]


def test_genome_key_is_canonical():
    a = Genome(keep={"c2": 0.5, "c3": 0.75, "fc": 1.0}, swap=("c3", "c2"), rank={"fc": 0.25, "x": 1.0})
    b = Genome(keep={"c3": 0.75, "c2": 0.5}, swap=("c2", "c3"), rank={"fc": 0.25})
    assert a.key() == b.key() and a == b and hash(a) == hash(b)
    assert len({a, b, b.normal()}) == 1
    assert a.normal().keep == {"c2": 0.5, "c3": 0.75} and a.normal().rank == {"fc": 0.25}
    assert Genome(keep={"c2": 1.0}, rank={"fc": 1.0}) == Genome()
    assert Genome(swap=("c2", "c2")) == Genome(swap=("c2",)), "a layer swapped twice is swapped"
    assert Genome(keep={"c2": 0.5}) != Genome(keep={"c2": 0.75})
    assert Genome(swap=("c2",)) != Genome(keep={"c2": 0.5})
    assert Genome() != "original"
    assert json.loads(a.key()) == {"keep": {"c2": 0.5, "c3": 0.75}, "swap": ["c2", "c3"], "rank": {"fc": 0.25}}
    assert a.describe() == "c2:0.5 c3:0.75 sep(c2) sep(c3) fc:r0.25" and Genome().describe() == "original"
    assert genome_from_json(json.loads(a.model_dump_json())) == a


def test_knob_set_and_steps_down():
    keep = Knob("keep", "c2", (1.0, 0.75, 0.5), 32)
    g = keep.set(Genome(swap=("c3",)), 0.75)
    assert g == Genome(keep={"c2": 0.75}, swap=("c3",)) and keep.value(g) == 0.75
    assert keep.set(g, 1.0) == Genome(swap=("c3",)) and "c2" not in keep.set(g, 1.0).keep
    assert keep.steps_down(Genome()) == [Genome(keep={"c2": 0.75}), Genome(keep={"c2": 0.5})]
    assert keep.steps_down(g) == [Genome(keep={"c2": 0.5}, swap=("c3",))]
    assert keep.steps_down(keep.set(g, 0.5)) == []
    swap = Knob("swap", "c3", (False, True), 100)
    assert swap.steps_down(Genome()) == [Genome(swap=("c3",))]
    assert swap.steps_down(Genome(swap=("c3",))) == []
    assert swap.set(Genome(swap=("c3", "c2")), False) == Genome(swap=("c2",))
    rank = Knob("rank", "fc", (1.0, 0.5, 0.25), 64)
    assert rank.steps_down(Genome(rank={"fc": 0.5})) == [Genome(rank={"fc": 0.25})]
    assert rank.value(Genome()) == 1.0 and rank.set(Genome(), 0.25).rank == {"fc": 0.25}


def test_check_rejects_unknown_layers_and_levels(space):
    space.check(Genome(keep={"c2": 0.5}, swap=("c3",), rank={"fc": 0.25}))
    with pytest.raises(TfcompressError, match="'p1' is not a keep choice"):
        space.check(Genome(keep={"p1": 0.5}))
    with pytest.raises(TfcompressError, match="'stem' is not a swap choice"):
        space.check(Genome(swap=("stem",)))
    with pytest.raises(TfcompressError, match="'logits' is not a rank choice"):
        space.check(Genome(rank={"logits": 0.5}))
    with pytest.raises(TfcompressError, match="0.3 for 'c2' is not one of"):
        space.check(Genome(keep={"c2": 0.3}), where="x")
    with pytest.raises(TfcompressError):
        genome_stages(Genome(rank={"fc": 0.3}), space)


def layer_table(model):
    return [(layer.name, type(layer).__name__, layer.output_shape) for layer in model.layers]


def test_genome_stages_parse_and_build_the_genome(model, space):
    g = Genome(keep={"c2": 0.5, "c3": 0.75}, swap=("c3",), rank={"fc": 0.25})
    stages = genome_stages(g, space)
    assert [s["technique"] for s in stages] == ["structured_prune", "swap", "low_rank"]
    recipe = parse_recipe_dict({"name": "g", "stages": stages}, source="<test>")
    assert [s.technique for s in recipe.stages] == ["structured_prune", "swap", "low_rank"]
    assert all(s.epochs == 0 for s in recipe.stages)
    before = [w.copy() for w in model.get_weights()]

    built = build(model, g, space, None)
    layers = {layer.name: layer for layer in built.layers}
    assert layers["c2"].filters == 16 and layers["c3"].filters == 48, layer_table(built)
    assert layers["stem"].filters == 16 and layers["p1"].filters == 8, "unchanged layers keep their channels"
    assert type(layers["c3_dw"]).__name__ == "DepthwiseConv2D" and layers["c3"].kernel_size == (1, 1)
    assert type(layers["c2"]).__name__ == "Conv2D" and layers["c2"].kernel_size == (3, 3), "c2 not swapped"
    assert layers["fc_svd"].units == 16 and layers["fc"].units == 128, "rank 0.25 of min(64, 128)"
    assert layers["logits"].units == 300
    assert built.count_params() < model.count_params()
    x = np.random.default_rng(0).random((2, 16, 16, 1), dtype=np.float32)
    assert built.predict(x, verbose=0).shape == (2, 300)
    for w, w0 in zip(model.get_weights(), before):
        np.testing.assert_array_equal(w, w0)  # the original is untouched
    assert {layer.name for layer in model.layers} == {layer.name for layer in small_cnn().layers}


def test_single_technique_genomes(model, space):
    assert genome_stages(Genome(), space) == []
    (stage,) = genome_stages(Genome(swap=("c2",)), space)
    assert stage["technique"] == "swap" and stage["rules"][-1] == {"match": {"name": ".*"}, "skip": True}
    swapped = build(model, Genome(swap=("c2",)), space, None)
    kinds = {layer.name: type(layer).__name__ for layer in swapped.layers}
    assert kinds["c2_dw"] == "DepthwiseConv2D" and "c3_dw" not in kinds and kinds["c3"] == "Conv2D"
    pruned = build(model, Genome(keep={"fc": 0.5}), space, None)
    assert pruned.get_layer("fc").units == 64 and pruned.get_layer("c3").filters == 64
    ranked = build(model, Genome(rank={"fc": 0.5}), space, None)
    assert ranked.get_layer("fc_svd").units == 32 and "small_svd" not in {layer.name for layer in ranked.layers}


def test_build_of_the_original_genome_is_an_equal_copy(model, space):
    copy = build(model, Genome(), space, None)
    assert copy is not model
    assert layer_table(copy) == layer_table(model)
    for a, b in zip(copy.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(1).random((3, 16, 16, 1), dtype=np.float32)
    np.testing.assert_allclose(copy.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6, atol=1e-6)
    copy.get_layer("fc").kernel.assign(np.zeros((64, 128), np.float32))
    assert np.any(model.get_layer("fc").get_weights()[0] != 0), "the copy shares no variables with the original"


def test_resolution_knob(model, space):
    L = tf_keras.layers
    inp = tf_keras.Input((16, 16, 3))
    flat = tf_keras.Model(inp, L.Dense(4)(L.Flatten()(L.Conv2D(16, 3)(inp))))
    assert not [k for k in read_space(flat).knobs if k.kind == "resolution"], "a Flatten fixes the input size"
    dense = tf_keras.Sequential([tf_keras.Input((32,)), L.Dense(256), L.Dense(4)])
    assert not [k for k in read_space(dense).knobs if k.kind == "resolution"], "not an image input"

    knob = space.knob("resolution", INPUT)
    g = knob.set(Genome(keep={"c2": 0.5}), 0.75)
    assert g.resolution == 0.75 and knob.value(g) == 0.75 and g.describe() == "res:0.75 c2:0.5"
    assert json.loads(g.key())["res"] == 0.75 and "res" not in json.loads(Genome().key())
    assert knob.set(g, 1.0) == Genome(keep={"c2": 0.5}) and Genome(resolution=1.0) == Genome()
    assert knob.steps_down(g)[0].resolution == RESOLUTION_LEVELS[RESOLUTION_LEVELS.index(0.75) + 1]
    with pytest.raises(TfcompressError, match="resolution 0.8"):
        space.check(Genome(resolution=0.8))
    stages = genome_stages(g, space)
    assert [s["technique"] for s in stages] == ["scale", "structured_prune"]
    built = build(model, g, space, None)
    assert tuple(built.input_shape) == (None, 12, 12, 1)
    assert built.get_layer("c2").filters == 16 and built.output_shape == (None, 300)


def test_assets_key_is_the_contents_not_the_save_time(model, space):
    """The resume fingerprint: the same model and data give the same key in any run (a .keras / .npz archive
    records when it was written), other weights or data another key."""
    import time

    from tfcompress.search.trial import make_assets

    x = np.random.default_rng(0).random((8, 16, 16, 1), dtype=np.float32)
    y = np.arange(8) % 4
    a = make_assets(model, x, y, x[:4], y[:4], space)
    time.sleep(1.1)  # the archives' timestamps move on
    b = make_assets(model, x, y, x[:4], y[:4], space, profile="host")
    assert a.key and a.key == b.key and b.profile == "host"
    assert make_assets(model, x, y[::-1].copy(), x[:4], y[:4], space).key != a.key
    other = small_cnn()
    other.get_layer("fc").bias.assign(np.ones(128, np.float32))
    assert make_assets(other, x, y, x[:4], y[:4], space).key != a.key
