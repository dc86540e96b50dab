"""Search strategies (NetAdapt, NSGA-II) and the Pareto front, on a toy cost / accuracy model (no TensorFlow).

The toy: latency is additive per knob (each knob's level moves its layer's share), accuracy falls by a
per-knob penalty that does not follow latency, so "most accurate" and "cheapest" are different choices.
"""

from __future__ import annotations

import pytest

from tfcompress.errors import TfcompressError
from tfcompress.search.cost import Cost
from tfcompress.search.front import Point, pareto, table
from tfcompress.search.space import Genome, Knob, SearchSpace
from tfcompress.search.strategies import HALVINGS, Context, evolve, netadapt
from tfcompress.search.trial import TrialResult

KEEP = (1.0, 0.75, 0.5, 0.25)
SPACE = SearchSpace((
    Knob("keep", "a", KEEP, 32),
    Knob("keep", "b", KEEP, 64),
    Knob("swap", "b", (False, True), 9 * 64 * 64),
    Knob("rank", "d", (1.0, 0.5, 0.25, 0.125), 64),
))
SHARE = {"a": 4.0, "b": 3.0, "d": 2.0}  # ms of each layer at full size; 1 ms fixed
ACC_LOSS = {"a": 0.30, "b": 0.08, "swap": 0.03, "d": 0.05}  # accuracy lost at the most compressed level


def toy_ms(g: Genome) -> float:
    ms = 1.0 + SHARE["a"] * g.keep.get("a", 1.0) + SHARE["d"] * g.rank.get("d", 1.0)
    b = SHARE["b"] * g.keep.get("b", 1.0)
    return round(ms + (b * 0.6 if "b" in g.swap else b), 6)


def toy_accuracy(g: Genome) -> float:
    loss = ACC_LOSS["a"] * (1 - g.keep.get("a", 1.0)) ** 2 + ACC_LOSS["b"] * (1 - g.keep.get("b", 1.0))
    loss += ACC_LOSS["swap"] * ("b" in g.swap) + ACC_LOSS["d"] * (1 - g.rank.get("d", 1.0))
    return round(0.95 - loss, 6)


class Toy:
    """A Context's callables over the toy (or another latency `ms`), recording what the strategy asked."""

    def __init__(self, budget_ms: float, workers: int = 1, ms=toy_ms) -> None:
        self.budget = budget_ms
        self.workers = workers
        self.ms = ms
        self.rounds: list[list[Genome]] = []  # the genomes of each evaluate call
        self.messages: list[str] = []

    def cost(self, g: Genome) -> Cost:
        ms = self.ms(g)
        return Cost(key=g.key(), predicted_ms=ms, int8_bytes=int(ms * 1000), int4_bytes=int(ms * 500),
                    params=int(ms * 100), flops=0)

    def over(self, c: Cost) -> float:
        return c.predicted_ms / self.budget

    def evaluate(self, genomes) -> list[TrialResult]:
        genomes = list(genomes)
        self.rounds.append(genomes)
        return [TrialResult(key=g.key(), genome=g, accuracy=toy_accuracy(g), params=0, seconds=0.0) for g in genomes]

    def context(self, space: SearchSpace = SPACE) -> Context:
        return Context(space, self.cost, self.over, self.evaluate, self.messages.append, self.workers)


def test_toy_is_what_the_tests_assume():
    assert toy_ms(Genome()) == 10.0
    assert toy_ms(Genome(keep={"a": 0.25, "b": 0.25}, swap=("b",), rank={"d": 0.125})) < 3.0
    for knob in SPACE.knobs:  # every step down is cheaper, and less accurate
        downs = knob.steps_down(Genome())
        assert all(toy_ms(x) > toy_ms(y) for x, y in zip([Genome(), *downs], downs))
        assert all(toy_accuracy(x) > toy_accuracy(y) for x, y in zip([Genome(), *downs], downs))


def smallest_changes(current: Genome, now: float, cut: float, budget: float) -> tuple[float, set[Genome]]:
    """A round's target and candidates, worked out linearly: per knob the least compressed level meeting the
    target; when no knob meets it, the cut is halved (up to HALVINGS times)."""
    for _ in range(HALVINGS + 1):
        target = max(1.0, now - cut)
        expected = set()
        for knob in SPACE.knobs:
            meeting = [g for g in knob.steps_down(current) if toy_ms(g) / budget <= target + 1e-9]
            if meeting:
                expected.add(meeting[0])
        if expected:
            return target, expected
        cut /= 2
    return target, set()


