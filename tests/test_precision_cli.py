"""Per-op precision in recipes, on `convert`, under budgets, in the report, the sidecar and `inspect`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tfcompress.cli import main
from tfcompress.keras_compat import tf_keras


def _mlp(outlier: float = 1.0):
    """64-256-256-6 MLP; `outlier` scales the head's first output (int8 crushes the other logits there)."""
    tf_keras.utils.set_random_seed(0)
    inp = tf_keras.Input((64,))
    h = tf_keras.layers.Dense(256, activation="relu", name="d1")(inp)
    h = tf_keras.layers.Dense(256, activation="relu", name="d2")(h)
    model = tf_keras.Model(inp, tf_keras.layers.Dense(6, name="head")(h))
    w, b = model.get_layer("head").get_weights()
    w[:, 0] *= outlier
    model.get_layer("head").set_weights([w, b])
    return model


def _files(tmp_path: Path, outlier: float = 1.0) -> tuple[str, str]:
    model = _mlp(outlier)
    x = np.random.default_rng(1).random((600, 64), dtype=np.float32)
    y = np.argmax(model.predict(x, verbose=0)[:, 1:], axis=1) + 1
    model.save(tmp_path / "m.keras")
    np.savez(tmp_path / "d.npz", x=x, y=y)
    return str(tmp_path / "m.keras"), str(tmp_path / "d.npz")


def _ok(args: list[str]):
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    return res


def _found(report_path: Path) -> list[tuple[str, tuple[str, ...], str]]:
    doc = json.loads(report_path.read_text())
    return [(r["op"], tuple(r["layers"]), r["found"]) for r in doc["precision"]["ops"]]


# ----------------------------------------------------------------- rules: recipes and flags


def test_recipe_precision_rules_are_validated_at_their_line(tmp_path):
    from tfcompress.errors import RecipeError
    from tfcompress.recipe import load_recipe
    from tfcompress.types import PrecisionRule

    good = tmp_path / "good.yaml"
    good.write_text("name: p\nstages:\n  - technique: convert\n    params:\n      precision:\n"
                    "        - {layer: '^head$', precision: float}\n        - {op: FULLY_CONNECTED, precision: int4}\n")
    rec = load_recipe(good)
    assert rec.stages == () and rec.export.precision == (PrecisionRule("float", layer="^head$"),
                                                         PrecisionRule("int4", op="FULLY_CONNECTED"))
    for body, line, words in [
        ("  - {op: FULLY_CONNECTED, precision: int3}\n", 6, "expected one of 'int8'"),
        ("  - {op: '(', precision: int4}\n", 6, "invalid regular expression"),
        ("  - {precision: int4}\n", 6, "needs 'layer', 'class' and/or 'op'"),
        ("  - {layer: x, precision: int4, bits: 4}\n", 6, "unknown key 'bits'"),
    ]:
        bad = tmp_path / "bad.yaml"
        bad.write_text("name: p\nstages:\n  - technique: prune\nexport:\n  precision:\n" + body)
        with pytest.raises(RecipeError, match=rf"bad.yaml:{line}: export.precision\[0\].*{words}"):
            load_recipe(bad)
    bad.write_text("name: p\nstages:\n  - technique: prune\nexport:\n  mode: float16\n"
                   "  precision: [{layer: x, precision: float}]\n")
    with pytest.raises(RecipeError, match="bad.yaml:4: export: per-op precision needs mode int8 or int16x8"):
        load_recipe(bad)


def test_rule_text_round_trips_and_bad_flags_exit_2(tmp_path):
    from tfcompress.precision.mixed import parse_rule

    for text in ("head=float", "op:FULLY_CONNECTED=int4", "op:CONV_2D@^block_3=int16x8"):
        assert parse_rule(text).text() == text
    assert parse_rule("op:CONV_2D@^block_3=int4w").layer == "^block_3"
    model, data = tmp_path / "m.keras", tmp_path / "d.npz"  # never read: every case fails before loading
    plan = tmp_path / "plan.yaml"
    plan.write_text("name: p\nstages:\n  - technique: prune\n")
    for extra, words in [
        (["--precision", "head=int3"], "precision rule 'head=int3'"),
        (["--precision", "head=float", "--max-acc-drop", "1"], "--precision and --max-acc-drop cannot be combined"),
        (["--precision", "head=float", "--mode", "float16"], "per-op precision needs --mode int8 or int16x8"),
        (["--precision", "head=float", "--io", "int8"], "float32 input and output"),
        (["--recipe", str(plan), "--size-kb", "10"], "--recipe and --size-kb cannot be combined"),
        (["--recipe", str(plan)], "training stage"),
    ]:
        res = CliRunner().invoke(main, ["convert", str(model), "--data", str(data), "-o", str(tmp_path / "o.tflite"),
                                        *extra])
        assert res.exit_code == 2 and words in res.output and "Traceback" not in res.output, (extra, res.output)


