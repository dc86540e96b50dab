"""`search`: compress a model to a latency / size budget on a device, choosing per-layer changes by its LUT.

    result = search("model.keras", "data.npz", device="host", latency_ms=1.0, output="out/")

1. Reads the model's knobs (`space.read_space`): channel ratios per group, separable swaps, Dense ranks.
2. A strategy (`strategies`) walks the space: every genome's cost is the device profile's LUT
   prediction of its int8 architecture (no training); candidates are fine-tuned briefly on the
   executor (trials, `trial.run_trial`) and compared on accuracy.
   When the profile is this machine's, the original is timed first and, if the LUT misses it by more than 3%,
   the latency budget is priced in the LUT's scale (budget x predicted / measured: `timing.anchored`).
3. The most accurate genomes within budget (finalists) are converted and timed, beside the original, on this
   machine under the timing protocol when the profile is this machine's ("host"), or on the device through edge
   bundles (measure="device", `device`; the search returns and a rerun goes on once the device's result is
   back); when the chosen one misses the budget measured, the budget is tightened by its measured / predicted
   ratio and the strategy continues (`timing`).
4. The chosen genome's recipe (structural stages + a distilled fine-tune from the original + int8) runs
   through `tfcompress.compress`: the verified .tflite, sidecar and report; `best.yaml` replays it. With
   int4 on and the result over the size budget, its layers get int4 weights where the budgets allow
   (`int4.add_int4`), and the rules go into best.yaml's export; still over (layers refused int4), the search
   goes on from the chosen genome with the size budget tightened by written / estimated bytes, then steps 3-4
   again (up to MAX_SIZE_CORRECTIONS times).
5. Pareto front of every trained genome: table, `pareto.json`, `pareto.png`; `search.json` sums up.

Every trial and cost is saved as it finishes (`state.SearchState`): an interrupted search run again
with the same arguments continues and ends with the same result.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from tfcompress.errors import TfcompressError
from tfcompress.search.cost import Cost, Predictor
from tfcompress.search.device import AwaitDevice, DeviceTimer
from tfcompress.search.executors import Executor, make_executor
from tfcompress.search.front import Point, pareto, plot_front, table
from tfcompress.search.int4 import Int4Result, add_int4, budget_bytes, check_int4
from tfcompress.search.settings import SearchSettings
from tfcompress.search.space import Genome, genome_stages, read_space
from tfcompress.search.state import SearchState
from tfcompress.search.strategies import Context, evolve, netadapt
from tfcompress.search.timing import FINALIST_TIMINGS, TIGHTEN_MARGIN, anchored, tightened, time_and_keep
from tfcompress.search.trial import TrialResult, TrialSpec, accuracy, make_assets, run_trial

__all__ = ["SearchResult", "search", "final_recipe"]

MAX_CORRECTIONS = 3
MAX_SIZE_CORRECTIONS = 2  # int4 short of the size budget: more structure search, then int4 again
MEASURES = ("auto", "host", "device", "none")


@dataclass(frozen=True)
class SearchResult:
    """What a search found (and, with an output folder, wrote)."""

    genome: Genome
    recipe_yaml: str
    original: Cost
    chosen: Cost
    reference_accuracy: float  # the original's float accuracy on the validation data
    final_accuracy: float | None  # the final model's accuracy in LiteRT (int8, or with int4 layers; None: no model)
    measured_ms: float | None  # the final model timed here (None: not measured)
    original_measured_ms: float | None
    budget_met: dict[str, bool]
    points: tuple[Point, ...]
    front: tuple[Point, ...]
    trials_run: int
    trials_resumed: int
    seconds: float
    paths: dict[str, str] = field(default_factory=dict)
    final_bytes: int | None = None  # the written .tflite (None: no output folder); what the size budget judges
    int4: Int4Result | None = None  # the int4 step (None: int4 off, or the int8 result met the size budget)
    # the final model's latency at the machine speed the budget was priced at: measured x the original's first
    # timing / its timing beside the final model (None: not measured); what budget_met["latency_measured"] judges
    measured_at_start_ms: float | None = None
    # measure="device": the edge bundle whose device timings the search needs to go on (then no final model yet)
    awaiting_device: str | None = None
    measured_on: str | None = None  # "here", or the device (timed through edge bundles)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["genome"] = self.genome.model_dump()
        d["original"] = self.original.model_dump()
        d["chosen"] = self.chosen.model_dump()
        return d


def final_recipe(genome: Genome, space: Any, s: SearchSettings, name: str = "search-best",
                 precision: Sequence[Any] = ()) -> Any:
    """The recipe that builds `genome` and fine-tunes it (distilled from the original), then int8 (per-op
    `precision` rules, `PrecisionRule`s, in its export: the int4 layers)."""
    from tfcompress.recipe import parse_recipe_dict

    stages = genome_stages(genome, space)
    if s.final_epochs > 0:
        stages.append({"technique": "distill", "epochs": s.final_epochs, "steps_per_epoch": s.final_steps,
                       "learning_rate": s.learning_rate, "batch_size": s.batch_size,
                       "params": {"temperature": s.temperature, "alpha": s.alpha}})
    export: dict[str, Any] = {"mode": "int8"}
    if precision:
        export["precision"] = [r.entry() for r in precision]
    doc: dict[str, Any] = {"name": name, "description": f"found by tfcompress search: {genome.describe()}",
                           "stages": stages or [{"technique": "convert", "params": export}]}
    if stages:
        doc["export"] = export
    return parse_recipe_dict(doc, source=f"<{name}>")


def _arrays(model: Any, data: Any, val_data: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from tfcompress.compression import split_train_val
    from tfcompress.data import load_samples
    from tfcompress.loading import load_source

    specs = load_source(model).input_specs()
    if len(specs) != 1:
        raise TfcompressError(f"the model has {len(specs)} inputs; search handles single-input classifiers",
                              "search a single-input model")
    samples = load_samples(data, specs)
    val = load_samples(val_data, specs) if val_data is not None else None
    train, val = split_train_val(samples, val, 0.1)
    if train.y is None or val.y is None:
        raise TfcompressError(f"{samples.source} has no labels: trials are scored on accuracy",
                              "put labels under 'y' in the .npz")
    return train.x[0], train.y, val.x[0], val.y


def _over(c: Cost, s: SearchSettings, latency: float | None) -> float:
    """How far a cost is from the budgets (`latency` may be tightened by measurement): <= 1 meets them all."""
    parts = [c.predicted_ms / latency] if latency else []
    parts += [budget_bytes(c, s) / (1024 * s.size_kb)] if s.size_kb else []
    return max(parts)


def _settings(settings: SearchSettings | None, budgets: dict[str, Any]) -> SearchSettings:
    from pydantic import ValidationError

    try:
        return SearchSettings.model_validate({**(settings.model_dump() if settings else {}), **budgets})
    except ValidationError as exc:
        e = exc.errors()[0]
        where = ".".join(str(p) for p in e["loc"]) or "settings"
        raise TfcompressError(f"search settings: {where}: {e['msg']}", "see tfcompress search --help") from None


def _fingerprint(assets_key: str, s: SearchSettings, profile: Any) -> dict[str, Any]:
    lut = hashlib.sha256(json.dumps([(str(e.key), e.ms) for e in profile.entries]).encode()).hexdigest()[:16]
    settings = s.model_dump(exclude={"finalists", "final_epochs", "final_steps", "temperature", "alpha",
                                     "max_acc_drop"})
    return {"assets": assets_key, "device": profile.device, "lut": lut, "settings": settings}


def search(
    model: Any,
    data: Any,
    *,
    device: Any = "host",
    output: str | Path | None = None,
    settings: SearchSettings | None = None,
    val_data: Any = None,
    executor: str | Executor = "local",
    workers: int | None = None,
    address: str | None = None,
    measure: str = "auto",
    complete_lut: bool = True,
    fresh: bool = False,
    on_progress: Callable[[str], None] | None = None,
    **budgets: Any,
) -> SearchResult:
    """Search per-layer compression of `model` under budgets on `device` (see module doc).

    Args:
        model: path or in-memory Keras model (a single-input classifier).
        data: labelled data (.npz with x / y, (x, y), ...): trials and the final fine-tune train on it.
        device: device profile (shipped name, JSON path or DeviceProfile) whose LUT prices every choice.
        output: folder for best.tflite (+ sidecar, report), best.yaml, pareto.*, search.json and the state.
        settings: a `SearchSettings`; keyword budgets (latency_ms=, size_kb=, ...) override its fields.
        executor: "local" (worker processes), "inline" (this process), "ray", or an Executor.
        measure: "auto" (time finalists here when the profile is "host"), "host", "device" (time them on the
            profile's device through edge bundles in output/device/round-N: the search returns with
            `awaiting_device` set until that round's result.json is back, then a rerun goes on; `search.device`)
            or "none".
        complete_lut: when measuring here, first time the kernels of the original at every resolution level
            (with and without swaps) that the profile lacks, and add them (`_completed`).
        fresh: discard saved trials in `output` instead of resuming.
    """
    from tfcompress.hardware.profile import resolve_profile
    from tfcompress.loading import load_model

    t_start = time.perf_counter()
    say = on_progress or (lambda _m: None)
    s = _settings(settings, budgets)
    check_int4(s)
    profile = resolve_profile(device)
    out = Path(output) if output is not None else None
    if measure not in MEASURES:
        raise TfcompressError(f"measure '{measure}' is not one of {', '.join(MEASURES)}", "use measure='auto'")
    if measure == "device" and out is None:
        raise TfcompressError("measuring on the device needs an output folder",
                              "pass output= (-o): the finalists' bundles and the saved trials go there")
    if out is not None:
        if out.exists() and not out.is_dir():
            raise TfcompressError(f"{out} exists and is not a folder", "give -o a folder (created if missing)")
        out.mkdir(parents=True, exist_ok=True)
    say("loading the model and data")
    original = load_model(model)
    x, y, x_val, y_val = _arrays(model, data, val_data)
    rng = np.random.default_rng(s.seed)
    pick = np.sort(rng.permutation(len(x))[: s.trial_samples])
    space = read_space(original, keep_levels=s.keep_levels, swaps=s.swaps, rank_levels=s.rank_levels,
                       resolution_levels=s.resolution_levels)
    if not space.knobs:
        raise TfcompressError(f"model '{original.name}' has nothing the search can change",
                              "it needs Conv2D / Dense layers with >= 16 channels")
    assets = make_assets(original, x[pick], y[pick], x_val[: s.val_samples], y_val[: s.val_samples], space, profile)
    state = SearchState(out, _fingerprint(assets.key, s, profile), fresh=fresh,
                        timings="device-timings.jsonl" if measure == "device" else "timings.jsonl")
    device = DeviceTimer(out / "device", profile, say) if measure == "device" and out is not None else None
    if fresh and device is not None and device.folder.exists():
        shutil.rmtree(device.folder)
    measuring = device is not None or measure == "host" or (measure == "auto" and profile.device == "host")
    if measuring and complete_lut and device is None:
        profile = _completed(profile, original, space, state, say)
        assets = replace(assets, profile=profile)
    if state.resumed:
        say(f"resuming: {state.resumed} trials and {len(state.costs)} costs from {out / 'state'}")
    reference = accuracy(original, x_val, y_val)

    ex = make_executor(executor, workers=workers, address=address) if isinstance(executor, str) else executor
    predictor = Predictor(original, space, profile, on_cost=state.add_cost, known=state.costs, executor=ex,
                          assets=assets)
    ran = [0]

    def evaluate(genomes: Sequence[Genome]) -> list[TrialResult]:
        todo = [g for g in dict.fromkeys(g.normal() for g in genomes) if g.key() not in state.trials]
        specs = [TrialSpec(genome=g, steps=s.trial_steps, batch_size=s.batch_size, learning_rate=s.learning_rate,
                           seed=s.seed) for g in todo]

        def done(i: int, r: TrialResult) -> None:
            state.add_trial(r)
            ran[0] += 1
            say(f"trial {len(state.trials)}: {r.genome.describe()}  acc {r.accuracy:.4f}  "
                f"{predictor.ms(r.genome):.3f} ms  ({r.seconds:.0f} s)")

        ex.run(run_trial, specs, assets, done)
        return [state.trials[g.normal().key()] for g in genomes]

    budget = s.latency_ms
    timed: dict[str, float] = dict(state.timings)  # finalists timed here, this run or before it (resume)
    chosen = Genome()
    searched = s  # what the strategy judges genomes against: the size budget is tightened when int4 falls short
    for size_round in range(MAX_SIZE_CORRECTIONS + 1):
        awaiting: Path | None = None
        last = size_round == MAX_SIZE_CORRECTIONS
        try:
            if size_round == 0:
                base = predictor.cost(Genome())
                say(f"original: {base.predicted_ms:.3f} ms predicted on {profile.device}, {base.int8_bytes:,} B int8"
                    + (f" ({base.int4_bytes:,} B with int4 where it may go, estimated)" if s.int4 else "")
                    + f", float accuracy {reference:.4f}; {len(space.knobs)} knobs; executor {ex.name} "
                    f"({ex.workers} workers)")
                # on a device, the first round's result comes back only in a later run: pricing the budget from it
                # at the start of that run would change the decisions the earlier runs made and replayed (the
                # measured tightening below corrects the LUT's scale there instead)
                if measuring and s.latency_ms is not None and device is None:
                    budget = anchored(predictor, base, s.latency_ms, timed, state, say, profile)
            tell = say if size_round == 0 else (lambda m, r=size_round + 1: say(f"[size round {r}] {m}"))
            chosen, budget = _walk(searched, budget, chosen, space, predictor, evaluate, state, timed, measuring,
                                   device, ex, tell, profile)
        except AwaitDevice as wait:
            awaiting = wait.bundle
            say(f"{'wrote' if wait.fresh else 'still waiting for'} the device timings of {wait.n_models} models "
                f"(finalists and the original): {wait.bundle}")
        except TfcompressError as exc:
            if size_round == 0:
                raise
            say(f"warning: the tightened size budget cannot be met ({exc.message}); keeping {chosen.describe()}")
            last = True
        finally:
            ex.close()
        written = state.sizes.get(chosen.key())  # resumed: this genome was finished before and missed the size
        if written is None or awaiting is not None or last:
            res = _finish(model, data, val_data, (x, y, x_val, y_val), s, profile, space, predictor, state, chosen,
                          base, reference, timed, measuring, out, ran[0], say, t_start, device, awaiting, budget)
            written = res.final_bytes
            if (awaiting is not None or last or not s.int4 or s.size_kb is None or written is None
                    or written <= 1024 * s.size_kb):
                return res
            state.add_size(chosen.key(), written)
        assert s.size_kb is not None and searched.size_kb is not None
        estimate = budget_bytes(predictor.cost(chosen), s)
        # as the latency loop does with a measured miss (`timing.tightened`)
        size_kb = min(tightened(s.size_kb, written, estimate), searched.size_kb * TIGHTEN_MARGIN)
        say(f"the written model is {written:,} B > {s.size_kb:g} KiB (estimated {estimate:,} B: not every layer "
            f"took int4): continuing the search with an estimated size budget of {size_kb:.2f} KiB")
        searched = searched.model_copy(update={"size_kb": size_kb})
    raise AssertionError("unreachable: the last size round returns")


def _walk(s: SearchSettings, budget: float | None, chosen: Genome, space: Any, predictor: Predictor,
          evaluate: Callable[[Sequence[Genome]], list[TrialResult]], state: SearchState, timed: dict[str, float],
          measuring: bool, device: DeviceTimer | None, ex: Executor, say: Callable[[str], None],
          profile: Any) -> tuple[Genome, float | None]:
    """The strategy from `chosen` until a genome meets `s`'s budgets (latency `budget` in the LUT's scale);
    measuring, its finalists are timed and the budget tightened by a measured miss (up to MAX_CORRECTIONS
    times). Returns the chosen genome and the latency budget in the LUT's scale it was chosen under."""
    for attempt in range(MAX_CORRECTIONS + 1):
        ctx = Context(space, predictor.cost, lambda c, b=budget: _over(c, s, b), evaluate, say, ex.workers,
                      predictor.costs)
        try:
            chosen = (netadapt(ctx, step=s.step, start=chosen) if s.strategy == "netadapt"
                      else evolve(ctx, trials=s.trials, seed=s.seed))
        except TfcompressError as exc:
            if attempt == 0:
                raise
            say(f"warning: the tightened budget cannot be met ({exc.message}); keeping {chosen.describe()}, "
                "which meets the budget by the LUT but not measured")
            break
        if not measuring or s.latency_ms is None:
            break
        ranked = sorted((r for r in state.trials.values() if ctx.over(predictor.cost(r.genome)) <= 1.0),
                        key=lambda r: (-round(r.accuracy, 6), r.key))
        finalists = list(dict.fromkeys([chosen.key()] + [r.key for r in ranked]))[: s.finalists]
        todo = [state.trials[k].genome if k in state.trials else chosen for k in finalists if k not in timed]
        time_and_keep(predictor, todo, say, profile, timed, state, device=device)
        fits = [k for k in finalists if timed[k] <= s.latency_ms]
        if fits:
            best = min(fits, key=lambda k: (-round(state.trials[k].accuracy, 6) if k in state.trials else 0, k))
            chosen = state.trials[best].genome if best in state.trials else chosen
            break
        ratio = timed[chosen.key()] / predictor.ms(chosen)
        budget = tightened(s.latency_ms, timed[chosen.key()], predictor.ms(chosen))
        say(f"measured {timed[chosen.key()]:.3f} ms > {s.latency_ms:g} ms (measured / predicted {ratio:.3f}): "
            f"continuing with a predicted budget of {budget:.3f} ms")
    return chosen, budget


