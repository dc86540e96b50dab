"""The CLI: bad input gets one `error:` line + hint, exit code 2, no traceback, no file left."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from tfcompress.cli import main
from tfcompress.keras_compat import keras3, tf_keras

from conftest import random_images


def tiny(k=keras3, act="relu", lam=False):
    inp = k.Input((12, 12, 1), name="img")
    x = k.layers.Conv2D(4, 3, name="conv")(inp)
    x = k.layers.Activation(act, name="act")(x)
    if lam:
        x = k.layers.Lambda(lambda t: t * 0.5, name="halve")(x)
    x = k.layers.GlobalAveragePooling2D(name="gap")(x)
    return k.Model(inp, k.layers.Dense(3, name="head")(x))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    tiny().save(d / "good.keras")
    tiny(act="elu").save(d / "elu.keras")
    tiny(k=tf_keras, lam=True).save(d / "lambda.h5")
    (d / "empty.keras").write_bytes(b"")
    good = (d / "good.keras").read_bytes()
    (d / "truncated.keras").write_bytes(good[: len(good) // 2])
    (d / "notes.h5").write_text("these are my notes, not a model\n")
    x = random_images(80, (12, 12, 1))
    np.savez(d / "data.npz", x=x, y=np.arange(80) % 3)
    np.save(d / "wrong_shape.npy", random_images(10, (20, 20, 1)))
    nan = x.copy()
    nan[7, 0, 0, 0] = np.nan
    np.save(d / "nan.npy", nan)
    np.save(d / "empty.npy", np.zeros((0, 12, 12, 1), np.float32))
    return d


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_user_error(result, *needles):
    out = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert result.exit_code == 2, out
    assert "Traceback" not in out
    assert "error:" in out
    for needle in needles:
        assert needle in out, out
    return out


@pytest.mark.parametrize(
    "model, data, needles",
    [
        ("missing.keras", "data.npz", ["missing.keras", "does not exist"]),
        ("empty.keras", "data.npz", ["empty.keras", "empty"]),
        ("truncated.keras", "data.npz", ["truncated.keras", "not a valid .keras"]),
        ("notes.h5", "data.npz", ["notes.h5", "not an HDF5"]),
        ("lambda.h5", "data.npz", ["halve", "Lambda", "--unsafe"]),
        ("good.keras", "wrong_shape.npy", ["wrong_shape.npy", "shape"]),
        ("good.keras", "nan.npy", ["nan.npy", "NaN"]),
        ("good.keras", "empty.npy", ["empty.npy"]),
        ("elu.keras", "data.npz", ["ELU", "act", "--allow-float-fallback"]),
    ],
)
def test_bad_input_is_a_one_line_error(files, tmp_path, model, data, needles):
    out = tmp_path / "out"
    out.mkdir()
    result = run("convert", files / model, "--data", files / data, "-o", out / "m.tflite")
    assert_user_error(result, *needles)
    assert list(out.iterdir()) == [], "nothing may be left behind"


def test_unwritable_output_directory(files, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    if os.geteuid() == 0:  # root writes anywhere (and missing folders are made): a path under a file cannot be
        (tmp_path / "a_file").write_text("x")
    target = locked if os.geteuid() != 0 else tmp_path / "a_file" / "sub"
    result = run("convert", files / "good.keras", "--data", files / "data.npz", "-o", target / "m.tflite")
    assert_user_error(result, str(target))


def test_int8_without_data_says_so(files, tmp_path):
    result = run("convert", files / "good.keras", "-o", tmp_path / "m.tflite")
    assert_user_error(result, "needs calibration data", "--data")


def test_bad_io_for_mode(files, tmp_path):
    result = run("convert", files / "good.keras", "--mode", "float16", "--io", "int8", "-o", tmp_path / "m.tflite")
    assert_user_error(result, "float16", "--io float32")


def test_unknown_mode_is_a_usage_error(files, tmp_path):
    result = run("convert", files / "good.keras", "--mode", "int4", "-o", tmp_path / "m.tflite")
    assert result.exit_code == 2 and "int4" in result.output


def test_convert_writes_model_report_and_sidecar(files, tmp_path):
    out = tmp_path / "good.tflite"
    result = run("convert", files / "good.keras", "--data", files / "data.npz", "-o", out, "--verify-samples", "40")
    assert result.exit_code == 0, result.output
    assert "int8" in result.output and "host latency" in result.output
    report = json.loads((tmp_path / "good.report.json").read_text())
    meta = json.loads((tmp_path / "good.meta.json").read_text())
    assert report["io_dtypes"] == ["int8", "int8"] and report["verify"]["samples"] == 40
    assert meta["inputs"][0]["dtype"] == "int8"
    assert meta["preprocessing"]["samples"] == 80
    assert out.stat().st_size == report["size"]["tflite_bytes"]


def test_float_fallback_flag_lists_float_ops(files, tmp_path):
    result = run(
        "convert", files / "elu.keras", "--data", files / "data.npz", "-o", tmp_path / "e.tflite",
        "--allow-float-fallback", "--json",
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    assert any("ELU" in op for op in report["float_ops"])


def test_unsafe_flag_allows_lambda(files, tmp_path):
    result = run(
        "convert", files / "lambda.h5", "--data", files / "data.npz", "-o", tmp_path / "l.tflite", "--unsafe", "--no-verify"
    )
    assert result.exit_code == 0, result.output


def test_inspect_tflite_and_keras(files, tmp_path):
    out = tmp_path / "g.tflite"
    assert run("convert", files / "good.keras", "--data", files / "data.npz", "-o", out, "--no-verify").exit_code == 0
    r = run("inspect", out)
    assert r.exit_code == 0, r.output
    assert "CONV_2D" in r.output
    r = run("inspect", out, "--json")
    assert json.loads(r.output)
    r = run("inspect", files / "good.keras")
    assert r.exit_code == 0 and "conv" in r.output


def test_inspect_bad_file(files):
    assert_user_error(run("inspect", files / "notes.h5"), "notes.h5")


def test_help_teaches():
    r = run("convert", "--help")
    assert r.exit_code == 0
    for flag in ("--data", "--mode", "--io", "--calib-samples", "--no-verify", "--allow-float-fallback", "--unsafe"):
        assert flag in r.output


def test_real_process_exit_code_and_stderr(files, tmp_path):
    """Outside CliRunner: exit status 2, message on stderr, no traceback, nothing on stdout."""
    proc = subprocess.run(
        [sys.executable, "-m", "tfcompress.cli", "convert", str(files / "empty.keras"), "--data",
         str(files / "data.npz"), "-o", str(tmp_path / "m.tflite")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error:") and "empty.keras" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "m.tflite").exists()


def test_profile_builds_a_device_profile(files, tmp_path):
    out = tmp_path / "g.tflite"
    assert run("convert", files / "good.keras", "--data", files / "data.npz", "-o", out, "--no-verify").exit_code == 0
    prof = tmp_path / "host.json"
    r = run("profile", out, "-o", prof, "--cache", tmp_path / "cache")
    assert r.exit_code == 0, r.output
    data = json.loads(prof.read_text())
    assert data["entries"] and data["provenance"]["command"].startswith("tfcompress")
    assert data["calibration"]["fitted_on"] == 0, "one model: too few to calibrate on"
    assert len(data["observations"]) == 1


FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def test_profile_list_import_and_bundle(files, tmp_path):
    listed = run("profile", "--list")
    assert listed.exit_code == 0 and listed.output.startswith("host"), listed.output
    out = tmp_path / "pi4.json"
    r = run("profile", "--import", os.path.join(FIXTURES, "edge_result.json"), "-o", out)
    assert r.exit_code == 0, r.output
    data = json.loads(out.read_text())
    assert data["entries"] and "edge_profile.py" in data["provenance"]["method"]
    bundle = tmp_path / "bundle"
    r = run("profile", files / "good.keras", "--export-bundle", bundle)
    assert r.exit_code == 0, r.output
    assert (bundle / "edge_profile.py").exists() and json.loads((bundle / "bundle.json").read_text())["kernels"]
    assert "edge_profile.py" in r.output


def test_profile_bad_input_is_a_user_error(files, tmp_path):
    assert_user_error(run("profile", "--import", files / "notes.h5", "-o", tmp_path / "x.json"), "notes.h5")
    assert_user_error(run("profile", "--import", os.path.join(FIXTURES, "benchmark_model_op_profile.csv")), "--model")
    assert_user_error(run("profile", "--validate", "3", "--list"), "cannot be combined")
    assert_user_error(run("profile", "--validate", "1", "--profile", "pixel99"), "unknown device")
    assert_user_error(run("profile", files / "good.keras", "--export-bundle", files), "not empty")
    assert not (tmp_path / "x.json").exists()


@pytest.mark.slow
def test_profile_validate_prints_the_error_distribution(tmp_path):
    from tfcompress.hardware.lut import build_profile
    from tfcompress.hardware.profile import save_profile
    from tfcompress.hardware.validate import space_models

    prof = save_profile(build_profile(space_models(2), cache_dir=tmp_path / "c"), tmp_path / "p.json")
    png = tmp_path / "scatter.png"
    r = run("profile", "--validate", "2", "--profile", prof, "--png", png)
    assert r.exit_code == 0, r.output
    assert "within ±10%" in r.output and "median |error|" in r.output
    assert "noise floor" in r.output and "inside the spread" in r.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_convert_device_option(files, tmp_path):
    out = tmp_path / "g.tflite"
    assert_user_error(run("convert", files / "good.keras", "--data", files / "data.npz", "-o", out, "--device", "pixel99"),
                      "unknown device", "shipped: host")
    assert not out.exists()
    r = run("convert", files / "good.keras", "--data", files / "data.npz", "-o", out, "--device", "none", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(out.with_name("g.report.json").read_text())["predicted_latency"] is None


def test_recipes_lists_and_prints_the_schema():
    r = CliRunner().invoke(main, ["recipes"])
    assert r.exit_code == 0 and "prune-50" in r.output and "export int8" in r.output
    r = CliRunner().invoke(main, ["recipes", "--schema"])
    assert r.exit_code == 0, r.output
    schema = json.loads(r.output)
    techniques = schema["properties"]["stages"]["items"]["discriminator"]["mapping"]
    assert {"prune", "cluster", "qat", "convert"} <= set(techniques)
    assert "final_sparsity" in schema["$defs"]["PruneParams"]["properties"] and "export" in schema["properties"]


def test_every_option_a_help_text_mentions_exists():
    """A --flag named in any command's help (or the group's) is an option of some command."""
    import re

    options = {opt for cmd in main.commands.values() for p in cmd.params
               for opt in [*getattr(p, "opts", []), *getattr(p, "secondary_opts", [])]}  # --x/--no-x: both
    options |= {"--help", "--version"}
    for name in [None, *main.commands]:
        res = CliRunner().invoke(main, ([name] if name else []) + ["--help"], terminal_width=200)
        assert res.exit_code == 0, res.output
        text = re.sub(r"-\n\s+", "-", res.output)  # click's wrapper may break an option name at a hyphen
        mentioned = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text))
        assert mentioned <= options, f"{name or 'tfcompress'} --help mentions {sorted(mentioned - options)}"


def test_output_parent_folders_are_created(tmp_path, files):
    out = tmp_path / "new" / "deeper" / "m.tflite"
    res = run("convert", files / "good.keras", "--data", files / "data.npz", "-o", out, "--no-verify", "--device", "none")
    assert res.exit_code == 0, res.output
    assert out.is_file()
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert_user_error(run("convert", files / "good.keras", "--data", files / "data.npz", "-o", blocker / "sub" / "m.tflite"),
                      "cannot create the output directory")
