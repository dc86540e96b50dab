"""`tfcompress search`: a model under a latency / size budget on a device, chosen layer by layer by its LUT."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from tfcompress.cli.app import main, make_console, user_errors

EXIT_BUDGET_MISSED = 1
EXIT_AWAITING_DEVICE = 3


@main.command()
@click.argument("model", type=click.Path(path_type=str))
@click.option("--data", required=True, type=click.Path(path_type=str), help="Labelled training data (.npz with x and y): trials fine-tune on it, the final model is trained on all of it; its last 10% (at most 5000) validate unless --val-data.")
@click.option("--val-data", type=click.Path(path_type=str), default=None, help="Separate labelled validation data (same formats).")
@click.option("--device", default="host", show_default=True, help="Device profile whose LUT prices every choice: a shipped name (tfcompress profile --list) or a profile JSON (tfcompress profile / --import).")
@click.option("--latency-ms", type=click.FloatRange(min=0, min_open=True), default=None, metavar="MS", help="Budget: int8 latency on --device at most MS (predicted by the LUT; also measured here when the device is 'host').")
@click.option("--size-kb", type=click.FloatRange(min=0, min_open=True), default=None, metavar="KB", help="Budget: the .tflite at most KB KiB (int8; with --int4, int4 layers where they may go).")
@click.option("--max-acc-drop", type=click.FloatRange(min=0, max=100), default=None, metavar="PP", help="Accuracy budget: the final model (int8, or with --int4 layers) at most PP points below the original's float accuracy (checked and reported; exit 1 when missed).")
@click.option("-o", "--output", required=True, type=click.Path(path_type=str), help="Output folder: best.tflite (+ .report.json, .meta.json), best.yaml, pareto.md / .json / .png, search.json, state/.")
@click.option("--strategy", type=click.Choice(["netadapt", "evolve"]), default="netadapt", show_default=True, help="netadapt: greedy rounds, each the most accurate of the per-layer smallest changes that meet the round's target. evolve: Optuna NSGA-II over all layers at once (--trials).")
@click.option("--step", type=click.FloatRange(0, 1, min_open=True), default=0.1, show_default=True, help="netadapt: each round's latency cut, a fraction of the original's.")
@click.option("--trials", type=click.IntRange(1, 100_000), default=40, show_default=True, help="evolve: genomes sampled (those over budget are not trained).")
@click.option("--trial-steps", type=click.IntRange(0, 10**6), default=100, show_default=True, help="Training steps of each trial's short fine-tune (from the original's weights).")
@click.option("--trial-samples", type=click.IntRange(16, 10**7), default=8192, show_default=True, help="Training samples the trials draw from.")
@click.option("--final-epochs", type=click.IntRange(0, 10_000), default=5, show_default=True, help="Epochs of the chosen model's final fine-tune, distilled from the original.")
@click.option("--keep-levels", default=None, metavar="LIST", help="Channel fractions a group may keep, from 1 down, e.g. '1,0.75,0.5,0.25' (default 1 to 0.25 in eighths).")
@click.option("--resolution-levels", default=None, metavar="LIST", help="Input side multipliers the search may use, e.g. '1,0.75,0.5' (default 1 to 0.5 in eighths; '1' keeps the resolution). Data is resized to match.")
@click.option("--no-swaps", is_flag=True, help="Do not consider depthwise-separable swaps of k x k convolutions.")
@click.option("--int4/--no-int4", default=False, show_default=True, help="Let layers take int4 weights (ai-edge-quantizer, CONV_2D / FULLY_CONNECTED) where the size budget needs it; chosen per layer after the structural search, each step measured in LiteRT, undone if it breaks --max-acc-drop or --latency-ms. Needs --size-kb; while searching, a model's size is estimated as its int8 size less half the int8 weights of every op that may take int4. pip install 'tfcompress[mixed]'.")
@click.option("--executor", type=click.Choice(["local", "inline", "ray"]), default="local", show_default=True, help="Where trials run: local worker processes, this process, or Ray (pip install 'tfcompress[distributed]').")
@click.option("--workers", type=click.IntRange(1, 64), default=None, help="Trial workers (default: one per CPU).")
@click.option("--address", default=None, metavar="HOST:PORT", help="--executor ray: an existing Ray cluster (default: a local one on 127.0.0.1).")
@click.option("--finalists", type=click.IntRange(1, 64), default=3, show_default=True, help="Most accurate genomes within budget that are timed (here, or on the device with --measure device).")
@click.option("--measure", type=click.Choice(["auto", "host", "device", "none"]), default="auto", show_default=True, help="Where finalists are timed. auto: here when --device is 'host'. host: here. device: on the --device itself: the finalists are written as an edge bundle to OUT/device/round-N (exit 3); run its edge_profile.py on the device, leave result.json in that folder and run the same command again.")
@click.option("--complete-lut/--no-complete-lut", default=True, show_default=True, help="When measuring here: first time the kernels of the model at every resolution level (with and without swaps) that the profile lacks and add them to the search's copy of the LUT (~1-2 min the first time; cached in ~/.cache/tfcompress/lut).")
@click.option("--fresh", is_flag=True, help="Discard the saved trials in the output folder instead of resuming.")
@click.option("--seed", type=click.IntRange(0, 2**31 - 1), default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print search.json instead of tables.")
@user_errors
def search(model: str, data: str, val_data: str | None, device: str, latency_ms: float | None, size_kb: float | None,
           max_acc_drop: float | None, output: str, strategy: str, step: float, trials: int, trial_steps: int,
           trial_samples: int, final_epochs: int, keep_levels: str | None, resolution_levels: str | None, no_swaps: bool, int4: bool, executor: str,
           workers: int | None, address: str | None, finalists: int, measure: str, complete_lut: bool, fresh: bool, seed: int, as_json: bool) -> None:
    """Compress MODEL to a budget on a device, choosing each layer's compression by the device's LUT.

    \b
    Examples:
      tfcompress search m.keras --data d.npz --device host --latency-ms 1.0 -o out/
      tfcompress search m.keras --data d.npz --device pi4.json --latency-ms 8 --size-kb 200 -o out/
      tfcompress search m.keras --data d.npz --latency-ms 1.0 --strategy evolve --trials 60 -o out/
      tfcompress search m.keras --data d.npz --latency-ms 1.0 --executor ray --address 10.0.0.5:6379 -o out/
      tfcompress compress m.keras --data d.npz --recipe out/best.yaml -o again.tflite

    Per layer the search may keep fewer channels (structured pruning), swap a k x k
    convolution for a depthwise-separable block, or factorise a hidden Dense; for the
    whole model it may lower the input resolution (the data is resized); with
    --int4, layers may then take int4 weights where --size-kb needs it. Every
    choice is priced by the LUT (no training); the promising ones are fine-tuned
    briefly (trials) and compared on accuracy. The most accurate finalists within
    budget are timed here when the device is this machine; then the chosen one is
    fine-tuned with distillation from the original and converted to a verified int8
    .tflite. best.yaml replays it with `tfcompress compress`.

    With --measure device the finalists are timed on the device itself: the
    search writes them as an edge bundle (OUT/device/round-N), you run
    `python3 round-N/edge_profile.py round-N` there (no TensorFlow needed) and
    put result.json back in that folder, then run the same command again.

    Every trial is saved as it ends: run the same command again after an
    interruption and it continues (--fresh starts over). Exit 0: every budget met;
    1: a budget missed (measured latency, size or accuracy); 2: bad input;
    3: waiting for the device's timings of a bundle (--measure device).
    """
    from tfcompress.errors import TfcompressError
    from tfcompress.search import search as run_search

    budgets: dict[str, object] = {"latency_ms": latency_ms, "size_kb": size_kb, "max_acc_drop": max_acc_drop,
                                  "strategy": strategy, "step": step, "trials": trials, "trial_steps": trial_steps,
                                  "trial_samples": trial_samples, "final_epochs": final_epochs, "swaps": not no_swaps,
                                  "int4": int4, "seed": seed, "finalists": finalists}
    if latency_ms is None and size_kb is None:
        raise TfcompressError("no budget given", "pass --latency-ms MS and / or --size-kb KB")
    if int4 and size_kb is None:
        raise TfcompressError("--int4 needs --size-kb", "pass --size-kb KB: layers take int4 weights only where "
                              "the size budget needs them")
    for flag, key, text in (("--keep-levels", "keep_levels", keep_levels),
                            ("--resolution-levels", "resolution_levels", resolution_levels)):
        if text is not None:
            try:
                budgets[key] = tuple(float(v) for v in text.split(",")[:33])
            except ValueError:
                raise TfcompressError(f"{flag} '{text[:80]}' is not a list of numbers",
                                      f"e.g. {flag} 1,0.75,0.5") from None
    console = make_console(stderr=as_json)
    t0 = time.perf_counter()

    def say(msg: str) -> None:
        console.print(f"[dim]{time.perf_counter() - t0:6.0f}s[/] {msg}", soft_wrap=True, highlight=False)

    try:
        result = run_search(model, data, device=device, output=output, val_data=val_data, executor=executor,
                            workers=workers, address=address, measure=measure, complete_lut=complete_lut, fresh=fresh,
                            on_progress=say,
                            **budgets)
    except KeyboardInterrupt:
        make_console(stderr=True).print(f"interrupted; the finished trials are saved in {output}/state: run the same "
                                        "command again to continue")
        raise SystemExit(130) from None
    if result.awaiting_device is not None:
        _await_device(console, result.awaiting_device)
        raise SystemExit(EXIT_AWAITING_DEVICE)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=1))
    else:
        from tfcompress.search.front import table

        console.print(f"\n[bold]Pareto front[/] ({len(result.front)} of {len(result.points)} trained genomes; "
                      "accuracy is the trials' short fine-tune)")
        console.print(table(result.front, latency_ms), soft_wrap=True, highlight=False)
        c, o = result.chosen, result.original
        console.print(f"\n[bold]chosen[/]: {result.genome.describe()}")
        console.print(f"  predicted {o.predicted_ms:.3f} -> {c.predicted_ms:.3f} ms on {device}; int8 "
                      f"{o.int8_bytes:,} -> {c.int8_bytes:,} B; params {o.params:,} -> {c.params:,}")
        if int4:
            console.print(f"  with int4 where it may go (estimate, what the search judged): {o.int4_bytes:,} -> "
                          f"{c.int4_bytes:,} B")
        q = result.int4
        if q is not None and q.layers:
            console.print(f"  int4 layers ({len(q.layers)}): {', '.join(q.layers)}"
                          + (f"; float: {', '.join(q.float_layers)}" if q.float_layers else ""))
            acc = " -> ".join(f"{100 * a:.2f}%" if a is not None else "-"
                              for a in (q.accuracy_before, q.accuracy_after))
            console.print(f"  int8 {q.bytes_before:,} B -> mixed {q.bytes_after:,} B; accuracy (LiteRT) {acc}")
        elif q is not None:
            console.print(f"  int4: no layer could take it within the budgets ({'; '.join(q.unmet) or 'kept int8'})")
        if result.final_bytes is not None:
            console.print(f"  written .tflite: {result.final_bytes:,} B")
        if result.measured_ms is not None:
            console.print(f"  measured {result.measured_on} {result.original_measured_ms:.3f} -> "
                          f"{result.measured_ms:.3f} ms")
            scaled = result.measured_at_start_ms
            if scaled is not None and abs(scaled / result.measured_ms - 1) > 0.03:
                console.print(f"  this machine's speed changed during the search: at its speed when the search "
                              f"started the result takes {scaled:.3f} ms (what the budget is judged on)")
        if result.final_accuracy is not None:
            kind = "int8 + int4" if result.int4 is not None and result.int4.layers else "int8"
            console.print(f"  accuracy: original float {100 * result.reference_accuracy:.2f}%, result {kind} "
                          f"{100 * result.final_accuracy:.2f}%")
        for name, ok in result.budget_met.items():
            console.print(f"  budget {name}: {'[green]met[/]' if ok else '[red]missed[/]'}")
        for name, path in result.paths.items():
            console.print(f"  {name}: {path}")
    if not all(result.budget_met.values()):
        raise SystemExit(EXIT_BUDGET_MISSED)


def _await_device(console: Any, bundle: str) -> None:
    from pathlib import Path

    b = Path(bundle)
    console.print(f"\n[bold]waiting for the device[/]: the finalists are in {b}\n"
                  f"  1. copy {b} to the device (needs python3, numpy and ai-edge-litert or tflite-runtime)\n"
                  f"  2. there: python3 {b.name}/edge_profile.py {b.name}   (writes {b.name}/result.json)\n"
                  f"  3. copy result.json back to {b / 'result.json'} and run this command again",
                  soft_wrap=True, highlight=False)
