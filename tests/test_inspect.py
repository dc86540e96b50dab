"""`tfcompress inspect` backend: per-op .tflite tables and per-layer Keras tables."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console

from tfcompress.errors import ModelLoadError
from tfcompress.inspect import (
    KerasInspection,
    TfliteInspection,
    inspect_keras,
    inspect_tflite,
    render_keras,
    render_tflite,
)
from tfcompress.keras_compat import keras3, tf, tf_keras

FILTERS = 8
CLASSES = 10


def tiny_cnn(K: Any) -> Any:
    """Conv2D+BN+ReLU6, DepthwiseConv2D+ReLU6, GAP, Dense on 28x28x1 (tf_keras or Keras 3)."""
    inp = K.Input((28, 28, 1), name="image")
    x = K.layers.Conv2D(FILTERS, 3, strides=2, padding="same", name="stem_conv")(inp)
    x = K.layers.BatchNormalization(name="stem_bn")(x)
    x = K.layers.ReLU(6.0, name="stem_relu")(x)
    x = K.layers.DepthwiseConv2D(3, padding="same", name="dw_conv")(x)
    x = K.layers.GlobalAveragePooling2D(name="gap")(x)
    out = K.layers.Dense(CLASSES, name="logits")(x)
    return K.Model(inp, out, name="tiny")


def _representative() -> Iterator[list[np.ndarray]]:
    rng = np.random.default_rng(1)
    for _ in range(8):
        yield [rng.random((1, 28, 28, 1), dtype=np.float32)]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tf_keras tiny CNN converted to full int8 (int8 I/O) and float16, written to disk once."""
    model = tiny_cnn(tf_keras)
    folder = tmp_path_factory.mktemp("inspect")
    out: dict[str, Path] = {}
    for mode in ("int8", "float16"):
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        if mode == "int8":
            conv.representative_dataset = _representative
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
        else:
            conv.target_spec.supported_types = [tf.float16]
        out[mode] = folder / f"tiny_{mode}.tflite"
        out[mode].write_bytes(conv.convert())
    return out


@pytest.fixture(scope="module")
def int8(files: dict[str, Path]) -> TfliteInspection:
    return inspect_tflite(files["int8"])


def _row(ins: TfliteInspection, op_type: str) -> Any:
    return next(r for r in ins.ops if r.op_type == op_type)


def _text(render: Any, ins: Any) -> str:
    console = Console(record=True, width=200, color_system=None)
    render(ins, console)
    return console.export_text()


# ------------------------------------------------------------------ .tflite


def test_tflite_rows(int8: TfliteInspection) -> None:
    conv = _row(int8, "CONV_2D")
    assert conv.input_dtypes == ("int8",) and conv.output_dtype == "int8"
    assert conv.output_shape == (1, 14, 14, FILTERS)
    assert conv.params == FILTERS * 3 * 3 * 1 + FILTERS  # weights + int32 bias
    assert conv.weight_bytes == FILTERS * 3 * 3 + 4 * FILTERS
    assert conv.quantization == f"per-channel int8 ({FILTERS} scales)"
    assert not conv.is_float
    assert _row(int8, "MEAN").quantization == "per-tensor int8"  # no weights: its output
    assert _row(int8, "FULLY_CONNECTED").output_shape == (1, CLASSES)
    assert [r.index for r in int8.ops] == list(range(len(int8.ops)))


def test_tflite_totals(int8: TfliteInspection, files: dict[str, Path]) -> None:
    data = files["int8"].read_bytes()
    t = int8.totals
    assert t.file_bytes == len(data)
    assert t.gzip_bytes == len(gzip.compress(data, compresslevel=9, mtime=0)) < t.file_bytes
    assert t.ops == len(int8.ops) == sum(int8.op_counts.values())
    assert t.float_ops == 0
    assert t.weight_bytes == sum(t.bytes_by_dtype.values()) > 0
    assert set(t.bytes_by_dtype) <= {"int8", "int32"}
    assert t.params >= sum(r.params for r in int8.ops if r.op_type != "MEAN")


