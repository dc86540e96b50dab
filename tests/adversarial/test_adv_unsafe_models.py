"""No code runs from a model file without --unsafe (issue 12, item 1).

Every format (Keras 3 .keras / .h5, tf_keras .keras / .h5, tf_keras SavedModel with keras_metadata.pb) x every
config shape (Lambda at the top, in a nested model, in a TimeDistributed wrapper, with its names removed from the
file, an unknown custom layer, a custom initializer): refused through the API and the CLI, naming the layer (or its
place in the config), with the Lambda's marker file never written; and loaded with --unsafe / safe_mode=False.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from tfcompress.cli import main
from tfcompress.errors import ModelLoadError
from tfcompress.keras_compat import keras3, tf_keras
from tfcompress.loading import load_source

FORMATS = ["keras3.keras", "keras3.h5", "tf_keras.keras", "tf_keras.h5", "tf_keras.savedmodel"]
LAMBDA_VARIANTS = ["top", "nested", "time_distributed", "nameless"]
VARIANTS = [*LAMBDA_VARIANTS, "custom_layer", "custom_initializer"]
KERAS = {"keras3": keras3, "tf_keras": tf_keras}


class MarkerLayer3(keras3.layers.Layer):
    """A custom Keras 3 layer (its class is not in the file: only its name is)."""

    def call(self, x):
        return x


class MarkerLayer2(tf_keras.layers.Layer):
    """The same for tf_keras."""

    def call(self, x):
        return x


class MarkerInit3(keras3.initializers.Initializer):
    """A custom Keras 3 initializer, referenced by class_name inside a Dense config."""

    def __call__(self, shape, dtype=None):
        return keras3.ops.zeros(shape, dtype=dtype)

    def get_config(self):
        return {}


class MarkerInit2(tf_keras.initializers.Initializer):
    """The same for tf_keras."""

    def __call__(self, shape, dtype=None, **kwargs):
        return tf_keras.backend.zeros(shape, dtype=dtype)

    def get_config(self):
        return {}


CUSTOM = {
    "keras3": {"MarkerLayer3": MarkerLayer3, "MarkerInit3": MarkerInit3},
    "tf_keras": {"MarkerLayer2": MarkerLayer2, "MarkerInit2": MarkerInit2},
}
LAYER_CLASSES = {"keras3": MarkerLayer3, "tf_keras": MarkerLayer2}
INIT_CLASSES = {"keras3": MarkerInit3, "tf_keras": MarkerInit2}


def _marker_lambda(k, marker: Path, name: str):
    """A Lambda whose function writes `marker` (its path baked in as a closure cell, saved with the code)."""
    m = str(marker)
    return k.layers.Lambda(lambda x: (open(m, "w").write("ran"), x)[1], name=name)


def _build(flavor: str, variant: str, marker: Path):
    k = KERAS[flavor]
    if variant == "nameless":
        return k.Sequential([k.Input((4,)), _marker_lambda(k, marker, "evil"), k.layers.Dense(2, name="head")])
    if variant == "time_distributed":
        inp = k.Input((3, 4))
        x = k.layers.TimeDistributed(_marker_lambda(k, marker, "evil"), name="td")(inp)
        return k.Model(inp, k.layers.Dense(2, name="head")(x))
    inp = k.Input((4,))
    if variant == "top":
        x = _marker_lambda(k, marker, "evil")(inp)
    elif variant == "nested":
        inner_in = k.Input((4,))
        x = k.Model(inner_in, _marker_lambda(k, marker, "evil")(inner_in), name="inner_model")(inp)
    elif variant == "custom_layer":
        x = LAYER_CLASSES[flavor](name="custom_one")(inp)
    else:
        return k.Model(inp, k.layers.Dense(2, kernel_initializer=INIT_CLASSES[flavor](), name="head")(inp))
    return k.Model(inp, k.layers.Dense(2, name="head")(x))


def _drop_lambda_names(config):
    """Remove `name` from every Lambda dict and its inner config: what the prober did to slip past the old check."""
    if isinstance(config, dict):
        if config.get("class_name") == "Lambda":
            config.pop("name", None)
            if isinstance(config.get("config"), dict):
                config["config"].pop("name", None)
        for v in config.values():
            _drop_lambda_names(v)
    elif isinstance(config, list):
        for v in config:
            _drop_lambda_names(v)
    return config


def _strip_names_in_file(path: Path) -> None:
    if path.suffix == ".keras":
        with zipfile.ZipFile(path) as z:
            entries = {n: z.read(n) for n in z.namelist()}
        entries["config.json"] = json.dumps(_drop_lambda_names(json.loads(entries["config.json"]))).encode()
        with zipfile.ZipFile(path, "w") as z:
            for n, data in entries.items():
                z.writestr(n, data)
    elif path.suffix == ".h5":
        with h5py.File(path, "r+") as h:
            raw = h.attrs["model_config"]
            config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
            h.attrs["model_config"] = json.dumps(_drop_lambda_names(config))
    else:
        from tf_keras.protobuf import saved_metadata_pb2

        file = path / "keras_metadata.pb"
        proto = saved_metadata_pb2.SavedMetadata()
        proto.ParseFromString(file.read_bytes())
        for node in proto.nodes:
            node.metadata = json.dumps(_drop_lambda_names(json.loads(node.metadata)))
        file.write_bytes(proto.SerializeToString())


def _save(model, flavor: str, fmt: str, path: Path) -> None:
    if fmt == "savedmodel":
        model.save(str(path), save_format="tf")
    else:
        model.save(str(path))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """(format, variant) -> (path, marker); the markers written while building and saving are removed."""
    d = tmp_path_factory.mktemp("unsafe_models")
    made = {}
    for fmt_key in FORMATS:
        flavor, fmt = fmt_key.split(".")
        for variant in VARIANTS:
            marker = d / f"ran_{flavor}_{fmt}_{variant}"
            suffix = "" if fmt == "savedmodel" else f".{fmt}"
            path = d / f"{flavor}_{variant}{suffix}"
            _save(_build(flavor, variant, marker), flavor, fmt, path)
            if variant == "nameless":
                _strip_names_in_file(path)
            marker.unlink(missing_ok=True)  # building and tracing the model called the lambda
            made[fmt_key, variant] = (path, marker)
    return made


def _expected(variant: str) -> list[str]:
    """What the refusal must say: the layer's name (or its place in the config) and its class."""
    return {
        "top": ["'evil'", "Lambda"],
        "nested": ["'evil'", "Lambda"],
        "time_distributed": ["'evil'", "Lambda"],
        "nameless": ["Lambda", "layers["],
        "custom_layer": ["'custom_one'", "MarkerLayer"],
        "custom_initializer": ["MarkerInit", "kernel_initializer"],
    }[variant]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_refused_by_load_source(models, fmt, variant):
    path, marker = models[fmt, variant]
    with pytest.raises(ModelLoadError) as info:
        load_source(path)
    message = str(info.value)
    for needle in _expected(variant):
        assert needle in message, message
    assert "--unsafe" in info.value.hint
    assert not marker.exists(), "the model's code ran"
    if variant == "nameless":
        assert "evil" not in message  # the names really are gone: the check did not rely on them


