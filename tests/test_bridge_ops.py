"""Keras 3 op nodes (keras.ops calls, tensor operators) through the bridge: same outputs as Keras 3."""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import pytest

from tfcompress.bridge import to_tf_keras
from tfcompress.bridge.ops import OP_RULES
from tfcompress.errors import BridgeError
from tfcompress.keras_compat import keras3, tf, tf_keras
from tfcompress.loading.safety import PURE_OP_SYMBOLS

L = keras3.layers
ops = keras3.ops
ATOL = 1e-5


def _rand(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _outputs(model: Any, x: Any) -> list[np.ndarray]:
    return [np.asarray(y) for y in tf.nest.flatten(model(x, training=False))]


def _max_diff(model: Any, bridged: Any, x: Any) -> float:
    expected, actual = _outputs(model, x), _outputs(bridged, x)
    assert len(expected) == len(actual)
    worst = 0.0
    for e, a in zip(expected, actual):
        assert e.shape == a.shape and e.dtype == a.dtype, (e.shape, e.dtype, a.shape, a.dtype)
        worst = max(worst, float(np.max(np.abs(e.astype("float64") - a.astype("float64")))))
    return worst


def _op_names(model: Any) -> set[str]:
    """Names of the Keras 3 op nodes (not layers) of a functional model."""
    return {
        node.operation.name
        for nodes in model._nodes_by_depth.values()
        for node in nodes
        if node.operation is not None and not isinstance(node.operation, L.Layer)
    }


# ------------------------------------------------------------------ models, one group of ops each


def _arithmetic() -> tuple[Any, Any]:
    """+ - * / ** unary -, maximum / minimum, broadcasting (B,4,6) with (B,1,6) and (B,4,1)."""
    a, b, c = keras3.Input((4, 6), name="a"), keras3.Input((1, 6), name="b"), keras3.Input((4, 1), name="c")
    h = L.Dense(6, name="dense")(a)
    out = [
        h + b, h - c, b * c, h / (ops.abs(b) + 1.0), -h, ops.negative(c),
        ops.maximum(h, b), ops.minimum(c, h), ops.power(ops.absolute(h), 1.5), h ** 2,
        ops.add(b, c), ops.subtract(c, b), ops.multiply(h, c), ops.divide(b, ops.square(c) + 0.5),
    ]
    return keras3.Model([a, b, c], out, name="arithmetic"), [_rand(3, 4, 6), _rand(3, 1, 6, seed=1), _rand(3, 4, 1, seed=2)]


def _constants() -> tuple[Any, Any]:
    """Python scalars (either side), NumPy arrays, a Keras 3 tensor and a variable as constant operands."""
    x = keras3.Input((4, 6), name="x")
    row = np.linspace(-1, 1, 6).astype("float32")
    column = np.arange(4, dtype="float32").reshape(4, 1)
    tensor = ops.convert_to_tensor(np.full((1, 6), 0.25, "float32"))
    variable = keras3.Variable(np.full((6,), 2.0, "float32"), trainable=False)
    out = [
        x * (1.0 / 6.0) + 3.0, 3.0 - x, 2.0 / (x * x + 1.0), x + 2,  # int constant with a float tensor
        x * row, ops.subtract(column, x), x + tensor, x * variable, x @ np.ones((6, 2), "float64").astype("float32"),
    ]
    return keras3.Model(x, out, name="constants"), _rand(2, 4, 6)


def _matmul() -> tuple[Any, Any]:
    a, b = keras3.Input((4, 6), name="a"), keras3.Input((6, 5), name="b")
    w = np.random.default_rng(3).normal(size=(5, 3)).astype("float32")
    out = [ops.matmul(a, b), (a @ b) @ w, ops.matmul(ops.transpose(a, (0, 2, 1)), a)]
    return keras3.Model([a, b], out, name="matmul"), [_rand(2, 4, 6), _rand(2, 6, 5, seed=1)]


def _reductions() -> tuple[Any, Any]:
    x = keras3.Input((3, 4, 5), name="x")
    out = [
        ops.mean(x, axis=-1, keepdims=True), ops.mean(x, axis=(1, 2)), ops.sum(x, axis=1),
        ops.sum(x, axis=[1, 3], keepdims=True), ops.max(x, axis=2, keepdims=True), ops.max(x, axis=(1, 2, 3)),
        ops.min(x, axis=-2), ops.mean(x),  # axis None: over the batch too, as Keras 3 does
    ]
    return keras3.Model(x, out, name="reductions"), _rand(2, 3, 4, 5)


def _shapes() -> tuple[Any, Any]:
    x, y = keras3.Input((4, 6), name="x"), keras3.Input((4, 2), name="y")
    out = [
        ops.reshape(x, (-1, 24)), ops.reshape(x, (-1, 2, 3, 4)), ops.transpose(x, (0, 2, 1)), ops.transpose(x),
        ops.concatenate([x, y], axis=-1), ops.concatenate([x, x * 2.0], axis=1), ops.stack([y, y + 1.0], axis=1),
        ops.expand_dims(x, 1), ops.expand_dims(x, (1, -1)), ops.squeeze(ops.expand_dims(y, -1), axis=-1),
        ops.squeeze(ops.expand_dims(y, (1, 3)), axis=(1, 3)),
        x[:, 0], x[..., 1:5:2], x[:, None, -1, ::-1], x[:, 1:, ...], y[0],
    ]
    return keras3.Model([x, y], out, name="shapes"), [_rand(2, 4, 6), _rand(2, 4, 2, seed=1)]


def _activations() -> tuple[Any, Any]:
    x = keras3.Input((8,), name="x")
    h = L.Dense(8, name="dense")(x)
    out = [
        ops.relu(h), ops.relu6(h), ops.sigmoid(h), ops.hard_sigmoid(h), ops.hard_swish(h), ops.hard_silu(h),
        ops.silu(h), ops.swish(h), ops.gelu(h), ops.gelu(h, approximate=False), ops.tanh(h),
        ops.softmax(h, axis=-1), ops.log_softmax(h), ops.leaky_relu(h, negative_slope=0.1), ops.elu(h),
        ops.softplus(h), h * ops.hard_sigmoid(h),  # MobileNetV3's hard-swish spelled with ops
    ]
    return keras3.Model(x, out, name="activations"), _rand(4, 8) * 4.0


def _math() -> tuple[Any, Any]:
    x = keras3.Input((6,), name="x")
    positive = ops.abs(x) + 0.1
    out = [
        ops.clip(x, -0.5, 0.5), ops.clip(x, 0, 1), ops.sqrt(positive), ops.square(x), ops.rsqrt(positive),
        ops.exp(x), ops.log(positive), ops.erf(x),
    ]
    return keras3.Model(x, out, name="math"), _rand(3, 6) * 2.0


def _dtypes() -> tuple[Any, Any]:
    """Casts, Keras 3 type promotion (int tensor with a float tensor / constant), comparisons and where."""
    x, n = keras3.Input((5,), name="x"), keras3.Input((5,), dtype="int32", name="n")
    count = ops.cast(x > 0.0, "int32")
    out = [
        ops.cast(x * 3.0, "int32"), ops.cast(n, "float32") * x, n + x, n * 0.5, n + count, n / 2, n / (count + 1),
        ops.where(x > 0.5, x, -x), ops.where(n >= 1, x, 0.0), ops.cast(ops.less(x, -0.2), "float32"),
        ops.cast(ops.equal(n, 2), "float32") + ops.cast(ops.not_equal(n, 2), "float32"),
        ops.where(ops.less_equal(x, 0.0), n, count) + ops.cast(ops.greater_equal(n, 3), "int32"),
    ]
    return keras3.Model([x, n], out, name="dtypes"), [_rand(3, 5), np.arange(15, dtype="int32").reshape(3, 5) % 4]


def _nested() -> tuple[Any, Any]:
    """Ops inside a nested functional model and around a shared layer."""
    inner_in = keras3.Input((6,), name="inner_in")
    inner = keras3.Model(inner_in, ops.relu6(inner_in + 3.0) * (1.0 / 6.0), name="inner")
    x = keras3.Input((6,), name="x")
    shared = L.Dense(6, name="shared")
    out = shared(inner(x)) + shared(x * 0.5)
    return keras3.Model(x, out, name="nested"), _rand(3, 6) * 4.0


MODELS: dict[str, Callable[[], tuple[Any, Any]]] = {
    "arithmetic": _arithmetic,
    "constants": _constants,
    "matmul": _matmul,
    "reductions": _reductions,
    "shapes": _shapes,
    "activations": _activations,
    "math": _math,
    "dtypes": _dtypes,
    "nested": _nested,
}


# ------------------------------------------------------------------ tests


@pytest.mark.parametrize("name", sorted(MODELS))
def test_bridged_ops_match_keras3(name: str) -> None:
    model, x = MODELS[name]()
    bridged = to_tf_keras(model)
    assert _max_diff(model, bridged, x) <= ATOL
    # Every Keras 3 layer is still there under its name, every op became tf_keras op layers named after it.
    names = [layer.name for layer in bridged.layers]
    assert len(names) == len(set(names))
    assert {layer.name for layer in model.layers} <= set(names)
    assert _op_names(model) <= set(names)
    op_layers = [layer for layer in bridged.layers if type(layer).__name__ in ("TFOpLambda", "SlicingOpLambda")]
    assert op_layers and all(layer.name.split(".")[0] in _op_names(model) for layer in op_layers)
    # ... each holding a symbol the loader's safe mode knows as pure tensor math (so a bridged model reloads)
    assert {layer.get_config()["function"] for layer in op_layers} <= PURE_OP_SYMBOLS


def test_hard_silu_becomes_tf_op_layers_named_after_the_op() -> None:
    x = keras3.Input((4,), name="x")
    model = keras3.Model(x, ops.hard_silu(L.Dense(4, name="d")(x)), name="m")
    op_name = next(iter(_op_names(model)))
    bridged = to_tf_keras(model)
    steps = {layer.name: layer.get_config()["function"] for layer in bridged.layers[2:]}
    assert steps == {
        f"{op_name}.hard_sigmoid.add": "math.add",
        f"{op_name}.hard_sigmoid.relu6": "nn.relu6",
        f"{op_name}.hard_sigmoid": "math.divide",
        op_name: "math.multiply",
    }


def test_bridged_ops_reload_in_tf_keras(tmp_path: Any) -> None:
    """The op layers store their TF symbol and constants in the config: JSON and .keras round trips hold."""
    model, x = _shapes()
    constants, xc = _constants()
    for source, data in ((model, x), (constants, xc)):
        bridged = to_tf_keras(source)
        expected = _outputs(source, data)
        from_json = tf_keras.models.model_from_json(bridged.to_json())
        from_json.set_weights(bridged.get_weights())
        path = tmp_path / f"{source.name}.keras"
        bridged.save(path)
        from_file = tf_keras.models.load_model(path, compile=False)
        clone = tf_keras.models.clone_model(bridged)  # what TF-MOT does before wrapping layers
        clone.set_weights(bridged.get_weights())
        for reloaded in (from_json, from_file, clone):
            for e, a in zip(expected, _outputs(reloaded, data)):
                assert np.max(np.abs(e - a)) <= ATOL


def test_a_saved_bridged_model_loads_in_safe_mode_and_other_ops_stay_refused(tmp_path: Any) -> None:
    """Issue 17: a bridged model (op layers, tfcompress's hard_silu) saved by the user came back through
    `tfcompress convert` only with --unsafe. Op layers of pure tensor math and tfcompress's own activations load in
    safe mode; an op layer naming any other TensorFlow symbol, or an unknown function, is still refused."""
    import json

    import tfcompress
    from tfcompress.errors import ModelLoadError
    from tfcompress.loading.safety import check_config

    x = keras3.Input((6,), name="x")
    h = L.Dense(4, name="d")(x)
    model = keras3.Model(x, L.Activation("hard_silu", name="act")(ops.hard_sigmoid(h) * 2.0 + h[:, :1]), name="m")
    path = tmp_path / "bridged.keras"
    to_tf_keras(model).save(path)
    data = _rand(8, 6)
    loaded = tfcompress.load_model(str(path))  # safe mode
    assert np.max(np.abs(_outputs(model, data)[0] - _outputs(loaded, data)[0])) <= ATOL
    config = json.loads(loaded.to_json())["config"]
    check_config(config, flavor="tf_keras", where="m", safe_mode=True, custom_objects={})
    text = json.dumps(config)
    for bad, what in (('"function": "math.add"', '"function": "io.write_file"'),
                      ('"tfcompress>keras3_hard_silu"', '"tfcompress>keras3_not_ours"')):
        assert bad in text
        with pytest.raises(ModelLoadError, match="--unsafe"):
            check_config(json.loads(text.replace(bad, what, 1)), flavor="tf_keras", where="m", safe_mode=True,
                         custom_objects={})


def test_op_step_named_like_a_layer_gets_a_unique_name() -> None:
    x, n = keras3.Input((4,), name="x"), keras3.Input((4,), dtype="int32", name="n")
    half = n / 2  # int32 -> float32: a "<op>.cast" step before the division
    op_name = half._keras_history.operation.name
    h = L.Dense(4, name=f"{op_name}.cast")(x)  # a layer already has that name
    model = keras3.Model([x, n], h + half)
    bridged = to_tf_keras(model)
    names = [layer.name for layer in bridged.layers]
    assert len(names) == len(set(names)) and f"{op_name}.cast_1" in names and f"{op_name}.cast" in names
    assert bridged.get_layer(f"{op_name}.cast").__class__.__name__ == "Dense"
    data = [_rand(2, 4), np.arange(8, dtype="int32").reshape(2, 4)]
    assert _max_diff(model, bridged, data) <= ATOL


def test_unmapped_op_is_named_in_the_error() -> None:
    x = keras3.Input((5,), name="x")
    sorted_ = ops.sort(L.Dense(5, name="d")(x))
    op_name = sorted_._keras_history.operation.name
    with pytest.raises(BridgeError) as info:
        to_tf_keras(keras3.Model(x, sorted_))
    message = str(info.value)
    print(message)  # shown with pytest -s: what a user reads
    assert info.value.layer_name == op_name
    assert info.value.class_name == "keras op Sort"
    assert f"'{op_name}'" in message and "'Sort'" in message and "no TensorFlow mapping" in message
    assert "custom_objects" in info.value.hint and "hard_silu" in info.value.hint  # what to do, what is mapped


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (lambda x: ops.max(x, axis=1, initial=0.0), "initial="),
        (lambda x: ops.softmax(x, axis=(0, 1)), "single integer axis"),
        (lambda x: ops.elu(x, alpha=0.5), "alpha=0.5"),
        (lambda x: ops.matmul(x, np.ones((3,), "float32")), "1-D operand"),
    ],
)
def test_mapped_op_with_an_argument_tf_lacks_is_rejected(build: Callable[[Any], Any], reason: str) -> None:
    x = keras3.Input((3,), name="x")
    with pytest.raises(BridgeError, match=reason) as info:
        to_tf_keras(keras3.Model(x, build(x)))
    assert info.value.class_name.startswith("keras op ")


