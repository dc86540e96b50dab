"""The shipped `mobilenet-swap` recipe through `tfcompress compress MODEL --recipe mobilenet-swap`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from tfcompress.cli import main
from tfcompress.keras_compat import keras3
from tfcompress.recipe import load_recipe


def plain_cnn():
    keras3.utils.set_random_seed(0)
    L = keras3.layers
    inp = keras3.Input((12, 12, 1))
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="stem")(inp)  # 72 weights: stays
    x = L.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="c1")(x)  # strides: separable
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="c2")(x)  # a residual fits: inverted residual
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras3.Model(inp, L.Dense(3, name="logits")(x))


def test_recipe_is_shipped_and_chains_swap_distill_qat():
    recipe = load_recipe("mobilenet-swap")
    assert [s.technique for s in recipe.stages] == ["swap", "distill", "qat"]
    assert recipe.stages[0].params.target == "auto" and recipe.stages[1].params.hints == "auto"
    assert recipe.export.mode == "int8"


@pytest.mark.slow
def test_compress_cli_with_mobilenet_swap(tmp_path):
    model_path, data_path = tmp_path / "plain.keras", tmp_path / "train.npz"
    plain_cnn().save(model_path)
    rng = np.random.default_rng(0)
    x = rng.random((120, 12, 12, 1), dtype=np.float32)
    np.savez(data_path, x=x, y=(x[:, :6, :, 0].mean(axis=(1, 2)) > x[:, 6:, :, 0].mean(axis=(1, 2))).astype(int))
    out, logs = tmp_path / "swapped.tflite", tmp_path / "logs"
    result = CliRunner().invoke(main, ["compress", str(model_path), "--recipe", "mobilenet-swap", "--data",
                                       str(data_path), "-o", str(out), "--log-dir", str(logs), "--no-stage-metrics",
                                       "--device", "none", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(out.with_suffix(".report.json").read_text())
    assert [s["technique"] for s in report["stages"]] == ["swap", "distill", "qat"]
    assert report["convert"]["io_dtypes"] == ["int8", "int8"] and not report["convert"]["float_ops"]
    plan = json.loads((logs / "stage0_swap" / "swap_plan.json").read_text())
    assert {s["name"]: s["target"] for s in plan["swaps"]} == {"c1": "separable", "c2": "inverted_residual"}
    assert "stem" in plan["skipped"]
    ops = {row["op"]: row["count"] for row in report["convert"]["op_table"]}
    assert ops["DEPTHWISE_CONV_2D"] == 2 and ops["ADD"] >= 1, "c1's and c2's depthwise convs, c2's shortcut"
    # issue 13: the stage's details (what was swapped, how each new layer started) also show in the terminal
    from rich.console import Console

    from tfcompress.render import render_stages
    from tfcompress.report import CompressReport

    console = Console(record=True, width=80)
    render_stages(CompressReport.from_dict(report), console, wide=False)
    text = console.export_text()
    swap = next(s for s in report["stages"] if s["technique"] == "swap")["details"]
    assert f"stage 0 swap: params {swap['params_before']:,} -> {swap['params_after']:,}" in text, text
    assert "swaps (2):" in text and "c1: target separable; params before 1,152; params after 200" in text, text
    assert "c1_dw: original" in text and "skipped (2): stem, logits" in text, text
    assert max(len(line) for line in text.splitlines()) <= 80
    wide = Console(record=True, width=200)
    render_stages(CompressReport.from_dict(report), wide, wide=True)
    assert "stage 0 swap: swaps (2)" in (text := wide.export_text()) and "params before" in text, text