def _assert_one_line_error(result, needles):
    out = result.output  # stdout and stderr together
    assert result.exit_code == 2, out
    assert "Traceback" not in out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out
    for needle in needles:
        assert needle in errors[0], out
    assert "--unsafe" in out


@pytest.mark.parametrize("command", ["convert", "inspect"])
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_refused_by_the_cli(models, tmp_path, fmt, variant, command):
    path, marker = models[fmt, variant]
    args = [command, str(path)]
    if command == "convert":
        args += ["-o", str(tmp_path / "out.tflite"), "--mode", "float16", "--no-verify"]
    result = CliRunner().invoke(main, args)
    _assert_one_line_error(result, _expected(variant))
    assert not marker.exists(), "the model's code ran"
    assert not list(tmp_path.glob("out*"))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_safe_mode_off_loads_them(models, fmt, variant):
    if (fmt, variant) == ("tf_keras.savedmodel", "nameless"):
        pytest.skip("tf_keras' SavedModel loader itself needs the layer names we removed")
    path, marker = models[fmt, variant]
    flavor = fmt.split(".")[0]
    src = load_source(path, safe_mode=False, custom_objects=CUSTOM[flavor])
    shape = (2, 3, 4) if variant == "time_distributed" else (2, 4)
    out = src.predict((np.ones(shape, np.float32),))[0]
    assert out.shape == (*shape[:-1], 2)
    if variant in LAMBDA_VARIANTS:
        assert marker.exists(), "with safe_mode=False the Lambda is the file's own code, and it ran"
        marker.unlink()


@pytest.mark.parametrize("fmt", FORMATS)
def test_unsafe_flag_loads_them_in_the_cli(models, fmt):
    path, marker = models[fmt, "top"]
    result = CliRunner().invoke(main, ["inspect", str(path), "--unsafe", "--json"])
    assert result.exit_code == 0, result.output
    assert "evil" in result.output
    marker.unlink(missing_ok=True)


def test_savedmodel_custom_layer_is_revived_without_its_class(models):
    """With safe_mode=False a tf_keras SavedModel needs no custom_objects: the layer is rebuilt from its graph."""
    path, _ = models["tf_keras.savedmodel", "custom_layer"]
    assert load_source(path, safe_mode=False).flavor == "tf_keras"


def _my_loss(y_true, y_pred):
    return (y_true - y_pred) ** 2


@pytest.mark.parametrize("flavor, fmt", [("keras3", "keras"), ("tf_keras", "savedmodel")])
def test_a_custom_loss_in_the_compile_config_is_not_loaded_so_not_refused(tmp_path, flavor, fmt):
    """We load with compile=False: the top-level compile / training config is never deserialized."""
    k = KERAS[flavor]
    inp = k.Input((4,))
    model = k.Model(inp, k.layers.Dense(2, name="head")(inp))
    model.compile(optimizer="adam", loss=_my_loss)
    path = tmp_path / ("m.keras" if fmt == "keras" else "m_savedmodel")
    _save(model, flavor, fmt, path)
    assert load_source(path).flavor == flavor