class _Halve(keras3.Operation):
    """A user-defined Keras 3 Operation (not in keras.src.ops)."""

    def call(self, x: Any) -> Any:
        return x / 2

    def compute_output_spec(self, x: Any) -> Any:
        return keras3.KerasTensor(x.shape, dtype=x.dtype)


def test_custom_operation_is_rejected() -> None:
    x = keras3.Input((3,), name="x")
    with pytest.raises(BridgeError, match="custom Keras 3 Operation '_Halve'"):
        to_tf_keras(keras3.Model(x, _Halve(name="halve")(x)))


def test_op_table_covers_the_brief() -> None:
    """The ops named in issue 17 are in the table (a rename in Keras would drop one silently otherwise)."""
    wanted = {
        "Add", "Subtract", "Multiply", "Divide", "TrueDivide", "Negative", "Matmul", "Mean", "Sum", "Max",
        "Reshape", "Transpose", "Concatenate", "ExpandDims", "Squeeze", "Relu", "Relu6", "Sigmoid", "HardSigmoid",
        "HardSilu", "Silu", "Gelu", "Tanh", "Softmax", "Clip", "Sqrt", "Square", "Rsqrt", "Exp", "Cast",
    }
    assert wanted <= set(OP_RULES)
    modules = [keras3.src.ops.numpy, keras3.src.ops.nn, keras3.src.ops.math, keras3.src.ops.core]
    for name in OP_RULES:  # each key is a Keras 3 op class of that name
        classes = [getattr(m, name) for m in modules if isinstance(getattr(m, name, None), type)]
        assert classes and all(issubclass(c, keras3.Operation) for c in classes), name


