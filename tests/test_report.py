"""Reports are frozen values that round-trip through their JSON form."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

import tfcompress
from tfcompress.export.report import ConvertReport
from tfcompress.keras_compat import tf_keras
from tfcompress.report import CompressReport, RecipeRef, StageReport


def _mlp():
    return tf_keras.Sequential([tf_keras.Input((8,)), tf_keras.layers.Dense(16, activation="relu"),
                                tf_keras.layers.Dense(3)], name="mlp")


@pytest.fixture(scope="module")
def converted():
    x = np.random.default_rng(0).random((64, 8), dtype=np.float32)
    return tfcompress.convert(_mlp(), (x, np.zeros(64, int)), calib_samples=32, verify_samples=32, latency_runs=3)


def test_convert_report_round_trips(converted):
    report = converted.report
    assert isinstance(report, ConvertReport)
    back = ConvertReport.from_dict(json.loads(json.dumps(report.to_dict())))
    assert back == report
    assert back.predicted_latency is not None and back.predicted_latency.total_ms > 0


def test_infinite_snr_is_null_in_json_and_infinite_again(converted):
    report = converted.report
    out = dataclasses.replace(report.verify.outputs[0], snr_db=math.inf)
    perfect = dataclasses.replace(report, verify=dataclasses.replace(report.verify, outputs=(out,)))
    d = json.loads(json.dumps(perfect.to_dict()))
    assert d["verify"]["outputs"][0]["snr_db"] is None
    assert ConvertReport.from_dict(d).verify.outputs[0].snr_db == math.inf


def test_compress_report_round_trips(converted):
    stage = StageReport(0, "prune", 1, 0.9, 0.89, 1000, 800, 0.02, 0.021, 0.5, 17, 3.5)
    report = CompressReport(converted.report, RecipeRef("r", "/tmp/r.yaml"), (stage,))
    assert CompressReport.from_dict(json.loads(json.dumps(report.to_dict()))) == report


def test_from_dict_refuses_other_documents(converted):
    d = converted.report.to_dict()
    with pytest.raises(ValueError, match="schema"):
        ConvertReport.from_dict({**d, "schema": "tfcompress.device_profile/1"})
    with pytest.raises(ValueError, match="size"):
        ConvertReport.from_dict({**d, "size": {"tflite_bytes": "many"}})
    with pytest.raises(ValueError, match="convert"):
        CompressReport.from_dict(d)
