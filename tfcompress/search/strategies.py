"""How the search moves through the space: NetAdapt-style greedy rounds, or Optuna's NSGA-II.

Both talk to the search through a `Context`: `cost(genome)` (LUT-predicted, no training),
`over(cost)` (how far a cost is from the budgets: <= 1 meets them all), and `evaluate(genomes)` (short
fine-tunes on the executor, cached). Both are deterministic given the trial results, which is what
makes a resumed search end where an uninterrupted one would.

netadapt   (Yang et al., 2018) each round sets a target `step` below the current cost; for every knob
           the smallest change that meets it by the LUT (binary search on the knob's levels) becomes a
           candidate (when no knob reaches the target alone, the cut is halved, up to 3 times); candidates are fine-tuned briefly and the most accurate one is kept; repeat until
           the budgets hold.
evolve     Optuna's NSGA-II sampler over all knobs at once, accuracy up and predicted latency down,
           over-budget genomes infeasible (never trained); the first trials are the uniform genomes
           (each resolution level alone, every group at one keep level); returns the most accurate
           feasible genome, and the trials give a Pareto front.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from tfcompress.errors import TfcompressError
from tfcompress.search.cost import Cost
from tfcompress.search.space import Genome, SearchSpace, kept_channels
from tfcompress.search.trial import TrialResult

__all__ = ["STRATEGIES", "Context", "evolve", "netadapt", "uniform_genomes"]

STRATEGIES = ("netadapt", "evolve")
EPS = 1e-9
HALVINGS = 3  # a round whose cut no single knob reaches tries half the cut, up to this many times


@dataclass(frozen=True)
class Context:
    """What a strategy may ask of the search."""

    space: SearchSpace
    cost: Callable[[Genome], Cost]
    over: Callable[[Cost], float]
    evaluate: Callable[[Sequence[Genome]], list[TrialResult]]
    say: Callable[[str], None]
    workers: int = 1
    costs: Callable[[Sequence[Genome]], list[Cost]] | None = None  # many at once (in parallel); None: one by one

    def cost_all(self, genomes: Sequence[Genome]) -> list[Cost]:
        return self.costs(genomes) if self.costs is not None else [self.cost(g) for g in genomes]


def _rank(results: Sequence[TrialResult], ctx: Context) -> list[TrialResult]:
    """Most accurate first; ties: lower cost, then genome key (deterministic)."""
    return sorted(results, key=lambda r: (-round(r.accuracy, 6), ctx.over(ctx.cost(r.genome)), r.key))


def _smallest_changes(ctx: Context, current: Genome, target: float) -> list[Genome]:
    """For every knob, the least compressed level whose genome meets `target`, if any (binary search on the
    knob's levels, assumed monotone in cost; all knobs in lock-step so each step's costs run in parallel)."""
    downs = {k: k.steps_down(current) for k in ctx.space.knobs}
    downs = {k: d for k, d in downs.items() if d}
    ctx.cost_all([d[-1] for d in downs.values()])
    bounds = {k: [0, len(d) - 1] for k, d in downs.items() if ctx.over(ctx.cost(d[-1])) <= target + EPS}
    while any(lo < hi for lo, hi in bounds.values()):
        mids = {k: (lo + hi) // 2 for k, (lo, hi) in bounds.items() if lo < hi}
        ctx.cost_all([downs[k][m] for k, m in mids.items()])
        for k, m in mids.items():
            if ctx.over(ctx.cost(downs[k][m])) <= target + EPS:
                bounds[k][1] = m
            else:
                bounds[k][0] = m + 1
    return [downs[k][hi] for k, (_, hi) in bounds.items()]


def netadapt(ctx: Context, *, step: float = 0.1, max_rounds: int = 30, start: Genome | None = None) -> Genome:
    """Greedy rounds until `ctx.over(cost) <= 1` (see module doc); `step` is a fraction of the start cost."""
    current = (start or Genome()).normal()
    first = ctx.over(ctx.cost(current))
    step_size = max(step * first, 1e-3)
    for rnd in range(1, max_rounds + 1):
        now = ctx.over(ctx.cost(current))
        if now <= 1.0 + EPS:
            return current
        cut = step_size
        for _ in range(HALVINGS + 1):  # no single knob reaches the round's target: aim lower before giving up
            target = max(1.0, now - cut)
            candidates = _smallest_changes(ctx, current, target)
            if candidates:
                break
            cut /= 2
        if not candidates:  # not even a small cut: the most any knob can do
            candidates = [k.steps_down(current)[-1] for k in ctx.space.knobs if k.steps_down(current)]
            candidates = [g for g in candidates if ctx.over(ctx.cost(g)) < now - EPS]
        if not candidates:
            raise TfcompressError(
                f"the budget cannot be met: at {_describe(ctx, current)} no choice left lowers the cost",
                "raise --latency-ms / --size-kb, or allow more (--keep-levels down to 0.125, swaps)")
        ctx.say(f"round {rnd}: {len(candidates)} candidates, target {target:.3f}x budget (now {now:.3f}x)")
        best = _rank(ctx.evaluate(candidates), ctx)[0]
        current = best.genome
        ctx.say(f"round {rnd}: kept {current.describe()}  acc {best.accuracy:.4f}  {_describe(ctx, current)}")
    if ctx.over(ctx.cost(current)) > 1.0 + EPS:
        raise TfcompressError(f"the budget was not met in {max_rounds} rounds (now {_describe(ctx, current)})",
                              "raise --step, or the budget")
    return current


def _describe(ctx: Context, g: Genome) -> str:
    c = ctx.cost(g)
    return f"{c.predicted_ms:.3f} ms predicted, {c.int8_bytes:,} B"


def _sample(trial: Any, space: SearchSpace) -> Genome:
    g = Genome()
    for k in space.knobs:
        value = trial.suggest_categorical(f"{k.kind}:{k.layer}", list(k.levels))
        g = k.set(g, value)
    return g


def uniform_genomes(space: SearchSpace) -> list[Genome]:
    """Knob families applied uniformly: each resolution level alone, every group at each keep level, then every
    swap at once, alone and at each resolution level.

    Random genomes over tens of knobs mostly combine many swaps and cuts, which a short fine-tune cannot
    recover (measured: 24 random NSGA-II genomes of a 21-knob CNN all scored near chance); these are what a
    user would try by hand, so the population starts from them. The swap family is there because devices price
    it differently (on this CPU XNNPACK gains from separable convolutions, LiteRT's builtin kernels barely:
    benchmarks/codesign.py), so it is where two devices' searches part."""
    out: list[Genome] = []
    res = next((k for k in space.knobs if k.kind == "resolution"), None)
    if res is not None:
        out += [res.set(Genome(), v) for v in res.levels[1:]]
    keeps = [k for k in space.knobs if k.kind == "keep"]
    for v in sorted({v for k in keeps for v in k.accepts or k.levels if v < 1.0}, reverse=True):
        g = Genome()
        for k in keeps:  # the knob's own level that keeps as many channels as v does
            g = k.set(g, next(lv for lv in k.levels if kept_channels(k.size, lv) == kept_channels(k.size, v)))
        out.append(g)
    swaps = [k for k in space.knobs if k.kind == "swap"]
    if swaps:
        every = Genome()
        for k in swaps:
            every = k.set(every, True)
        out += [every] + ([res.set(every, v) for v in res.levels[1:]] if res is not None else [])
    return out


