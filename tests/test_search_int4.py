"""`tfcompress search --int4`: per-layer int4 weights where the size budget needs them (issue 15).

The search judges a genome's size as its int8 size less half the int8 weights of every op that may take int4;
after the structural search, `choose_precision` gives the final model's layers int4 weights until the real
.tflite meets the budget, and best.yaml's export carries the rules.
"""

from __future__ import annotations

import json
import sys

import pytest
from click.testing import CliRunner

import tfcompress
from tfcompress.cli import main
from tfcompress.errors import TfcompressError
from tfcompress.search import Genome, SearchSettings, read_space, search

from test_search import trained_files

BUDGET_KB = 20.0  # the tiny CNN: 36 KB int8; every group at 0.75 still ~24 KB int8; c3 at 0.75 ~19 KB with int4
LEVELS = dict(keep_levels=(1.0, 0.75), rank_levels=(1.0,), resolution_levels=(1.0,), swaps=False)


def op_precisions(path) -> list[tuple[str, str]]:
    """(op type, precision as stored) of every op of a .tflite, read back from the file."""
    from tfcompress.export.tflite_file import read_tflite
    from tfcompress.precision.readback import found_precision

    tfl = read_tflite(path)
    return [(op.op_type, found_precision(tfl, op)[0]) for op in tfl.operators if op.subgraph == 0]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("search_int4")
    trained_files(d, seed=2)
    return {"dir": d, "model": d / "m.keras", "data": d / "d.npz"}


@pytest.mark.slow
def test_int4_meets_a_size_budget_that_int8_structure_cannot(files, tmp_path):
    from tfcompress.hardware.profile import resolve_profile
    from tfcompress.loading import load_model
    from tfcompress.search.cost import Predictor

    original = load_model(str(files["model"]))
    space = read_space(original, **{k: v for k, v in LEVELS.items() if k != "swaps"}, swaps=False)
    smallest = Genome()
    for knob in space.knobs:
        smallest = knob.set(smallest, knob.levels[-1])
    cost = Predictor(original, space, resolve_profile("host")).cost(smallest)
    assert cost.int8_bytes > 1024 * BUDGET_KB, "int8 structure alone cannot reach the budget"
    assert cost.int4_bytes < 1024 * BUDGET_KB

    out = tmp_path / "out"
    said: list[str] = []
    result = search(str(files["model"]), str(files["data"]), output=out, device="host", executor="inline",
                    measure="none", size_kb=BUDGET_KB, max_acc_drop=100.0, int4=True, step=0.1, trial_steps=4,
                    trial_samples=256, val_samples=64, batch_size=32, final_epochs=1, on_progress=said.append,
                    **LEVELS)
    best = out / "best.tflite"
    assert best.stat().st_size <= 1024 * BUDGET_KB, "measured on the written file"
    assert result.final_bytes == best.stat().st_size and result.budget_met == {"size": True, "accuracy": True}
    assert result.genome != Genome(), "the estimate of the original is over budget: the structure changed too"
    assert result.chosen.int4_bytes <= 1024 * BUDGET_KB < result.chosen.int8_bytes

    q = result.int4
    assert q is not None and q.layers and q.bytes_before > 1024 * BUDGET_KB >= q.bytes_after == result.final_bytes
    assert result.final_accuracy == q.accuracy_after is not None
    written = op_precisions(best)
    assert any(p == "int4" for _, p in written), written
    assert {p for op, p in written if op in ("CONV_2D", "FULLY_CONNECTED")} <= {"int8", "int4"}

    summary = json.loads((out / "search.json").read_text())
    assert summary["int4"]["layers"] == list(q.layers) and summary["final_bytes"] == best.stat().st_size
    assert summary["int4"]["bytes_before"] == q.bytes_before and summary["int4"]["accuracy_after"] == q.accuracy_after
    front = json.loads((out / "pareto.json").read_text())
    assert front["size_judged"] == "int4_bytes (estimate)"
    assert all(t["int4_bytes"] is not None and t["int4_bytes"] < t["int8_bytes"] for t in front["trials"])
    assert "int4 bytes (est.)" in (out / "pareto.md").read_text()
    assert any("choosing int4 layers" in m for m in said)

    from tfcompress.recipe import load_recipe

    recipe = load_recipe(out / "best.yaml")
    assert {r.precision for r in recipe.export.precision} >= {"int4"}
    again = tfcompress.compress(str(files["model"]), str(out / "best.yaml"), str(files["data"]),
                                output=tmp_path / "again.tflite", measure_stages=False)
    assert op_precisions(tmp_path / "again.tflite") == written, "best.yaml rebuilds the same per-op precision"
    assert abs(len(again.convert.tflite) - best.stat().st_size) <= 256