def test_netadapt_rounds_take_the_smallest_change_per_knob_and_keep_the_most_accurate():
    toy = Toy(budget_ms=6.5)
    step = 0.1
    chosen = netadapt(toy.context(), step=step)
    assert toy_ms(chosen) <= 6.5
    assert len(toy.rounds) >= 3, "a 0.1 step from 10 ms to 6.5 ms takes several rounds"
    current, first = Genome(), 10.0 / 6.5
    for candidates in toy.rounds:
        now = toy_ms(current) / 6.5
        assert now > 1.0, "no round after the budget was met"
        _, expected = smallest_changes(current, now, step * first, 6.5)
        assert expected, "the toy always has a knob that meets a 0.1 step"
        assert set(candidates) == expected and len(candidates) == len(expected)
        current = max(candidates, key=toy_accuracy)
        assert [toy_accuracy(g) for g in candidates].count(toy_accuracy(current)) == 1, "the toy has no ties"
    assert chosen == current, "the last round's most accurate candidate is the result"
    assert any(m.startswith("round 1:") for m in toy.messages)


def test_netadapt_prefers_accuracy_over_cost():
    """One round to 9 ms: b at 0.5 is the cheapest candidate (8.5 ms), a at 0.75 the most accurate (9.0 ms)."""
    toy = Toy(budget_ms=9.0)
    chosen = netadapt(toy.context(), step=0.1)
    cands = toy.rounds[0]
    assert len(cands) >= 2 and chosen in cands
    assert min(cands, key=toy_ms) == Genome(keep={"b": 0.5})
    assert chosen == max(cands, key=toy_accuracy) == Genome(keep={"a": 0.75}) and len(toy.rounds) == 1


def test_netadapt_stops_at_the_budget():
    toy = Toy(budget_ms=20.0)
    assert netadapt(toy.context()) == Genome() and toy.rounds == [], "already within budget: nothing trained"
    start = Genome(keep={"b": 0.5})
    toy = Toy(budget_ms=toy_ms(start))
    assert netadapt(toy.context(), start=start) == start and toy.rounds == []
    toy = Toy(budget_ms=9.9)  # one round reaches it
    chosen = netadapt(toy.context(), step=0.5)
    assert len(toy.rounds) == 1 and toy_ms(chosen) <= 9.9


def test_netadapt_halves_a_cut_no_knob_reaches():
    toy = Toy(budget_ms=5.5)  # a 0.9 step: target 1.0 (5.5 ms) at once, which no single knob reaches
    chosen = netadapt(toy.context(), step=0.9)
    now = 10.0 / 5.5
    target, expected = smallest_changes(Genome(), now, 0.9 * now, 5.5)
    assert target > 1.0 and expected == {Genome(keep={"a": 0.25}), Genome(keep={"b": 0.25})}
    assert set(toy.rounds[0]) == expected
    assert f"target {target:.3f}x" in toy.messages[0]
    assert toy_ms(chosen) <= 5.5


def test_netadapt_takes_the_most_a_knob_can_do_when_even_a_halved_cut_is_out_of_reach():
    space = SearchSpace((Knob("keep", "a", (1.0, 0.9, 0.8), 32), Knob("keep", "b", (1.0, 0.9, 0.8), 32)))

    def ms(g):  # each knob saves at most 1 ms of 10; both together meet 8 ms
        return round(10.0 - 5 * (1 - g.keep.get("a", 1.0)) - 5 * (1 - g.keep.get("b", 1.0)), 6)

    toy = Toy(budget_ms=8.0, ms=ms)
    chosen = netadapt(toy.context(space), step=1.0)
    assert set(toy.rounds[0]) == {Genome(keep={"a": 0.8}), Genome(keep={"b": 0.8})}, "not the smallest changes"
    assert chosen == Genome(keep={"a": 0.8, "b": 0.8}) and len(toy.rounds) == 2


def test_netadapt_raises_when_the_budget_cannot_be_met():
    toy = Toy(budget_ms=1.5)  # 1 ms is fixed; everything compressed is still > 1.5 ms
    with pytest.raises(TfcompressError, match="cannot be met") as err:
        netadapt(toy.context(), step=0.1)
    assert "--latency-ms" in err.value.hint
    with pytest.raises(TfcompressError, match="not met in 2 rounds"):
        netadapt(Toy(budget_ms=6.0).context(), step=0.01, max_rounds=2)
    with pytest.raises(TfcompressError):
        netadapt(Toy(budget_ms=5.0).context(SearchSpace(())))


def test_netadapt_is_deterministic():
    a, b = Toy(budget_ms=6.0), Toy(budget_ms=6.0)
    assert netadapt(a.context(), step=0.07) == netadapt(b.context(), step=0.07)
    assert a.rounds == b.rounds and a.messages == b.messages


optuna = pytest.importorskip("optuna")