# ------------------------------------------------------------------ the config walk itself


def _safety():
    from tfcompress.loading import safety  # imported here so the tests above also run against older code

    return safety


def _check(config, flavor="keras3", safe_mode=True, custom_objects=None):
    _safety().check_config(config, flavor=flavor, where="m.keras", safe_mode=safe_mode, custom_objects=custom_objects or {})


def _dense(**extra):
    return {"module": "keras.layers", "class_name": "Dense", "config": {"name": "d", "units": 2}, **extra}


def _model(*layers):
    return {"class_name": "Functional", "config": {"name": "m", "layers": list(layers)}}


@pytest.mark.parametrize("flavor", ["keras3", "tf_keras"])
def test_builtin_configs_pass(flavor):
    init = {"module": "keras.initializers", "class_name": "GlorotUniform", "config": {"seed": None}}
    relu = {"module": "builtins", "class_name": "function", "config": "relu", "registered_name": "function"}
    _check(_model(_dense(), {"class_name": "Dense", "config": {"kernel_initializer": init, "activation": relu}}), flavor)
    _check({"class_name": "__tuple__", "items": [None, 3]}, flavor)


@pytest.mark.parametrize(
    "obj, needles",
    [
        (_dense(module="os"), ["'d'", "Dense", "module 'os'"]),  # a module outside Keras
        (_dense(registered_name="Evil>Dense"), ["'d'", "Dense"]),  # Keras looks a registered name up first
        ({"module": "os", "class_name": "function", "config": "system"}, ["function system", "module 'os'"]),
        ({"class_name": "function", "config": "not_a_keras_function"}, ["function not_a_keras_function"]),
        ({"class_name": "__lambda__", "config": {"code": "..."}}, ["lambda"]),
        ({"class_name": "TFOpLambda", "config": {"name": "op", "function": "io.write_file"}}, ["'op'", "TFOpLambda"]),
        ({"class_name": "TorchModuleWrapper", "config": {"name": "t"}}, ["'t'", "TorchModuleWrapper"]),
        ({"class_name": "__class__", "config": {}}, ["__class__"]),  # an attribute of the module, not a layer
    ],
)
def test_config_objects_that_are_not_keras_builtins_are_refused(obj, needles):
    activation_holder = {"class_name": "Dense", "config": {"name": "outer", "activation": obj}}
    with pytest.raises(ModelLoadError) as info:
        _check(_model(activation_holder))
    for needle in needles:
        assert needle in str(info.value), str(info.value)


def test_custom_objects_make_a_class_known():
    custom = {"module": "my_pkg.layers", "class_name": "Mine", "registered_name": "my_pkg>Mine", "config": {"name": "x"}}
    with pytest.raises(ModelLoadError, match="'x' has custom class 'Mine' from module 'my_pkg.layers'"):
        _check(_model(custom))
    _check(_model(custom), custom_objects={"my_pkg>Mine": object})
    _check(_model(custom), custom_objects={"Mine": object})


def test_unsafe_mode_still_names_a_class_it_cannot_find():
    with pytest.raises(ModelLoadError, match="cannot find") as info:
        _check(_model({"class_name": "Mine", "config": {}}), safe_mode=False)
    assert "--custom-objects" in info.value.hint
    _check(_model({"class_name": "Lambda", "config": {}}), safe_mode=False)


def test_class_name_that_is_not_a_string():
    with pytest.raises(ModelLoadError, match=r"config\.layers\[0\]"):
        _check(_model({"class_name": ["Lambda"], "config": {}}))


def test_depth_is_bounded():
    deep: dict = {"class_name": "Dense", "config": {}}
    limit = _safety().MAX_DEPTH
    for _ in range(limit + 5):
        deep = {"x": deep}
    with pytest.raises(ModelLoadError, match=f"deeper than {limit}"):
        _check(deep)


def test_size_is_bounded(monkeypatch):
    monkeypatch.setattr(_safety(), "MAX_NODES", 1000)
    with pytest.raises(ModelLoadError, match="more than 1,000 values"):
        _check({"layers": [_dense() for _ in range(500)]})


def test_json_too_deep_to_parse_is_an_error(tmp_path):
    path = tmp_path / "deep.keras"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", "[" * 200_000 + "]" * 200_000)
    with pytest.raises(ModelLoadError, match="deep.keras.*not valid JSON"):
        load_source(path)


def test_damaged_keras_metadata_is_an_error(models, tmp_path):
    import shutil

    src, _ = models["tf_keras.savedmodel", "custom_layer"]
    copy = tmp_path / "sm"
    shutil.copytree(src, copy)
    (copy / "keras_metadata.pb").write_bytes(b"\xff\xff\xff not a protobuf")
    with pytest.raises(ModelLoadError, match="keras_metadata.pb is damaged"):
        load_source(copy)
