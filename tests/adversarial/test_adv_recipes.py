"""Adversarial recipes (issue 12): a corpus of every class the prober found, and property-based fuzzing.

Classes: unbounded input (huge text, FIFOs, directories, devices), regexes that could hang, absurd numbers,
NUL characters, stage orders that cannot work (errors) or undo an earlier stage (warnings). The fuzz tests
run 10,500 generated recipes (random text, random structures, mutated valid recipes, random stage sequences)
with the real technique registry; the only thing that may escape is a `RecipeError` (or a warning), no
case may run over 5 s (a SIGALRM watchdog per case, hypothesis `deadline=5000`), and the process's peak
memory may grow by at most `MEMORY_BOUND_MB` over the whole file.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import resource
import signal
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tfcompress.errors import RecipeError
from tfcompress.recipe import load_recipe, parse_recipe_dict, parse_recipe_text
from tfcompress.techniques.rules import UnmatchedRuleWarning, matches, plan_layers
from tfcompress.types import LayerMatch

CASE_SECONDS = 5  # no single case may take longer (the "no hang over 5 s per case")
MEMORY_BOUND_MB = 300  # peak RSS growth over this file
MIB = 1 << 20
import tfcompress.keras_compat  # noqa: E402,F401  TensorFlow's ~750 MB, loaded by other test files anyway, not counted

_START_RSS_KB = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


@contextlib.contextmanager
def within(seconds: float = CASE_SECONDS) -> Iterator[None]:
    """Fail with TimeoutError instead of hanging (SIGALRM; interrupts regex matching and blocking opens)."""
    def expire(signum: int, frame: Any) -> None:
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def error_of(fn: Callable[..., Any], *args: Any) -> RecipeError:
    with within(), pytest.raises(RecipeError) as info:
        fn(*args)
    return info.value


def recipe_error(text: str, source: str = "r.yaml") -> RecipeError:
    return error_of(parse_recipe_text, text, source)


def order_warnings(text: str) -> list[str]:
    from tfcompress.recipe import StageOrderWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with within():
            parse_recipe_text(text, "o.yaml")
    return [str(w.message) for w in caught if issubclass(w.category, StageOrderWarning)]


def stages_yaml(*stages: str) -> str:
    """`name: o` and one `- technique: ...` item per argument (inline keys after the technique)."""
    return "name: o\nstages:\n" + "".join(f"  - technique: {s}\n" for s in stages)


# ----------------------------------------------------------------- 1. size limits, special files


def test_oversized_text_is_refused_before_parsing():
    text = "name: big\nstages: [" + "{technique: prune}, " * (MIB // 20 + 1) + "]\n"  # > 1 MiB of valid YAML
    started = time.perf_counter()
    err = recipe_error(text, "big.yaml")
    assert time.perf_counter() - started < 2.0  # not parsed (the old code took ~20 s and ~300 MB here)
    assert err.message.startswith("big.yaml: recipe is too large:")
    assert f"{len(text):,}" in err.message and "1,048,576 bytes" in err.message


def test_the_limit_counts_bytes_and_the_limit_itself_is_fine():
    body = "name: edge\nstages:\n- technique: prune\n#"
    exact = body + "x" * (MIB - len(body) - 1) + "\n"
    assert len(exact.encode()) == MIB
    assert parse_recipe_text(exact, "edge.yaml").name == "edge"
    wide = body + "\u00e9" * ((MIB - len(body)) // 2 + 1)  # under the limit in characters, over it in bytes
    assert "bytes, the limit is 1,048,576" in recipe_error(wide).message


def test_oversized_file_is_refused_without_reading_it(tmp_path):
    path = tmp_path / "sparse.yaml"
    with open(path, "wb") as f:
        f.truncate(64 * MIB)  # 64 MiB of NULs without writing them
    err = error_of(load_recipe, path)
    assert err.message == f"{path}: recipe is too large: {64 * MIB:,} bytes, the limit is 1,048,576 bytes"
    just_over = tmp_path / "over.yaml"
    just_over.write_bytes(b"#" * (MIB + 1))
    assert "1,048,577 bytes" in error_of(load_recipe, just_over).message


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)  # opening it for reading would block until a writer comes
    err = error_of(load_recipe, fifo)
    assert err.message == f"{fifo}: a recipe must be a regular file, this is a FIFO (named pipe)"


def test_a_directory_and_a_device_are_refused(tmp_path):
    folder = tmp_path / "dir.yaml"
    folder.mkdir()
    assert "must be a regular file, this is a directory" in error_of(load_recipe, folder).message
    link = tmp_path / "null.yaml"
    link.symlink_to("/dev/null")  # a link to a device: what it points to counts
    assert "must be a regular file, this is a character device" in error_of(load_recipe, link).message
    regular = tmp_path / "link.yaml"
    (tmp_path / "real.yaml").write_text("name: r\nstages:\n- technique: prune\n")
    regular.symlink_to(tmp_path / "real.yaml")  # a link to a regular file is fine
    assert load_recipe(regular).name == "r"


def test_node_count_is_bounded_before_composition_finishes():
    text = "name: a\nstages: [" + "1," * 200_000 + "1]\n"  # 400 KB: under the size limit
    err = recipe_error(text)  # within CASE_SECONDS; stops after ~40 KB
    assert err.message.startswith("r.yaml:2: too many values (more than 20,000 YAML nodes)")


# ----------------------------------------------------------------- 2. regexes cannot hang


class _Layer:
    def __init__(self, name: str) -> None:
        self.name = name


def test_nested_quantifier_runs_in_linear_time():
    evil = LayerMatch(name="^(a+)+$")
    started = time.perf_counter()
    with within(3):  # Python's re needs ~2^40 steps here
        assert not matches(evil, _Layer("a" * 40 + "!"))
        assert matches(evil, _Layer("a" * 1000))
        assert not matches(LayerMatch(name="(x+x+)+y"), _Layer("x" * 1000))
    assert time.perf_counter() - started < 1.0


def test_nested_quantifier_in_a_recipe_parses_and_plans_fast():
    text = "name: q\nstages:\n- technique: prune\n  rules:\n  - match: {name: '^(a+)+$'}\n    skip: true\n"
    rule = parse_recipe_text(text, "q.yaml").stages[0].rules[0]
    layers = [_Layer("a" * 30 + "!"), _Layer("a" * 50)]
    with within(3):
        plan = plan_layers(layers, (rule,), object(), lambda layer: True)
    assert plan.skipped == ("a" * 50,)


@pytest.mark.parametrize("pattern,words", [
    (r"(a)\1", ["regular expression '(a)\\\\1'", "RE2", "backreferences"]),
    (r"(?P<x>a)(?P=x)", ["RE2", "backreferences"]),
    (r"conv(?=_1)", ["RE2", "lookahead"]),
    (r"(?<!x)conv", ["RE2", "lookbehind"]),
    ("x" * 1001, ["expected a string of at most 1,000 characters or null", "the string 'xxx"]),
    ("conv(", ["invalid regular expression 'conv('", "missing )"]),
], ids=["backreference", "named-backreference", "lookahead", "lookbehind", "too-long", "syntax"])
def test_unrunnable_regexes_are_errors_at_their_line(pattern, words):
    text = f"name: x\nstages:\n- technique: prune\n  rules:\n  - match:\n      name: {json.dumps(pattern)}\n"
    err = recipe_error(text)
    assert err.message.startswith("r.yaml:6: stages[0].rules[0].match.name: "), err.message
    for w in words:
        assert w in str(err), (w, str(err))


def test_share_weights_groups_are_checked_the_same_way():
    err = recipe_error("name: s\nstages:\n- technique: share_weights\n  params: {groups: ['(a)\\1']}\n")
    assert err.message.startswith("r.yaml:4: stages[0].params") and "RE2" in str(err)


def test_overlong_layer_names_match_no_rule():
    from tfcompress.techniques.rules import LongLayerNameWarning

    with pytest.warns(LongLayerNameWarning, match="no rule matches it"), within(2):
        assert not matches(LayerMatch(name="a"), _Layer("a" * 5000))
    assert matches(LayerMatch(name="a$"), _Layer("a" * 1024))


# ----------------------------------------------------------------- 3. numbers, NUL: errors at their line


def _stage(key: str, value: str, technique: str = "prune") -> str:
    return f"name: n\nstages:\n- technique: {technique}\n  {key}: {value}\n"


def _param(key: str, value: str, technique: str) -> str:
    return f"name: n\nstages:\n- technique: {technique}\n  params:\n    {key}: {value}\n"


NUMBERS = [  # id, text, line, words
    ("epochs-1e25", _stage("epochs", "10000000000000000000000000"), 4, ["stages[0].epochs", "<= 10000"]),
    ("epochs-5000-digits", _stage("epochs", "9" * 5000), 4, ["stages[0].epochs", "more than 100 digits"]),
    ("epochs-hex-5000", _stage("epochs", "0x" + "f" * 5000), 4, ["stages[0].epochs", "more than 100 digits"]),
    ("epochs-sexagesimal", _stage("epochs", "1" + ":59" * 3000), 4, ["stages[0].epochs", "more than 100 digits"]),
    ("epochs-negative", _stage("epochs", "-1"), 4, ["stages[0].epochs", ">= 0"]),
    ("epochs-inf", _stage("epochs", ".inf"), 4, ["stages[0].epochs", "an integer"]),
    ("batch-float-digits", _stage("batch_size", "9" * 5000 + ".5"), 4, ["stages[0].batch_size", "an integer"]),
    ("lr-inf", _stage("learning_rate", ".inf"), 4, ["stages[0].learning_rate", "<= 10.0", "inf"]),
    ("lr-1e400", _stage("learning_rate", "1e400"), 4, ["stages[0].learning_rate", "inf"]),
    ("lr-nan", _stage("learning_rate", ".nan"), 4, ["stages[0].learning_rate", "NaN"]),
    ("lr-negative", _stage("learning_rate", "-1e-4"), 4, ["stages[0].learning_rate", "> 0.0"]),
    ("steps-1e30", _stage("steps_per_epoch", "1000000000000000000000000000000"), 4, ["steps_per_epoch"]),
    ("clusters-1e9", _param("clusters", "1e9", "cluster"), 5, ["params.clusters", "<= 65536"]),
    ("clusters-huge-int", _param("clusters", "7" * 5000, "cluster"), 5, ["params.clusters", "100 digits"]),
    ("sparsity-nan", _param("final_sparsity", ".nan", "prune"), 5, ["params.final_sparsity", "NaN"]),
    ("sparsity-negative", _param("final_sparsity", "-0.5", "prune"), 5, ["params.final_sparsity", ">= 0.0"]),
    ("m-by-n-huge", _param("m_by_n", "[2, 100000000000000000000000]", "prune"), 5, ["m_by_n[1]", "<= 1024"]),
    ("rank-negative", _param("rank", "-3", "low_rank"), 5, ["params.rank", ">= 1"]),
    ("temperature-inf", _param("temperature", ".inf", "distill"), 5, ["params.temperature", "<= 1000.0"]),
    ("ratio-1", _param("ratio", "1.0", "structured_prune"), 5, ["params.ratio", "< 1.0"]),
    ("max-clusters-1e9", _param("max_clusters", "1000000000", "qat"), 5, ["params.max_clusters", "<= 65536"]),
    ("calib-1e30", "name: n\nstages:\n- technique: prune\nexport: {calib_samples: 1000000000000000000000000000000}\n",
     4, ["export.calib_samples", "<= 100000"]),
    ("key-200-digits", "name: n\nstages:\n- technique: prune\n  " + "9" * 200 + ": 1\n", 4, ["key", "100 digits"]),
]

NULS = [
    ("nul-name", 'name: "a\\0b"\nstages:\n- technique: prune\n', 1, ["name:", "NUL"]),
    ("nul-description", 'name: a\ndescription: "x\\0"\nstages:\n- technique: prune\n', 2, ["description", "NUL"]),
    ("nul-regex", 'name: a\nstages:\n- technique: prune\n  rules:\n  - match: {name: "a\\0"}\n', 5,
     ["match.name", "NUL"]),
    ("nul-class-regex", 'name: a\nstages:\n- technique: prune\n  rules:\n  - match: {class: "\\0"}\n', 5,
     ["match.class", "NUL"]),
    ("nul-technique", 'name: a\nstages:\n- technique: "prune\\0"\n', 3, ["technique", "NUL"]),
    ("nul-key", 'name: a\nstages:\n- technique: prune\n  "epochs\\0": 1\n', 4, ["key", "NUL"]),
    ("nul-group", 'name: a\nstages:\n- technique: share_weights\n  params: {groups: ["x\\0"]}\n', 4,
     ["groups[0]", "NUL"]),
    ("nul-export", 'name: a\nstages:\n- technique: prune\nexport: {mode: "int8\\0"}\n', 4, ["export.mode", "NUL"]),
]


@pytest.mark.parametrize("text,line,words", [c[1:] for c in NUMBERS + NULS], ids=[c[0] for c in NUMBERS + NULS])
def test_corpus_numbers_and_nul(text, line, words):
    err = recipe_error(text)
    assert err.message.startswith(f"r.yaml:{line}: "), err.message
    for w in words:
        assert w in str(err), (w, str(err))


@pytest.mark.parametrize("data,words", [
    ({"name": "a", "stages": [{"technique": "prune", "epochs": 10**5000}]}, ["stages[0].epochs", "100 digits"]),
    ({"name": "a", "stages": [{"technique": "prune", "learning_rate": float("inf")}]}, ["learning_rate"]),
    ({"name": "a", "stages": [{"technique": "prune", "learning_rate": float("nan")}]}, ["NaN"]),
    ({"name": "a\x00", "stages": [{"technique": "prune"}]}, ["name", "NUL"]),
    ({"name": "a", "stages": [{"technique": "prune", "a\x00": 1}]}, ["key", "NUL"]),
    ({"name": "a", "stages": [{"technique": "prune", 10**5000: 1}]}, ["must be a string"]),
    ({"name": "a", "stages": [{"technique": "prune", "rules": [{"match": {"name": "(a)\\1"}}]}]}, ["RE2"]),
])
def test_corpus_dicts(data, words):
    err = error_of(parse_recipe_dict, data)
    assert err.message.startswith("<dict>: ")
    for w in words:
        assert w in str(err), (w, str(err))


# ----------------------------------------------------------------- 4. stage order


ORDER_ERRORS = [  # id, stages, line of the later stage, words
    ("qat-then-prune", ["qat", "prune"], 4, ["stages[1]: 'prune' after 'qat' (stages[0], line 3)", "cannot prune"]),
    ("qat-then-cluster", ["qat", "cluster"], 4, ["'cluster' after 'qat'", "QAT-wrapped"]),
    ("qat-twice", ["qat", "qat"], 4, ["'qat' after 'qat'", "already wrapped"]),
    ("qat-then-low-rank", ["prune", "qat", "low_rank"], 5, ["stages[2]: 'low_rank' after 'qat' (stages[1], line 4)"]),
    ("qat-then-structured", ["qat", "structured_prune"], 4, ["'structured_prune' after 'qat'"]),
    ("qat-then-share", ["qat", "share_weights"], 4, ["'share_weights' after 'qat'"]),
    ("qat-then-distill", ["qat", "distill"], 4, ["'distill' after 'qat'", "put 'qat' last"]),
    ("qat-after-a-good-order", ["prune", "cluster", "qat", "qat"], 6, ["stages[3]: 'qat' after 'qat' (stages[2]"]),
]


@pytest.mark.parametrize("stages,line,words", [c[1:] for c in ORDER_ERRORS], ids=[c[0] for c in ORDER_ERRORS])
def test_orders_that_cannot_work_are_errors_at_the_later_stage(stages, line, words):
    err = recipe_error(stages_yaml(*stages))
    assert err.message.startswith(f"r.yaml:{line}: stages["), err.message
    for w in words:
        assert w in str(err), (w, str(err))


def _s(technique: str, epochs: int = 1, **params: Any) -> str:
    """A stage for `stages_yaml`: the technique, its epochs line and, given params, a params line."""
    text = f"{technique}\n    epochs: {epochs}"
    if params:
        text += "\n    params: {" + ", ".join(f"{k}: {v}" for k, v in params.items()) + "}"
    return text


ORDER_WARNINGS = [  # id, stages, words of the one warning
    ("cluster-after-prune", [_s("prune"), _s("cluster")],
     ["o.yaml:5: stages[1]: 'cluster' after 'prune' (stages[0], line 3)", "fills the zeros", "preserve_sparsity"]),
    ("cluster-after-prune-no-epochs", [_s("prune"), _s("cluster", 0)], ["'cluster' after 'prune'"]),
    ("prune-after-cluster", [_s("cluster"), _s("prune")], ["'prune' after 'cluster' (stages[0], line 3)",
                                                          "clusters", "unique values"]),
    ("structured-after-cluster", [_s("cluster"), _s("structured_prune")], ["'structured_prune' after 'cluster'"]),
    ("low-rank-after-cluster", [_s("cluster"), _s("low_rank", 0)], ["'low_rank' after 'cluster'", "clusters"]),
    ("low-rank-after-prune", [_s("prune"), _s("low_rank", 0)], ["'low_rank' after 'prune'", "dense factors"]),
    ("distill-after-prune", [_s("prune"), _s("distill", 2)], ["'distill' after 'prune'", "2 epochs",
                                                             "refills the zeros"]),
    ("distill-after-cluster", [_s("cluster"), _s("distill")], ["'distill' after 'cluster'"]),
    ("share-after-prune", [_s("prune"), _s("share_weights")], ["'share_weights' after 'prune'"]),
    ("default-qat-after-prune", [_s("prune"), _s("qat", scheme="default")],
     ["'qat' after 'prune'", "scheme 'default'", "prune_preserve"]),
    ("prune-preserve-qat-after-cluster", [_s("cluster"), _s("qat", scheme="prune_preserve")],
     ["'qat' after 'cluster'", "centroids"]),
]


@pytest.mark.parametrize("stages,words", [c[1:] for c in ORDER_WARNINGS], ids=[c[0] for c in ORDER_WARNINGS])
def test_orders_that_undo_a_stage_warn_naming_both(stages, words):
    found = order_warnings(stages_yaml(*stages))
    assert len(found) == 1, found
    for w in words:
        assert w in found[0], (w, found[0])


@pytest.mark.parametrize("stages", [
    [_s("prune"), _s("cluster", preserve_sparsity="true"), _s("qat", scheme="prune_cluster_preserve")],  # PCQAT
    [_s("prune"), _s("qat", scheme="prune_preserve")],
    [_s("cluster"), _s("qat", scheme="cluster_preserve")],
    [_s("prune"), _s("qat")],  # auto reads the zeros
    [_s("structured_prune"), _s("low_rank"), _s("distill"), _s("prune"), _s("cluster", preserve_sparsity="true")],
    [_s("prune"), _s("distill", 0)],
    [_s("cluster"), _s("prune", 0)],
    [_s("prune"), _s("prune")],
    [_s("qat")],
])
def test_orders_that_keep_earlier_stages_are_quiet(stages):
    assert order_warnings(stages_yaml(*stages)) == []


def test_shipped_recipes_have_no_order_findings():
    from tfcompress.recipe import list_shipped_recipes

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails
        for name in list_shipped_recipes():
            load_recipe(name)


def test_order_table_rows_never_share_a_pair():
    from tfcompress.recipe.order import ORDER_RULES
    from tfcompress.techniques import TECHNIQUES

    pairs = [(e, l) for r in ORDER_RULES for e in r.earlier for l in r.later]
    assert len(pairs) == len(set(pairs))
    assert {t for e, l in pairs for t in (e, l)} <= set(TECHNIQUES)


def test_docs_show_the_order_table():
    from tfcompress.recipe.order import ORDER_RULES

    text = (Path(__file__).resolve().parents[2] / "docs" / "recipes.md").read_text()
    section = text[text.index("### Stage order"):]
    for rule in ORDER_RULES:
        row = next((line for line in section.splitlines()
                    if line.startswith("|") and all(f"`{t}`" in line.split("|")[1] for t in rule.earlier)
                    and all(f"`{t}`" in line.split("|")[2] for t in rule.later)), None)
        assert row is not None and rule.level in row, (rule.earlier, rule.later)


# ----------------------------------------------------------------- 5. fuzzing: only RecipeError escapes


def _only_recipe_errors(fn: Callable[..., Any], *args: Any) -> None:
    """Run one case: a RecipeError or success, warnings of our own kinds, under CASE_SECONDS."""
    from tfcompress.recipe import RecipeWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with within():
                fn(*args)
        except RecipeError:
            pass
    for w in caught:
        assert issubclass(w.category, (RecipeWarning, UnmatchedRuleWarning)), (w.category, str(w.message))


def _check_memory() -> None:
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - _START_RSS_KB) / 1024
    assert grown_mb < MEMORY_BOUND_MB, f"peak RSS grew by {grown_mb:.0f} MB over this file"


FUZZ = dict(deadline=CASE_SECONDS * 1000, database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])

TECHNIQUE_NAMES = ["prune", "cluster", "qat", "structured_prune", "low_rank", "share_weights", "distill", "convert"]
# Strategies draw mostly from fixed pools (`sampled_from` is one cheap choice; `st.floats()` / `st.characters()`
# would make generation, not parsing, most of the run). The pools hold the hostile classes: huge, infinite, NaN,
# negative and fractional numbers, NUL and other odd characters, regexes that hang or need backtracking.
_ALPHABET = "ab_09.-+:#&*!|>'\"{}[],%@` \t\n\r\x00\x01\x7f\x85\xa0\u00e9\u2028\ufeff\ud7ff\U0001f600\\"
_NUMBERS = [0, 1, 2, 3, 4, 16, -1, -3, 100, 1000, 10_000, 10_001, 65536, 65537, 10**9, 10**12, 10**25, 10**100,
            10**101, 10**400, 10**5000, 2**63, -(2**63), 0.0, -0.0, 0.1, 0.5, 0.99, 1.0, 1.5, -0.5, 1e-4, 1e9, 1e-300, 5e-324,
            1e308, float("inf"), float("-inf"), float("nan")]
_STRINGS = [*TECHNIQUE_NAMES, "^(a+)+$", "(x+x+)+y", "(a)\\1", "(?=a)", "conv(", "x" * 1001, "a\x00", "\x00", "int8",
            "float16", "int4", "AVG", "kmeans++", "auto", "default", "prune_preserve", "cluster_preserve", "tucker",
            "l1", "", " ", "\u2028", "\ufeff", "\u00e9t\u00e9", "\U0001f600", "1e5", "yes", "~", "*a", "&a",
            "!!python/name:os.system", "- x", "a: b", "{", "[", "'", '"', "#", "^logits$", "Conv2D|Dense"]
_nasty_text = st.text(st.sampled_from(_ALPHABET), max_size=12)
_SCALARS = [None, True, False, *_NUMBERS, *_STRINGS]
_KEYS = ["name", "description", "stages", "technique", "epochs", "steps_per_epoch", "learning_rate", "batch_size",
         "params", "rules", "match", "skip", "class", "export", "mode", "final_sparsity", "clusters",
         "preserve_sparsity", "scheme", "m_by_n", "block_size", "groups", "rank", "epoch", "", "a\x00", "<<", "1"]
_huge_int = st.builds(pow, st.just(10), st.just(5000))  # hypothesis cannot repr it inside sampled_from
_values = st.recursive(st.sampled_from([x for x in _SCALARS if not isinstance(x, int) or x.bit_length() < 10_000])
                       | _nasty_text | _huge_int,
                       lambda c: st.lists(c, max_size=4) | st.dictionaries(st.sampled_from(_KEYS), c, max_size=4),
                       max_leaves=8)

_PARAMS = {  # technique -> its parameters; values come from the shared pools and `_SPECIAL`
    "prune": ["final_sparsity", "initial_sparsity", "end_step", "begin_step", "m_by_n", "frequency", "block_size",
              "schedule", "power"],
    "cluster": ["clusters", "preserve_sparsity", "min_weights", "init"],
    "qat": ["scheme", "max_clusters", "sparsity_threshold"],
    "structured_prune": ["ratio", "rounds", "samples", "criterion", "round_to"],
    "low_rank": ["rank", "energy", "tucker_iters", "reduction"],
    "share_weights": ["groups", "similarity", "init"],
    "distill": ["temperature", "alpha"],
    "convert": ["mode", "calib_samples", "sparse"],
}
_SPECIAL = {  # values worth drawing more often than the shared pools give them
    "scheme": ["auto", "default", "prune_preserve", "cluster_preserve", "prune_cluster_preserve"],
    "preserve_sparsity": [True, False], "m_by_n": [[2, 4], [2, 10**25], [4, 2], [2]], "block_size": [[1, 1], [2]],
    "groups": [["^(a+)+$"], ["(a)\\1"], ["a\x00"], ["x" * 1001], []],
}


def _text(r: random.Random) -> str:
    return "".join(r.choice(_ALPHABET) for _ in range(r.randrange(12)))


def _scalar(r: random.Random) -> Any:
    return _text(r) if r.random() < 0.1 else r.choice(_SCALARS)


def _param(r: random.Random, name: str) -> Any:
    kind = r.randrange(4)
    if kind == 0 and name in _SPECIAL:
        return r.choice(_SPECIAL[name])
    if kind == 1:
        return [_scalar(r) for _ in range(r.randrange(4))]
    return _scalar(r)


def _stage(r: random.Random) -> dict[str, Any]:
    """One stage: a technique (or a bad name), maybe epochs, a stray key, params and rules."""
    technique = r.choice([*TECHNIQUE_NAMES, *TECHNIQUE_NAMES, "prun", "a\x00", "", _text(r)])
    stage: dict[str, Any] = {"technique": technique}
    if technique != "convert" and r.random() < 0.5:
        stage["epochs"] = r.choice([0, 1, 2, r.choice(_NUMBERS)])
    if r.random() < 0.2:
        stage[r.choice(_KEYS)] = _scalar(r)
    if technique in _PARAMS and r.random() < 0.6:
        names = r.sample([*_PARAMS[technique], "bogus"], r.randrange(4))
        stage["params"] = {n: _param(r, n) for n in names}
    if r.random() < 0.25:
        stage["rules"] = [{"match": {r.choice(["name", "class", "nme"]): _scalar(r)},
                           **({"skip": True} if r.random() < 0.5 else {})} for _ in range(r.randrange(3))]
    return stage


def _recipe(r: random.Random) -> dict[str, Any]:
    """A recipe as data: mostly well-formed at the top, anything inside (stage orders included)."""
    recipe: dict[str, Any] = {"name": r.choice(["r", "fuzz", _text(r)]), "stages": [_stage(r) for _ in range(r.randrange(5))]}
    if r.random() < 0.25:
        recipe["export"] = {r.choice(["mode", "calib_samples", "io"]): _scalar(r)}
    if r.random() < 0.25:
        recipe["description"] = _scalar(r)
    return recipe


# one hypothesis draw (the seed) per recipe: drawing each choice through hypothesis made generation ~8x the parsing
_recipes = st.randoms(use_true_random=True).map(_recipe)


@pytest.mark.slow
@settings(max_examples=3500, **FUZZ)
@given(_recipes)
def test_fuzz_stage_sequences_as_dicts(data):
    _only_recipe_errors(parse_recipe_dict, data)
    _check_memory()


def _yaml_text(data: Any) -> str:
    try:
        return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    except (yaml.YAMLError, ValueError):  # an int over Python's 4,300-digit str() limit
        return "name: [" + ", ".join(map(str, range(10))) + "]\n"


@pytest.mark.slow
@settings(max_examples=3000, **FUZZ)
@given(_recipes)
def test_fuzz_stage_sequences_as_yaml(data):
    _only_recipe_errors(parse_recipe_text, _yaml_text(data), "f.yaml")


@pytest.mark.slow
@settings(max_examples=1500, **FUZZ)
@given(_values)
def test_fuzz_random_structures(data):
    _only_recipe_errors(parse_recipe_dict, data)
    _only_recipe_errors(parse_recipe_text, _yaml_text(data), "s.json")


_VALID = [
    "name: pcqat\nstages:\n  - technique: prune\n    epochs: 2\n    params: {final_sparsity: 0.5, m_by_n: null}\n"
    "    rules:\n      - match: {name: '^logits$'}\n        skip: true\n  - technique: cluster\n    epochs: 1\n"
    "    params: {clusters: 16, preserve_sparsity: true}\n  - technique: qat\n    epochs: 1\n"
    "    params: {scheme: prune_cluster_preserve}\n  - technique: convert\n    params: {mode: int8}\n",
    '{"name": "lr", "stages": [{"technique": "low_rank", "params": {"rank": 8}},\n'
    ' {"technique": "share_weights", "params": {"groups": ["^block[0-9]+_conv$"]}},\n'
    ' {"technique": "distill", "epochs": 1, "params": {"temperature": 4.0}}], "export": {"calib_samples": 100}}\n',
    "name: s\nstages:\n  - &d\n    technique: structured_prune\n    epochs: 1\n    learning_rate: 1e-4\n"
    "    params: {ratio: 0.5, rounds: 2}\n  - <<: *d\n    technique: low_rank\n    params: {rank: 4}\n",
]
_INSERTS = ["\x00", "\\0", "9" * 200, "1e400", ".nan", "-", "*d", "&x", "!!python/object:os.system", "{", "[", "]",
            "'", '"', "\t", "\n  - technique: qat", "\n- technique: prune", "(a+)+$", "(a)\\1", "\u2028", "\ufeff",
            ": ", "<<: *d", "0x" + "f" * 4000, "1" + ":59" * 3000, "9" * 5000]


@st.composite
def _mutated(draw: Any) -> str:
    text = draw(st.sampled_from(_VALID))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        kind = draw(st.integers(0, 3))
        if kind == 0:
            text = text[:at] + draw(st.sampled_from(_INSERTS) | _nasty_text) + text[at:]
        elif kind == 1:
            text = text[:at] + text[at + draw(st.integers(1, 20)):]
        elif kind == 2:  # a number replaced by something absurd
            numbers = [m.span() for m in re.finditer(r"\b\d+(\.\d+)?\b", text)]
            if numbers:
                a, b = draw(st.sampled_from(numbers))
                text = text[:a] + draw(st.sampled_from(["-1", "1e9", ".inf", "9" * 5000, "10000000000000000000000000",
                                                        "0", "1.5", "true", "null", "1e-400"])) + text[b:]
        else:  # a technique swapped (stage orders)
            names = [m.span() for m in re.finditer("|".join(TECHNIQUE_NAMES[:-1]), text)]
            if names:
                a, b = draw(st.sampled_from(names))
                text = text[:a] + draw(st.sampled_from(TECHNIQUE_NAMES)) + text[b:]
    return text


@pytest.mark.slow
@settings(max_examples=1500, **FUZZ)
@given(_mutated(), st.sampled_from(["m.yaml", "m.json"]))
def test_fuzz_mutated_valid_recipes(text, source):
    _only_recipe_errors(parse_recipe_text, text, source)


@pytest.mark.slow
@settings(max_examples=1000, **FUZZ)
@given(st.text(st.sampled_from(_ALPHABET) | st.characters(), max_size=200))
def test_fuzz_random_text(text):
    _only_recipe_errors(parse_recipe_text, text, "t.yaml")
    _check_memory()


def test_valid_corpus_parses():
    for text, source in zip(_VALID, ["a.yaml", "b.json", "c.yaml"]):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert parse_recipe_text(text, source).stages


def test_lone_surrogates_are_refused_at_their_line():
    """Found by the round-trip property test: "\\ud800" decodes to a string no UTF-8 or JSON can hold."""
    with pytest.raises(RecipeError, match=r"p.yaml:2: description: .*lone surrogate"):
        parse_recipe_text('name: x\ndescription: "\\ud800"\nstages: [{technique: prune}]\n', "p.yaml")
    with pytest.raises(RecipeError, match="lone surrogate"):
        parse_recipe_dict({"name": "x", "description": "\ud800", "stages": [{"technique": "prune"}]})