def test_evolve_returns_the_most_accurate_feasible_genome_and_never_trains_over_budget():
    toy = Toy(budget_ms=6.0, workers=3)
    chosen = evolve(toy.context(), trials=30, seed=1, population=8)
    evaluated = [g for r in toy.rounds for g in r]
    assert evaluated, "30 samples of this space include some within budget"
    assert all(toy_ms(g) <= 6.0 for g in evaluated), "over-budget genomes are never trained"
    assert all(len(r) <= 3 for r in toy.rounds), "at most `workers` genomes per batch"
    assert toy_ms(chosen) <= 6.0
    assert chosen in evaluated and toy_accuracy(chosen) == max(toy_accuracy(g) for g in evaluated)
    assert toy.messages[-1].startswith("evolve: 30/30 genomes")


def test_evolve_is_seeded():
    runs = []
    for _ in range(2):
        toy = Toy(budget_ms=6.0, workers=2)
        runs.append((evolve(toy.context(), trials=20, seed=7, population=6), toy.rounds))
    assert runs[0] == runs[1]


def test_evolve_raises_when_nothing_meets_the_budget():
    toy = Toy(budget_ms=1.5)
    with pytest.raises(TfcompressError, match="none of 6 sampled genomes"):
        evolve(toy.context(), trials=6, seed=0, population=4)
    assert all(r == [] for r in toy.rounds), "nothing over budget is trained"


def P(name, acc, ms, size, **kw):
    return Point(name, acc, ms, size, params=size // 2, **kw)


def test_pareto_keeps_the_undominated_points_fastest_first():
    pts = [
        P("base", 0.90, 10.0, 1000),
        P("fast", 0.80, 5.0, 900),
        P("dominated", 0.79, 6.0, 950),  # fast is better on all three
        P("small", 0.70, 7.0, 100),  # slower than fast but smaller: kept
        P("twin", 0.80, 5.0, 900),  # equal to fast: neither dominates
        P("same-acc-slower", 0.90, 11.0, 1000),  # base beats it on latency only
        P("faster-same-acc", 0.80, 4.0, 900),  # beats fast and twin
    ]
    front = pareto(pts)
    assert [p.genome for p in front] == ["faster-same-acc", "small", "base"]
    assert pareto([]) == []
    assert [p.genome for p in pareto(pts[:2] + [pts[4]])] == ["fast", "twin", "base"]
    tie = [P("lo", 0.5, 1.0, 10), P("hi", 0.6, 1.0, 5)]
    assert [p.genome for p in pareto(tie)] == ["hi"]
    order = [P("x", 0.5, 2.0, 10), P("y", 0.9, 2.0, 20), P("z", 0.4, 1.0, 30)]
    assert [p.genome for p in pareto(order)] == ["z", "y", "x"], "equal latency: more accurate first"


def test_table_lists_points_with_budget_marks():
    pts = [P("original", 0.9123, 10.0, 12345), P("a:0.5", 0.8, 4.5, 900, measured_ms=4.75, within_budget=True, chosen=True),
           P("a:0.25", 0.7, 3.0, 600, within_budget=True)]
    text = table(pts, 5.0)
    lines = text.splitlines()
    assert lines[0].startswith("| trial acc") and "<= 5 ms" in lines[0] and len(lines) == 5
    assert lines[1].count("|") == lines[0].count("|")
    assert lines[2] == "| 91.23% | 10.000 | - | 12,345 | 6,172 | no | original |"
    assert lines[3] == "| 80.00% | 4.500 | 4.750 | 900 | 450 | yes * | a:0.5 |"
    assert lines[4] == "| 70.00% | 3.000 | - | 600 | 300 | yes | a:0.25 |"
    assert table([], 1.5).count("\n") == 1


def test_evolve_starts_from_the_uniform_genomes():
    """The first genomes NSGA-II tries are the hand-tuned families (every group at one keep level, every swap at
    once): random genomes over many knobs are mostly unrecoverable combinations."""
    from tfcompress.search.strategies import uniform_genomes

    uniform = uniform_genomes(SPACE)
    assert Genome(keep={"a": 0.5, "b": 0.5}) in uniform and all(not g.rank for g in uniform)
    assert [g for g in uniform if g.swap] == [Genome(swap=("b",))], "the swap family: every swap, nothing else"
    assert len(set(uniform)) == len(uniform)
    with_res = SearchSpace((Knob("resolution", "<input>", (1.0, 0.5), 0), Knob("swap", "b", (False, True), 9)))
    assert uniform_genomes(with_res) == [Genome(resolution=0.5), Genome(swap=("b",)),
                                         Genome(swap=("b",), resolution=0.5)]
    toy = Toy(budget_ms=8.0, workers=1)
    evolve(toy.context(), trials=len(uniform) * 2, seed=3, population=4)
    tried = [g for r in toy.rounds for g in r]
    feasible_uniform = [g for g in uniform if toy_ms(g) <= 8.0]
    assert feasible_uniform and tried[: len(feasible_uniform)] == feasible_uniform