# ------------------------------------------------------------------ keras.applications


def _randomize_batchnorm(model: Any, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            layer.set_weights([
                rng.uniform(0.5, 1.5, w.shape).astype("float32") if i in (0, 3)
                else rng.uniform(-0.3, 0.3, w.shape).astype("float32")
                for i, w in enumerate(layer.get_weights())
            ])


@pytest.mark.parametrize("app", ["MobileNetV3Small", "MobileNetV3Large"])
def test_mobilenetv3_bridges(app: str) -> None:
    start = time.perf_counter()
    model = getattr(keras3.applications, app)(weights=None, input_shape=(96, 96, 3), classifier_activation=None)
    _randomize_batchnorm(model)
    assert _op_names(model), "MobileNetV3 applies tensor operators (x + 3.0, * (1 / 6))"
    bridged = to_tf_keras(model)
    x = np.random.default_rng(0).uniform(0, 255, (2, 96, 96, 3)).astype("float32")  # include_preprocessing: on
    expected = _outputs(model, x)[0]
    assert np.std(expected) > 1e-2  # logits, not a near-constant softmax
    diff = _max_diff(model, bridged, x)
    print(f"{app}: max |Keras 3 - bridged| = {diff:.2e} (logits up to {np.max(np.abs(expected)):.2f}), "
          f"{time.perf_counter() - start:.1f} s")
    assert diff <= 1e-4


@pytest.mark.slow
def test_mobilenetv3small_compresses_to_int8() -> None:
    """prune (1 epoch, 2 steps) + int8 on the Keras 3 model itself: compress bridges it, TF-MOT passes the op layers."""
    from tfcompress.compression import compress
    from tfcompress.export.tflite_file import read_tflite
    from tfcompress.recipe import parse_recipe_dict

    model = keras3.applications.MobileNetV3Small(weights=None, input_shape=(96, 96, 3), classes=10)
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 255, (48, 96, 96, 3)).astype("float32"), rng.integers(0, 10, 48)
    recipe = parse_recipe_dict({"name": "prune-quick", "stages": [
        {"technique": "prune", "epochs": 1, "steps_per_epoch": 2, "batch_size": 8, "params": {"final_sparsity": 0.5}},
        {"technique": "convert", "params": {"mode": "int8", "calib_samples": 16}},
    ]})
    result = compress(model, recipe, (x, y), measure_stages=False, verify=False, device=None)
    assert [s.technique for s in result.stages] == ["prune"]
    tfl = read_tflite(result.convert.tflite)
    assert [d.dtype for d in tfl.input_details() + tfl.output_details()] == ["int8", "int8"]
    pointwise = [w for w in result.weight_stats if w.op_type == "CONV_2D" and w.elements >= 1024]
    assert pointwise and all(w.zeros >= 0.45 for w in pointwise), [(w.tensor, w.zeros) for w in pointwise]


