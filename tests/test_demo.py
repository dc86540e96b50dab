"""`tfcompress demo`: the built-in main job, shortened (the 10-epoch run is in benchmarks/)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tfcompress.cli import main
from tfcompress.export.tflite_file import read_tflite


@pytest.mark.slow
def test_demo_int8_within_half_a_point_of_float(fmnist, tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(main, ["demo", "--epochs", "2", "--train-samples", "20000", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "done:" in result.output
    tfl = read_tflite(out / "fmnist_cnn_int8.tflite")
    assert [d.dtype for d in tfl.input_details()] == ["int8"]
    assert [d.dtype for d in tfl.output_details()] == ["int8"]
    report = json.loads((out / "fmnist_cnn_int8.report.json").read_text())
    acc = report["verify"]["accuracy"]
    assert acc["samples"] == 10000, "verified on the whole test set"
    assert acc["source"] > 0.7
    assert abs(acc["tflite"] - acc["source"]) <= 0.005
    meta = json.loads((out / "fmnist_cnn_int8.meta.json").read_text())
    assert meta["labels"][0] == "T-shirt/top"
    scaling = meta["preprocessing"]["inputs"]["image"]["scaling"]
    assert scaling["scale"] == [pytest.approx(1 / 255)]
    # second run: the cached model is reused
    again = CliRunner().invoke(main, ["demo", "--epochs", "2", "--train-samples", "20000", "--out", str(out)])
    assert again.exit_code == 0 and "cached" in again.output
