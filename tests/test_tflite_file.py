"""Reading .tflite flatbuffers without TensorFlow: facts checked against real converter output."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from tfcompress.errors import ModelLoadError
from tfcompress.export.tflite_file import TfliteModel, layer_names_for_ops, read_tflite
from tfcompress.keras_compat import keras3, tf, tf_keras

FILTERS = 8
CLASSES = 10
LAYER_NAMES = ("stem_conv", "stem_bn", "stem_relu", "dw_conv", "dw_relu", "gap", "logits")


def tiny_cnn(K: Any) -> Any:
    """Conv2D+BN+ReLU6, DepthwiseConv2D+ReLU6, GAP, Dense on 28x28x1 (tf_keras or Keras 3)."""
    inp = K.Input((28, 28, 1), name="image")
    x = K.layers.Conv2D(FILTERS, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inp)
    x = K.layers.BatchNormalization(name="stem_bn")(x)
    x = K.layers.ReLU(6.0, name="stem_relu")(x)
    x = K.layers.DepthwiseConv2D(3, padding="same", name="dw_conv")(x)
    x = K.layers.ReLU(6.0, name="dw_relu")(x)
    x = K.layers.GlobalAveragePooling2D(name="gap")(x)
    out = K.layers.Dense(CLASSES, name="logits")(x)
    return K.Model(inp, out, name="tiny")


def _representative() -> Iterator[list[np.ndarray]]:
    rng = np.random.default_rng(0)
    for _ in range(8):
        yield [rng.random((1, 28, 28, 1), dtype=np.float32)]


def convert(model: Any, mode: str) -> bytes:
    """Convert with the TFLite converter: 'int8' (full int8, int8 I/O), 'float' or 'float16'."""
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode == "int8":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = _representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    elif mode == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    return conv.convert()


@pytest.fixture(scope="module")
def blobs() -> dict[tuple[str, str], bytes]:
    """{(flavor, mode): .tflite bytes}, converted once for the module."""
    out: dict[tuple[str, str], bytes] = {}
    for flavor, K in (("tf_keras", tf_keras), ("keras3", keras3)):
        model = tiny_cnn(K)
        for mode in ("int8", "float") if flavor == "keras3" else ("int8", "float", "float16"):
            out[(flavor, mode)] = convert(model, mode)
    return out


@pytest.fixture(scope="module")
def int8(blobs: dict[tuple[str, str], bytes]) -> TfliteModel:
    return read_tflite(blobs[("tf_keras", "int8")])


@pytest.fixture(scope="module")
def float32(blobs: dict[tuple[str, str], bytes]) -> TfliteModel:
    return read_tflite(blobs[("tf_keras", "float")])


@pytest.fixture(scope="module")
def float16(blobs: dict[tuple[str, str], bytes]) -> TfliteModel:
    return read_tflite(blobs[("tf_keras", "float16")])


def _op(model: TfliteModel, op_type: str) -> Any:
    return next(op for op in model.operators if op.op_type == op_type)


# ------------------------------------------------------------------ facts


def test_int8_io_dtypes_and_scales(int8: TfliteModel) -> None:
    for detail in int8.input_details() + int8.output_details():
        assert detail.dtype == "int8"
        assert detail.scale > 0.0
        assert -128 <= detail.zero_point <= 127
    (inp,) = int8.input_details()
    assert inp.shape == (1, 28, 28, 1)
    assert inp.shape_signature == (-1, 28, 28, 1)
    assert int8.output_details()[0].shape == (1, CLASSES)


def test_conv_weights_are_per_channel_int8(int8: TfliteModel) -> None:
    conv = _op(int8, "CONV_2D")
    weights = int8.tensors[conv.inputs[1]]
    assert weights.is_constant and weights.dtype == "int8"
    assert weights.shape == (FILTERS, 3, 3, 1)
    assert len(weights.scales) == FILTERS and weights.per_channel
    assert weights.quantized_dimension == 0
    assert weights.nbytes == FILTERS * 3 * 3
    assert all(s > 0 for s in weights.scales)
    assert conv.compute_dtype == "int8"
    dw = _op(int8, "DEPTHWISE_CONV_2D")
    dw_weights = int8.tensors[dw.inputs[1]]
    assert len(dw_weights.scales) == dw_weights.shape[dw_weights.quantized_dimension] == FILTERS


def test_full_int8_has_no_float_ops(int8: TfliteModel) -> None:
    assert int8.float_ops() == []
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"} <= set(int8.op_counts())
    for row in int8.op_dtype_table():
        op_type, inputs, outputs, count = row  # rows unpack as 4-tuples
        assert outputs == ("int8",) and count >= 1
        assert not set(inputs) & {"float32", "float16"}
    assert set(int8.weight_bytes_by_dtype()) <= {"int8", "int32"}


def test_float_model_has_float_ops_and_no_quantize(float32: TfliteModel) -> None:
    counts = float32.op_counts()
    assert "QUANTIZE" not in counts and "DEQUANTIZE" not in counts
    float_ops = float32.float_ops()
    assert {op.op_type for op in float_ops} >= {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}
    assert all(op.compute_dtype == "float32" for op in float_ops)
    (inp,) = float32.input_details()
    assert inp.dtype == "float32" and inp.scale == 0.0 and inp.scales == ()
    assert float32.tensors[_op(float32, "CONV_2D").inputs[1]].dtype == "float32"


def test_float16_model_stores_float16_constants(float16: TfliteModel) -> None:
    f16 = [t for t in float16.constant_tensors() if t.dtype == "float16"]
    assert f16, "no float16 constants"
    assert float16.weight_bytes_by_dtype()["float16"] == sum(t.nbytes for t in {t.buffer: t for t in f16}.values())
    dequantize = [op for op in float16.operators if op.op_type == "DEQUANTIZE"]
    assert dequantize and all(op.input_dtypes == ("float16",) and op.constant_inputs == (True,) for op in dequantize)
    assert all(op.compute_dtype == "float32" for op in dequantize)  # no non-constant input: the output's dtype
    float_types = {op.op_type for op in float16.float_ops()}
    assert "CONV_2D" in float_types and "DEQUANTIZE" not in float_types


def test_model_level_fields(int8: TfliteModel, blobs: dict[tuple[str, str], bytes]) -> None:
    assert int8.file_size == len(blobs[("tf_keras", "int8")])
    assert int8.subgraph_count == 1 and int8.version == 3
    assert "serving_default" in int8.signature_names
    assert "min_runtime_version" in int8.metadata_names
    assert int8.constant_bytes == sum(int8.weight_bytes_by_dtype().values()) > 0
    assert all(not t.sparsity and not t.is_variable for t in int8.tensors)
    activations = [t for t in int8.tensors if not t.is_constant]
    assert activations and all(t.nbytes == 0 for t in activations)


def test_read_from_path_matches_bytes(tmp_path: Any, blobs: dict[tuple[str, str], bytes]) -> None:
    path = tmp_path / "m.tflite"
    path.write_bytes(blobs[("keras3", "int8")])
    assert read_tflite(path) == read_tflite(blobs[("keras3", "int8")])
    assert read_tflite(str(path)).tensors == read_tflite(path).tensors


@pytest.mark.parametrize("key", [("tf_keras", "int8"), ("tf_keras", "float16"), ("keras3", "float")])
def test_agrees_with_interpreter(blobs: dict[tuple[str, str], bytes], key: tuple[str, str]) -> None:
    from ai_edge_litert.interpreter import Interpreter

    blob = blobs[key]
    interp = Interpreter(model_content=blob)
    model = read_tflite(blob)
    assert len(model.tensors) == len(interp.get_tensor_details())
    for ours, theirs in zip(
        model.input_details() + model.output_details(), interp.get_input_details() + interp.get_output_details()
    ):
        assert ours.name == theirs["name"] and ours.index == theirs["index"]
        assert ours.shape == tuple(theirs["shape"])
        assert ours.shape_signature == tuple(theirs["shape_signature"])
        assert ours.dtype == np.dtype(theirs["dtype"]).name
        assert np.float32(ours.scale) == np.float32(theirs["quantization"][0])
        assert ours.zero_point == theirs["quantization"][1]
    ops = interp._get_ops_details()  # the interpreter's own op list; no public equivalent
    assert [op.op_type for op in model.operators] == [d["op_name"] for d in ops]
    assert [op.inputs for op in model.operators] == [tuple(int(i) for i in d["inputs"]) for d in ops]


# ------------------------------------------------------------------ op -> layer names


@pytest.mark.parametrize("flavor", ["tf_keras", "keras3"])
@pytest.mark.parametrize("mode", ["int8", "float"])
def test_layer_names_for_ops(blobs: dict[tuple[str, str], bytes], flavor: str, mode: str) -> None:
    model = read_tflite(blobs[(flavor, mode)])
    mapping = layer_names_for_ops(model, model.operators, list(LAYER_NAMES))
    by_type = {op.op_type: mapping[op.index] for op in model.operators}
    assert by_type["CONV_2D"][0] == "stem_conv"
    assert by_type["DEPTHWISE_CONV_2D"][0] == "dw_conv"
    assert by_type["FULLY_CONNECTED"] == ["logits"]
    assert by_type["MEAN"] == ["gap"]
    assert set(mapping) == {op.index for op in model.operators}


@pytest.mark.parametrize("K", [tf_keras, keras3], ids=["tf_keras", "keras3"])
def test_layer_names_with_suffix_lookalikes(K: Any) -> None:
    """Layers 'conv' and 'conv_1': Keras 3 traces 'conv' in scope 'conv_1', tf_keras does not."""
    inp = K.Input((8, 8, 1))
    x = K.layers.Conv2D(4, 3, activation="relu", name="conv")(inp)
    x = K.layers.Conv2D(4, 3, name="conv_1")(x)
    x = K.layers.Flatten(name="flat")(x)
    out = K.layers.Dense(3, activation="softmax", name="head")(x)
    keras_model = K.Model(inp, out)
    model = read_tflite(convert(keras_model, "float"))
    mapping = layer_names_for_ops(model, None, [layer.name for layer in keras_model.layers])
    convs = [mapping[op.index] for op in model.operators if op.op_type == "CONV_2D"]
    assert convs == [["conv"], ["conv_1"]]
    assert mapping[_op(model, "FULLY_CONNECTED").index] == ["head"]
    # the fused softmax writes the model output ("StatefulPartitionedCall:0"): named via its input
    assert mapping[_op(model, "SOFTMAX").index] == ["head"]


def test_layer_names_unknown_layers_give_empty_lists(int8: TfliteModel) -> None:
    mapping = layer_names_for_ops(int8, None, ["not_a_layer"])
    assert mapping and all(names == [] for names in mapping.values())


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty (0 bytes)"),
        (b"TFL", "too short"),
        (b"just some text, not a model\n" * 4, "no 'TFL3' file identifier"),
        (b"PK\x03\x04" + b"\0" * 60, "zip archive"),
    ],
    ids=["zero-byte", "tiny", "text", "zip"],
)
def test_bad_files_raise_model_load_error(tmp_path: Any, content: bytes, message: str) -> None:
    path = tmp_path / "bad.tflite"
    path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=re.escape(message)) as info:
        read_tflite(path)
    assert str(path) in info.value.message and "\n" not in info.value.message


def test_missing_file_and_directory(tmp_path: Any) -> None:
    with pytest.raises(ModelLoadError, match="not found"):
        read_tflite(tmp_path / "nope.tflite")
    with pytest.raises(ModelLoadError, match="directory"):
        read_tflite(tmp_path)


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9, 0.999])
def test_truncated_file_raises_model_load_error(blobs: dict[tuple[str, str], bytes], fraction: float) -> None:
    blob = blobs[("tf_keras", "int8")]
    with pytest.raises(ModelLoadError, match="truncated|corrupt"):
        read_tflite(blob[: int(len(blob) * fraction)])


def test_imports_no_tensorflow() -> None:
    code = (
        "import sys; import tfcompress.export.tflite_file, tfcompress.inspect; "
        "sys.exit('tensorflow' in sys.modules or 'keras' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
