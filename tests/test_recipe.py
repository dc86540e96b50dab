"""Recipe parser: format, file:line errors, JSON / dict input, round trip, shipped lookup, fuzzing.

Uses a fake technique registry so it does not depend on the technique modules (nor on TensorFlow).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Literal

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, model_validator

import tfcompress
from tfcompress import recipe as recipe_mod
from tfcompress.errors import RecipeError
from tfcompress.recipe import (
    dump_recipe,
    list_shipped_recipes,
    load_recipe,
    parse_recipe_dict,
    parse_recipe_text,
    recipe_to_dict,
)
from tfcompress.types import ExportSettings
from tfcompress.types import LayerMatch, LayerRule, Mode, Recipe, Stage

# ----------------------------------------------------------------- fake registry


class PruneParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    final_sparsity: float = 0.5
    initial_sparsity: float = 0.0
    begin_step: int = 0
    end_step: int = 1000
    frequency: int = 100
    schedule: Literal["constant", "polynomial"] = "polynomial"
    block_size: tuple[int, int] = (1, 1)
    policy: str | None = None

    @model_validator(mode="after")
    def _check(self) -> PruneParams:
        if self.begin_step >= self.end_step:
            raise ValueError(f"begin_step ({self.begin_step}) must be < end_step ({self.end_step})")
        if not 0.0 <= self.final_sparsity < 1.0:
            raise ValueError(f"final_sparsity must be in [0, 1), got {self.final_sparsity}")
        return self


class ClusterParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    number_of_clusters: int = 16
    init: Literal["linear", "kmeans++", "random"] = "kmeans++"
    preserve_sparsity: bool = False
    ranks: tuple[float, ...] = ()
    per_layer: dict[str, float] = {}
    mode: Mode | None = None
    tags: list[str] = []
    limit: int | None = None


class _Broken:
    """A registry entry whose module fails to import."""

    name = "broken"

    @property
    def params_type(self) -> type:
        raise ModuleNotFoundError("No module named 'tfcompress.techniques.broken'")


class _Ghost:
    """A registry entry whose Params live in a module that does not exist (imported on first use)."""

    name = "ghost"

    @property
    def params_type(self) -> type:
        return importlib.import_module("tfcompress.techniques._no_such_module_for_tests").Params


REGISTRY = {
    "prune": SimpleNamespace(name="prune", params_type=PruneParams),
    "cluster": SimpleNamespace(name="cluster", params_type=ClusterParams),
    "broken": _Broken(),
    "ghost": _Ghost(),
}
GOOD_TECHNIQUES = ("prune", "cluster", "convert")  # `convert`: the export sugar, not a registry entry


def parse(text: str, source: str = "r.yaml") -> Recipe:
    return parse_recipe_text(textwrap.dedent(text), source, REGISTRY)


def error(text: str, source: str = "r.yaml") -> RecipeError:
    with pytest.raises(RecipeError) as info:
        parse(text, source)
    return info.value


def strip(r: Recipe) -> Recipe:
    """The recipe without file locations."""
    return dataclasses.replace(
        r,
        source=None,
        stages=tuple(
            dataclasses.replace(s, line=None, rules=tuple(dataclasses.replace(x, line=None) for x in s.rules))
            for s in r.stages
        ),
    )


FULL = """\
name: prune-50
description: Prune 50% of the weights
stages:
  - technique: prune
    epochs: 2
    steps_per_epoch: 100
    learning_rate: 1e-4
    batch_size: 64
    params:
      final_sparsity: 0.5
      end_step: 2000
      block_size: [1, 4]
    rules:
      - match: {name: "^logits$"}
        skip: true
      - match: {class: "Conv2D|DepthwiseConv2D"}
        params: {final_sparsity: 0.6}
  - technique: convert
    params: {mode: float16}
