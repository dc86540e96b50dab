"""The latency budget is priced in the LUT's scale, anchored on the original measured here (`timing.anchored`)."""

from types import SimpleNamespace

import pytest

from tfcompress.search import timing
from tfcompress.search.space import Genome


class _State:
    def __init__(self):
        self.timings = {}

    def add_timing(self, key, ms):
        self.timings[key] = ms


def _anchor(monkeypatch, measured, predicted, timed=None):
    calls = []

    def fake_anchor(predictor, say, profile):
        calls.append([Genome().key()])
        return measured

    monkeypatch.setattr(timing, "anchor_ms", fake_anchor)
    state, said = _State(), []
    timed = {} if timed is None else timed
    budget = timing.anchored(None, SimpleNamespace(predicted_ms=predicted), 1.0, timed, state, said.append, None)
    return budget, calls, state, said, timed


def test_a_lut_that_overpredicts_the_original_loosens_the_budget_in_its_scale(monkeypatch):
    budget, calls, state, said, timed = _anchor(monkeypatch, measured=0.8, predicted=1.0)
    assert budget == pytest.approx(1.25)  # 1.0 ms measured-scale budget = 1.25 ms in a LUT that predicts 1.25x
    assert calls == [[Genome().key()]]
    assert state.timings == {Genome().key(): 0.8} and timed == state.timings  # kept for a resumed search
    assert "priced as 1.250 ms predicted" in said[0]


def test_a_lut_that_underpredicts_tightens_it(monkeypatch):
    budget, *_ = _anchor(monkeypatch, measured=1.5, predicted=1.0)
    assert budget == pytest.approx(1.0 / 1.5)


def test_within_tolerance_the_budget_is_unchanged_and_nothing_is_said(monkeypatch):
    budget, _, _, said, _ = _anchor(monkeypatch, measured=1.02, predicted=1.0)
    assert budget == 1.0 and said == []


def test_a_resumed_search_reuses_the_saved_timing(monkeypatch):
    budget, calls, *_ = _anchor(monkeypatch, measured=9.9, predicted=1.0, timed={Genome().key(): 2.0})
    assert calls == [] and budget == pytest.approx(0.5)


def _timing_round(monkeypatch, original_now, finalist_now, anchor=1.0):
    calls = []

    def fake_time(predictor, genomes, say, profile, what=""):
        calls.append([g.key() for g in genomes])
        return {g.key(): (original_now if g.key() == Genome().key() else finalist_now) for g in genomes}

    monkeypatch.setattr(timing, "time_here", fake_time)
    state, said = _State(), []
    timed = {Genome().key(): anchor}
    finalist = Genome(keep={"conv": 0.5})
    timing.time_and_keep(None, [finalist], said.append, None, timed, state)
    return calls, timed, state, said, finalist


def test_finalists_are_timed_beside_the_original_and_scaled_to_its_first_timing(monkeypatch):
    # the machine slowed 1.35x since the original was first timed: a finalist at 0.675 ms now is 0.5 ms then
    calls, timed, state, said, finalist = _timing_round(monkeypatch, original_now=1.35, finalist_now=0.675)
    assert calls == [[finalist.key(), Genome().key()]], "the original runs in the same interleaved batch"
    assert timed[finalist.key()] == pytest.approx(0.5) and state.timings[finalist.key()] == pytest.approx(0.5)
    assert timed[Genome().key()] == 1.0, "the first timing of the original stays the anchor"
    assert "speed changed" in said[-1] and "0.741" in said[-1]


def test_a_steady_machine_is_not_reported_as_changed(monkeypatch):
    _, timed, _, said, finalist = _timing_round(monkeypatch, original_now=1.01, finalist_now=0.5)
    assert timed[finalist.key()] == pytest.approx(0.5 / 1.01)
    assert not any("speed changed" in m for m in said)


def test_the_original_is_not_timed_twice_once_anchored(monkeypatch):
    calls = []
    monkeypatch.setattr(timing, "time_here", lambda *a, **k: calls.append(a) or {})
    timed = {Genome().key(): 1.0}
    timing.time_and_keep(None, [Genome()], lambda m: None, None, timed, _State())
    assert calls == [] and timed == {Genome().key(): 1.0}


def test_fastest_ms_keeps_the_fastest_of_timings_taken_apart(monkeypatch):
    from tfcompress.hardware import measure

    figures = iter([0.39, 0.28, 0.385, 0.281, 0.40])
    monkeypatch.setattr(measure, "prepared", lambda content, **k: content)
    monkeypatch.setattr(measure, "time_interpreters",
                        lambda interps, **k: [SimpleNamespace(median_ms=next(figures), busy=False) for _ in interps])
    slept = []
    monkeypatch.setattr(measure.time, "sleep", slept.append)
    ms, all_ = measure.fastest_ms(b"tflite", times=5, pause_s=0.5)
    assert ms == 0.28 and all_ == (0.39, 0.28, 0.385, 0.281, 0.40)
    assert slept == [0.5] * 4, "a pause between timings, none before the first"


def test_the_anchor_says_when_the_machine_speed_varies(monkeypatch):
    from tfcompress.hardware import measure

    monkeypatch.setattr(measure, "fastest_ms", lambda content, **k: (0.28, (0.39, 0.28, 0.38, 0.28, 0.281)))
    predictor = SimpleNamespace(tflite=lambda g: b"x")
    profile = SimpleNamespace(delegate="XNNPACK", threads=1, kernels="default")
    said = []
    monkeypatch.setattr(measure, "resolver_of", lambda p: "default")
    assert timing.anchor_ms(predictor, said.append, profile) == 0.28
    assert "speed varies" in said[-1] and "0.390" in said[-1]


def test_fastest_times_models_together_and_keeps_each_ones_fastest(monkeypatch):
    from tfcompress.hardware import measure

    # a mode flip between repeats: both models slow in the first, fast in the second; the ratio survives
    rounds = iter([[0.39, 0.30], [0.28, 0.21], [0.38, 0.29]])
    calls, made = [], []

    def fake(interps, **k):
        calls.append(list(interps))
        return [SimpleNamespace(median_ms=ms, busy=i == 1) for i, ms in enumerate(next(rounds))]

    monkeypatch.setattr(measure, "prepared", lambda content, **k: made.append(content) or f"interpreter of {content!r}")
    monkeypatch.setattr(measure, "time_interpreters", fake)
    monkeypatch.setattr(measure.time, "sleep", lambda s: None)
    got = measure.fastest([b"a", b"b"], times=3)
    assert made == [b"a", b"b"], "each model is prepared once, not once a repeat"
    assert calls == [["interpreter of b'a'", "interpreter of b'b'"]] * 3, "interleaved: every repeat times all of them"
    assert [g[0] for g in got] == [0.28, 0.21] and got[0][1] == (0.39, 0.28, 0.38)
    assert [g[2] for g in got] == [False, True]
