"""Graph surgery engine: tracing, rebuilding with replacements, channel dependency groups."""

from __future__ import annotations

import numpy as np
import pytest

from tfcompress.errors import ModelLoadError
from tfcompress.keras_compat import keras3, tf_keras
from tfcompress.surgery import Replacement, analyze_channels, clone_layer, rebuild, remove_channels, trace

from conftest import random_images

L = tf_keras.layers


def randomize(model, seed=0):
    """Non-trivial weights everywhere (BN statistics included) so that equality tests mean something."""
    rng = np.random.default_rng(seed)
    for layer in trace(model).layers():
        new = []
        for w in layer.weights:
            shape = tuple(w.shape)
            if "variance" in w.name:
                new.append(rng.uniform(0.5, 1.5, shape))
            elif "gamma" in w.name:
                new.append(rng.uniform(0.5, 1.5, shape))
            else:
                new.append(rng.normal(0, 0.3, shape))
        layer.set_weights([np.asarray(v, np.float32) for v in new])
    return model


def nested_model():
    """Functional model calling a nested functional model twice and a nested Sequential once, with a residual."""
    inner_in = tf_keras.Input((8, 8, 6))
    y = L.Conv2D(6, 3, padding="same", name="conv")(inner_in)
    y = L.BatchNormalization(name="bn")(y)
    inner = tf_keras.Model(inner_in, L.ReLU(name="relu")(y), name="inner")
    seq = tf_keras.Sequential([tf_keras.Input((8, 8, 6)), L.Conv2D(5, 1, name="seq_conv"), L.ReLU(name="seq_relu")], name="seq")
    inp = tf_keras.Input((8, 8, 6), name="img")
    a = inner(inp)
    b = inner(a)
    x = L.Add(name="add")([a, b])
    x = seq(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return randomize(tf_keras.Model(inp, L.Dense(3, name="head")(x), name="nested"))


def test_rebuild_identity_reproduces_nested_model_and_keeps_sharing():
    model = nested_model()
    x = random_images(4, (8, 8, 6))
    new = rebuild(model)
    np.testing.assert_allclose(new(x).numpy(), model(x).numpy(), atol=1e-6)
    names = [layer.name for layer in new.layers]
    assert "inner" not in names and "seq" not in names  # nested models are inlined
    assert names.count("conv") == 1  # the nested model called twice: one shared conv
    assert len(new.get_layer("conv").inbound_nodes) == 2
    assert new.count_params() == model.count_params()
    assert new.name == "nested"


def test_trace_lists_nodes_in_order_with_scopes():
    graph = trace(nested_model())
    names = [n.name for n in graph.nodes]
    assert names == ["conv", "bn", "relu", "conv", "bn", "relu", "add", "seq_conv", "seq_relu", "gap", "head"]
    assert graph.nodes[0].scope == ("inner",)
    assert graph.shapes[graph.nodes[-1].outputs[0]] == (None, 3)


def test_rebuild_multi_input_output_and_sequential():
    a, b = tf_keras.Input((4,), name="a"), tf_keras.Input((4,), name="b")
    d = L.Dense(3, name="d")(L.Concatenate(name="cat")([a, b]))
    model = tf_keras.Model([a, b], [d, L.Dense(2, name="e")(d)])
    new = rebuild(model)
    xs = [np.ones((2, 4), np.float32), np.arange(8, dtype=np.float32).reshape(2, 4)]
    for got, want in zip(new(xs), model(xs)):
        np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-6)
    assert new.input_names == ["a", "b"]
    seq = tf_keras.Sequential([tf_keras.Input((5,)), L.Dense(4), L.Dense(2)])
    np.testing.assert_allclose(rebuild(seq)(np.ones((1, 5))).numpy(), seq(np.ones((1, 5))).numpy(), atol=1e-6)


def test_replacement_chain_removal_and_bare_layer():
    model = nested_model()
    x = random_images(4, (8, 8, 6))

    def replace(layer):
        if layer.name == "head":  # head -> identity-initialized Dense(3) then the old head
            eye = tf_keras.layers.Dense(3, name="pre", use_bias=False)
            return Replacement((clone_layer(layer), eye), (layer.get_weights(), [np.eye(3, dtype=np.float32)]))
        if layer.name == "relu":
            return Replacement()  # removed: its input passes through
        if layer.name == "seq_conv":
            return clone_layer(layer)  # a bare layer gets the old weights (same shapes)
        return None

    new = rebuild(model, replace)
    assert "relu" not in [layer.name for layer in new.layers]
    np.testing.assert_allclose(new.get_layer("seq_conv").get_weights()[0], model.get_layer("seq").get_layer("seq_conv").get_weights()[0])
    no_relu = rebuild(model, lambda layer: Replacement() if layer.name == "relu" else None)
    np.testing.assert_allclose(new(x).numpy(), no_relu(x).numpy(), atol=1e-5)


