"""Model loading: every accepted format, safety, and the errors for bad files."""

from __future__ import annotations

import numpy as np
import pytest

from tfcompress.errors import ModelLoadError
from tfcompress.keras_compat import keras3, tf_keras
from tfcompress.loading import load_model, load_source
from tfcompress.models import fmnist_cnn

X = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The FMNIST-CNN saved in every format, with its reference outputs."""
    d = tmp_path_factory.mktemp("models")
    m2 = fmnist_cnn("tf_keras")
    m3 = fmnist_cnn("keras3")
    m3.set_weights(m2.get_weights())
    paths = {
        "tf_keras.keras": d / "m2.keras",
        "tf_keras.h5": d / "m2.h5",
        "keras3.keras": d / "m3.keras",
        "keras3.h5": d / "m3.h5",
        "tf_keras.savedmodel": d / "m2_savedmodel",
        "keras3.export": d / "m3_export",
    }
    m2.save(paths["tf_keras.keras"])
    m2.save(paths["tf_keras.h5"])
    m3.save(paths["keras3.keras"])
    m3.save(paths["keras3.h5"])
    m2.save(paths["tf_keras.savedmodel"], save_format="tf")
    m3.export(str(paths["keras3.export"]), verbose=False)
    return paths, np.asarray(m2(X, training=False))


@pytest.mark.parametrize(
    "key, flavor",
    [
        ("tf_keras.keras", "tf_keras"),
        ("tf_keras.h5", "tf_keras"),
        ("keras3.keras", "keras3"),
        ("keras3.h5", "keras3"),
        ("tf_keras.savedmodel", "tf_keras"),
        ("keras3.export", "saved_model"),
    ],
)
def test_every_format_loads_and_predicts_the_same(saved, key, flavor):
    paths, ref = saved
    src = load_source(paths[key])
    assert src.flavor == flavor
    assert len(src.sha256) == 64
    assert [s.shape for s in src.input_specs()] == [(None, 28, 28, 1)]
    np.testing.assert_allclose(src.predict((X,))[0], ref, atol=1e-5)


@pytest.mark.parametrize("key", ["tf_keras.keras", "keras3.keras", "keras3.h5"])
def test_load_model_returns_tf_keras(saved, key):
    paths, ref = saved
    model = load_model(paths[key])
    assert isinstance(model, tf_keras.Model)
    np.testing.assert_allclose(np.asarray(model(X, training=False)), ref, atol=1e-5)


def test_load_model_in_memory_keras3_is_bridged():
    m3 = fmnist_cnn("keras3")
    model = load_model(m3)
    assert isinstance(model, tf_keras.Model)
    np.testing.assert_allclose(np.asarray(model(X, training=False)), np.asarray(m3(X, training=False)), atol=1e-5)


def test_plain_savedmodel_cannot_become_keras(saved):
    paths, _ = saved
    with pytest.raises(ModelLoadError, match="without Keras metadata"):
        load_model(paths["keras3.export"])


@pytest.mark.parametrize(
    "name, content, match",
    [
        ("missing.keras", None, "does not exist"),
        ("empty.keras", b"", "empty"),
        ("text.keras", b"hello, not a model", "not a valid .keras"),
        ("text.h5", b"hello, not a model", "not an HDF5"),
        ("model.onnx", b"\x08\x01", "unsupported model file"),
        ("model.tflite", b"xxxxTFL3", "is a .tflite"),
    ],
)
def test_bad_files_are_named(tmp_path, name, content, match):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=match) as info:
        load_source(path)
    assert name in str(info.value)
    assert info.value.hint


def test_truncated_keras_file(saved, tmp_path):
    paths, _ = saved
    data = paths["keras3.keras"].read_bytes()
    bad = tmp_path / "truncated.keras"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="truncated.keras"):
        load_source(bad)


def test_truncated_h5_file(saved, tmp_path):
    paths, _ = saved
    data = paths["tf_keras.h5"].read_bytes()
    bad = tmp_path / "truncated.h5"
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelLoadError, match="truncated.h5"):
        load_source(bad)


def test_directory_that_is_not_a_savedmodel(tmp_path):
    with pytest.raises(ModelLoadError, match="not a SavedModel"):
        load_source(tmp_path)


def _lambda_model(k):
    inp = k.Input((4,))
    x = k.layers.Lambda(lambda t: t * 2.0, name="doubler")(inp)
    return k.Model(inp, k.layers.Dense(2, name="head")(x))


@pytest.mark.parametrize("flavor", ["keras3", "tf_keras"])
def test_lambda_refused_in_files_unless_unsafe(tmp_path, flavor):
    k = {"keras3": keras3, "tf_keras": tf_keras}[flavor]
    path = tmp_path / "lam.h5"
    _lambda_model(k).save(path)
    with pytest.raises(ModelLoadError, match="'doubler' is a Lambda") as info:
        load_source(path)
    assert "--unsafe" in info.value.hint
    src = load_source(path, safe_mode=False)
    assert src.predict((np.ones((2, 4), np.float32),))[0].shape == (2, 2)


def test_lambda_refused_in_keras3_file(tmp_path):
    path = tmp_path / "lam.keras"
    _lambda_model(keras3).save(path)
    with pytest.raises(ModelLoadError, match="doubler"):
        load_source(path)


def test_lambda_refused_in_memory_unless_unsafe():
    model = _lambda_model(keras3)
    with pytest.raises(ModelLoadError, match="doubler"):
        load_source(model)
    assert load_source(model, safe_mode=False).flavor == "keras3"


class PlusOne(keras3.layers.Layer):
    """A custom layer, as users write them."""

    def call(self, x):
        return x + 1.0


def test_custom_layer_needs_unsafe_and_custom_objects(tmp_path):
    inp = keras3.Input((3,))
    model = keras3.Model(inp, PlusOne(name="plus_one")(inp))
    path = tmp_path / "custom.keras"
    model.save(path)
    with pytest.raises(ModelLoadError, match="'plus_one' has custom class 'PlusOne'"):
        load_source(path)
    with pytest.raises(ModelLoadError, match="custom-objects"):
        load_source(path, safe_mode=False)
    src = load_source(path, safe_mode=False, custom_objects={"PlusOne": PlusOne})
    np.testing.assert_allclose(src.predict((np.zeros((1, 3), np.float32),))[0], 1.0)


def test_not_a_model_object():
    with pytest.raises(ModelLoadError, match="type dict"):
        load_source({"not": "a model"})