@pytest.mark.slow
def test_the_cli_prints_the_int4_layers(files, tmp_path):
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["search", str(files["model"]), "--data", str(files["data"]), "-o", str(out),
                                  "--size-kb", str(BUDGET_KB), "--int4", "--max-acc-drop", "100", "--executor",
                                  "inline", "--measure", "none", "--keep-levels", "1,0.75", "--resolution-levels",
                                  "1", "--no-swaps", "--trial-steps", "4", "--trial-samples", "256",
                                  "--final-epochs", "0"], terminal_width=200)
    assert r.exit_code == 0, r.output
    assert "int4 bytes (est.)" in r.output and "with int4 where it may go (estimate" in r.output
    assert "int4 layers (" in r.output and "-> mixed" in r.output and "result int8 + int4" in r.output
    size = (out / "best.tflite").stat().st_size
    assert f"written .tflite: {size:,} B" in r.output and size <= 1024 * BUDGET_KB
    assert "budget size: met" in r.output


def test_int4_without_a_size_budget_is_a_user_error(tmp_path):
    model, data = tmp_path / "missing.keras", tmp_path / "missing.npz"  # never read: settings are checked first
    with pytest.raises(TfcompressError, match="int4 needs a size budget") as err:
        search(model, data, latency_ms=1.0, int4=True)
    assert "size_kb" in err.value.hint and "--size-kb" in err.value.hint

    r = CliRunner().invoke(main, ["search", str(model), "--data", str(data), "-o", str(tmp_path / "out"),
                                  "--latency-ms", "1", "--int4"], terminal_width=200)
    out = r.output + (r.stderr if r.stderr_bytes is not None else "")
    assert r.exit_code == 2 and "Traceback" not in out and isinstance(r.exception, SystemExit), out
    assert "--int4 needs --size-kb" in out and "hint:" in out and "--size-kb KB" in out, out
    assert not list(tmp_path.iterdir()), "nothing written"


def test_int4_without_ai_edge_quantizer_names_the_extra_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_quantizer", None)  # `import ai_edge_quantizer` raises ImportError
    with pytest.raises(TfcompressError, match="ai-edge-quantizer") as err:
        search(tmp_path / "missing.keras", tmp_path / "missing.npz", size_kb=10, int4=True)
    assert "tfcompress[mixed]" in err.value.hint
    assert not list(tmp_path.iterdir())


def test_int4_is_part_of_the_resume_fingerprint():
    from tfcompress.hardware.profile import resolve_profile
    from tfcompress.search.runner import _fingerprint

    host = resolve_profile("host")
    on, off = (_fingerprint("k", SearchSettings(size_kb=10, int4=v), host) for v in (True, False))
    assert on["settings"]["int4"] is True and on != off