def evolve(ctx: Context, *, trials: int = 40, seed: int = 0, population: int = 16) -> Genome:
    """NSGA-II (Optuna) over every knob; the most accurate genome that meets the budgets (see module doc)."""
    try:
        import optuna
    except ImportError as exc:
        raise TfcompressError("--strategy evolve needs Optuna, which is not installed",
                              "pip install 'tfcompress[search]' (or: pip install optuna), or use --strategy netadapt") from exc
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.NSGAIISampler(
        seed=seed, population_size=max(2, population),
        constraints_func=lambda t: [float(t.user_attrs.get("over", 0.0)) - 1.0])
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    for g in uniform_genomes(ctx.space)[:max(0, trials // 2)]:  # warm start: the hand-tuned baselines' families
        study.enqueue_trial({f"{k.kind}:{k.layer}": k.value(g) for k in ctx.space.knobs})
    feasible: list[TrialResult] = []
    done = 0
    batch = max(1, ctx.workers)
    while done < trials:
        asked = [study.ask() for _ in range(min(batch, trials - done))]
        genomes = [_sample(t, ctx.space) for t in asked]
        overs = [ctx.over(c) for c in ctx.cost_all(genomes)]
        fits = list(dict.fromkeys(g.normal() for g, o in zip(genomes, overs) if o <= 1.0 + EPS))
        results = {r.key: r for r in ctx.evaluate(fits)}
        feasible += results.values()
        for t, g, o in zip(asked, genomes, overs):
            t.set_user_attr("over", o)
            r = results.get(g.key())
            study.tell(t, [r.accuracy if r is not None else 0.0, ctx.cost(g).predicted_ms])
        done += len(asked)
        ctx.say(f"evolve: {done}/{trials} genomes, {len(feasible)} within budget")
    if not feasible:
        raise TfcompressError(f"none of {trials} sampled genomes met the budget",
                              "run more --trials, use --strategy netadapt, or raise the budget")
    return _rank(feasible, ctx)[0].genome