def test_keras3_model_is_bridged():
    inp = keras3.Input((6,))
    model = keras3.Model(inp, keras3.layers.Dense(2, name="d")(keras3.layers.Dense(4)(inp)))
    new = rebuild(model)
    assert isinstance(new, tf_keras.Model)
    x = np.ones((3, 6), np.float32)
    np.testing.assert_allclose(new(x).numpy(), np.asarray(model(x)), atol=1e-5)


class Subclassed(tf_keras.Model):
    def __init__(self):
        super().__init__()
        self.d = L.Dense(2)

    def call(self, x):
        return self.d(x)


def test_subclassed_model_is_refused_naming_its_class():
    model = Subclassed()
    model(np.ones((1, 3), np.float32))
    with pytest.raises(ModelLoadError, match="Subclassed"):
        rebuild(model)
    inp = tf_keras.Input((3,))
    outer = tf_keras.Model(inp, Subclassed()(inp))
    with pytest.raises(ModelLoadError, match="Subclassed"):
        analyze_channels(outer)


# ------------------------------------------------------------------ channel groups


def block_model():
    """Residual add, squeeze-and-excitation multiply, concat, depthwise and Flatten -> Dense."""
    inp = tf_keras.Input((8, 8, 3), name="img")
    stem = L.Conv2D(8, 3, padding="same", name="stem")(inp)
    x = L.BatchNormalization(name="stem_bn")(stem)
    x = L.ReLU(name="stem_relu")(x)
    r = L.Conv2D(8, 1, name="res_conv")(x)
    x = L.Add(name="res_add")([x, r])
    se = L.GlobalAveragePooling2D(keepdims=True, name="se_pool")(x)
    se = L.Conv2D(4, 1, activation="relu", name="se_reduce")(se)
    se = L.Conv2D(8, 1, activation="sigmoid", name="se_expand")(se)
    x = L.Multiply(name="se_mul")([x, se])
    x = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    a = L.Conv2D(6, 1, name="branch_a")(x)
    b = L.Conv2D(5, 1, name="branch_b")(x)
    x = L.Concatenate(name="cat")([a, b])
    x = L.Conv2D(6, 3, strides=2, padding="same", name="after_cat")(x)
    x = L.Flatten(name="flat")(x)
    out = L.Dense(4, name="head")(L.Dense(7, name="fc")(x))
    return randomize(tf_keras.Model(inp, out, name="blocks"))


def test_groups_tie_residual_and_se_producers():
    analysis = analyze_channels(block_model())
    by_producer = {p: g for g in analysis.groups for p in g.producers}
    residual = by_producer["stem"]
    assert set(residual.producers) == {"stem", "res_conv", "se_expand"}
    assert residual.size == 8 and residual.prunable
    assert {"stem_bn", "dw", "res_add", "se_mul", "branch_a", "branch_b"} <= set(residual.followers)
    assert by_producer["branch_a"] is not by_producer["branch_b"]  # concat inputs stay independent
    assert by_producer["se_reduce"].size == 4
    assert not by_producer["head"].prunable and "output" in by_producer["head"].reason
    assert "stem" in analysis.describe()


def test_concat_and_flatten_follow_removed_channels():
    """Removing channels whose values are exactly zero changes nothing (concat offsets, flatten rows)."""
    model = block_model()
    analysis = analyze_channels(model)
    # zero branch_b's channels 1 and 3, and after_cat's filter 2: their outputs are exactly 0
    w, bias = model.get_layer("branch_b").get_weights()
    w[..., [1, 3]] = 0
    bias[[1, 3]] = 0
    model.get_layer("branch_b").set_weights([w, bias])
    w, bias = model.get_layer("after_cat").get_weights()
    w[..., 2] = 0
    bias[2] = 0
    model.get_layer("after_cat").set_weights([w, bias])
    removed = list(analysis.producer_channels("branch_b")[[1, 3]]) + [analysis.producer_channels("after_cat")[2]]
    small = remove_channels(analysis, removed)
    x = random_images(3, (8, 8, 3))
    np.testing.assert_allclose(small(x).numpy(), model(x).numpy(), atol=1e-5)
    assert small.get_layer("branch_b").filters == 3
    assert small.get_layer("after_cat").get_weights()[0].shape == (3, 3, 9, 5)
    assert small.get_layer("fc").get_weights()[0].shape == (4 * 4 * 5, 7)  # flatten rows of channel 2 gone


