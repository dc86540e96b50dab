"""`tfcompress.convert`: formats, modes (checked by reading the flatbuffer), verification, sidecar."""

from __future__ import annotations

import json

import numpy as np
import pytest

import tfcompress
from tfcompress.errors import ConversionError, DataError, ModelLoadError
from tfcompress.export.tflite_file import read_tflite
from tfcompress.keras_compat import keras3, tf_keras
from tfcompress.models import fmnist_cnn

from conftest import random_images

QUICK = {"verify_samples": 32, "latency_runs": 5}


FILTERS = 48  # 3*3*3*48 = 1296 weights: above dynamic-range quantization's 1024 floor


def small_cnn(k=keras3, act="relu"):
    """Conv + BN + activation + depthwise + GAP + Dense on 16x16x3."""
    inp = k.Input((16, 16, 3), name="pixels")
    x = k.layers.Conv2D(FILTERS, 3, padding="same", name="conv")(inp)
    x = k.layers.BatchNormalization(name="bn")(x)
    x = k.layers.Activation(act, name="act")(x)
    x = k.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = k.layers.GlobalAveragePooling2D(name="gap")(x)
    return k.Model(inp, k.layers.Dense(5, name="head")(x), name="small_cnn")


@pytest.fixture(scope="module")
def small_data():
    return random_images(96, (16, 16, 3), seed=1)


# ------------------------------------------------------------------ formats


@pytest.mark.slow
def test_fmnist_cnn_tf_keras_int8_end_to_end(trained_cnn, fmnist, tmp_path):
    _, (xte, yte) = fmnist
    out = tmp_path / "fmnist.tflite"
    res = tfcompress.convert(trained_cnn, (xte[:1200], yte[:1200]), output=out, calib_samples=200, verify_samples=1000)
    tfl = read_tflite(out)
    assert [d.dtype for d in tfl.input_details()] == ["int8"]
    assert [d.dtype for d in tfl.output_details()] == ["int8"]
    assert tfl.float_ops() == []
    v = res.report.verify
    assert v.held_out and v.samples == 1000
    assert v.accuracy.source > 0.75  # a trained model (chance is 0.1)
    assert abs(v.accuracy.delta_pp) <= 1.0
    assert v.outputs[0].top1_agreement > 0.97
    assert v.outputs[0].snr_db > 15
    assert v.latency.median_ms > 0
    # sidecar: the quantization parameters really are the file's
    meta = json.loads(res.meta_path.read_text())
    assert meta["schema"] == "tfcompress.meta/1"
    assert meta["inputs"][0]["scale"] == pytest.approx(tfl.input_details()[0].scale)
    assert meta["inputs"][0]["zero_point"] == tfl.input_details()[0].zero_point
    assert meta["outputs"][0]["dtype"] == "int8"
    assert len(meta["source"]["sha256"]) == 64
    assert meta["versions"]["tensorflow"]
    report = json.loads(res.report_path.read_text())
    assert report["verify"]["accuracy"]["samples"] == 1000
    assert report["size"]["tflite_bytes"] == out.stat().st_size


@pytest.mark.parametrize("fmt", ["keras3.keras", "tf_keras.keras", "tf_keras.h5", "keras3.h5"])
def test_saved_formats_convert_to_int8(tmp_path, small_data, fmt):
    flavor, suffix = fmt.split(".")
    model = small_cnn({"keras3": keras3, "tf_keras": tf_keras}[flavor])
    path = tmp_path / f"m.{suffix}"
    model.save(path)
    res = tfcompress.convert(path, small_data, output=tmp_path / "m.tflite", **QUICK)
    tfl = read_tflite(res.tflite)
    assert [d.dtype for d in tfl.input_details() + tfl.output_details()] == ["int8", "int8"]
    assert res.report.source_format.startswith(f".{suffix}")
    assert res.report.verify.outputs[0].snr_db > 10