def test_a_bridged_model_saved_as_h5_reloads(tmp_path: Any) -> None:
    """Issue 17: tf_keras writes a registered activation into an .h5 as {"class_name": "function", ...} and
    reads it back with its legacy deserializer, which knows functions by name only: a bridged MobileNetV3 saved
    with model.save("m.h5") did not reload ("Unknown activation function: 'function'")."""
    import h5py

    import tfcompress
    from tfcompress.errors import ModelLoadError

    x = keras3.Input((6,), name="x")
    h = L.Dense(4, name="d")(x)
    model = keras3.Model(x, L.Activation("hard_silu", name="act")(ops.hard_sigmoid(h) * 2.0 + h[:, :1]), name="m")
    path = tmp_path / "bridged.h5"
    to_tf_keras(model).save(path)
    with h5py.File(path, "r") as f:
        assert '"class_name": "function"' in f.attrs["model_config"], "the form tf_keras' .h5 loader cannot read"
    data = _rand(8, 6)
    loaded = tfcompress.load_model(str(path))  # safe mode
    assert np.max(np.abs(_outputs(model, data)[0] - _outputs(loaded, data)[0])) <= ATOL
    with h5py.File(path, "r+") as f:  # a function that is not tfcompress's own is still refused, not renamed
        f.attrs["model_config"] = f.attrs["model_config"].replace("keras3_hard_silu", "keras3_not_ours")
    with pytest.raises(ModelLoadError, match="--unsafe"):
        tfcompress.load_model(str(path))
