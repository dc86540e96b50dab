"""The latency budget is priced in the LUT's scale, anchored on the original measured here (`runner._anchored`)."""

from types import SimpleNamespace

import pytest

from tfcompress.search import runner
from tfcompress.search.space import Genome


class _State:
    def __init__(self):
        self.timings = {}

    def add_timing(self, key, ms):
        self.timings[key] = ms


def _anchor(monkeypatch, measured, predicted, timed=None):
    calls = []

    def fake_time(predictor, genomes, say, profile, what=""):
        calls.append([g.key() for g in genomes])
        return {g.key(): measured for g in genomes}

    monkeypatch.setattr(runner, "_time", fake_time)
    state, said = _State(), []
    timed = {} if timed is None else timed
    budget = runner._anchored(None, SimpleNamespace(predicted_ms=predicted), 1.0, timed, state, said.append, None)
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