def test_plain_savedmodel_converts(tmp_path, small_data):
    model = small_cnn()
    model.export(str(tmp_path / "exported"), verbose=False)
    res = tfcompress.convert(tmp_path / "exported", small_data, **QUICK)
    assert res.report.source_format.startswith("SavedModel")
    assert res.report.io_dtypes == ("int8", "int8")
    assert res.report.verify.outputs[0].snr_db > 10


@pytest.mark.slow
def test_mobilenetv2_int8_bytes_per_parameter(tmp_path):
    model = keras3.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3))
    data = random_images(24, (96, 96, 3)) * 2 - 1
    res = tfcompress.convert(model, data, calib_samples=16, verify_samples=4, latency_runs=3)
    assert res.report.io_dtypes == ("int8", "int8")
    assert res.report.float_ops == ()
    # per-channel scales + zero points put the floor near 1.11 B/param; more = waste
    assert res.report.size.bytes_per_param <= 1.15


@pytest.mark.slow
def test_efficientnetb0_int8(tmp_path):
    model = keras3.applications.EfficientNetB0(weights=None, input_shape=(64, 64, 3))
    data = random_images(12, (64, 64, 3)) * 255
    res = tfcompress.convert(model, data, calib_samples=8, verify_samples=4, latency_runs=3)
    assert res.report.io_dtypes == ("int8", "int8")
    assert res.report.float_ops == ()
    assert res.report.verify is not None


# -------------------------------------------------------------------- modes


def _activation_dtypes(tfl, op_types):
    return {t for op in tfl.operators if op.op_type in op_types for t in op.output_dtypes}


@pytest.mark.parametrize(
    "mode, io, weights, activations",
    [
        ("int8", "int8", "int8", {"int8"}),
        ("int16x8", "int16", "int8", {"int16"}),
        ("float16", "float32", "float16", {"float32"}),
        ("dynamic", "float32", "int8", {"float32"}),
    ],
)
def test_each_mode_produces_the_dtypes_it_promises(small_data, mode, io, weights, activations):
    res = tfcompress.convert(small_cnn(), small_data, mode=mode, **QUICK)
    tfl = read_tflite(res.tflite)
    assert {d.dtype for d in tfl.input_details() + tfl.output_details()} == {io}
    conv_weights = [tfl.tensors[op.inputs[1]] for op in tfl.operators if op.op_type == "CONV_2D"]
    assert conv_weights, "a CONV_2D is expected"
    if mode == "float16":  # fp16 weights are DEQUANTIZEd to float32 before the conv
        assert any(t.dtype == "float16" for t in tfl.tensors if t.is_constant)
    else:
        assert {t.dtype for t in conv_weights} == {weights}
        assert all(len(t.scales) == FILTERS for t in conv_weights), "per-channel: one scale per filter"
    assert _activation_dtypes(tfl, {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}) == activations
    assert res.report.verify.outputs[0].snr_db > 10


@pytest.mark.parametrize("io", ["uint8", "float32"])
def test_int8_with_other_io(small_data, io):
    res = tfcompress.convert(small_cnn(), small_data, io=io, **QUICK)
    tfl = read_tflite(res.tflite)
    assert {d.dtype for d in tfl.input_details() + tfl.output_details()} == {io}
    assert _activation_dtypes(tfl, {"CONV_2D", "DEPTHWISE_CONV_2D"}) == {"int8"}


def test_io_the_mode_cannot_give(small_data):
    with pytest.raises(ConversionError, match="float16 cannot have int8"):
        tfcompress.convert(small_cnn(), small_data, mode="float16", io="int8")


def test_calibrated_mode_without_data():
    with pytest.raises(DataError, match="needs calibration data"):
        tfcompress.convert(small_cnn(), None)


def test_float16_without_data_and_without_verification():
    res = tfcompress.convert(small_cnn(), None, mode="float16", verify=False)
    assert res.report.verify is None and res.report.weight_dtypes