def _completed(profile: Any, original: Any, space: Any, state: SearchState, say: Callable[[str], None]) -> Any:
    """The profile extended with the kernels of the original at every resolution level, plain and with every
    swap, timed here (`hardware.lut.build_profile`, per-kernel cache in ~/.cache/tfcompress/lut; the models are
    timed whole too and the calibration refitted). The LUT then holds the shapes the search prices most, instead
    of extrapolating them. Saved in the state: a resumed search reuses it rather than re-timing."""
    import os

    from tfcompress.hardware.lut import build_profile
    from tfcompress.hardware.profile import load_profile, save_profile
    from tfcompress.search.cost import compute_cost
    from tfcompress.hardware.predict import LatencyModel

    saved = state.dir / "profile.json" if state.dir is not None else None
    if saved is not None and saved.exists():
        return load_profile(saved)
    res = next((k for k in space.knobs if k.kind == "resolution"), None)
    swaps = tuple(k.layer for k in space.knobs if k.kind == "swap")
    genomes = [Genome(resolution=r, swap=sw) for r in (res.levels if res else (1.0,)) for sw in {(), swaps}]
    latency = LatencyModel(profile)
    sources = [compute_cost(original, g, space, latency)[1] for g in genomes]
    say(f"completing the {profile.device} LUT with the kernels of {len(sources)} variants of the model (timed here)")
    done = build_profile(sources, device=profile.device, base=profile, threads=profile.threads,
                         cache_dir=os.path.expanduser("~/.cache/tfcompress/lut"),
                         command="tfcompress search: LUT completion",
                         on_progress=lambda i, n, _k: say(f"  kernel {i}/{n}") if i % 25 == 0 or i == n else None)
    if done.provenance.busy_items:
        say(f"warning: {done.provenance.busy_items} kernels were timed while other processes used the CPU")
    if saved is not None:
        save_profile(done, saved)
    return done