def test_removing_a_residual_channel_touches_every_tied_layer():
    model = block_model()
    analysis = analyze_channels(model)
    group = next(g for g in analysis.groups if "stem" in g.producers)
    small = remove_channels(analysis, group.units[:3])
    for name in ("stem", "res_conv", "se_expand"):
        assert small.get_layer(name).filters == 5
    assert small.get_layer("stem_bn").get_weights()[0].shape == (5,)
    assert small.get_layer("dw").get_weights()[0].shape == (3, 3, 5, 1)
    assert small.get_layer("se_reduce").get_weights()[0].shape == (1, 1, 5, 4)
    assert small.get_layer("branch_a").get_weights()[0].shape == (1, 1, 5, 6)
    assert small(random_images(2, (8, 8, 3))).shape == (2, 4)


def test_fixed_labels_are_refused_and_unknown_layers_block():
    inp = tf_keras.Input((6,))
    x = L.Dense(8, name="d1")(inp)
    x = L.LayerNormalization(name="ln")(x)
    model = tf_keras.Model(inp, L.Dense(2, name="d2")(x))
    analysis = analyze_channels(model)
    d1 = next(g for g in analysis.groups if "d1" in g.producers)
    assert not d1.prunable and "ln" in d1.reason
    with pytest.raises(ValueError, match="fixed"):
        remove_channels(analysis, d1.units[:1])


def test_shared_layers_see_the_same_channels_at_every_call():
    inp = tf_keras.Input((6,))
    x1 = L.Dense(8, name="p1")(inp)
    x2 = L.Dense(8, name="p2")(inp)
    shared = L.Dense(5, name="shared")
    y = L.Add(name="add")([shared(x1), shared(x2)])
    model = randomize(tf_keras.Model(inp, L.Dense(2, name="head")(y)))
    analysis = analyze_channels(model)
    groups = {frozenset(g.producers): g for g in analysis.groups}
    tied, out = groups[frozenset({"p1", "p2"})], groups[frozenset({"shared"})]
    assert tied.size == 8 and out.prunable  # p1 and p2 feed the same kernel rows
    small = remove_channels(analysis, list(tied.units[:3]) + list(out.units[:1]))
    assert small.get_layer("p1").units == small.get_layer("p2").units == 5
    assert small.get_layer("shared").get_weights()[0].shape == (5, 4)
    assert small(np.ones((2, 6), np.float32)).shape == (2, 2)
    # the nested conv called on the model input and on its own output: its channels are the input's
    nested = analyze_channels(nested_model())
    conv = next(g for g in nested.groups if "conv" in g.producers)
    assert not conv.prunable and "input" in conv.reason


def test_softmax_producer_keeps_its_outputs_but_its_inputs_can_go():
    inp = tf_keras.Input((6,))
    x = L.Dense(8, activation="relu", name="hidden")(inp)
    y = L.Dense(5, activation="softmax", name="probs")(x)
    model = tf_keras.Model(inp, L.Dense(2, name="head")(y))
    analysis = analyze_channels(model)
    groups = {g.producers: g for g in analysis.groups}
    assert groups[("hidden",)].prunable
    assert not groups[("probs",)].prunable and "softmax" in groups[("probs",)].reason


def test_a_shared_weightless_layer_does_not_tie_its_calls():
    inp = tf_keras.Input((6,))
    relu = L.ReLU(name="relu")  # one object, two unrelated branches
    a = relu(L.Dense(8, name="a")(inp))
    b = relu(L.Dense(4, name="b")(inp))
    model = tf_keras.Model(inp, L.Dense(2, name="head")(L.Concatenate()([a, b])))
    analysis = analyze_channels(model)
    assert {g.producers for g in analysis.prunable_groups()} == {("a",), ("b",)}
