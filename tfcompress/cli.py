"""`tfcompress` command line: a thin layer over the library.

Problems with the user's input are `TfcompressError`s: printed as one
`error:` line plus a `hint:` line on stderr, exit code 2, no traceback.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect as pyinspect
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

import click

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow is imported anywhere

MODES = ("int8", "int16x8", "float16", "dynamic")
IO_TYPES = ("int8", "uint8", "int16", "float32")
EXIT_USER_ERROR = 2


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn TfcompressError into 'error: ... / hint: ...' and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from tfcompress.errors import TfcompressError

        try:
            return fn(*args, **kwargs)
        except TfcompressError as e:
            err = _console(stderr=True)
            err.print(f"[bold red]error:[/] {e.message}", soft_wrap=True)
            if e.hint:
                err.print(f"[bold]hint:[/] {e.hint}", soft_wrap=True)
            sys.exit(EXIT_USER_ERROR)
        except KeyboardInterrupt:
            _console(stderr=True).print("interrupted; nothing was written")
            sys.exit(130)

    return wrapper


def _stage_printer(status: Any) -> Callable[[str], None]:
    def say(msg: str) -> None:
        status.update(f"[bold]{msg}[/] ...")

    return say


def _load_custom_objects(path: str | None, unsafe: bool) -> dict[str, Any] | None:
    from tfcompress.errors import ModelLoadError

    if path is None:
        return None
    if not unsafe:
        raise ModelLoadError(
            f"--custom-objects {path} runs Python code from that file", "add --unsafe if you trust it"
        )
    p = Path(path)
    if not p.is_file():
        raise ModelLoadError(f"custom objects file {p} does not exist", "give the .py file that defines your layers")
    spec = importlib.util.spec_from_file_location(p.stem, p)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # the user's code can raise anything
        raise ModelLoadError(f"importing {p} failed: {type(e).__name__}: {e}", "fix that file") from None
    explicit = getattr(module, "CUSTOM_OBJECTS", None)
    if isinstance(explicit, dict):
        return dict(explicit)
    return {
        name: obj
        for name, obj in vars(module).items()
        if not name.startswith("_") and (pyinspect.isclass(obj) or pyinspect.isfunction(obj))
        and getattr(obj, "__module__", None) == module.__name__
    }


def _read_labels(path: str | None) -> tuple[str, ...] | None:
    from tfcompress.errors import DataError

    if path is None:
        return None
    try:
        lines = [ln.strip() for ln in Path(path).read_text().splitlines() if ln.strip()]
    except OSError as e:
        raise DataError(f"cannot read labels file {path} ({e.strerror})", "give a text file, one class name per line") from None
    if not lines:
        raise DataError(f"labels file {path} is empty", "one class name per line, in class-id order")
    return tuple(lines)


def _device(name: str) -> str | None:
    """--device value: 'none' turns latency prediction off."""
    return None if name.lower() == "none" else name


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="tfcompress")
def main() -> None:
    """tfcompress: compress Keras models into verified LiteRT (.tflite) files for edge devices.

    \b
    Start here:
      tfcompress demo                                  train FMNIST-CNN, convert to int8, report
      tfcompress convert model.keras --data calib.npz -o model.tflite
      tfcompress inspect model.tflite                  per-op dtypes, sizes, quantization

    Every command explains its options with --help.
    """


@main.command()
@click.argument("model", type=click.Path(path_type=str))
@click.option("-o", "--output", required=True, type=click.Path(path_type=str), help="Where to write the .tflite (OUT.report.json and OUT.meta.json go beside it).")
@click.option("--data", "data", type=click.Path(path_type=str), help="Calibration data: .npz (inputs under 'x', labels under 'y'), .npy, or a folder of images (subfolders = classes). Required for int8 / int16x8.")
@click.option("--mode", type=click.Choice(MODES), default="int8", show_default=True, help="int8: full integer (int8 in/out). int16x8: int16 activations. float16: half weights. dynamic: int8 weights, float compute.")
@click.option("--io", "io", type=click.Choice(IO_TYPES), default=None, help="Input/output dtype (default: int8 for int8, int16 for int16x8, float32 otherwise).")
@click.option("--calib-samples", type=click.IntRange(min=1), default=200, show_default=True, help="Samples used to calibrate activation ranges.")
@click.option("--verify-samples", type=click.IntRange(min=1), default=1000, show_default=True, help="Held-out samples (after the calibration ones) used for verification.")
@click.option("--verify-data", type=click.Path(path_type=str), default=None, help="Separate verification data (e.g. your test set), same formats as --data.")
@click.option("--no-verify", is_flag=True, help="Skip running source and .tflite side by side.")
@click.option("--allow-float-fallback", is_flag=True, help="Let ops with no integer kernel stay float (they are listed in the report) instead of failing.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="LiteRT threads for verification and latency.")
@click.option("--x-key", default="x", show_default=True, help="Key of the inputs in an .npz (comma-separated for several inputs).")
@click.option("--y-key", default="y", show_default=True, help="Key of the labels in an .npz (optional).")
@click.option("--image-scale", default=None, help='How to scale 0..255 pixels of image folders / uint8 arrays: "0,1", "-1,1", "raw" or "mean=..;std=..". Default for image folders: "0,1".')
@click.option("--image-resize", default="bilinear", show_default=True, type=click.Choice(["bilinear", "nearest", "bicubic", "lanczos", "area"]), help="Resize method for image folders.")
@click.option("--labels", "labels_file", type=click.Path(path_type=str), default=None, help="Text file with class names, one per line (goes into the sidecar).")
@click.option("--unsafe", is_flag=True, help="Allow Lambda layers and custom classes (runs code from the model file).")
@click.option("--custom-objects", type=click.Path(path_type=str), default=None, help="Python file defining your custom layers (needs --unsafe).")
@click.option("--device", default="host", show_default=True, help="Device profile for the predicted latency in the report: a shipped name (tfcompress profile --list), a profile JSON, or 'none'.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of tables.")
@user_errors
def convert(model: str, output: str, data: str | None, mode: str, io: str | None, calib_samples: int, verify_samples: int,
            verify_data: str | None, no_verify: bool, allow_float_fallback: bool, threads: int, x_key: str, y_key: str,
            image_scale: str | None, image_resize: str, labels_file: str | None, unsafe: bool,
            custom_objects: str | None, device: str, as_json: bool) -> None:
    """Convert MODEL (.keras, .h5 or SavedModel dir) to a verified .tflite.

    \b
    Examples:
      tfcompress convert model.keras --data calib.npz -o model.tflite
      tfcompress convert model.h5 --data images/ --image-scale=-1,1 -o m.tflite --io uint8
      tfcompress convert saved_model/ --mode float16 -o m_fp16.tflite --no-verify

    The int8 default gives int8 input and output; read their scale and zero
    point from OUT.meta.json. An op that cannot be integer fails the
    conversion, naming the op and the Keras layer (see --allow-float-fallback).
    """
    from tfcompress.data import ImageSpec
    from tfcompress.conversion import ConvertOptions
    from tfcompress.conversion import convert as run_convert
    from tfcompress.render import render

    objects = _load_custom_objects(custom_objects, unsafe)
    image = ImageSpec(scale=image_scale or "0,1", resize=image_resize) if (image_scale or image_resize != "bilinear") else None
    options = ConvertOptions(
        mode=mode, io=io, calib_samples=calib_samples, verify=not no_verify, verify_samples=verify_samples,
        allow_float_fallback=allow_float_fallback, threads=threads, safe_mode=not unsafe, x_key=x_key, y_key=y_key,
        image=image, labels=_read_labels(labels_file), device=_device(device),
    )
    console = _console()
    with console.status("[bold]starting[/] ...") as status:
        result = run_convert(model, data, output=output, options=options, verify_data=verify_data,
                             custom_objects=objects, on_progress=_stage_printer(status))
    if as_json:
        click.echo(json.dumps(result.report.to_dict(), indent=2))
        return
    render(result.report, console)
    console.print(f"wrote {result.path}, {result.report_path.name}, {result.meta_path.name}")


@main.command()
@click.argument("model", type=click.Path(path_type=str))
@click.option("-o", "--output", required=True, type=click.Path(path_type=str), help="Where to write the .tflite (OUT.report.json with the per-stage table and OUT.meta.json go beside it).")
@click.option("--recipe", "recipe", default=None, help="A recipe file (.yaml / .json) or a shipped recipe name (see --list-recipes). Default: mobile-int8.")
@click.option("--data", "data", required=True, type=click.Path(path_type=str), help="Labelled training data for fine-tuning: .npz (x, y) or an image folder (subfolders = classes).")
@click.option("--val-data", type=click.Path(path_type=str), default=None, help="Validation data (per-stage accuracy, final verification). Default: the last 10% of --data.")
@click.option("--x-key", default="x", show_default=True, help="Key of the inputs in an .npz.")
@click.option("--y-key", default="y", show_default=True, help="Key of the labels in an .npz.")
@click.option("--image-scale", default=None, help='Scaling of 0..255 pixels for image folders / uint8 arrays ("0,1", "-1,1", "raw", "mean=..;std=..").')
@click.option("--log-dir", type=click.Path(path_type=str), default=None, help="TensorBoard logs of per-layer sparsity and cluster counts.")
@click.option("--backup-dir", type=click.Path(path_type=str), default=None, help="Resume point: rerun the same command after an interruption to continue where it stopped.")
@click.option("--no-stage-metrics", is_flag=True, help="Skip converting after every stage (faster; the stage table then has float accuracy only).")
@click.option("--unsafe", is_flag=True, help="Allow Lambda layers and custom classes (runs code from the model file).")
@click.option("--device", default="host", show_default=True, help="Device profile for the predicted latency per epoch, per stage and in the report: a shipped name (tfcompress profile --list), a profile JSON, or 'none'.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of tables.")
@user_errors
def compress(model: str, output: str, recipe: str | None, data: str, val_data: str | None, x_key: str, y_key: str,
             image_scale: str | None, log_dir: str | None, backup_dir: str | None, no_stage_metrics: bool, unsafe: bool,
             device: str, as_json: bool) -> None:
    """Run a compression RECIPE on MODEL with fine-tuning, then convert and verify.

    \b
    Examples:
      tfcompress compress model.keras --data train.npz -o model.tflite               # mobile-int8
      tfcompress compress model.keras --recipe pcqat --data train.npz -o m.tflite
      tfcompress compress model.h5 --recipe my_recipe.yaml --data imgs/ -o m.tflite --backup-dir ckpt/

    Shipped recipes: prune-50, prune-80-sparse, prune-2of4, cluster-16, qat,
    pqat, cqat, pcqat, mobile-int8 (README lists what each measured).
    """
    from tfcompress.compression import compress as run_compress
    from tfcompress.data import ImageSpec
    from tfcompress.render import render, render_stages

    console = _console()
    image = ImageSpec(scale=image_scale) if image_scale else None
    result = run_compress(
        model, recipe, data, output=output, val_data=val_data, x_key=x_key, y_key=y_key, image=image,
        safe_mode=not unsafe, log_dir=log_dir, backup_dir=backup_dir, measure_stages=not no_stage_metrics,
        console=None if as_json else console, on_progress=None if as_json else (lambda m: console.print(f"[dim]- {m}[/]")),
        device=_device(device),
    )
    if as_json:
        click.echo(Path(result.convert.report_path or "").read_text() if result.convert.report_path else "{}")
        return
    render(result.convert.report, console)
    render_stages(result.report, console)
    console.print(f"wrote {output} (recipe {result.recipe.name})")


@main.command()
@click.argument("models", nargs=-1, type=click.Path(exists=True, path_type=str))
@click.option("-o", "--output", default=None, type=click.Path(path_type=str), help="Profile JSON to write (extended when it exists). Default: device_profile.json.")
@click.option("--device", default=None, help="Device name recorded in the profile (default: host when building; what the file says with --import).")
@click.option("--space", "space", default=20, show_default=True, type=click.IntRange(min=1), help="Without MODELS: this many random MobileNet/EfficientNet-style architectures (+ FMNIST-CNN) make the LUT.")
@click.option("--cache", "cache_dir", default="~/.cache/tfcompress/lut", show_default=True, type=click.Path(), help="Per-kernel cache (an interrupted build resumes from it).")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(min=1), help="LiteRT threads.")
@click.option("--budget-s", default=None, type=float, help="Stop measuring new kernels after this many seconds.")
@click.option("--export-bundle", "bundle_dir", default=None, type=click.Path(path_type=str), help="Instead of timing here: write one-op models + edge_profile.py to DIR, to time on a device without TensorFlow.")
@click.option("--import", "import_file", default=None, type=click.Path(path_type=str), help="Import device measurements: edge_profile.py's result.json, a benchmark_model op-profiling CSV, or the Android app's JSON.")
@click.option("--model", "import_models", multiple=True, type=click.Path(exists=True, path_type=str), help="With --import: the .tflite the measurements were taken on (benchmark_model CSV, Android JSON). Repeatable.")
@click.option("--format", "import_format", default=None, type=click.Choice(["edge_result", "android_benchmark", "benchmark_model_csv"]), help="With --import: skip format detection.")
@click.option("--validate", "validate_n", default=None, type=click.IntRange(min=1), help="Measure and predict N random held-out architectures on this machine; print the error distribution.")
@click.option("--profile", "profile_name", default="host", show_default=True, help="With --validate: the profile to check (shipped name or JSON).")
@click.option("--png", default="latency_validation.png", show_default=True, type=click.Path(path_type=str), help="With --validate: where to write the predicted-vs-measured scatter.")
@click.option("--list", "list_profiles", is_flag=True, help="List the shipped device profiles.")
@user_errors
def profile(models: tuple[str, ...], output: str | None, device: str | None, space: int, cache_dir: str, threads: int,
            budget_s: float | None, bundle_dir: str | None, import_file: str | None, import_models: tuple[str, ...],
            import_format: str | None, validate_n: int | None, profile_name: str, png: str, list_profiles: bool) -> None:
    """Device latency profiles (LUTs): build, export to a device, import, validate.

    \b
    Build on this machine (times each kernel of MODELS, or of a built-in
    space of MobileNet/EfficientNet-style architectures when none are given):
      tfcompress profile -o host.json
      tfcompress profile mobilenet.tflite my_model.keras -o host.json
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
    Check the predictor here:  tfcompress profile --validate 100 --profile host.json
    Use a profile:  tfcompress convert ... --device pi4.json   (predicted next to measured latency)
    """
    from tfcompress.errors import TfcompressError

    modes = [m for m, on in (("--export-bundle", bundle_dir), ("--import", import_file),
                             ("--validate", validate_n), ("--list", list_profiles)) if on]
    if len(modes) > 1:
        raise TfcompressError(f"{' and '.join(modes)} cannot be combined", "run them one at a time")
    command = " ".join(["tfcompress", *sys.argv[1:]])
    if list_profiles:
        return _list_profiles()
    if import_file is not None:
        return _import_profile(import_file, import_models, import_format, output, device, command)
    if validate_n is not None:
        return _validate_profile(validate_n, profile_name, png)
    console = _console(stderr=True)
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
                                 threads=threads, time_budget_s=budget_s, command=command, on_progress=step)
            save_profile(prof, out)
    if bundle_dir is not None:
        click.echo(f"{info.path}: {info.n_kernels} one-op models"
                   + (f" ({len(info.skipped)} op(s) not measurable there, predicted by regression)" if info.skipped else ""))
        click.echo(f"next: copy {info.path} to the device, run `python3 {info.path.name}/edge_profile.py "
                   f"{info.path.name}`, copy result.json back, then `tfcompress profile --import result.json`")
        return
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
    from tfcompress.hardware.profile import load_profile, save_profile

    imported = import_measurements(path, models=models, format=fmt, device=device)
    out = output or f"{imported.device}.json"
    base = load_profile(out) if Path(out).exists() else None
    prof = to_profile(imported, base, command=command)
    save_profile(prof, out)
    err = _console(stderr=True)
    for w in imported.warnings:
        err.print(f"[yellow]warning:[/] {w}", soft_wrap=True)
    click.echo(f"{out}: {len(imported.entries)} kernel(s) and {len(imported.observations)} model(s) imported from "
               f"{imported.source_format}; the profile has {len(prof.entries)} kernels ({prof.device}, {prof.runtime}, "
               f"{prof.delegate}, {prof.threads} thread(s))")


def _validate_profile(n: int, profile_name: str, png: str) -> None:
    from rich.table import Table

    from tfcompress.hardware.profile import resolve_profile
    from tfcompress.hardware.validate import scatter_png, validate

    prof = resolve_profile(profile_name)
    console = _console()
    with _bar(_console(stderr=True)) as bar:
        task = bar.add_task("converting held-out architectures", total=n)
        conv = {"done": False}

        def step(i: int, total: int, msg: str) -> None:
            if msg.startswith("measured") and not conv["done"]:
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
    console.print(table)
    for arch, err in v.failed:
        console.print(f"[yellow]not counted:[/] LiteRT could not run {arch}: {err}", soft_wrap=True)
    path = scatter_png(v, png, title=f"profile '{prof.device}' ({prof.runtime})")
    console.print(f"scatter: {path}")


@main.command(name="recipes")
@click.option("--schema", "schema", is_flag=True,
              help="Print the JSON Schema of a recipe file (every technique's stage and params, and `export`) "
                   "instead of the list, e.g. for editor completion and validation of your own recipes.")
def list_recipes(schema: bool) -> None:
    """List the shipped recipes with their stages and descriptions (format: docs/recipes.md).

    \b
    Examples:
      tfcompress recipes
      tfcompress recipes --schema > recipe.schema.json
    """
    from tfcompress.recipe import list_shipped_recipes, load_recipe, recipe_json_schema

    if schema:
        click.echo(json.dumps(recipe_json_schema(), indent=2))
        return
    for name in list_shipped_recipes():
        r = load_recipe(name)
        stages = " -> ".join([*(s.technique for s in r.stages), f"export {r.export.mode}"])
        click.echo(f"{name:18s} {stages}\n{'':18s} {' '.join(r.description.split())}")


@main.command()
@click.argument("file", type=click.Path(path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.option("--unsafe", is_flag=True, help="Allow Lambda layers / custom classes when FILE is a Keras model.")
@user_errors
def inspect(file: str, as_json: bool, unsafe: bool) -> None:
    """Per-op (.tflite) or per-layer (Keras) table: types, dtypes, params, bytes, quantization.

    \b
    Examples:
      tfcompress inspect model.tflite
      tfcompress inspect model.keras --json
    """
    from tfcompress import inspect as ins

    console = _console()
    if Path(file).suffix.lower() == ".tflite":
        result = ins.inspect_tflite(file)
        renderer = ins.render_tflite
    else:
        from tfcompress.loading import load_source

        source = load_source(file, safe_mode=not unsafe)
        if source.model is None:
            from tfcompress.errors import ModelLoadError

            raise ModelLoadError(f"{file} is a SavedModel without Keras layers", "convert it, then inspect the .tflite")
        result = ins.inspect_keras(source.model)
        renderer = ins.render_keras
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        renderer(result, console)


@main.command()
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True, help="Training epochs (the reference baseline is 10).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("tfcompress-demo"), show_default=True, help="Folder for the .tflite and its report / sidecar.")
@click.option("--retrain", is_flag=True, help="Train again even if a cached model exists.")
@click.option("--train-samples", type=click.IntRange(min=1000), default=None, help="Train on only this many images (quicker, less accurate).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of tables.")
@user_errors
def demo(epochs: int, out_dir: Path, retrain: bool, train_samples: int | None, as_json: bool) -> None:
    """Train the reference FMNIST-CNN on Fashion-MNIST, convert it to full int8, verify it.

    The trained model is cached in ~/.cache/tfcompress (TFCOMPRESS_CACHE to
    change). Fashion-MNIST comes from /usr/share/datasets/fashion-mnist
    (Debian: apt-get install dataset-fashion-mnist), ~/.keras/datasets, or
    Keras' downloader.
    """
    from tfcompress.demo import DemoConfig, run_demo
    from tfcompress.render import render

    console = _console()
    cfg = DemoConfig(epochs=epochs, out_dir=out_dir, retrain=retrain, train_samples=train_samples)
    console.print(f"[bold]tfcompress demo[/]: FMNIST-CNN, {epochs} epochs, full int8 -> {out_dir}/")
    result = run_demo(cfg, console=console, on_progress=lambda msg: console.print(f"[dim]- {msg}[/]"))
    if as_json:
        click.echo(json.dumps(result.report.to_dict(), indent=2))
        return
    render(result.report, console)
    acc = result.report.verify.accuracy
    console.print(
        f"[bold green]done:[/] {result.path} ({result.report.size.tflite_bytes:,} bytes, "
        f"int8 accuracy {100 * acc.tflite:.2f}% vs float {100 * acc.source:.2f}%)"
    )


if __name__ == "__main__":
    main()
