"""Keras 3 -> tf_keras bridge: rebuilt models must compute the same outputs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tfcompress.bridge import KERAS3_ACTIVATIONS, to_tf_keras, translate_layer_config
from tfcompress.errors import BridgeError, ModelLoadError
from tfcompress.keras_compat import keras3, tf, tf_keras

L = keras3.layers
ATOL = 1e-5


# ----------------------------------------------------------------- helpers


def _all_layers(model: Any) -> list[Any]:
    """Every layer of a Keras 3 model, nested models' layers included."""
    out = []
    for layer in model.layers:
        out.append(layer)
        if isinstance(layer, keras3.Model):
            out.extend(_all_layers(layer))
    return out


def _randomize_batchnorm(model: Any, seed: int = 0) -> None:
    """Give every BatchNormalization non-trivial gamma / beta / moving statistics."""
    rng = np.random.default_rng(seed)
    for layer in _all_layers(model):
        if isinstance(layer, L.BatchNormalization):
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, w.shape).astype("float32") if i in (0, 3)
                    else rng.uniform(-0.3, 0.3, w.shape).astype("float32")
                    for i, w in enumerate(layer.get_weights())
                ]
            )


def _outputs(model: Any, x: Any) -> list[np.ndarray]:
    """A model's outputs on `x` (inference mode) as a flat list of numpy arrays."""
    return [np.asarray(y) for y in tf.nest.flatten(model(x, training=False))]


def _assert_same(model: Any, bridged: Any, x: Any, atol: float = ATOL) -> None:
    """Same outputs, same layer names, same model name."""
    expected, actual = _outputs(model, x), _outputs(bridged, x)
    assert len(expected) == len(actual)
    for e, a in zip(expected, actual):
        assert e.shape == a.shape
        assert np.max(np.abs(e - a)) <= atol, np.max(np.abs(e - a))
    assert bridged.name == model.name
    assert [layer.name for layer in bridged.layers] == [layer.name for layer in model.layers]