def test_the_size_judged_while_searching_is_int8_less_half_the_eligible_weights():
    """A known model: two ops hold >= MIN_INT4_BYTES of weights (a 3x3 conv 8 -> 32, a Dense 8 -> 256), two less."""
    from tfcompress.hardware.predict import LatencyModel
    from tfcompress.hardware.profile import resolve_profile
    from tfcompress.keras_compat import tf_keras
    from tfcompress.precision.auto import MIN_INT4_BYTES
    from tfcompress.search.cost import compute_cost
    from tfcompress.search.front import Point, pareto, table
    from tfcompress.search.int4 import budget_bytes
    from tfcompress.search.runner import _over

    L = tf_keras.layers
    inp = tf_keras.Input((8, 8, 8))
    x = L.Conv2D(32, 3, name="big")(inp)  # 2,304 int8 weights + 128 B bias: eligible
    x = L.Conv2D(8, 1, name="small")(x)  # 256 + 32 B: not
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(256, name="fc")(x)  # 2,048 + 1,024 B: eligible
    model = tf_keras.Model(inp, L.Dense(2, name="logits")(x))  # 512 + 8 B: not
    eligible = [model.get_layer(n).kernel for n in ("big", "fc")]
    assert all(k.shape.num_elements() >= MIN_INT4_BYTES for k in eligible)
    assert all(model.get_layer(n).kernel.shape.num_elements() + 4 * model.get_layer(n).bias.shape.num_elements()
               < MIN_INT4_BYTES for n in ("small", "logits"))

    cost, content = compute_cost(model, Genome(), read_space(model), LatencyModel(resolve_profile("host")))
    assert cost.int8_bytes == len(content)
    assert cost.int4_bytes == cost.int8_bytes - sum(k.shape.num_elements() // 2 for k in eligible)

    with_int4, int8_only = SearchSettings(size_kb=10, int4=True), SearchSettings(size_kb=10)
    assert budget_bytes(cost, with_int4) == cost.int4_bytes and budget_bytes(cost, int8_only) == cost.int8_bytes
    assert _over(cost, with_int4, None) == pytest.approx(cost.int4_bytes / 10240)
    assert _over(cost, int8_only, None) == pytest.approx(cost.int8_bytes / 10240)

    a = Point("a", 0.9, 1.0, 1000, 10, int4_bytes=600)
    b = Point("b", 0.9, 1.0, 900, 10, int4_bytes=700)  # smaller in int8, larger as judged with int4
    assert pareto([a, b]) == [a]
    assert "| int8 bytes | int4 bytes (est.) |" in table([a, b], 1.0)
    assert "int4" not in table([Point("c", 0.9, 1.0, 900, 10)], 1.0)


def test_best_yaml_carries_the_precision_rules_and_reads_back():
    """final_recipe's export holds the int4 rules, and the written recipe parses back to the same export."""
    from tfcompress.keras_compat import tf_keras
    from tfcompress.recipe import dump_recipe, parse_recipe_text
    from tfcompress.search import final_recipe
    from tfcompress.types import PrecisionRule

    L = tf_keras.layers
    inp = tf_keras.Input((32,))
    model = tf_keras.Model(inp, L.Dense(4, name="head")(L.Dense(64, name="fc")(inp)))
    rules = [PrecisionRule.parse("op:^(CONV_2D|FULLY_CONNECTED)$@^fc$=int4"),
             PrecisionRule.parse("class:Dense@^head$=float")]
    for epochs in (0, 1):  # without stages the rules go into the convert stage, with stages into export
        s = SearchSettings(size_kb=1, final_epochs=epochs)
        recipe = final_recipe(Genome(), read_space(model), s, precision=rules)
        assert recipe.export.precision == tuple(rules)
        again = parse_recipe_text(dump_recipe(recipe))
        assert again.export == recipe.export and "class: Dense" in dump_recipe(recipe)


@pytest.mark.slow
def test_int4_short_of_the_size_budget_searches_the_structure_further(files, tmp_path, monkeypatch):
    """When the final model's layers cannot all take int4 (here: only ops with >= 8 KiB of int8 weights may, as if
    the accuracy budget refused the rest), the written file misses the size the estimate promised; the search
    records the miss, tightens the size budget it judges estimates against and continues from the chosen genome,
    so the written file ends within budget. A rerun resumes without finishing the missed genome again."""
    import tfcompress.precision.auto as auto

    real = auto.choose_precision
    monkeypatch.setattr(auto, "choose_precision", lambda *a, **k: real(*a, **{**k, "min_int4_bytes": 8192}))
    levels = {**LEVELS, "keep_levels": (1.0, 0.75, 0.5, 0.25)}
    kw = dict(output=tmp_path / "out", device="host", executor="inline", measure="none", size_kb=BUDGET_KB,
              max_acc_drop=100.0, int4=True, step=0.1, trial_steps=4, trial_samples=256, val_samples=64,
              batch_size=32, final_epochs=0, **levels)
    said: list[str] = []
    result = search(str(files["model"]), str(files["data"]), on_progress=said.append, **kw)
    tightened = [m for m in said if "continuing the search with an estimated size budget" in m]
    assert tightened, said
    assert result.final_bytes == (tmp_path / "out" / "best.tflite").stat().st_size <= 1024 * BUDGET_KB
    assert result.budget_met["size"] is True
    assert result.chosen.int4_bytes < 0.98 * 1024 * BUDGET_KB, "chosen under the tightened estimate budget"
    sizes = (tmp_path / "out" / "state" / "sizes.jsonl").read_text().splitlines()
    assert len(sizes) == len(tightened) and all(json.loads(s)["bytes"] > 1024 * BUDGET_KB for s in sizes)

    again: list[str] = []
    resumed = search(str(files["model"]), str(files["data"]), on_progress=again.append, **kw)
    assert resumed.genome == result.genome and resumed.final_bytes == result.final_bytes
    assert sum("choosing int4 layers" in m for m in again) == 1, "the missed genome is not finished again"
    assert resumed.trials_run == 0
