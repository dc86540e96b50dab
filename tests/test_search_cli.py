"""`tfcompress search`: help, user errors (exit 2, no traceback), and one small end-to-end run."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tfcompress.cli import main

from test_search import trained_files


def run(*args):
    return CliRunner().invoke(main, ["search", *[str(a) for a in args]], terminal_width=200)


def everything(result) -> str:
    return result.output + (result.stderr if result.stderr_bytes is not None else "")


def assert_user_error(result, *needles):
    out = everything(result)
    assert result.exit_code == 2, out
    assert "Traceback" not in out and isinstance(result.exception, SystemExit), out
    assert "error:" in out and "hint:" in out, out
    for needle in needles:
        assert needle in out, out


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """m.keras (the tiny CNN, trained 2 epochs) and d.npz; the budget: 90% of its predicted host latency."""
    d = tmp_path_factory.mktemp("search_cli")
    base = trained_files(d, seed=1)
    return {"dir": d, "model": d / "m.keras", "data": d / "d.npz", "budget": round(0.9 * base, 6)}


def test_help_shows_the_examples():
    r = run("--help")
    assert r.exit_code == 0, r.output
    assert "Examples:" in r.output
    assert "tfcompress search m.keras --data d.npz --device host --latency-ms 1.0 -o out/" in r.output
    assert "tfcompress compress m.keras --data d.npz --recipe out/best.yaml" in r.output
    for flag in ("--latency-ms", "--size-kb", "--strategy", "--executor", "--keep-levels", "--fresh", "--json"):
        assert flag in r.output
    assert "search" in CliRunner().invoke(main, ["--help"]).output


def test_no_budget_is_a_user_error(tmp_path):
    r = run(tmp_path / "m.keras", "--data", tmp_path / "d.npz", "-o", tmp_path / "out")
    assert_user_error(r, "no budget given", "--latency-ms")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("levels, needle", [("1,half", "is not a list of numbers"), ("0.5,0.25", "keep_levels"),
                                            ("1,0.5,0.75", "keep_levels"), ("1,0", "keep_levels")])
def test_bad_keep_levels_are_user_errors(tmp_path, levels, needle):
    r = run(tmp_path / "m.keras", "--data", tmp_path / "d.npz", "-o", tmp_path / "out", "--latency-ms", "1",
            "--keep-levels", levels)
    assert_user_error(r, needle)


def test_bad_resolution_levels_are_user_errors(tmp_path):
    r = run(tmp_path / "m.keras", "--data", tmp_path / "d.npz", "-o", tmp_path / "out", "--latency-ms", "1",
            "--resolution-levels", "1,2")
    assert_user_error(r, "resolution_levels")


def test_bad_option_values_exit_2(tmp_path):
    for args in (["--latency-ms", "0"], ["--latency-ms", "1", "--strategy", "random"],
                 ["--latency-ms", "1", "--executor", "threads"], ["--latency-ms", "1", "--step", "1.5"]):
        r = run(tmp_path / "m.keras", "--data", tmp_path / "d.npz", "-o", tmp_path / "out", *args)
        assert r.exit_code == 2 and "Traceback" not in everything(r), (args, everything(r))


def test_missing_files_are_user_errors(files, tmp_path):
    r = run(files["model"], "--data", tmp_path / "nope.npz", "-o", tmp_path / "out", "--latency-ms", "1")
    assert_user_error(r, "nope.npz")
    r = run(tmp_path / "nope.keras", "--data", files["data"], "-o", tmp_path / "out", "--latency-ms", "1")
    assert_user_error(r, "nope.keras")
    assert not (tmp_path / "out" / "best.tflite").exists()


@pytest.mark.slow
def test_search_end_to_end_then_json_on_resume(files):
    out = files["dir"] / "out"
    common = [files["model"], "--data", files["data"], "-o", out, "--latency-ms", files["budget"], "--executor",
              "inline", "--measure", "none", "--keep-levels", "1,0.5", "--no-swaps", "--trial-steps", "2",
              "--trial-samples", "128", "--max-acc-drop", "0"]
    r = run(*common, "--final-epochs", "1")
    text = everything(r)
    assert r.exit_code in (0, 1), text
    assert "Traceback" not in text
    assert "Pareto front" in r.output and "| trial acc" in r.output and "chosen" in r.output
    assert "budget latency_predicted: met" in r.output
    for name in ("best.tflite", "best.report.json", "best.meta.json", "best.yaml", "pareto.json", "pareto.md",
                 "pareto.png", "search.json"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "search.json").read_text())
    assert r.exit_code == (0 if all(summary["budget_met"].values()) else 1)
    assert set(summary["budget_met"]) == {"latency_predicted", "accuracy"}
    assert summary["chosen"]["predicted_ms"] <= files["budget"] < summary["original"]["predicted_ms"]
    assert not summary["genome"]["swap"], "--no-swaps"
    assert set(summary["genome"]["keep"].values()) <= {0.5}, "--keep-levels 1,0.5"
    assert "distill" in (out / "best.yaml").read_text()
    replay = CliRunner().invoke(main, ["compress", str(files["model"]), "--data", str(files["data"]), "--recipe",
                                       str(out / "best.yaml"), "-o", str(files["dir"] / "again.tflite"),
                                       "--no-stage-metrics"])
    assert replay.exit_code == 0, everything(replay)
    from tfcompress.hardware.predict import predict_latency_ms

    for tflite in (out / "best.tflite", files["dir"] / "again.tflite"):  # the same architecture, by the LUT
        assert predict_latency_ms(tflite, "host").total_ms == pytest.approx(summary["chosen"]["predicted_ms"], rel=1e-3)

    # The same search with another final fine-tune (not part of what is resumed): every trial is resumed and
    # only the final model is made again.
    again = run(*common, "--final-epochs", "0", "--json")
    assert again.stdout.startswith("{"), everything(again)
    doc = json.loads(again.stdout)
    assert again.exit_code == (0 if all(doc["budget_met"].values()) else 1), everything(again)
    assert doc["genome"] == summary["genome"] and doc["trials_run"] == 0
    assert doc["trials_resumed"] == summary["trials_run"] >= 1
    assert set(doc["budget_met"]) == {"latency_predicted", "accuracy"}
    assert "Pareto front" not in again.stdout
    assert "distill" not in (out / "best.yaml").read_text()


@pytest.mark.slow
def test_measure_device_writes_a_bundle_says_what_to_do_and_exits_3(files):
    out = files["dir"] / "device"
    r = run(files["model"], "--data", files["data"], "-o", out, "--latency-ms", files["budget"], "--executor",
            "inline", "--measure", "device", "--keep-levels", "1,0.5", "--no-swaps", "--trial-steps", "2",
            "--trial-samples", "128", "--finalists", "2")
    text = everything(r)
    assert r.exit_code == 3, text
    bundle = out / "device" / "round-1"
    assert "waiting for the device" in r.output and "edge_profile.py" in r.output and str(bundle) in r.output
    assert (bundle / "bundle.json").is_file() and not (out / "best.tflite").exists()
    assert len(json.loads((bundle / "finalists.json").read_text())) <= 3, "--finalists 2 and the original"