def _finish(model: Any, data: Any, val_data: Any, arrays: tuple[np.ndarray, ...], s: SearchSettings, profile: Any,
            space: Any, predictor: Predictor, state: SearchState, chosen: Genome, base: Cost, reference: float,
            timed: dict[str, float], measuring: bool, out: Path | None, ran: int, say: Callable[[str], None],
            t_start: float, device: DeviceTimer | None = None, awaiting: Path | None = None,
            priced: float | None = None) -> SearchResult:
    from tfcompress.compression import compress
    from tfcompress.precision.mixed import parse_rule
    from tfcompress.recipe import dump_recipe

    recipe = final_recipe(chosen, space, s)
    recipe_yaml = dump_recipe(recipe)
    cost = predictor.cost(chosen)
    costs = {r.key: predictor.cost(r.genome) for r in state.trials.values()}
    points = tuple(
        Point(r.genome.describe(), r.accuracy, costs[r.key].predicted_ms, costs[r.key].int8_bytes, r.params,
              timed.get(r.key), _over(costs[r.key], s, s.latency_ms) <= 1.0, r.key == chosen.key(),
              costs[r.key].int4_bytes if s.int4 else None)
        for r in sorted(state.trials.values(), key=lambda r: r.key))
    front = tuple(pareto(points))
    paths: dict[str, str] = {}
    final_acc = measured = orig_measured = measured_scaled = final_bytes = int4 = None
    predicted_ms = cost.predicted_ms
    if out is not None and awaiting is None:
        say(f"final fine-tune of {chosen.describe()} ({s.final_epochs} epochs, distilled from the original)")
        # compress's resume point, one per final recipe: a rerun with another final fine-tune (not part of the
        # search's fingerprint) must not meet the checkpoints of the last one, which compress refuses.
        backup = out / "state" / f"final-{hashlib.sha256(recipe_yaml.encode()).hexdigest()[:12]}"
        result = compress(model, recipe, data, val_data=val_data,
                          output=out / "best.tflite", backup_dir=backup, measure_stages=False,
                          on_progress=say, device=profile)
        verify = result.report.convert.verify
        final_acc = verify.accuracy.tflite if verify is not None and verify.accuracy is not None else None
        final = result.convert
        if s.int4 and s.size_kb is not None and len(final.tflite) > 1024 * s.size_kb:
            x, y, x_val, y_val = arrays
            n = recipe.export.calib_samples
            int4, mixed = add_int4(result, (x[:n], y[:n]), (x_val, y_val), reference, s, profile,
                                   out / "best.tflite", say)
            if mixed is not None:
                final, final_acc = mixed, int4.accuracy_after
                predicted_ms = int4.predicted_ms if int4.predicted_ms is not None else predicted_ms
                rules = [parse_rule(text) for text in int4.rules]
                recipe_yaml = dump_recipe(final_recipe(chosen, space, s, precision=rules))
        final_bytes = len(final.tflite)
        if device is not None:  # the chosen architecture as the device timed it (a finalist, same int8 ops)
            measured = measured_scaled = timed.get(chosen.key())
            orig_measured = timed.get(Genome().key())
        elif measuring:
            from tfcompress.hardware.measure import fastest, resolver_of

            say(f"timing the result next to the original (interleaved, the fastest of {FINALIST_TIMINGS})")
            t = fastest([final.tflite, predictor.tflite(Genome())], times=FINALIST_TIMINGS, threads=profile.threads,
                        resolver=resolver_of(profile))
            measured, orig_measured = t[0][0], t[1][0]
            anchor = timed.get(Genome().key())
            if anchor is not None:  # at the machine speed the budget was priced at (see timing.time_and_keep)
                measured_scaled = measured * anchor / orig_measured
        paths = _write(out, recipe_yaml, points, front, s, profile, chosen)
        paths["tflite"] = str(out / "best.tflite")
    met = {}
    if s.latency_ms is not None:
        # against the budget in the LUT's scale (`timing.anchored`; tightened after a measured miss)
        met["latency_predicted"] = predicted_ms <= (priced if priced is not None else s.latency_ms)
        if measured is not None:
            met["latency_measured"] = (measured_scaled if measured_scaled is not None else measured) <= s.latency_ms
    if s.size_kb is not None:
        met["size"] = (final_bytes if final_bytes is not None else budget_bytes(cost, s)) <= 1024 * s.size_kb
    if s.max_acc_drop is not None and final_acc is not None:
        met["accuracy"] = 100 * (reference - final_acc) <= s.max_acc_drop
    res = SearchResult(chosen, recipe_yaml, base, cost, reference, final_acc, measured, orig_measured, met, points,
                       front, ran, state.resumed, round(time.perf_counter() - t_start, 1), paths, final_bytes, int4,
                       measured_scaled, str(awaiting) if awaiting is not None else None,
                       None if measured is None else "here" if device is None else
                       f"{profile.device} (edge bundle; the chosen architecture as a finalist)")
    if out is not None and awaiting is None:
        from tfcompress.hardware.profile import write_json_atomic

        write_json_atomic(out / "search.json", res.to_dict())
        res.paths["summary"] = str(out / "search.json")
    return res


def _write(out: Path, recipe_yaml: str, points: Sequence[Point], front: Sequence[Point], s: SearchSettings,
           profile: Any, chosen: Genome) -> dict[str, str]:
    from tfcompress.files import atomic_writer
    from tfcompress.hardware.profile import write_json_atomic

    with atomic_writer(out / "best.yaml", "w") as f:
        f.write(recipe_yaml)
    write_json_atomic(out / "pareto.json", {"budget_ms": s.latency_ms, "size_kb": s.size_kb, "device": profile.device,
                                           "size_judged": "int4_bytes (estimate)" if s.int4 else "int8_bytes",
                                           "front": [p.to_dict() for p in front],
                                           "trials": [p.to_dict() for p in points]})
    with atomic_writer(out / "pareto.md", "w") as f:
        f.write(table(front, s.latency_ms) + "\n")
    png = out / "pareto.png"
    tmp = out / ".pareto.tmp.png"
    plot_front(points, front, s.latency_ms or 0.0, tmp, f"{profile.device}: chosen {chosen.describe()}")
    tmp.replace(png)
    return {"recipe": str(out / "best.yaml"), "pareto_json": str(out / "pareto.json"),
            "pareto_table": str(out / "pareto.md"), "pareto_png": str(png)}