def _rand(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


# ------------------------------------------------------------------ models


def _se_block(x: Any, name: str) -> Any:
    channels = x.shape[-1]
    s = L.GlobalAveragePooling2D(name=f"{name}_squeeze")(x)
    s = L.Reshape((1, 1, channels), name=f"{name}_reshape")(s)
    s = L.Dense(max(channels // 2, 1), activation="relu", name=f"{name}_reduce")(s)
    s = L.Dense(channels, activation="sigmoid", name=f"{name}_expand")(s)
    return L.Multiply(name=f"{name}_excite")([x, s])


def _conv_model() -> Any:
    """Most 2D vision layers, a residual block and a squeeze-and-excitation block."""
    inp = keras3.Input((16, 16, 3), name="image")
    norm = L.Normalization(name="norm")
    norm.adapt(_rand(8, 16, 16, 3, seed=1) * 3.0 + 1.0)
    x = L.Rescaling(0.5, offset=0.1, name="rescale")(inp)
    x = norm(x)
    x = L.Conv2D(8, 3, padding="same", name="conv")(x)
    x = L.BatchNormalization(name="bn")(x)
    x = L.ReLU(max_value=6.0, name="relu6")(x)
    shortcut = x
    y = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    y = L.BatchNormalization(name="dw_bn")(y)
    y = L.Activation("swish", name="swish")(y)
    y = L.SeparableConv2D(8, 3, padding="same", name="sep")(y)
    y = L.LeakyReLU(negative_slope=0.1, name="leaky")(y)
    x = L.Add(name="residual")([shortcut, y])
    x = _se_block(x, "se")
    x = L.MaxPooling2D(2, name="maxpool")(x)
    x = L.ZeroPadding2D(((1, 2), (2, 1)), name="pad")(x)
    x = L.Cropping2D(((1, 2), (2, 1)), name="crop")(x)
    x = L.UpSampling2D(name="up")(x)
    x = L.AveragePooling2D(2, name="avgpool")(x)
    x = L.Conv2DTranspose(6, 3, strides=2, padding="same", name="deconv")(x)
    x = L.PReLU(alpha_initializer=keras3.initializers.Constant(0.2), name="prelu")(x)
    x = L.ELU(alpha=0.7, name="elu")(x)
    x = L.LayerNormalization(name="ln")(x)
    a = L.GlobalAveragePooling2D(name="gap")(x)
    m = L.GlobalMaxPooling2D(name="gmp")(x)
    merged = L.Concatenate(name="concat")(
        [L.Subtract(name="sub")([a, m]), L.Average(name="avg")([a, m]), L.Multiply(name="mul")([a, m])]
    )
    p = L.Permute((2, 1), name="permute")(L.Reshape((2, 9), name="reshape")(merged))
    x = L.Flatten(name="flatten")(p)
    x = L.Dropout(0.5, name="dropout")(x)
    x = L.Dense(5, name="logits")(x)
    out = L.Softmax(name="softmax")(x)
    return keras3.Model(inp, [out, x], name="conv_model")


def _sequence_model() -> Any:
    """Embedding on int input, causal Conv1D."""
    inp = keras3.Input((12,), dtype="int32", name="tokens")
    x = L.Embedding(20, 8, name="embed")(inp)
    x = L.Conv1D(6, 3, padding="causal", activation="tanh", name="conv1d")(x)
    x = L.Flatten(name="flat")(x)
    return keras3.Model(inp, L.Dense(3, name="head")(x), name="sequence_model")


def _graph_model() -> Any:
    """Multi-input / multi-output with a shared layer, a nested Functional and a nested Sequential."""
    inner_in = keras3.Input((8,), name="inner_in")
    h = L.Dense(8, activation="relu", name="inner_dense")(inner_in)
    inner = keras3.Model(inner_in, L.BatchNormalization(name="inner_bn")(h), name="inner")
    head = keras3.Sequential(
        [keras3.Input((16,)), L.Dense(4, activation="elu", name="head_dense"), L.Dense(2, name="head_out")],
        name="head",
    )
    a = keras3.Input((8,), name="a")
    b = keras3.Input((8,), name="b")
    shared = L.Dense(8, name="shared")
    sa, sb = shared(a), shared(b)
    ia, ib = inner(sa), inner(sb)
    added = L.Add(name="sum")([ia, ib])
    joined = L.Concatenate(name="join")([ia, ib])
    return keras3.Model([a, b], [added, head(joined)], name="graph_model")


def _sequential_model() -> Any:
    return keras3.Sequential(
        [
            keras3.Input((10,), name="features"),
            L.Dense(16, activation="relu", name="d1"),
            L.BatchNormalization(name="bn1"),
            L.Dropout(0.3, name="drop"),
            L.Dense(4, activation="softmax", name="d2"),
        ],
        name="seq",
    )


def _activations_model() -> Any:
    """Every Keras 3 activation tf_keras lacks, plus common ones, side by side."""
    names = sorted(KERAS3_ACTIVATIONS) + ["relu", "relu6", "gelu", "silu", "sigmoid", "tanh", "elu", "softplus"]
    inp = keras3.Input((6,), name="x")
    h = L.Dense(6, name="pre")(inp)
    outs = [L.Activation(n, name=f"act_{n}")(h) for n in names]
    return keras3.Model(inp, L.Concatenate(name="all")(outs), name="activations")


MODELS = {
    "conv": (_conv_model, lambda: _rand(2, 16, 16, 3) * 2.0),
    "sequence": (_sequence_model, lambda: np.random.default_rng(0).integers(0, 20, (3, 12)).astype("int32")),
    "graph": (_graph_model, lambda: [_rand(4, 8, seed=1), _rand(4, 8, seed=2)]),
    "sequential": (_sequential_model, lambda: _rand(4, 10)),
    "activations": (_activations_model, lambda: _rand(4, 6) * 3.0),
}


# ------------------------------------------------------------------- tests


@pytest.mark.parametrize("name", sorted(MODELS))
def test_bridged_model_matches(name: str) -> None:
    build, data = MODELS[name]
    model = build()
    _randomize_batchnorm(model)
    bridged = to_tf_keras(model)
    assert isinstance(bridged, tf_keras.Model)
    _assert_same(model, bridged, data())


def test_sequential_stays_sequential() -> None:
    bridged = to_tf_keras(_sequential_model())
    assert isinstance(bridged, tf_keras.Sequential)
    assert bridged.input_names == ["features"]


def test_shared_and_nested_structure_kept() -> None:
    bridged = to_tf_keras(_graph_model())
    shared = bridged.get_layer("shared")
    assert len(shared.inbound_nodes) == 2
    assert isinstance(bridged.get_layer("inner"), tf_keras.Model)
    assert isinstance(bridged.get_layer("head"), tf_keras.Sequential)
    assert bridged.input_names == ["a", "b"]
    assert len(bridged.weights) == len(_graph_model().weights)


def test_bridged_activations_survive_tf_keras_reload() -> None:
    model = _activations_model()
    bridged = to_tf_keras(model)
    reloaded = tf_keras.models.model_from_json(bridged.to_json())
    reloaded.set_weights(bridged.get_weights())
    x = _rand(3, 6) * 3.0
    assert np.max(np.abs(_outputs(reloaded, x)[0] - _outputs(model, x)[0])) <= ATOL


def test_unmapped_keras_op_between_layers_is_rejected() -> None:
    """Mapped ops (add, multiply, ...) bridge (tests/test_bridge_ops.py); one the bridge has no rule for is refused."""
    inp = keras3.Input((4,), name="x")
    out = keras3.ops.sort(L.Dense(4, name="d")(inp))
    with pytest.raises(BridgeError, match="sort"):
        to_tf_keras(keras3.Model(inp, out))


def test_lambda_is_rejected_with_layer_name() -> None:
    inp = keras3.Input((4,))
    out = L.Lambda(lambda t: t * 2.0, name="double_it")(L.Dense(4)(inp))
    with pytest.raises(BridgeError, match="double_it") as info:
        to_tf_keras(keras3.Model(inp, out))
    assert info.value.layer_name == "double_it"
    assert info.value.class_name == "Lambda"


class _Scale3(keras3.layers.Layer):
    """A custom Keras 3 layer (Keras 3 side)."""

    def __init__(self, factor: float = 2.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x: Any) -> Any:
        return x * self.factor

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "factor": self.factor}


class _Scale2(tf_keras.layers.Layer):
    """The same custom layer for tf_keras."""

    def __init__(self, factor: float = 2.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x: Any) -> Any:
        return x * self.factor


def test_custom_layer_needs_custom_objects() -> None:
    inp = keras3.Input((4,))
    model = keras3.Model(inp, _Scale3(3.0, name="scale")(L.Dense(4, name="d")(inp)), name="custom")
    with pytest.raises(BridgeError, match="scale") as info:
        to_tf_keras(model)
    assert info.value.class_name == "_Scale3"
    bridged = to_tf_keras(model, custom_objects={"_Scale3": _Scale2})
    _assert_same(model, bridged, _rand(2, 4))


class _Subclassed(keras3.Model):
    def __init__(self) -> None:
        super().__init__(name="sub")
        self.dense = L.Dense(3)

    def call(self, x: Any) -> Any:
        return self.dense(x)


def test_subclassed_model_is_rejected_with_class_name() -> None:
    model = _Subclassed()
    model(_rand(1, 4))
    with pytest.raises(ModelLoadError, match="_Subclassed") as info:
        to_tf_keras(model)
    assert "Functional" in info.value.hint


def test_keras3_only_option_switched_on_is_rejected() -> None:
    inp = keras3.Input((4,))
    model = keras3.Model(inp, L.LayerNormalization(rms_scaling=True, name="rms")(inp))
    with pytest.raises(BridgeError, match="rms_scaling"):
        to_tf_keras(model)


def test_translate_layer_config() -> None:
    config = L.LeakyReLU(negative_slope=0.1, name="lr").get_config()
    expected = {"name": "lr", "trainable": True, "dtype": "float32", "alpha": 0.1}
    assert translate_layer_config("LeakyReLU", config) == expected
    conv = translate_layer_config("Conv2D", L.Conv2D(2, 3, kernel_regularizer="l2", name="c").get_config())
    assert conv["kernel_initializer"] == {"class_name": "GlorotUniform", "config": {"seed": None}}
    assert conv["kernel_regularizer"] == {"class_name": "L2", "config": {"l2": 0.01}}
    assert conv["dtype"] == "float32"
    inp = translate_layer_config("InputLayer", keras3.Input((3,), name="i")._keras_history[0].get_config())
    assert list(inp["batch_input_shape"]) == [None, 3]
    assert "batch_shape" not in inp


def _randomize_normalization(model: Any) -> None:
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if isinstance(layer, L.Normalization):
            mean, var, count = layer.get_weights()
            layer.set_weights([rng.uniform(50, 150, mean.shape).astype("float32"),
                               rng.uniform(1000, 4000, var.shape).astype("float32"), count])
            layer.finalize_state()  # Keras 3 Normalization computes with values cached from its variables


@pytest.mark.slow
@pytest.mark.parametrize(
    ("app", "shape", "feature_layer"),
    [("MobileNetV2", (96, 96, 3), "out_relu"), ("EfficientNetB0", (64, 64, 3), "top_activation")],
)
def test_applications(app: str, shape: tuple[int, int, int], feature_layer: str) -> None:
    model = getattr(keras3.applications, app)(weights=None, input_shape=shape)
    _randomize_batchnorm(model)
    _randomize_normalization(model)
    bridged = to_tf_keras(model)
    x = np.random.default_rng(0).uniform(0, 255, (2, *shape)).astype("float32")
    _assert_same(model, bridged, x, atol=1e-4)
    features = keras3.Model(model.input, model.get_layer(feature_layer).output)
    bridged_features = tf_keras.Model(bridged.input, bridged.get_layer(feature_layer).output)
    expected, actual = _outputs(features, x)[0], _outputs(bridged_features, x)[0]
    assert np.std(expected) > 1e-3  # the comparison is not between constants
    assert np.max(np.abs(expected - actual)) <= 1e-4 * max(1.0, np.max(np.abs(expected)))