def test_tflite_io(int8: TfliteInspection) -> None:
    (inp,) = int8.inputs
    (out,) = int8.outputs
    assert inp.dtype == out.dtype == "int8"
    assert inp.scale > 0 and out.scale > 0
    assert inp.shape == (1, 28, 28, 1) and out.shape == (1, CLASSES)


def test_tflite_float16(files: dict[str, Path]) -> None:
    ins = inspect_tflite(files["float16"])
    assert "float16" in ins.totals.bytes_by_dtype
    dequantize = [r for r in ins.ops if r.op_type == "DEQUANTIZE"]
    assert dequantize and all(r.quantization == "float16" and not r.is_float for r in dequantize)
    conv = _row(ins, "CONV_2D")
    assert conv.is_float and conv.quantization == "float32" and conv.input_dtypes[0] == "float32"
    assert ins.totals.float_ops > 0 and ins.inputs[0].dtype == "float32"


def test_tflite_from_bytes_matches_path(int8: TfliteInspection, files: dict[str, Path]) -> None:
    from_bytes = inspect_tflite(files["int8"].read_bytes())
    assert from_bytes.source == "model bytes"
    assert from_bytes.ops == int8.ops and from_bytes.totals == int8.totals


def test_tflite_to_dict_is_json(int8: TfliteInspection) -> None:
    d = json.loads(json.dumps(int8.to_dict()))
    assert d["totals"]["file_bytes"] == int8.totals.file_bytes
    assert d["inputs"][0]["dtype"] == "int8" and d["inputs"][0]["scale"] > 0
    assert d["ops"][0]["op_type"] == int8.ops[0].op_type
    assert d["op_counts"] == int8.op_counts


def test_render_tflite(int8: TfliteInspection) -> None:
    text = _text(render_tflite, int8)
    for needle in ("CONV_2D", "DEPTHWISE_CONV_2D", f"per-channel int8 ({FILTERS} scales)", "serving_default_image:0", "gzip"):
        assert needle in text


def test_inspect_tflite_rejects_non_tflite(tmp_path: Path) -> None:
    path = tmp_path / "notes.tflite"
    path.write_text("hello\n" * 10)
    with pytest.raises(ModelLoadError, match="TFL3"):
        inspect_tflite(path)


# ------------------------------------------------------------------ Keras


@pytest.mark.parametrize(("K", "flavor"), [(tf_keras, "tf_keras"), (keras3, "keras3")], ids=["tf_keras", "keras3"])
def test_inspect_keras(K: Any, flavor: str) -> None:
    model = tiny_cnn(K)
    ins = inspect_keras(model)
    assert isinstance(ins, KerasInspection) and ins.flavor == flavor and ins.name == "tiny"
    rows = {r.name: r for r in ins.layers}
    assert {"stem_conv", "stem_bn", "dw_conv", "logits"} <= set(rows)
    conv = rows["stem_conv"]
    assert conv.class_name == "Conv2D"
    assert conv.params == conv.trainable_params == FILTERS * 9 + FILTERS
    assert conv.output_shapes == ((None, 14, 14, FILTERS),)
    assert conv.weight_dtypes == ("float32",) and conv.float32_bytes == 4 * conv.params
    bn = rows["stem_bn"]
    assert bn.params == 4 * FILTERS and bn.trainable_params == 2 * FILTERS
    assert rows["logits"].output_shapes == ((None, CLASSES),)
    assert rows["gap"].params == 0 and rows["gap"].weight_dtypes == ()
    t = ins.totals
    assert t.params == model.count_params() == sum(r.params for r in ins.layers)
    assert t.non_trainable_params == 2 * FILTERS
    assert t.trainable_params + t.non_trainable_params == t.params
    assert t.float32_bytes == t.weight_bytes == 4 * t.params
    assert t.layers == len(model.layers)
    d = json.loads(json.dumps(ins.to_dict()))
    assert d["layers"][-1]["output_shapes"] == [[None, CLASSES]]
    text = _text(render_keras, ins)
    assert "stem_conv" in text and "Conv2D" in text and f"{t.params:,}" in text
