"""`tfcompress.search.search` end to end: outputs, replay of best.yaml, resume after an interruption.

A tiny CNN (16x16x1 -> 3 convs -> Dense(64) -> 4 logits) trained on 600 quadrant images; the budget is 70%
of its LUT-predicted latency (no single halved layer meets it on the shipped profile: the search takes rounds) on the shipped "host" profile; trials run inline and nothing is timed
(measure="none"), so results depend on predictions and seeded training only.
"""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

import tfcompress
from tfcompress.errors import TfcompressError
from tfcompress.search import Genome, SearchSettings, read_space, search
from tfcompress.search.executors import InlineExecutor
from tfcompress.search.space import genome_from_json
from tfcompress.search.trial import TrialResult, TrialSpec

KEEP = (1.0, 0.5)
RANK = (1.0, 0.5)
RES = (1.0,)  # the resolution knob alone meets these budgets in one round; without it netadapt takes two


def quadrant_data(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noisy 16x16 images whose class is the bright quadrant: learnable in a few epochs."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    x = rng.normal(0.0, 0.35, (n, 16, 16, 1)).astype(np.float32)
    for c in range(4):
        r, q = divmod(c, 2)
        x[y == c, 8 * r: 8 * r + 8, 8 * q: 8 * q + 8, 0] += 0.8
    return x, y


def tiny_cnn():
    from tfcompress.keras_compat import tf_keras

    tf_keras.utils.set_random_seed(0)
    L = tf_keras.layers
    inp = tf_keras.Input((16, 16, 1), name="img")
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="stem")(inp)
    x = L.Conv2D(32, 3, strides=2, padding="same", activation="relu", name="c2")(x)
    x = L.Conv2D(64, 3, strides=2, padding="same", activation="relu", name="c3")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dense(64, activation="relu", name="fc")(x)
    return tf_keras.Model(inp, L.Dense(4, name="logits")(x))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """m.keras (trained 2 epochs), d.npz (x, y) and the latency budget: 70% of the original's prediction."""
    d = tmp_path_factory.mktemp("search")
    base_ms = trained_files(d, seed=0)
    return {"dir": d, "model": d / "m.keras", "data": d / "d.npz", "base_ms": base_ms, "budget": 0.7 * base_ms}


def trained_files(d, seed: int) -> float:
    """Write d/m.keras (the tiny CNN trained 2 epochs on quadrant data) and d/d.npz; its predicted host ms."""
    from tfcompress.hardware.profile import resolve_profile
    from tfcompress.keras_compat import tf_keras
    from tfcompress.search.cost import Predictor

    x, y = quadrant_data(seed=seed)
    model = tiny_cnn()
    model.compile(optimizer=tf_keras.optimizers.Adam(3e-3),
                  loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=2, batch_size=32, verbose=0)
    model.save(d / "m.keras")
    np.savez(d / "d.npz", x=x, y=y)
    return Predictor(model, read_space(model), resolve_profile("host")).ms(Genome())


def settings(files, **over):
    kw = dict(device="host", executor="inline", measure="none", latency_ms=files["budget"], max_acc_drop=100.0,
              step=0.05, trial_steps=4, trial_samples=256, val_samples=64, batch_size=32, final_epochs=1,
              keep_levels=KEEP, rank_levels=RANK, resolution_levels=RES)
    kw.update(over)
    return kw


@pytest.fixture(scope="module")
def full(files):
    """One uninterrupted search with outputs: (result, output folder, progress messages)."""
    out = files["dir"] / "full"
    said: list[str] = []
    result = search(str(files["model"]), str(files["data"]), output=out, on_progress=said.append, **settings(files))
    return result, out, said