# ----------------------------------------------------------------- convert --precision: read back, delegate, sidecar


@pytest.mark.slow
def test_convert_with_int4_rules_reports_each_ops_dtype_and_who_runs_it(tmp_path):
    model, data = _files(tmp_path)
    out = tmp_path / "out" / "m.tflite"
    res = _ok(["convert", model, "--data", data, "-o", str(out), "--calib-samples", "64", "--verify-samples", "200",
               "--precision", "head=float", "--precision", "op:FULLY_CONNECTED=int4"])
    assert "per-op precision" in res.output and "XNNPACK runs all 5 ops" in res.output
    doc = json.loads((tmp_path / "out" / "m.report.json").read_text())
    ops = {tuple(r["layers"]): r for r in doc["precision"]["ops"] if r["op"] == "FULLY_CONNECTED"}
    assert {k: (r["asked"], r["found"], r["weights"], r["activations"]) for k, r in ops.items()} == {
        ("d1",): ("int4", "int4", "int4", "int8"), ("d2",): ("int4", "int4", "int4", "int8"),
        ("head",): ("float", "float", "float32", "float32")}
    assert doc["precision"]["prepares"] == {"default": True, "builtin": True}
    assert all(r["runs_on"] == "XNNPACK" for r in doc["precision"]["ops"]), "XNNPACK takes int4 FULLY_CONNECTED"
    assert {"op": "FULLY_CONNECTED", "input_dtypes": ["int8", "int4"], "output_dtypes": ["int8"], "count": 2} in \
        doc["op_table"]
    assert doc["verify"]["resolver"] == "default" and doc["verify"]["outputs"][0]["snr_db"] > 8
    meta = json.loads((tmp_path / "out" / "m.meta.json").read_text())
    assert meta["inputs"][0]["dtype"] == "float32" and meta["precision"]["rules"] == ["head=float",
                                                                                      "op:FULLY_CONNECTED=int4"]
    d2 = next(o for o in meta["precision"]["ops"] if o["layers"] == ["d2"] and o["op"] == "FULLY_CONNECTED")
    weights = next(t for t in d2["tensors"] if t["dtype"] == "int4")
    assert weights["shape"] == [256, 256] and len(weights["quantization"]["scales"]) == 256
    assert set(weights["quantization"]["zero_points"]) == {0}
    from tfcompress.export.report import ConvertReport

    assert ConvertReport.from_dict(doc).precision.delegate == "XNNPACK runs all 5 ops"

    ins = json.loads(_ok(["inspect", str(out), "--json"]).output)
    fc = [r["precision"] for r in ins["ops"] if r["op_type"] == "FULLY_CONNECTED"]
    assert fc == ["int4", "int4", "float"]
    assert {(t["dtype"], tuple(t["shape"])) for t in ins["quantized_tensors"]} == {("int4", (256, 64)),
                                                                                     ("int4", (256, 256))}


def test_the_delegate_walk_finds_the_ops_each_delegate_node_took():
    from tfcompress.precision.readback import _ops_in_delegates

    def node(i, name, ins, outs):
        return {"index": i, "op_name": name, "inputs": np.array(ins), "outputs": np.array(outs)}

    # 0: a -> b (taken), 1: b -> c (not taken: say, a custom op), 2: c -> d (taken by a second delegate node)
    nodes = [node(0, "FULLY_CONNECTED", [0, 5], [1]), node(1, "CUSTOM", [1], [2]), node(2, "TANH", [2], [3]),
             node(3, "DELEGATE", [0, 5], [1]), node(4, "DELEGATE", [2], [3])]
    assert _ops_in_delegates(nodes) == {0, 2}
    assert _ops_in_delegates(nodes[:3]) == set(), "no delegate: everything on the builtin kernels"


# ----------------------------------------------------------------- budgets -> plan -> recipe -> same model


