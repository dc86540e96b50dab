"""Precision rules: by layer name, Keras layer class and op type; patterns run by RE2."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tfcompress.cli import main
from tfcompress.errors import RecipeError, TfcompressError
from tfcompress.keras_compat import tf_keras
from tfcompress.precision.mixed import parse_rule, plan_precision
from tfcompress.recipe import load_recipe
from tfcompress.types import PrecisionRule


def _conv_model():
    """Conv2D -> Flatten -> Dense: one layer class per op type."""
    tf_keras.utils.set_random_seed(0)
    inp = tf_keras.Input((12, 12, 4))
    h = tf_keras.layers.Conv2D(16, 3, activation="relu", name="conv")(inp)
    return tf_keras.Model(inp, tf_keras.layers.Dense(5, name="fc")(tf_keras.layers.Flatten(name="flat")(h)))


# ----------------------------------------------------------------- class rules


def test_class_rules_parse_round_trip_and_match_the_class_of_the_same_layer():
    for text in ("class:Dense=int4", "class:^Conv2D$@^block_3=int16x8", "op:FULLY_CONNECTED@class:Dense=float",
                 "op:FULLY_CONNECTED@class:Dense@^enc=int4"):
        assert parse_rule(text).text() == text
    rule = parse_rule("class:^Dense$=int4")
    assert rule == PrecisionRule("int4", class_name="^Dense$") == PrecisionRule("int4", **{"class": "^Dense$"})
    assert rule.layer is None and rule.op is None
    assert rule.matches("FULLY_CONNECTED", ("fc",), ("Dense",))
    assert not rule.matches("FULLY_CONNECTED", ("fc",), ("EinsumDense",)), "searched in the class, not the name"
    assert not rule.matches("FULLY_CONNECTED", ("fc",)), "no classes known: a class rule matches nothing"
    both = parse_rule("class:^Dense$@^enc=float")
    assert both.matches("ADD", ("conv", "enc_fc"), ("Conv2D", "Dense"))
    assert not both.matches("ADD", ("enc_conv", "fc"), ("Conv2D", "Dense")), "name and class of one layer"
    assert parse_rule("op:CONV_2D@class:Conv=int4").matches("CONV_2D", ("c",), ("Conv2D",))
    assert not parse_rule("op:^CONV_2D$@class:Conv=int4").matches("DEPTHWISE_CONV_2D", ("c",), ("Conv2D",))


def test_recipes_take_class_rules_and_report_bad_ones_at_their_line(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("name: p\nstages:\n  - technique: convert\n    params:\n      precision:\n"
                    "        - {class: Dense, precision: int4}\n        - {class: Conv, layer: '^b1', precision: float}\n")
    assert load_recipe(good).export.precision == (PrecisionRule("int4", class_name="Dense"),
                                                  PrecisionRule("float", layer="^b1", class_name="Conv"))
    bad = tmp_path / "bad.yaml"
    for rule, words in [("{precision: int4}", "needs 'layer', 'class' and/or 'op'"),
                        ("{class: '[', precision: int4}", r"\.class: invalid regular expression '\['"),
                        ("{clas: Dense, precision: int4}", "unknown key 'clas' \\(did you mean 'class'\\?\\)")]:
        bad.write_text("name: p\nstages:\n  - technique: prune\nexport:\n  precision:\n    - " + rule + "\n")
        with pytest.raises(RecipeError, match=r"bad.yaml:6: export.precision\[0\].*" + words):
            load_recipe(bad)


def test_a_class_rule_without_keras_classes_is_an_error_naming_it(tmp_path):
    rules = [PrecisionRule("float", layer="^head$"), PrecisionRule("int4", class_name="Dense")]
    with pytest.raises(TfcompressError, match=r"precision rule 2 \('class:Dense=int4'\) matches Keras layer "
                                              r"classes, and this model has none") as e:
        plan_precision(b"", ["head"], rules)  # no layer classes given: refused before the file is read
    assert "layer names" in e.value.hint
    tfl = tmp_path / "m.tflite"
    tfl.write_bytes(b"TFL3")
    res = CliRunner().invoke(main, ["convert", str(tfl), "--data", str(tmp_path / "d.npz"), "-o",
                                    str(tmp_path / "o.tflite"), "--precision", "class:Dense=int4"])
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert "precision rule 1 ('class:Dense=int4') matches Keras layer classes, and m.tflite (a .tflite file) has " \
           "none" in " ".join(res.output.split())


@pytest.mark.slow
def test_class_rules_choose_each_ops_precision_in_convert(tmp_path):
    x = np.random.default_rng(0).random((120, 12, 12, 4), dtype=np.float32)
    _conv_model().save(tmp_path / "m.keras")
    np.savez(tmp_path / "d.npz", x=x)
    out = tmp_path / "m.tflite"
    res = CliRunner().invoke(main, ["convert", str(tmp_path / "m.keras"), "--data", str(tmp_path / "d.npz"), "-o",
                                    str(out), "--calib-samples", "32", "--verify-samples", "64",
                                    "--precision", "class:^Conv2D$=int4", "--precision", "class:^Dense$=float"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    doc = json.loads((tmp_path / "m.report.json").read_text())
    found = {(r["op"], tuple(r["layers"])): (r["asked"], r["found"]) for r in doc["precision"]["ops"]}
    assert found[("CONV_2D", ("conv",))] == ("int4", "int4")
    assert found[("FULLY_CONNECTED", ("fc",))] == ("float", "float")
    assert doc["precision"]["rules"] == ["class:^Conv2D$=int4", "class:^Dense$=float"]


# ----------------------------------------------------------------- RE2


def test_rule_patterns_run_on_re2_and_what_it_cannot_run_is_an_error_naming_the_rule(tmp_path):
    for text, words in [("(a)\\1=float", "invalid escape sequence"), ("op:(?=CONV)=int4", "invalid perl operator"),
                        ("class:[=int4", "missing ]")]:
        with pytest.raises(TfcompressError, match=re.escape(f"precision rule {text!r}") + ".*" + re.escape(words)):
            parse_rule(text)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: p\nstages:\n  - technique: prune\nexport:\n  precision:\n"
                   "    - {layer: x, precision: float}\n    - {layer: '(?<!a)b', precision: float}\n")
    with pytest.raises(RecipeError, match=r"bad.yaml:7: export.precision\[1\].*invalid regular expression"):
        load_recipe(bad)
    # a pattern with exponential backtracking in Python's `re` (seconds at 26 characters) is linear in RE2
    rule = PrecisionRule("float", layer="^(a+)+$")
    t0 = time.perf_counter()
    assert not rule.matches("FULLY_CONNECTED", ("a" * 26 + "!",))
    assert time.perf_counter() - t0 < 0.5
    assert not rule.matches("FULLY_CONNECTED", ("a" * 5000,)), "names over 1024 characters match no rule"