@pytest.mark.slow
def test_search_writes_its_outputs_and_meets_the_budget_by_prediction(files, full):
    from tfcompress.hardware.predict import predict_latency_ms
    from tfcompress.recipe import load_recipe

    result, out, said = full
    for name in ("best.tflite", "best.report.json", "best.meta.json", "best.yaml", "pareto.json",
                 "pareto.md", "pareto.png", "search.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "state" / "fingerprint.json").is_file() and (out / "state" / "trials.jsonl").is_file()
    assert not list(out.glob(".*tmp*")), "no temporary files left"
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    budget = files["budget"]
    assert result.genome != Genome(), "the original is over budget: something must change"
    assert result.original.predicted_ms == pytest.approx(files["base_ms"])
    assert result.chosen.predicted_ms <= budget < result.original.predicted_ms
    assert predict_latency_ms(out / "best.tflite", "host").total_ms <= budget, "the written model, predicted"
    assert result.budget_met == {"latency_predicted": True, "accuracy": True}
    assert result.final_accuracy is not None and 0.0 <= result.final_accuracy <= 1.0
    assert result.measured_ms is None and result.original_measured_ms is None, "measure='none' times nothing"
    assert result.trials_run >= 2 and result.trials_resumed == 0 and len(result.points) == result.trials_run
    assert sum(p.chosen for p in result.points) == 1
    assert result.front and set(result.front) <= set(result.points)
    assert any(m.startswith("round 1:") for m in said) and any("original:" in m for m in said)

    summary = json.loads((out / "search.json").read_text())
    assert genome_from_json(summary["genome"]) == result.genome
    assert summary["budget_met"] == result.budget_met and summary["trials_run"] == result.trials_run
    assert summary["chosen"]["predicted_ms"] == result.chosen.predicted_ms
    assert summary["paths"]["tflite"] == str(out / "best.tflite")
    front = json.loads((out / "pareto.json").read_text())
    assert front["budget_ms"] == pytest.approx(budget) and front["device"] == "host"
    assert len(front["trials"]) == result.trials_run and len(front["front"]) == len(result.front)
    assert (out / "pareto.md").read_text().startswith("| trial acc")
    recipe = load_recipe(out / "best.yaml")
    assert recipe.stages[-1].technique == "distill" and recipe.export.mode == "int8"
    assert result.recipe_yaml == (out / "best.yaml").read_text()


def layer_table(model):
    return [(layer.name, type(layer).__name__, layer.output_shape, layer.count_params()) for layer in model.layers]


@pytest.mark.slow
def test_best_yaml_replays_the_chosen_architecture(files, full, tmp_path):
    from tfcompress.loading import load_model
    from tfcompress.search.trial import build

    result, out, _ = full
    original = load_model(str(files["model"]))
    space = read_space(original, keep_levels=KEEP, rank_levels=RANK, resolution_levels=RES)
    expected = layer_table(build(original, result.genome, space, None))
    again = tfcompress.compress(str(files["model"]), str(out / "best.yaml"), str(files["data"]),
                                output=tmp_path / "again.tflite", measure_stages=False)
    assert layer_table(again.model) == expected
    assert again.model.count_params() == result.chosen.params
    assert (tmp_path / "again.tflite").is_file()


class Interrupting(InlineExecutor):
    """Inline trials, and a Ctrl-C after `after` of them (other work an executor may get is not counted)."""

    def __init__(self, after: int) -> None:
        self.after = after
        self.ran = 0

    def run(self, fn, items, assets, on_done):
        def done(i, r):
            on_done(i, r)
            if isinstance(r, TrialResult):
                self.ran += 1
                if self.ran >= self.after:
                    raise KeyboardInterrupt

        return super().run(fn, items, assets, done)


class Counting(InlineExecutor):
    """Inline trials, recording the genome of each."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    def run(self, fn, items, assets, on_done):
        self.ran += [spec.genome.key() for spec in items if isinstance(spec, TrialSpec)]
        return super().run(fn, items, assets, on_done)


@pytest.mark.slow
def test_an_interrupted_search_resumes_and_ends_the_same(files, full):
    result, full_out, said = full
    rounds = [m for m in said if m.startswith("round ") and " kept " in m]
    assert len(rounds) >= 2 and result.trials_run >= 3, f"the test wants a search of several rounds: {rounds}"
    out = files["dir"] / "resumed"
    kw = settings(files)
    kw.pop("executor")
    first = Interrupting(after=1)
    with pytest.raises(KeyboardInterrupt):
        search(str(files["model"]), str(files["data"]), output=out, executor=first, **kw)
    trials = out / "state" / "trials.jsonl"
    assert len(trials.read_text().splitlines()) == 1 and not (out / "best.tflite").exists()
    with open(trials, "a") as f:  # a kill in the middle of writing the next trial
        f.write('{"key": "{\\"keep\\":{\\"c3\\":0.5},\\"rank\\"')

    counting = Counting()
    said: list[str] = []
    again = search(str(files["model"]), str(files["data"]), output=out, executor=counting, on_progress=said.append,
                   **kw)
    assert any(m.startswith("resuming: 1 trials") for m in said), said
    assert again.trials_resumed == 1 and again.trials_run == len(counting.ran) == result.trials_run - 1
    assert len(set(counting.ran)) == len(counting.ran)
    assert again.genome == result.genome and again.chosen == result.chosen
    assert again.recipe_yaml == result.recipe_yaml and again.budget_met == result.budget_met
    assert sorted(p.genome for p in again.points) == sorted(p.genome for p in result.points)
    for a, b in zip(sorted(again.points, key=lambda p: p.genome), sorted(result.points, key=lambda p: p.genome)):
        assert a.accuracy == pytest.approx(b.accuracy, abs=0.02) and a.predicted_ms == b.predicted_ms
    rows = []
    for line in trials.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    assert len(rows) == result.trials_run, "every trial saved, none run into the cut-off line"
    costs = [json.loads(line)["key"] for line in (out / "state" / "costs.jsonl").read_text().splitlines()]
    full_costs = (full_out / "state" / "costs.jsonl").read_text().splitlines()
    assert len(costs) == len(set(costs)) == len(full_costs), "costs saved before the interruption are not recomputed"

    third = Counting()
    done = search(str(files["model"]), str(files["data"]), output=out, executor=third, **kw)
    assert third.ran == [] and done.genome == result.genome and done.trials_resumed == result.trials_run


@pytest.mark.slow
def test_other_settings_in_the_same_folder_are_refused_unless_fresh(files, full):
    _, full_out, _ = full
    out = files["dir"] / "other"
    shutil.copytree(full_out / "state", out / "state", ignore=shutil.ignore_patterns("final*"))
    before = (out / "state" / "trials.jsonl").read_text()
    with pytest.raises(TfcompressError, match="other settings") as err:
        search(str(files["model"]), str(files["data"]), output=out, **settings(files, latency_ms=files["budget"] * 0.9))
    assert "settings" in err.value.message and "--fresh" in err.value.hint
    assert (out / "state" / "trials.jsonl").read_text() == before, "the saved trials are kept"

    easy = files["base_ms"] * 10  # the original meets it: no trial, no structural stage
    result = search(str(files["model"]), str(files["data"]), output=out, fresh=True,
                    **settings(files, latency_ms=easy, final_epochs=0))
    assert result.genome == Genome() and result.trials_run == 0 and result.trials_resumed == 0
    assert json.loads((out / "state" / "fingerprint.json").read_text())["settings"]["latency_ms"] == easy
    assert not (out / "state" / "trials.jsonl").exists() or not (out / "state" / "trials.jsonl").read_text()
    assert (out / "best.tflite").is_file() and result.budget_met["latency_predicted"]


def test_bad_settings_are_user_errors(tmp_path):
    model, data = tmp_path / "missing.keras", tmp_path / "missing.npz"  # never read: settings are checked first
    with pytest.raises(TfcompressError, match="give a budget"):
        search(model, data)
    with pytest.raises(TfcompressError, match="latency_ms"):
        search(model, data, latency_ms=-1.0)
    with pytest.raises(TfcompressError, match="keep_levels must start at 1.0"):
        search(model, data, size_kb=10, keep_levels=(0.5, 0.25))
    with pytest.raises(TfcompressError, match="keep_levels"):
        search(model, data, size_kb=10, keep_levels=(1.0, 1.5))
    with pytest.raises(TfcompressError, match="strategy"):
        search(model, data, latency_ms=1.0, strategy="random")
    with pytest.raises(TfcompressError, match="bogus"):
        search(model, data, latency_ms=1.0, bogus=3)
    with pytest.raises(TfcompressError, match="trial_steps"):
        search(model, data, settings=SearchSettings(latency_ms=1.0), trial_steps=-1)
    assert not list(tmp_path.iterdir()), "nothing written"


@pytest.mark.slow
def test_lut_completion_times_the_resolution_variants_and_is_reused_on_resume(tmp_path):
    """When measuring here, the search first adds the kernels of the model at every resolution level to its copy
    of the LUT (timed here), saves that profile in the state, and a resumed search reuses it without timing."""
    from tfcompress.hardware.kernels import kernels_of
    from tfcompress.hardware.profile import resolve_profile
    from tfcompress.search.cost import compute_cost
    from tfcompress.hardware.predict import LatencyModel
    from tfcompress.search.runner import _completed
    from tfcompress.search.state import SearchState

    model = tiny_cnn()
    space = read_space(model, keep_levels=KEEP, rank_levels=RANK, resolution_levels=(1.0, 0.5))
    shipped = resolve_profile("host")
    state = SearchState(tmp_path, {"test": 1})
    said: list[str] = []
    done = _completed(shipped, model, space, state, said.append)
    assert (tmp_path / "state" / "profile.json").is_file()
    table = done.table()
    half = compute_cost(model, Genome(resolution=0.5), space, LatencyModel(shipped))[1]
    keys = {u.key for u in kernels_of(half)}
    assert keys <= set(table), "every kernel of the half-resolution variant is now measured"
    assert len(table) > len(shipped.table())
    assert any("completing the host LUT" in m for m in said)

    again: list[str] = []
    reused = _completed(shipped, model, space, SearchState(tmp_path, {"test": 1}), again.append)
    assert reused.table() == table and not again, "a resumed search reads the saved profile, times nothing"


def test_finalist_timings_are_saved_and_reused_on_resume(tmp_path):
    """A resumed search decides on the latencies it measured before (OUT/state/timings.jsonl), not new ones."""
    from tfcompress.search.state import SearchState

    st = SearchState(tmp_path, {"test": 1})
    st.add_timing('{"res":0.5}', 0.25)
    with open(tmp_path / "state" / "timings.jsonl", "a", encoding="utf-8") as f:
        f.write('{"key": "cut off')  # a kill mid-line
    again = SearchState(tmp_path, {"test": 1})
    assert again.timings == {'{"res":0.5}': 0.25}
    again.add_timing("b", 1.0)
    assert SearchState(tmp_path, {"test": 1}).timings == {'{"res":0.5}': 0.25, "b": 1.0}


@pytest.mark.slow
def test_finalists_and_the_result_are_timed_as_the_profile_runs(files, monkeypatch, tmp_path):
    """A profile of this machine at 2 threads with LiteRT's builtin kernels (co-design: `benchmarks/codesign.py`)
    is measured that way: the finalists and the final model next to the original, not at XNNPACK's single thread."""
    from tfcompress.hardware import measure
    from tfcompress.hardware.measure import Timing
    from tfcompress.hardware.profile import resolve_profile

    two = dataclasses.replace(resolve_profile("host"), threads=2, delegate="none")
    asked: list[tuple[int, int]] = []  # (models, threads) per timing call
    made: list[tuple[int, str]] = []  # (threads, resolver) per interpreter prepared

    def fake(interps, *, threads=1, **_kw):
        asked.append((len(interps), threads))
        return [Timing(median_ms=0.001, mad_ms=0.0, runs=1) for _ in interps]

    monkeypatch.setattr(measure, "prepared",
                        lambda content, *, threads=1, resolver="default", **k: made.append((threads, resolver)))
    monkeypatch.setattr(measure, "time_interpreters", fake)
    result = search(str(files["model"]), str(files["data"]), output=tmp_path / "t2",
                    **settings(files, device=two, measure="host", complete_lut=False))
    assert asked and {t for _, t in asked} == {2} and set(made) == {(2, "builtin")}, (asked, made)
    assert asked[-1][0] == 2, "the result was timed next to the original"
    assert result.measured_ms == 0.001 and result.budget_met["latency_measured"]
