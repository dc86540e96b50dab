"""Per-op quantization sensitivity (`tfcompress analyze`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from tfcompress.cli import main
from tfcompress.keras_compat import tf_keras
from tfcompress.precision import SensitivityReport, analyze
from tfcompress.precision import sensitivity


def outlier_model(scale: float = 300.0):
    """A small classifier whose last Dense has one output with a huge range: int8 crushes the other logits there."""
    tf_keras.utils.set_random_seed(0)
    inp = tf_keras.Input((16,))
    h = tf_keras.layers.Dense(32, activation="relu", name="d1")(inp)
    h = tf_keras.layers.Dense(32, activation="relu", name="d2")(h)
    out = tf_keras.layers.Dense(6, name="head")(h)
    model = tf_keras.Model(inp, out)
    w, b = model.get_layer("head").get_weights()
    w[:, 0] *= scale
    model.get_layer("head").set_weights([w, b])
    return model


@pytest.fixture(scope="module")
def data():
    x = np.random.default_rng(1).random((500, 16), dtype=np.float32)
    return x, np.argmax(outlier_model().predict(x, verbose=0)[:, 1:], axis=1) + 1


def test_the_outlier_layer_ranks_first_and_leaving_it_float_wins_back_the_loss(data, tmp_path):
    report = analyze(outlier_model(), data, out_dir=tmp_path, calib_samples=100, samples=300, device="host")
    first = report.ops[0]
    assert first.layers == ("head",) and first.rank == 1
    assert first.recovered_snr_db > 10, "keeping the head float recovers most of the int8 error"
    assert first.alone.snr_db < min(r.alone.snr_db for r in report.ops[1:]), "alone, it is also the worst op"
    assert report.full_int8.agreement < first.kept_float.agreement
    assert {r.layers[0] for r in report.ops} == {"d1", "d2", "head"}
    assert all(r.weight_bytes > 0 and r.predicted_ms is not None for r in report.ops)
    assert SensitivityReport.from_dict(json.loads(json.dumps(report.to_dict()))) == report


@pytest.mark.slow
def test_a_rerun_resumes_from_the_cache(data, tmp_path, monkeypatch):
    outlier_model().save(tmp_path / "m.keras")
    model = str(tmp_path / "m.keras")
    first = analyze(model, data, out_dir=tmp_path, calib_samples=100, samples=100, device=None)
    runs = []
    real = sensitivity.quality
    monkeypatch.setattr(sensitivity, "quality", lambda *a: runs.append(1) or real(*a))
    again = analyze(model, data, out_dir=tmp_path, calib_samples=100, samples=100, device=None)
    assert runs == [] and again == first, "every variant came from the cache"
    other = analyze(model, data, out_dir=tmp_path, calib_samples=100, samples=120, device=None)
    assert runs and len(other.ops) == 3, "other samples: the cache does not apply"


@pytest.mark.slow
def test_cli_writes_json_and_png_and_refuses_bad_input(data, tmp_path):
    outlier_model().save(tmp_path / "m.keras")
    np.savez(tmp_path / "d.npz", x=data[0], y=data[1])
    out = tmp_path / "analysis"
    res = CliRunner().invoke(main, ["analyze", str(tmp_path / "m.keras"), "--data", str(tmp_path / "d.npz"),
                                    "-o", str(out), "--samples", "100", "--calib-samples", "50", "--top", "2"])
    assert res.exit_code == 0, res.output
    assert "head (fc)" in res.output
    doc = json.loads((out / "sensitivity.json").read_text())
    assert doc["schema"] == "tfcompress.sensitivity/1" and len(doc["ops"]) == 3
    assert (out / "sensitivity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    np.save(tmp_path / "bad.npy", np.zeros((10, 3), np.float32))
    bad = CliRunner().invoke(main, ["analyze", str(tmp_path / "m.keras"), "--data", str(tmp_path / "bad.npy"),
                                    "-o", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "Traceback" not in bad.output


# --------------------------------------------------------------------- per-op precision (ai-edge-quantizer)

def _mlp():
    tf_keras.utils.set_random_seed(0)
    inp = tf_keras.Input((64,))
    h = tf_keras.layers.Dense(256, activation="relu", name="d1")(inp)
    h = tf_keras.layers.Dense(256, activation="relu", name="d2")(h)
    return tf_keras.Model(inp, tf_keras.layers.Dense(10, name="head")(h))


@pytest.mark.slow
def test_rules_choose_each_ops_precision_and_the_file_has_it():
    from tfcompress.export.tflite_file import read_tflite
    from tfcompress.export.verify import TfliteRunner
    from tfcompress.precision.mixed import PrecisionRule, quantize_mixed

    x = np.random.default_rng(0).random((200, 64), dtype=np.float32)
    model = _mlp()
    rules = [PrecisionRule.parse("head=float"), PrecisionRule.parse("op:FULLY_CONNECTED=int4")]
    mixed = quantize_mixed(model, x, rules, calib_samples=64)
    assert [(p.layers, p.precision) for p in mixed.plan] == [(("d1",), "int4"), (("d2",), "int4"), (("head",), "float")]
    ops = [(row.op_type, row.input_dtypes) for row in read_tflite(mixed.tflite).op_dtype_table()]
    assert ("FULLY_CONNECTED", ("int8", "int4")) in ops and ("FULLY_CONNECTED", ("float32", "float32")) in ops
    int8 = quantize_mixed(model, x, [], calib_samples=64)
    assert len(mixed.tflite) < 0.75 * len(int8.tflite), "int4 weights halve the big layers"
    ref = model.predict(x[64:], verbose=0)
    out = TfliteRunner(mixed.tflite).run((x[64:],))[0]
    four = sensitivity.quality(ref, out, None).snr_db
    eight = sensitivity.quality(ref, TfliteRunner(int8.tflite).run((x[64:],))[0], None).snr_db
    assert eight > 25 and 10 < four < eight, "int4 weights cost SNR (16 levels), int8 (the converter's) less"


def test_impossible_choices_and_bad_rules_are_clear_errors():
    from tfcompress.errors import TfcompressError
    from tfcompress.precision.mixed import PrecisionRule, quantize_mixed

    x = np.random.default_rng(0).random((32, 8), dtype=np.float32)
    inp = tf_keras.Input((4, 8))
    model = tf_keras.Model(inp, tf_keras.layers.GlobalAveragePooling1D(name="pool")(inp))
    with pytest.raises(TfcompressError, match="int4 is not available for MEAN.*pool"):
        quantize_mixed(model, x.reshape(8, 4, 8), [PrecisionRule("int4", layer="pool")], calib_samples=8)
    from tfcompress.precision.mixed import parse_rule

    for bad in ("head", "=int8", "head=int3", "op:(=float"):
        with pytest.raises(TfcompressError):
            parse_rule(bad)


@pytest.mark.slow
def test_int8_and_float_plans_use_the_converters_quantizer():
    from tfcompress.export.tflite_file import read_tflite
    from tfcompress.export.verify import TfliteRunner
    from tfcompress.precision.mixed import PrecisionRule, quantize_mixed

    x = np.random.default_rng(0).random((200, 64), dtype=np.float32)
    model = _mlp()
    ref = model.predict(x[64:], verbose=0)
    mixed = quantize_mixed(model, x, [PrecisionRule("float", layer="^d2$")], calib_samples=64)
    assert [p.precision for p in mixed.plan] == ["int8", "float", "int8"]
    table = read_tflite(mixed.tflite).op_dtype_table()
    assert {(r.op_type, r.input_dtypes[0], r.count) for r in table if r.op_type == "FULLY_CONNECTED"} == {
        ("FULLY_CONNECTED", "int8", 2), ("FULLY_CONNECTED", "float32", 1)}
    assert sensitivity.quality(ref, TfliteRunner(mixed.tflite).run((x[64:],))[0], None).snr_db > 25


@pytest.mark.slow
def test_the_budget_choice_recovers_at_least_half_of_the_int8_loss():
    from tfcompress.precision.budget import choose_float_ops

    x = np.random.default_rng(1).random((500, 16), dtype=np.float32)
    choice = choose_float_ops(outlier_model(), x, max_acc_drop=0.5, calib_samples=100, samples=300)
    assert choice.full_int8.agreement < 0.995, "full int8 loses agreement on the outlier head"
    assert choice.met and choice.float_layers == ("head",), "one op left float is enough, and it is the head"
    assert choice.loss_recovered() >= 0.5
    assert choice.quality.snr_db > choice.full_int8.snr_db + 10
    with pytest.raises(ValueError, match="max_acc_drop"):
        choose_float_ops(outlier_model(), x)