"""


# ----------------------------------------------------------------- valid recipes


def test_full_recipe():
    r = parse(FULL)
    assert r.name == "prune-50" and r.description == "Prune 50% of the weights" and r.source == "r.yaml"
    (prune,) = r.stages  # the last `convert` stage is the export sugar
    assert prune == Stage(
        technique="prune",
        params=PruneParams(final_sparsity=0.5, end_step=2000, block_size=(1, 4)),
        epochs=2,
        steps_per_epoch=100,
        learning_rate=1e-4,
        batch_size=64,
        rules=(
            LayerRule(LayerMatch(name="^logits$"), skip=True, line=14),
            LayerRule(LayerMatch(class_name="Conv2D|DepthwiseConv2D"), params={"final_sparsity": 0.6}, line=16),
        ),
        line=4,
    )
    assert r.export == ExportSettings(mode="float16")
    assert isinstance(prune.learning_rate, float)


def test_defaults():
    r = parse("name: n\nstages:\n  - technique: cluster\n")
    assert r.description == ""
    assert r.stages == (Stage("cluster", ClusterParams(), line=3),)


def test_param_type_conversions():
    r = parse(
        """\
        name: n
        description: null
        stages:
          - technique: cluster
            learning_rate: 1
            params:
              number_of_clusters: 8
              init: linear
              preserve_sparsity: true
              ranks: [1, 2.5, 1.0e5]
              per_layer: {conv1: 0.5, dense: 1}
              mode: int16x8
              tags: [a, b]
              limit: null
        """
    )
    p = r.stages[0].params
    assert p == ClusterParams(
        number_of_clusters=8, init="linear", preserve_sparsity=True, ranks=(1.0, 2.5, 1e5),
        per_layer={"conv1": 0.5, "dense": 1.0}, mode=Mode.INT16X8, tags=["a", "b"], limit=None,
    )
    assert all(type(x) is float for x in p.ranks) and type(p.per_layer["dense"]) is float
    assert r.stages[0].learning_rate == 1.0 and type(r.stages[0].learning_rate) is float
    assert r.description == ""


def test_float_forms():
    for text, value in [("1e-4", 1e-4), ("1.0e5", 1e5), ("5E-1", 0.5), ("-.5", -0.5), ("0", 0.0), (".5", 0.5)]:
        params = f"{{initial_sparsity: {text}, final_sparsity: 0.9}}"
        r = parse(f"name: n\nstages:\n- technique: prune\n  params: {params}\n")
        assert r.stages[0].params.initial_sparsity == value


def test_anchors_and_merge_keys():
    r = parse(
        """\
        name: n
        stages:
          - &first
            technique: prune
            epochs: 3
            batch_size: 32
          - <<: *first
            technique: cluster
            epochs: 1
          - technique: convert
        """
    )
    assert [(s.technique, s.epochs, s.batch_size) for s in r.stages] == [
        ("prune", 3, 32),
        ("cluster", 1, 32),
    ]
    assert r.export == ExportSettings()


def test_export_top_level_or_convert_stage():
    r = parse("name: n\nstages:\n- technique: prune\nexport: {mode: float16, sparse: true}\n")
    assert r.export == ExportSettings(mode="float16", sparse=True) and [s.technique for s in r.stages] == ["prune"]
    sugar = parse("name: n\nstages:\n- technique: prune\n- technique: convert\n  params: {mode: float16, sparse: true}\n")
    assert strip(sugar) == strip(r)
    text = dump_recipe(r)
    assert "export:" in text and "convert" not in text and strip(parse(text)) == strip(r)
    assert "export" not in recipe_to_dict(parse("name: n\nstages:\n- technique: prune\n"))  # the default
    only = parse("name: n\nstages:\n- technique: convert\n  params: {io: uint8}\n")  # convert only: no stages
    assert only.stages == () and only.export == ExportSettings(io="uint8")
    assert strip(parse(dump_recipe(only))) == strip(only)


def test_rule_without_skip_or_params_is_allowed():
    r = parse("name: n\nstages:\n- technique: prune\n  rules:\n  - match: {name: x, class: Dense}\n")
    assert r.stages[0].rules == (LayerRule(LayerMatch("x", "Dense"), line=5),)
    r = parse("name: n\nstages:\n- technique: prune\n  rules:\n  - match: {name: x}\n    skip: true\n    params:\n")
    assert r.stages[0].rules == (LayerRule(LayerMatch("x"), skip=True, line=5),)  # `params:` null is no params


# ----------------------------------------------------------------- errors: file:line, key, hint


def check(err: RecipeError, line: int | None, *words: str, source: str = "r.yaml") -> None:
    prefix = f"{source}:{line}: " if line is not None else f"{source}: "
    assert err.message.startswith(prefix), err.message
    for w in words:
        assert w in str(err), (w, str(err))
    assert err.hint


ERRORS = [
    # (id, text, line, words that must appear in message or hint)
    ("syntax", "name: x\nstages:\n- technique: prune\n  epochs: 1\n    bad: 2\n", 5, ["invalid YAML"]),
    ("tab", "name: x\nstages:\n- technique: prune\n\tepochs: 1\n", 4, ["invalid YAML", "tabs"]),
    ("unclosed", "name: x\nstages:\n- technique: prune\n  params: {a: 1\n", 5, ["invalid YAML"]),
    ("control-char", "name: x\nstages: \x01\n", 2, ["invalid YAML"]),
    ("two-docs", "name: x\n---\nname: y\n", 2, ["single document"]),
    ("empty", "", 1, ["empty"]),
    ("comments-only", "# nothing\n", 1, ["empty"]),
    ("top-list", "- technique: prune\n", 1, ["mapping", "name", "stages"]),
    ("top-scalar", "just text\n", 1, ["mapping", "the string 'just text'"]),
    ("missing-name", "# c\nstages:\n- technique: prune\n", 2, ["missing required key 'name'"]),
    ("missing-stages", "name: x\n", 1, ["missing required key 'stages'"]),
    ("empty-stages", "name: x\nstages: []\n", 2, ["stages", "empty"]),
    ("null-stages", "name: x\nstages:\n", 2, ["stages", "expected a list"]),
    ("stages-mapping", "name: x\nstages:\n  technique: prune\n", 2, ["stages", "expected a list"]),
    ("name-number", "name: 12\nstages:\n- technique: prune\n", 1, ["name", "expected a non-empty string", "12"]),
    ("name-empty", "name: ''\nstages:\n- technique: prune\n", 1, ["name", "non-empty string"]),
    ("description-list", "name: x\ndescription: [a]\nstages:\n- technique: prune\n", 2, ["description", "string"]),
    ("unknown-top", "name: x\nstage:\n- technique: prune\n", 2, ["unknown key 'stage'", "did you mean 'stages'"]),
    ("unknown-stage", "name: x\nstages:\n- technique: prune\n  epoch: 2\n", 4,
     ["stages[0]", "unknown key 'epoch'", "did you mean 'epochs'", "valid keys"]),
    ("unknown-stage-no-suggestion", "name: x\nstages:\n- technique: prune\n  zzz: 2\n", 4, ["unknown key 'zzz'"]),
    ("stage-not-mapping", "name: x\nstages:\n- prune\n", 3, ["stages[0]", "expected a mapping", "technique"]),
    ("missing-technique", "name: x\nstages:\n- epochs: 1\n", 3, ["stages[0]", "missing required key 'technique'"]),
    ("unknown-technique", "name: x\nstages:\n- technique: prun\n", 3,
     ["stages[0].technique", "unknown technique 'prun'", "did you mean 'prune'", "prune, cluster", "convert"]),
    ("technique-not-string", "name: x\nstages:\n- technique: [prune]\n", 3, ["stages[0].technique", "a list"]),
    ("technique-import-fails", "name: x\nstages:\n- technique: prune\n- technique: broken\n", 4,
     ["stages[1].technique", "'broken'", "not available", "ModuleNotFoundError"]),
    ("technique-module-missing", "name: x\nstages:\n- technique: ghost\n", 3,
     ["'ghost'", "not available", "_no_such_module_for_tests"]),
    ("epochs-string", "name: x\nstages:\n- technique: prune\n  epochs: two\n", 4,
     ["stages[0].epochs", "integer >= 0", "'two'"]),
    ("epochs-negative", "name: x\nstages:\n- technique: prune\n  epochs: -1\n", 4,
     ["stages[0].epochs", "integer >= 0", "-1"]),
    ("epochs-bool", "name: x\nstages:\n- technique: prune\n  epochs: true\n", 4, ["stages[0].epochs", "boolean"]),
    ("epochs-float", "name: x\nstages:\n- technique: prune\n  epochs: 1.5\n", 4, ["stages[0].epochs"]),
    ("steps-zero", "name: x\nstages:\n- technique: prune\n  steps_per_epoch: 0\n", 4,
     ["stages[0].steps_per_epoch", "integer >= 1", "or null"]),
    ("lr-zero", "name: x\nstages:\n- technique: prune\n  learning_rate: 0\n", 4,
     ["stages[0].learning_rate", "> 0"]),
    ("lr-string", "name: x\nstages:\n- technique: prune\n  learning_rate: fast\n", 4, ["learning_rate", "'fast'"]),
    ("lr-inf", "name: x\nstages:\n- technique: prune\n  learning_rate: .inf\n", 4, ["learning_rate"]),
    ("batch-zero", "name: x\nstages:\n- technique: prune\n  batch_size: 0\n", 4, ["stages[0].batch_size", ">= 1"]),
    ("batch-null", "name: x\nstages:\n- technique: prune\n  batch_size: null\n", 4, ["stages[0].batch_size", "null"]),
    ("params-not-mapping", "name: x\nstages:\n- technique: prune\n  params: [1]\n", 4,
     ["stages[0].params", "expected a mapping", "final_sparsity"]),
    ("param-unknown", "name: x\nstages:\n- technique: prune\n  params:\n    final_sparsty: 0.5\n", 5,
     ["stages[0].params", "unknown parameter 'final_sparsty'", "did you mean 'final_sparsity'",
      "final_sparsity, initial_sparsity, begin_step"]),
    ("param-float-string", "name: x\nstages:\n- technique: prune\n  params:\n    final_sparsity: half\n", 5,
     ["stages[0].params.final_sparsity", "expected a number", "'half'"]),
    ("param-float-bool", "name: x\nstages:\n- technique: prune\n  params:\n    final_sparsity: true\n", 5,
     ["stages[0].params.final_sparsity", "expected a number", "boolean"]),
    ("param-float-nan", "name: x\nstages:\n- technique: prune\n  params:\n    final_sparsity: .nan\n", 5,
     ["final_sparsity", "NaN"]),
    ("param-int-float", "name: x\nstages:\n- technique: prune\n  params:\n\n    begin_step: 1.5\n", 6,
     ["stages[0].params.begin_step", "expected an integer", "1.5"]),
    ("param-int-bool", "name: x\nstages:\n- technique: prune\n  params: {begin_step: false}\n", 4,
     ["stages[0].params.begin_step", "expected an integer"]),
    ("param-bool-int", "name: x\nstages:\n- technique: cluster\n  params: {preserve_sparsity: 1}\n", 4,
     ["preserve_sparsity", "true or false"]),
    ("param-literal", "name: x\nstages:\n- technique: prune\n  params:\n    schedule: cubic\n", 5,
     ["stages[0].params.schedule", "one of 'constant', 'polynomial'", "'cubic'"]),
    ("param-str-number", "name: x\nstages:\n- technique: prune\n  params:\n    policy: 3\n", 5,
     ["stages[0].params.policy", "a string or null", "quote"]),
    ("param-enum", "name: x\nstages:\n- technique: cluster\n  params:\n    mode: int4\n", 5,
     ["stages[0].params.mode", "'int8'", "'float16'", "null"]),
    ("param-tuple-length", "name: x\nstages:\n- technique: prune\n  params:\n    block_size: [1, 2, 3]\n", 5,
     ["stages[0].params.block_size", "a list of 2 values"]),
    ("param-tuple-scalar", "name: x\nstages:\n- technique: prune\n  params:\n    block_size: 4\n", 5,
     ["block_size", "a list of 2 values", "4 (an integer)"]),
    ("param-tuple-item", "name: x\nstages:\n- technique: prune\n  params:\n    block_size:\n    - 1\n    - a\n", 7,
     ["stages[0].params.block_size[1]", "expected an integer", "'a'"]),
    ("param-variadic-item", "name: x\nstages:\n- technique: cluster\n  params:\n    ranks: [1, x]\n", 5,
     ["stages[0].params.ranks[1]", "expected a number"]),
    ("param-dict-value",
     "name: x\nstages:\n- technique: cluster\n  params:\n    per_layer:\n      a: 1\n      b: big\n", 7,
     ["stages[0].params.per_layer.b", "expected a number", "'big'"]),
    ("param-dict-not-mapping", "name: x\nstages:\n- technique: cluster\n  params:\n    per_layer: [1]\n", 5,
     ["per_layer", "a mapping"]),
    ("param-list-item", "name: x\nstages:\n- technique: cluster\n  params:\n    tags: [a, 1]\n", 5,
     ["stages[0].params.tags[1]", "a string"]),
    ("post-init", "name: x\nstages:\n- technique: prune\n  params:\n    begin_step: 5000\n    end_step: 10\n", 4,
     ["stages[0].params", "invalid parameters for 'prune'", "begin_step (5000) must be < end_step (10)"]),
    ("rules-not-list", "name: x\nstages:\n- technique: prune\n  rules: {match: {name: a}}\n", 4,
     ["stages[0].rules", "expected a list"]),
    ("rule-not-mapping", "name: x\nstages:\n- technique: prune\n  rules:\n  - conv1\n", 5,
     ["stages[0].rules[0]", "expected a mapping"]),
    ("rule-without-match", "name: x\nstages:\n- technique: prune\n  rules:\n  - skip: true\n", 5,
     ["stages[0].rules[0]", "missing required key 'match'"]),
    ("rule-unknown-key", "name: x\nstages:\n- technique: prune\n  rules:\n  - match: {name: a}\n    skp: true\n", 6,
     ["stages[0].rules[0]", "unknown key 'skp'", "did you mean 'skip'"]),
    ("rule-skip-and-params",
     "name: x\nstages:\n- technique: prune\n  rules:\n  - match: {name: a}\n    skip: true\n"
     "    params: {final_sparsity: 0.1}\n",
     7, ["stages[0].rules[0]", "skip", "params"]),
    ("rule-skip-not-bool", "name: x\nstages:\n- technique: prune\n  rules:\n  - match: {name: a}\n    skip: 1\n", 6,
     ["stages[0].rules[0].skip", "true or false"]),
    ("rule-param-unknown",
     "name: x\nstages:\n- technique: prune\n  rules:\n  - match: {name: a}\n    params:\n      sparsity: 0.1\n", 7,
     ["stages[0].rules[0].params", "unknown parameter 'sparsity'", "final_sparsity"]),
    ("rule-param-type",
     "name: x\nstages:\n- technique: prune\n  rules:\n  - match: {name: a}\n    params:\n      frequency: often\n", 7,
     ["stages[0].rules[0].params.frequency", "expected an integer"]),
    ("rule-param-post-init",
     "name: x\nstages:\n- technique: prune\n  rules:\n  - match: {name: a}\n    params: {begin_step: 2000}\n", 6,
     ["stages[0].rules[0].params", "begin_step (2000) must be < end_step (1000)"]),
    ("match-not-mapping", "name: x\nstages:\n- technique: prune\n  rules:\n  - match: conv1\n", 5,
     ["stages[0].rules[0].match", "'name' and/or 'class'"]),
    ("match-empty", "name: x\nstages:\n- technique: prune\n  rules:\n  - match: {}\n", 5,
     ["stages[0].rules[0].match", "'name' and/or 'class'"]),
    ("match-unknown-key", "name: x\nstages:\n- technique: prune\n  rules:\n  - match:\n      klass: Dense\n", 6,
     ["stages[0].rules[0].match", "unknown key 'klass'", "did you mean 'class'"]),
    ("match-bad-regex", "name: x\nstages:\n- technique: prune\n  rules:\n  - match:\n      name: conv(\n", 6,
     ["stages[0].rules[0].match.name", "invalid regular expression 'conv('", "missing )"]),
    ("match-bad-class-regex", "name: x\nstages:\n- technique: prune\n  rules:\n  - match: {class: '*Conv'}\n", 5,
     ["stages[0].rules[0].match.class", "invalid regular expression"]),
    ("match-huge-repeat", "name: x\nstages:\n- technique: prune\n  rules:\n  - match: {name: 'a{4294967296}'}\n", 5,
     ["match.name", "invalid regular expression"]),
    ("match-regex-number", "name: x\nstages:\n- technique: prune\n  rules:\n  - match: {name: 12}\n", 5,
     ["match.name", "a string"]),
    ("duplicate-top", "name: x\nstages:\n- technique: prune\nname: y\n", 4,
     ["name", "duplicate key 'name'", "first given at line 1"]),
    ("duplicate-stage", "name: x\nstages:\n- technique: prune\n  epochs: 1\n  epochs: 2\n", 5,
     ["stages[0].epochs", "duplicate key 'epochs'", "line 4"]),
    ("duplicate-param", "name: x\nstages:\n- technique: prune\n  params: {end_step: 5, end_step: 9}\n", 4,
     ["stages[0].params.end_step", "duplicate key 'end_step'"]),
    ("convert-not-last", "name: x\nstages:\n- technique: convert\n- technique: prune\n", 3,
     ["stages[0].technique", "'convert'", "last stage", "stage 1 of 2"]),
    ("two-converts", "name: x\nstages:\n- technique: prune\n- technique: convert\n- technique: convert\n", 4,
     ["stages[1]", "'convert'", "last"]),
    ("key-not-string", "name: x\n1: y\nstages:\n- technique: prune\n", 2, ["key '1' must be a string"]),
    ("key-null", "name: x\n~: y\nstages:\n- technique: prune\n", 2, ["must be a string"]),
    ("key-complex", "name: x\n? [a, b]\n: y\n", 2, ["key must be a plain string"]),
    ("custom-tag", "name: !shout x\nstages:\n- technique: prune\n", 1, ["name", "!shout"]),
    ("python-tag", "name: x\nstages:\n- technique: !!python/name:os.system prune\n", 3, ["stages[0].technique"]),
    ("collection-tag", "name: x\nstages: !!omap\n- technique: prune\n", 2, ["stages", "tag"]),
    ("bad-date", "name: x\ndescription: 2001-02-30\nstages:\n- technique: prune\n", 2, ["description"]),
    ("date-name", "name: 2001-02-03\nstages:\n- technique: prune\n", 1, ["name", "expected a non-empty string"]),
    ("recursive-alias", "name: x\nstages: &s\n- technique: prune\n- *s\n", 4, ["stages[1]", "recursive alias"]),
    ("bad-merge", "name: x\nstages:\n- <<: 5\n  technique: prune\n", 3, ["merge key"]),
    ("yes-is-bool", "name: yes\nstages:\n- technique: prune\n", 1, ["name", "true (a boolean)"]),
    ("export-twice", "name: x\nexport: {mode: int8}\nstages:\n- technique: prune\n- technique: convert\n", 5,
     ["stages[1].technique", "export", "twice"]),
    ("export-unknown-key", "name: x\nstages:\n- technique: prune\nexport:\n  mod: int8\n", 5,
     ["export", "unknown key 'mod'", "did you mean 'mode'"]),
    ("export-bad-mode", "name: x\nstages:\n- technique: prune\nexport: {mode: int4}\n", 4,
     ["export.mode", "'int8'", "'int4'"]),
    ("convert-stage-extra-key", "name: x\nstages:\n- technique: prune\n- technique: convert\n  epochs: 1\n", 5,
     ["stages[1]", "unknown key 'epochs'", "technique, params"]),
    ("convert-bad-param", "name: x\nstages:\n- technique: convert\n  params: {calib_samples: 0}\n", 4,
     ["stages[0].params.calib_samples", ">= 1"]),
]


@pytest.mark.parametrize("text,line,words", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_errors(text, line, words):
    check(error(text), line, *words)


def test_billion_laughs_is_bounded():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 12)]
    err = error("\n".join(lines) + "\n")
    assert err.message.startswith("r.yaml:") and "too many values" in err.message


def test_deep_nesting_is_an_error():
    check(error("a: " + "[" * 200 + "]" * 200 + "\n"), 1, "nested")
    check(error("a: " + "[" * 1000 + "]" * 1000 + "\n"), 1, "nested")


def test_default_registry_is_used():
    with pytest.raises(RecipeError) as info:
        parse_recipe_text("name: x\nstages:\n- technique: nope\n", "d.yaml")
    check(info.value, 3, "unknown technique 'nope'", "prune", "cluster", "qat", "convert", source="d.yaml")


# ----------------------------------------------------------------- JSON and dict input


def test_json_file(tmp_path):
    data = yaml.safe_load(FULL)
    data["stages"][0]["learning_rate"] = 1e-4
    for indent, sep in [(2, None), ("\t", None), (None, (",", ":"))]:
        path = tmp_path / "r.json"
        path.write_text(json.dumps(data, indent=indent, separators=sep))
        r = load_recipe(path, registry=REGISTRY)
        assert strip(r) == strip(parse(FULL)) and r.source == str(path)


def test_json_escapes_and_unicode():
    text = json.dumps({"name": "r\u00e9sum\u00e9 \\/ \u2603", "stages": [{"technique": "prune"}]}, ensure_ascii=True)
    assert parse_recipe_text(text, "x.json", REGISTRY).name == "r\u00e9sum\u00e9 \\/ \u2603"


def test_json_errors_have_lines(tmp_path):
    data = {"name": "x", "stages": [{"technique": "prune", "params": {"final_sparsity": "big"}}]}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data, indent=2))
    with pytest.raises(RecipeError) as info:
        load_recipe(str(path), registry=REGISTRY)
    expected = next(i for i, line in enumerate(path.read_text().splitlines(), 1) if "final_sparsity" in line)
    check(info.value, expected, "stages[0].params.final_sparsity", "expected a number", source=str(path))

    path.write_text('{"name": "x",\n "stages": [\n  {"technique": "prune",}\n ]\n')  # trailing junk: unclosed
    with pytest.raises(RecipeError) as info:
        load_recipe(path, registry=REGISTRY)
    assert info.value.message.startswith(f"{path}:") and "invalid YAML" in info.value.message

    path.write_text('{"name": "x", "name": "y", "stages": [{"technique": "prune"}]}')
    with pytest.raises(RecipeError) as info:
        load_recipe(path, registry=REGISTRY)
    check(info.value, 1, "duplicate key 'name'", source=str(path))


def test_dict_input():
    data = yaml.safe_load(FULL)
    assert data["stages"][0]["learning_rate"] == "1e-4"  # plain PyYAML: a string (the recipe loader: a float)
    data["stages"][0]["learning_rate"] = 1e-4
    r = parse_recipe_dict(data, registry=REGISTRY)
    assert r.source == "<dict>" and r.stages[0].line is None and r.stages[0].rules[0].line is None
    assert strip(r) == strip(parse(FULL))
    # tuples are accepted as lists
    data["stages"][0]["params"]["block_size"] = (1, 4)
    assert parse_recipe_dict(data, "mine", REGISTRY).stages[0].params.block_size == (1, 4)


@pytest.mark.parametrize(
    "data,words",
    [
        ([1], ["mapping"]),
        ({"name": "x", "stages": [{"technique": "prune", "epochs": -2}]}, ["stages[0].epochs", ">= 0"]),
        ({"name": "x", "stages": [{"technique": "prune", 3: 1}]}, ["stages[0]", "key 3 must be a string"]),
        ({"name": "x", "stages": [{"technique": "prune", "rules": [{"skip": True}]}]}, ["rules[0]", "'match'"]),
        ({"name": "x", "stages": [{"technique": "prune", "params": {"begin_step": 9, "end_step": 1}}]},
         ["stages[0].params", "begin_step (9) must be < end_step (1)"]),
        ({"name": "x", "stages": [{"technique": "prune", "params": {"block_size": object()}}]},
         ["stages[0].params.block_size", "a list of 2 values"]),
    ],
)
def test_dict_errors(data, words):
    with pytest.raises(RecipeError) as info:
        parse_recipe_dict(data, registry=REGISTRY)
    check(info.value, None, *words, source="<dict>")


def test_dict_recursive():
    data: dict = {"name": "x", "stages": []}
    data["stages"].append(data)
    with pytest.raises(RecipeError, match="recursive"):
        parse_recipe_dict(data, registry=REGISTRY)


# ----------------------------------------------------------------- round trip


def test_round_trip():
    r = parse(FULL)
    text = dump_recipe(r)
    again = parse_recipe_text(text, "r.yaml", REGISTRY)
    assert strip(again) == strip(r)
    # dumping is deterministic, so the dumped text is a fixed point, lines included
    assert parse_recipe_text(dump_recipe(again), "r.yaml", REGISTRY) == again
    assert "match: {name: ^logits$}" in text and "block_size: [1, 4]" in text
    assert "initial_sparsity" not in text  # defaults are not written


def test_round_trip_of_code_built_recipe():
    r = Recipe(
        name="1e5",  # looks like a float to the loader: must be quoted
        description="multi\nline: yes",
        stages=(
            Stage("cluster", ClusterParams(number_of_clusters=4, init="random", preserve_sparsity=True, ranks=(0.5, 2.0),
                                           per_layer={"a": 1.5}, mode=Mode.INT8, tags=["x"], limit=3), epochs=1,
                  steps_per_epoch=7, learning_rate=3e-5, batch_size=16,
                  rules=(LayerRule(LayerMatch(None, "Dense"), params={"number_of_clusters": 8}),)),
        ),
        export=ExportSettings(mode="float16", sparse=True),
    )
    back = parse_recipe_text(dump_recipe(r), "x.yaml", REGISTRY)
    assert strip(back) == r
    assert parse_recipe_dict(recipe_to_dict(r), registry=REGISTRY) == dataclasses.replace(r, source="<dict>")
    yaml.safe_dump(recipe_to_dict(r))  # plain data


_text = st.characters(exclude_characters="\x00", exclude_categories=("Cs",))  # NUL and lone surrogates are refused
_names = st.text(_text, min_size=1, max_size=12).filter(lambda s: s.strip())


@st.composite
def recipes(draw):
    def rule():
        which = draw(st.sampled_from([(True, False), (False, True), (True, True)]))
        m = LayerMatch(re.escape(draw(st.text(_text, max_size=8))) if which[0] else None,
                       draw(st.from_regex(r"[A-Za-z0-9|^$]{0,8}", fullmatch=True)) if which[1] else None)
        if draw(st.booleans()):
            return LayerRule(m, skip=True)
        return LayerRule(m, params=draw(st.fixed_dictionaries({}, optional={
            "final_sparsity": st.floats(0, 0.99), "frequency": st.integers(1, 10)})))

    stages = []
    for _ in range(draw(st.integers(1, 3))):
        params = PruneParams(
            final_sparsity=draw(st.floats(0, 0.99)),
            initial_sparsity=draw(st.floats(-1e6, 1e6)),
            begin_step=draw(st.integers(0, 10)),
            end_step=draw(st.integers(11, 10**12)),
            schedule=draw(st.sampled_from(["constant", "polynomial"])),
            block_size=draw(st.tuples(st.integers(-5, 5), st.integers(-5, 5))),
            policy=draw(st.none() | st.text(_text, max_size=10)),
        )
        stages.append(Stage("prune", params, epochs=draw(st.integers(0, 5)),
                            steps_per_epoch=draw(st.none() | st.integers(1, 1000)),
                            learning_rate=draw(st.none() | st.floats(1e-9, 10)),
                            batch_size=draw(st.integers(1, 512)),
                            rules=tuple(rule() for _ in range(draw(st.integers(0, 2))))))
    return Recipe(draw(_names), tuple(stages), draw(st.text(_text, max_size=30)))


@settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(recipes())
def test_round_trip_property(r):
    assert strip(parse_recipe_text(dump_recipe(r), "p.yaml", REGISTRY)) == r


# ----------------------------------------------------------------- shipped recipes and files


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    packaged, repo = tmp_path / "pkg", tmp_path / "repo"
    packaged.mkdir()
    repo.mkdir()
    (packaged / "prune-50.yaml").write_text("name: packaged\nstages:\n- technique: prune\n")
    (repo / "prune-50.yaml").write_text("name: repo-copy\nstages:\n- technique: prune\n")
    (repo / "cluster-16.yml").write_text("name: cluster-16\nstages:\n- technique: cluster\n")
    (repo / "int8.json").write_text('{"name": "int8", "stages": [{"technique": "convert"}]}')
    (repo / "notes.txt").write_text("not a recipe")
    monkeypatch.setattr(recipe_mod, "RECIPE_DIRS", (packaged, repo, tmp_path / "missing"))
    return packaged, repo


def test_shipped_lookup(shipped, tmp_path, monkeypatch):
    packaged, repo = shipped
    assert list_shipped_recipes() == ["cluster-16", "int8", "prune-50"]
    r = load_recipe("prune-50", registry=REGISTRY)
    assert r.name == "packaged" and r.source == str(packaged / "prune-50.yaml")  # packaged copy wins
    assert load_recipe("cluster-16", registry=REGISTRY).name == "cluster-16"
    int8 = load_recipe("int8", registry=REGISTRY)  # only the `convert` sugar: no stages, default export
    assert int8.stages == () and int8.export == ExportSettings()
    with pytest.raises(RecipeError) as info:
        load_recipe("prune-5O", registry=REGISTRY)
    assert info.value.message.startswith("prune-5O: ") and "did you mean 'prune-50'" in info.value.message
    assert "cluster-16, int8, prune-50" in info.value.hint
    # a bare name that is not shipped but is a file in the working directory
    monkeypatch.chdir(tmp_path)
    (tmp_path / "local").write_text("name: local\nstages:\n- technique: prune\n")
    assert load_recipe("local", registry=REGISTRY).name == "local"


def test_default_recipe_dirs():
    pkg = Path(tfcompress.__file__).resolve().parent
    assert recipe_mod.recipe_dirs() == (pkg / "recipes", pkg.parent / "recipes")


def test_load_paths(tmp_path):
    path = tmp_path / "r.yml"
    path.write_text(FULL)
    assert strip(load_recipe(str(path), registry=REGISTRY)) == strip(parse(FULL))
    assert load_recipe(path, registry=REGISTRY).stages[0].line == 4
    with pytest.raises(RecipeError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.yaml", registry=REGISTRY)
    with pytest.raises(RecipeError, match="must be a regular file, this is a directory"):
        load_recipe(str(tmp_path) + "/", registry=REGISTRY)
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(RecipeError, match="not UTF-8"):
        load_recipe(bad, registry=REGISTRY)
    bad.write_text("name: x\nstages:\n- technique: prune\n  epochs: -3\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(bad, registry=REGISTRY)
    check(info.value, 4, "stages[0].epochs", source=str(bad))


def test_no_tensorflow_import():
    code = "import sys, tfcompress.recipe; sys.exit('tensorflow' in sys.modules or 'keras' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


# ----------------------------------------------------------------- fuzzing: only RecipeError may escape


def _only_recipe_errors(fn, *args):
    try:
        fn(*args)
    except RecipeError as e:
        assert e.message and ":" in e.message


FUZZ = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.text(max_size=200))
def test_fuzz_text(text):
    _only_recipe_errors(parse_recipe_text, text, "f.yaml", REGISTRY)


_keys = st.sampled_from(
    ["name", "description", "stages", "technique", "epochs", "steps_per_epoch", "learning_rate", "batch_size",
     "params", "rules", "match", "skip", "class", "final_sparsity", "begin_step", "end_step", "block_size",
     "schedule", "policy", "ranks", "per_layer", "mode", "tags", "limit", "init", "number_of_clusters"]
) | st.text(max_size=6)
_scalars = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=10)
    | st.sampled_from(["prune", "cluster", "convert", "broken", "ghost", "(", "^a$", "int8", "constant", "1e5"])
)
_values = st.recursive(
    _scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(_keys, c, max_size=5), max_leaves=20
)


def _mostly(good, bad=_scalars):
    """Usually a valid value, sometimes anything."""
    return st.integers(0, 3).flatmap(lambda i: bad if i == 3 else good)


_field_names = st.sampled_from(sorted({f for t in (PruneParams, ClusterParams, ExportSettings) for f in t.model_fields}))
_param_values = _mostly(_scalars | st.lists(_scalars, max_size=3) | st.dictionaries(_keys, _scalars, max_size=2),
                        _values)
_rule_like = st.fixed_dictionaries(
    {"match": _mostly(st.dictionaries(st.sampled_from(["name", "class"]), _mostly(st.sampled_from(
        ["^conv", "Dense", "(", "*", "a{4294967296}", ""])), min_size=1), _values)},
    optional={"skip": _mostly(st.booleans()), "params": _mostly(st.dictionaries(_field_names, _param_values,
                                                                                max_size=3), _values),
              "zz": _values},
)
_stage_like = st.fixed_dictionaries(
    {"technique": _mostly(st.sampled_from([*REGISTRY, *GOOD_TECHNIQUES * 4]))},
    optional={
        "epochs": _mostly(st.integers(0, 5)),
        "steps_per_epoch": _mostly(st.none() | st.integers(1, 100)),
        "learning_rate": _mostly(st.none() | st.floats(1e-6, 1)),
        "batch_size": _mostly(st.integers(1, 256)),
        "params": _mostly(st.dictionaries(_field_names, _param_values, max_size=4), _values),
        "rules": _mostly(st.lists(_rule_like, max_size=3), _values),
    },
)
# valid-looking recipes: the right skeleton with random keys and values
_recipe_like = st.fixed_dictionaries(
    {"name": _names, "stages": st.lists(_stage_like, min_size=1, max_size=3)},
    optional={"description": _mostly(st.text(max_size=10))},
)


@FUZZ
@given(_values | _recipe_like)
def test_fuzz_structures(data):
    text = yaml.safe_dump(data, allow_unicode=True)
    _only_recipe_errors(parse_recipe_text, text, "f.yaml", REGISTRY)
    _only_recipe_errors(parse_recipe_dict, data, "<dict>", REGISTRY)


@FUZZ
@given(st.integers(0, len(FULL)), st.integers(0, 12), st.text(alphabet=" -:{}[],&*!|>'\"#\n\tax0", max_size=8))
def test_fuzz_mutations(at, cut, insert):
    _only_recipe_errors(parse_recipe_text, FULL[:at] + insert + FULL[at + cut:], "m.yaml", REGISTRY)


# ----------------------------------------------------------------- docs and schema


def _doc_table(text: str, heading: str) -> dict[str, object]:
    """param -> default of the first table after `heading` in docs/recipes.md."""
    lines = text[text.index(f"\n{heading}\n"):].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        name, default = cells[0].strip("`"), cells[2].strip("`")
        try:
            rows[name] = json.loads(default)
        except ValueError:
            rows[name] = default  # a bare string: `kmeans++`
    return rows


def test_docs_param_tables_match_the_schema():
    from tfcompress.techniques import TECHNIQUES

    schema = recipe_mod.recipe_json_schema()
    defs = schema["$defs"]
    stages = schema["properties"]["stages"]["items"]["discriminator"]["mapping"]
    assert set(stages) == {*TECHNIQUES, "convert"}
    text = (Path(__file__).resolve().parent.parent / "docs" / "recipes.md").read_text()
    tables = {name: (f"#### `{name}`", stages[name]) for name in TECHNIQUES}
    tables["export"] = ("### Export", "#/$defs/ExportSettings")
    for name, (heading, ref) in tables.items():
        stage = defs[ref.rsplit("/", 1)[-1]]
        params = stage if name == "export" else defs[stage["properties"]["params"]["anyOf"][0]["$ref"].rsplit("/", 1)[-1]]
        expected = {k: f.get("default") for k, f in params["properties"].items()}
        assert _doc_table(text, heading) == expected, name
    assert "tfcompress recipes --schema" in text and "\nexport:" in text


def test_schema_of_a_fake_registry():
    schema = recipe_mod.recipe_json_schema({name: REGISTRY[name] for name in ("prune", "cluster")})
    assert schema["properties"]["stages"]["items"]["discriminator"]["propertyName"] == "technique"
    prune = schema["$defs"]["PruneStage"]
    assert prune["properties"]["technique"]["const"] == "prune" and prune["additionalProperties"] is False
    assert set(schema["$defs"]["PruneParams"]["properties"]) == set(PruneParams.model_fields)