# --------------------------------------------------------- float fallback


def test_op_that_cannot_be_integer_is_named_with_its_layer(small_data, tmp_path):
    out = tmp_path / "elu.tflite"
    with pytest.raises(ConversionError) as info:
        tfcompress.convert(small_cnn(act="elu"), small_data, output=out, **QUICK)
    assert "ELU" in info.value.message and "act" in info.value.message
    assert "--allow-float-fallback" in info.value.hint
    assert list(tmp_path.iterdir()) == []


def test_float_fallback_is_reported(small_data):
    res = tfcompress.convert(small_cnn(act="elu"), small_data, allow_float_fallback=True, **QUICK)
    assert any(op.startswith("ELU") and "act" in op for op in res.report.float_ops)
    assert res.report.io_dtypes == ("int8", "int8")


# ---------------------------------------------------------- failures write nothing


@pytest.mark.parametrize(
    "data, error, match",
    [
        (np.zeros((10, 8, 8, 3), np.float32), DataError, "shape"),
        (np.full((10, 16, 16, 3), np.nan, np.float32), DataError, "NaN"),
        (np.zeros((0, 16, 16, 3), np.float32), DataError, "no samples|empty|0 samples"),
    ],
)
def test_bad_data_fails_before_converting(tmp_path, data, error, match):
    out = tmp_path / "m.tflite"
    with pytest.raises(error, match=match):
        tfcompress.convert(small_cnn(), data, output=out)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_fails_before_work(tmp_path, small_data):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(tfcompress.TfcompressError, match="not a directory|does not exist"):
        tfcompress.convert(small_cnn(), small_data, output=blocker / "m.tflite")


def test_model_errors_surface_as_model_load_error(tmp_path, small_data):
    with pytest.raises(ModelLoadError, match="does not exist"):
        tfcompress.convert(tmp_path / "nope.keras", small_data)


@pytest.mark.slow
def test_fmnist_cnn_keras3_in_memory_matches_tf_keras_size(small_data):
    """The same architecture from either Keras gives the same-size int8 model."""
    data = random_images(40, (28, 28, 1))
    a = tfcompress.convert(fmnist_cnn("keras3"), data, verify=False)
    b = tfcompress.convert(fmnist_cnn("tf_keras"), data, verify=False)
    assert abs(len(a.tflite) - len(b.tflite)) < 2048


# ------------------------------------------------------------------ predicted latency


def test_report_shows_predicted_next_to_measured_latency(small_data, tmp_path):
    out = tmp_path / "m.tflite"
    res = tfcompress.convert(tf_keras.models.clone_model(small_cnn(tf_keras)), small_data, output=out, **QUICK)
    p = res.report.predicted_latency
    assert p.device and p.total_ms > p.overhead_ms > 0 and p.threads == 1
    assert {"conv", "dw", "head"} <= set(p.per_layer_ms), "ops are mapped back to Keras layers"
    assert json.loads(res.report_path.read_text())["predicted_latency"]["total_ms"] == p.total_ms
    assert res.report.verify.latency.median_ms > 0  # measured, beside it


def test_no_prediction_for_other_dtypes_or_when_turned_off(small_data):
    fp16 = tfcompress.convert(small_cnn(tf_keras), None, mode="float16", verify=False)
    assert fp16.report.predicted_latency is None
    assert any("no predicted latency" in n and "float16" in n for n in fp16.report.notes)
    off = tfcompress.convert(small_cnn(tf_keras), small_data, device=None, **QUICK)
    assert off.report.predicted_latency is None and not off.report.notes


def test_unknown_device_fails_before_converting(small_data, tmp_path):
    from tfcompress.errors import TfcompressError

    with pytest.raises(TfcompressError, match="unknown device"):
        tfcompress.convert(small_cnn(tf_keras), small_data, output=tmp_path / "m.tflite", device="pixel99", **QUICK)
    assert not list(tmp_path.iterdir())