@pytest.mark.slow
def test_accuracy_budget_keeps_the_outlier_head_float_and_the_plan_rebuilds_the_model(tmp_path):
    model, data = _files(tmp_path, outlier=300.0)
    out = tmp_path / "m.tflite"
    common = ["--calib-samples", "100", "--verify-samples", "300"]
    res = _ok(["convert", model, "--data", data, "-o", str(out), "--max-acc-drop", "0.5", *common])
    assert "every budget met" in res.output
    plan = tmp_path / "m.precision.yaml"
    from tfcompress.recipe import load_recipe
    from tfcompress.types import PrecisionRule

    assert load_recipe(plan).export.precision == (PrecisionRule("float", layer="^head$"),)
    first = _found(tmp_path / "m.report.json")
    assert ("FULLY_CONNECTED", ("head",), "float") in first
    again = tmp_path / "again" / "m.tflite"
    _ok(["convert", model, "--data", data, "-o", str(again), "--recipe", str(plan), *common])
    assert _found(tmp_path / "again" / "m.report.json") == first
    assert again.read_bytes() == out.read_bytes(), "same calibration, same rules: the same file"


@pytest.mark.slow
def test_size_budget_drops_large_layers_to_int4_and_the_plan_rebuilds_the_model(tmp_path):
    model, data = _files(tmp_path)
    out = tmp_path / "m.tflite"
    common = ["--calib-samples", "100", "--verify-samples", "200"]
    res = _ok(["convert", model, "--data", data, "-o", str(out), "--size-kb", "70", *common])
    assert "every budget met" in res.output, res.output
    assert out.stat().st_size <= 70 * 1024
    found = _found(tmp_path / "m.report.json")
    assert ("FULLY_CONNECTED", ("d2",), "int4") in found, "the largest layer goes int4"
    assert ("FULLY_CONNECTED", ("head",), "int8") in found, "small layers stay int8"
    again = tmp_path / "again" / "m.tflite"
    _ok(["convert", model, "--data", data, "-o", str(again), "--recipe", str(tmp_path / "m.precision.yaml"), *common])
    assert _found(tmp_path / "again" / "m.report.json") == found


@pytest.mark.slow
def test_a_latency_budget_refuses_slower_steps_and_says_it_is_not_met():
    from tfcompress.precision.auto import choose_precision

    x = np.random.default_rng(1).random((400, 64), dtype=np.float32)
    plan = choose_precision(_mlp(300.0), x, max_acc_drop=0.5, latency_ms=1e-6, calib_samples=100, samples=300)
    assert not plan.met and plan.float_layers == ()
    assert any("predicted" in s.why and not s.kept for s in plan.steps)
    assert any("predicted" in u for u in plan.unmet) and any("accuracy" in u for u in plan.unmet)


@pytest.mark.slow
def test_int4_conv_runs_on_the_builtin_kernels_and_the_read_back_says_so():
    from tfcompress import data as data_mod
    from tfcompress.loading import load_source
    from tfcompress.precision.mixed import PrecisionRule, quantize_source
    from tfcompress.precision.readback import read_back

    tf_keras.utils.set_random_seed(0)
    inp = tf_keras.Input((12, 12, 4))
    h = tf_keras.layers.Conv2D(16, 3, activation="relu", name="conv")(inp)
    model = tf_keras.Model(inp, tf_keras.layers.Dense(5, name="fc")(tf_keras.layers.Flatten(name="flat")(h)))
    source = load_source(model)
    calib = data_mod.load_samples(np.random.default_rng(0).random((32, 12, 12, 4), dtype=np.float32),
                                  source.input_specs())
    rules = [PrecisionRule("int4", op="^(CONV_2D|FULLY_CONNECTED)$")]
    mixed = quantize_source(source, calib, rules)
    info = read_back(mixed.tflite, mixed.plan, source.layer_names(), rules, "int8")
    runs = {r.op: (r.found, r.runs_on) for r in info.ops}
    # ai-edge-litert 2.3.0: XNNPACK takes int4 FULLY_CONNECTED but not int4 CONV_2D
    assert runs["CONV_2D"] == ("int4", "builtin") and runs["FULLY_CONNECTED"] == ("int4", "XNNPACK")
    assert info.prepares == {"default": True, "builtin": True}
    assert info.delegate.startswith("XNNPACK runs") and "builtin kernels run the others (CONV_2D)" in info.delegate
