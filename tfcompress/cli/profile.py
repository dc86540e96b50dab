"""`tfcompress profile`: build, import, list, export and validate device latency profiles."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from tfcompress.cli.app import main, make_console, user_errors


@main.command()
@click.argument("models", nargs=-1, type=click.Path(exists=True, path_type=str))
@click.option("-o", "--output", default=None, type=click.Path(path_type=str), help="Profile JSON to write (extended when it exists). Default: device_profile.json.")
@click.option("--device", default=None, help="Device name recorded in the profile (default: host when building; what the file says with --import).")
@click.option("--space", "space", default=20, show_default=True, type=click.IntRange(min=1), help="Without MODELS: this many random MobileNet/EfficientNet-style architectures make the LUT, with a quarter as many ResNet-style, plain-conv and kernel-coverage models, a fifth as many weight-heavy ones, and FMNIST-CNN.")
@click.option("--cache", "cache_dir", default="~/.cache/tfcompress/lut", show_default=True, type=click.Path(), help="Per-kernel cache (an interrupted build resumes from it).")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(min=1), help="LiteRT threads.")
@click.option("--kernels", "resolver", default=None, type=click.Choice(["default", "builtin"]), help="When building: LiteRT's default kernels (XNNPACK delegate; the default, or what an extended -o file has) or builtin (its own kernels, no delegate; recorded as delegate 'none'): to the search, two different devices.")
@click.option("--budget-s", default=None, type=float, help="Stop measuring new kernels after this many seconds.")
@click.option("--export-bundle", "bundle_dir", default=None, type=click.Path(path_type=str), help="Instead of timing here: write one-op models + edge_profile.py to DIR, to time on a device without TensorFlow.")
@click.option("--import", "import_file", default=None, type=click.Path(path_type=str), help="Import device measurements: edge_profile.py's result.json, a benchmark_model op-profiling CSV, or the Android app's JSON.")
@click.option("--model", "import_models", multiple=True, type=click.Path(exists=True, path_type=str), help="With --import: the .tflite the measurements were taken on (benchmark_model CSV, Android JSON). Repeatable.")
@click.option("--format", "import_format", default=None, type=click.Choice(["edge_result", "android_benchmark", "benchmark_model_csv"]), help="With --import: skip format detection.")
@click.option("--validate", "validate_n", default=None, type=click.IntRange(min=1), help="Measure and predict N random held-out architectures on this machine; print the error distribution.")
@click.option("--profile", "profile_name", default="host", show_default=True, help="With --validate: the profile to check (shipped name or JSON).")
@click.option("--png", default="latency_validation.png", show_default=True, type=click.Path(path_type=str), help="With --validate: where to write the predicted-vs-measured scatter.")
@click.option("--check", "check", is_flag=True, help="Time 20 of the --profile's kernels here (about 30 s) and say whether it fits this machine or should be rebuilt (exit 1). With -o: also write the profile rescaled by the measured ratio.")
@click.option("--list", "list_profiles", is_flag=True, help="List the shipped device profiles.")
@user_errors
def profile(models: tuple[str, ...], output: str | None, device: str | None, space: int, cache_dir: str, threads: int,
            resolver: str | None, budget_s: float | None, bundle_dir: str | None, import_file: str | None, import_models: tuple[str, ...],
            import_format: str | None, validate_n: int | None, profile_name: str, png: str, check: bool, list_profiles: bool) -> None:
    """Device latency profiles (LUTs): build, export to a device, import, validate.

    \b
    Build on this machine (times each kernel of MODELS, or of a built-in
    space of MobileNet/EfficientNet-style architectures when none are given):
      tfcompress profile -o host.json
      tfcompress profile mobilenet.tflite my_model.keras -o host.json
      tfcompress profile --kernels builtin -o host-builtin.json   (no XNNPACK)
    \b
    Measure on a Raspberry Pi / ARM board (only numpy + ai-edge-litert there):
      tfcompress profile my_model.keras --export-bundle bundle/
      (on the device)  python3 bundle/edge_profile.py bundle/
      tfcompress profile --import bundle/result.json --device pi4 -o pi4.json
    \b
    Import other measurements:
      tfcompress profile --import ops.csv --model model.tflite -o phone.json     # benchmark_model
      tfcompress profile --import app.json --model model.tflite -o pixel7.json  # Android demo app
    \b
    Does the shipped profile fit this machine?  tfcompress profile --check
    Check the predictor here:  tfcompress profile --validate 100 --profile host.json
    Use a profile:  tfcompress convert ... --device pi4.json   (predicted next to measured latency)
    """
    from tfcompress.errors import TfcompressError

    modes = [m for m, on in (("--export-bundle", bundle_dir), ("--import", import_file),
                             ("--validate", validate_n), ("--check", check), ("--list", list_profiles)) if on]
    if len(modes) > 1:
        raise TfcompressError(f"{' and '.join(modes)} cannot be combined", "run them one at a time")
    command = " ".join(["tfcompress", *sys.argv[1:]])
    if list_profiles:
        return _list_profiles()
    if import_file is not None:
        return _import_profile(import_file, import_models, import_format, output, device, command)
    if validate_n is not None:
        return _validate_profile(validate_n, profile_name, png)
    if check:
        return _check_profile(profile_name, output)
    console = make_console(stderr=True)
    sources: list[Any] = list(models)
    with _bar(console) as bar:
        if not sources:
            from tfcompress.hardware.validate import space_models

            task = bar.add_task("converting the architecture space", total=space + 1)
            sources = space_models(space, on_progress=lambda i, n, _m: bar.update(task, completed=i))
            bar.update(task, completed=space + 1)
        task = bar.add_task("timing kernels", total=None)

        def step(i: int, n: int, key: Any) -> None:
            bar.update(task, completed=i, total=n, description=f"timing {key.op.lower()}")

        if bundle_dir is not None:
            from tfcompress.hardware.bundle import export_bundle

            info = export_bundle(sources, bundle_dir, threads=threads, command=command,
                                 on_progress=lambda i, n, k: bar.update(task, completed=i, total=n,
                                                                        description="converting one-op models"))
        else:
            from tfcompress.hardware.lut import build_profile
            from tfcompress.hardware.profile import load_profile, save_profile

            out = output or "device_profile.json"
            base = load_profile(out) if Path(out).exists() else None
            prof = build_profile(sources, device=device or "host", cache_dir=os.path.expanduser(cache_dir), base=base,
                                 threads=threads, resolver=resolver,
                                 time_budget_s=budget_s, command=command, on_progress=step)
            save_profile(prof, out)
    if bundle_dir is not None:
        click.echo(f"{info.path}: {info.n_kernels} one-op models"
                   + (f" ({len(info.skipped)} op(s) not measurable there, predicted by regression)" if info.skipped else ""))
        click.echo(f"next: copy {info.path} to the device, run `python3 {info.path.name}/edge_profile.py "
                   f"{info.path.name}`, copy result.json back, then `tfcompress profile --import result.json`")
        return
    if prof.provenance.busy_items:
        make_console(stderr=True).print(
            f"[yellow]warning:[/] the machine was busy (other processes using the CPU) while "
            f"{prof.provenance.busy_items} kernel(s) or model(s) were timed, even after retries: their times are not "
            "reliable. Delete the cache (--cache) and build again on an idle machine.", soft_wrap=True)
    cal = prof.calibration
    click.echo(f"{out}: {len(prof.entries)} kernels, overhead {prof.overhead_ms:.4f} ms, "
               f"calibrated on {cal.fitted_on} models (scale {cal.scale:.3f}, {1e3 * cal.per_op_ms:.2f} us/op, "
               f"median |err| {100 * (cal.median_abs_error or 0):.1f}%)")


def _bar(console: Any) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True)


def _list_profiles() -> None:
    from tfcompress.hardware.profile import load_profile, shipped_profiles

    for name, path in shipped_profiles().items():
        p = load_profile(path)
        click.echo(f"{name:12s} {p.runtime}, {p.delegate}, {p.threads} thread(s), {p.dtype}: {len(p.entries)} kernels, "
                   f"measured {p.provenance.measured_at} on {p.provenance.host}")


def _import_profile(path: str, models: tuple[str, ...], fmt: str | None, output: str | None, device: str | None,
                    command: str) -> None:
    from tfcompress.hardware.importers import import_measurements, to_profile
    from tfcompress.hardware.profile import load_profile, profile_file_name, save_profile

    imported = import_measurements(path, models=models, format=fmt, device=device)
    out = output or profile_file_name(imported.device)  # one path component, whatever the file's name says
    base = load_profile(out) if Path(out).exists() else None
    prof = to_profile(imported, base, command=command)
    save_profile(prof, out)
    err = make_console(stderr=True)
    for w in imported.warnings:
        err.print(f"[yellow]warning:[/] {w}", soft_wrap=True)
    click.echo(f"{out}: {len(imported.entries)} kernel(s) and {len(imported.observations)} model(s) imported from "
               f"{imported.source_format}; the profile has {len(prof.entries)} kernels ({prof.device}, {prof.runtime}, "
               f"{prof.delegate}, {prof.threads} thread(s))")
    for o in imported.observations:
        if o.energy_mj is not None:
            above = f", {o.energy_above_idle_mj:.4f} mJ above idle" if o.energy_above_idle_mj is not None else ""
            click.echo(f"  {o.name}: {o.measured_ms:.3f} ms, {o.energy_mj:.4f} mJ per inference{above}")


def _validate_profile(n: int, profile_name: str, png: str) -> None:
    from rich.table import Table

    from tfcompress.hardware.profile import resolve_profile
    from tfcompress.hardware.validate import scatter_png, validate

    prof = resolve_profile(profile_name)
    console = make_console()
    with _bar(make_console(stderr=True)) as bar:
        task = bar.add_task("converting held-out architectures", total=n)
        conv = {"done": False}

        def step(i: int, total: int, msg: str) -> None:
            if msg.startswith("timed") and not conv["done"]:
                conv["done"] = True
                bar.update(task, description="measuring and predicting", completed=0)
            bar.update(task, completed=i, total=total)

        v = validate(prof, n=n, on_progress=step)
    s = v.summary()
    console.print(f"[bold]predicted vs measured[/]: profile '{prof.device}' ({prof.runtime}, {prof.delegate}, "
                  f"{prof.threads} thread(s)) on {len(v.rows)} held-out architectures measured here", soft_wrap=True)
    table = Table(show_header=False)
    for label, key, fmt in (("within ±5%", "within_5pct", "{:.0%}"), ("within ±10%", "within_10pct", "{:.0%}"),
                            ("within ±20%", "within_20pct", "{:.0%}"), ("median |error|", "median_abs_error", "{:.1%}"),
                            ("mean error", "mean_error", "{:+.1%}"), ("p90 |error|", "p90_abs_error", "{:.1%}"),
                            ("worst error", "worst_error", "{:+.1%}"), ("slowest prediction", "max_predict_ms", "{:.1f} ms")):
        table.add_row(label, fmt.format(s[key]))
    table.add_row("noise floor", f"{s['noise_floor']:.1%} median run-to-run spread (p90 {s['p90_spread']:.1%})")
    table.add_row("inside the spread", f"{s['within_spread']:.0%} of predictions lie within their model's spread")
    if v.busy:
        console.print(f"[yellow]warning:[/] the machine was busy while {v.busy} model(s) were timed: the figures "
                      "below are not reliable; run again on an idle machine", soft_wrap=True)
    console.print(table)
    for arch, err in v.failed:
        console.print(f"[yellow]not counted:[/] LiteRT could not run {arch}: {err}", soft_wrap=True)
    path = scatter_png(v, png, title=f"profile '{prof.device}' ({prof.runtime})")
    console.print(f"scatter: {path}")


def _check_profile(profile_name: str, output: str | None) -> None:
    from rich.table import Table

    from tfcompress.hardware.check import FIT_MEDIAN, FIT_SHARE, check_profile, rescaled
    from tfcompress.hardware.profile import resolve_profile, save_profile

    prof = resolve_profile(profile_name)
    with _bar(make_console(stderr=True)) as bar:
        task = bar.add_task("converting one-op models", total=None)
        c = check_profile(prof, on_progress=lambda i, n, msg: bar.update(task, completed=i, total=n))
    console = make_console()
    table = Table(title=f"profile '{prof.device}' vs this machine ({prof.threads} thread(s))")
    for col in ("kernel", "profile ms", "here ms", "ratio"):
        table.add_column(col, justify="left" if col == "kernel" else "right")
    for k in c.kernels:
        table.add_row(k.key.describe(), f"{k.profile_ms:.4f}", f"{k.measured_ms:.4f}", f"{k.ratio:.2f}")
    console.print(table)
    console.print(f"per-invoke overhead: profile {c.profile_overhead_ms:.4f} ms, here {c.measured_overhead_ms:.4f} ms")
    console.print(f"median ratio here / profile {c.median_ratio:.3f}; within ±10%: {c.within_10pct:.0%} of "
                  f"{len(c.kernels)} kernels", soft_wrap=True)
    if c.busy:
        console.print("[yellow]no verdict:[/] the machine was busy (other processes using the CPU) while timing; "
                      "run the check again when it is idle" + (f" ({output} not written)" if output else ""))
        sys.exit(3)
    if output is not None:
        save_profile(rescaled(prof, c), output)
        console.print(f"{output}: profile '{prof.device}' rescaled x{c.median_ratio:.3f} to this machine")
    if c.fits:
        console.print(f"[green]fits[/]: profile '{prof.device}' predicts this machine (median within "
                      f"±{FIT_MEDIAN:.0%}, >= {FIT_SHARE:.0%} of kernels within ±10%)")
        return
    console.print(f"[red]does not fit[/]: predictions with profile '{prof.device}' would be off by about "
                  f"{c.median_ratio - 1:+.0%}; build one here: tfcompress profile -o host.json  (then --device "
                  "host.json), or for a quick fix rescale it: tfcompress profile --check -o rescaled.json",
                  soft_wrap=True)
    sys.exit(1)
