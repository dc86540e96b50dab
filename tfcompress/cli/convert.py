"""`tfcompress convert`, `compress` and `demo`: a model in, a verified .tflite out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from tfcompress.cli.app import (
    IO_TYPES, MODES, device_option, load_custom_objects, main, make_console, read_labels, stage_printer, user_errors,
)


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
@click.option("--precision", "precision", multiple=True, metavar="RULE", help="Per-op precision, repeatable, first match wins: 'LAYER_REGEX=P', 'class:CLASS_REGEX=P' (Keras layer class), 'op:OP_REGEX=P', or combined 'op:OP@class:CLASS@LAYER=P' (regexes run by RE2) with P in int8, int16x8, int4 (int4 weights, int8 activations), int4w (int4 weights, float compute), float. Other ops get --mode (int8 or int16x8); input/output become float32. e.g. --precision 'head=float' --precision 'op:FULLY_CONNECTED=int4'.")
@click.option("--recipe", "recipe", default=None, help="Take the export settings (mode, calibration samples, per-op precision) from a recipe without training stages, e.g. the OUT.precision.yaml a budgeted convert wrote.")
@click.option("--max-acc-drop", type=click.FloatRange(min=0), default=None, metavar="PP", help="Budget: choose per-op precision so accuracy (top-1 agreement without labels) drops at most PP percentage points below the float model, on the --verify-samples after calibration; the most harmful ops (by sensitivity) stay float.")
@click.option("--size-kb", type=click.FloatRange(min=0, min_open=True), default=None, metavar="KB", help="Budget: the .tflite at most KB KiB; the least harmful large CONV_2D / FULLY_CONNECTED layers get int4 weights until it fits (steps that break --max-acc-drop are undone).")
@click.option("--latency-ms", type=click.FloatRange(min=0, min_open=True), default=None, metavar="MS", help="Budget: predicted latency on --device at most MS; steps predicted slower are refused. Profiles measure int8 kernels only: float and int4 ops are predicted by the profile's regression, not measured.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of tables.")
@user_errors
def convert(model: str, output: str, data: str | None, mode: str, io: str | None, calib_samples: int, verify_samples: int,
            verify_data: str | None, no_verify: bool, allow_float_fallback: bool, threads: int, x_key: str, y_key: str,
            image_scale: str | None, image_resize: str, labels_file: str | None, unsafe: bool,
            custom_objects: str | None, device: str, precision: tuple[str, ...], recipe: str | None,
            max_acc_drop: float | None, size_kb: float | None, latency_ms: float | None, as_json: bool) -> None:
    """Convert MODEL (.keras, .h5 or SavedModel dir) to a verified .tflite.

    \b
    Examples:
      tfcompress convert model.keras --data calib.npz -o model.tflite
      tfcompress convert model.h5 --data images/ --image-scale=-1,1 -o m.tflite --io uint8
      tfcompress convert saved_model/ --mode float16 -o m_fp16.tflite --no-verify
      tfcompress convert m.keras --data d.npz -o m.tflite --precision 'head=float' --precision 'op:FULLY_CONNECTED=int4'
      tfcompress convert m.keras --data d.npz -o m.tflite --precision 'class:^Dense$=int4' --precision 'head=float'
      tfcompress convert m.keras --data d.npz -o m.tflite --max-acc-drop 1 --size-kb 60
      tfcompress convert m.keras --data d.npz -o m2.tflite --recipe m.precision.yaml

    The int8 default gives int8 input and output; read their scale and zero
    point from OUT.meta.json. An op that cannot be integer fails the
    conversion, naming the op and the Keras layer (see --allow-float-fallback).

    Per-op precision (--precision, or chosen under --max-acc-drop / --size-kb /
    --latency-ms): the report shows each op's precision read back from the file
    and whether XNNPACK or the builtin kernels run it. A budget run first ranks
    the ops by sensitivity (as `tfcompress analyze`), then writes the chosen
    plan as a recipe, OUT.precision.yaml, that --recipe turns back into the
    same model.
    """
    from tfcompress.data import ImageSpec
    from tfcompress.conversion import ConvertOptions
    from tfcompress.conversion import convert as run_convert
    from tfcompress.render import render

    from tfcompress.precision.mixed import parse_rule

    objects = load_custom_objects(custom_objects, unsafe)
    image = ImageSpec(scale=image_scale or "0,1", resize=image_resize) if (image_scale or image_resize != "bilinear") else None
    budgets = {"--max-acc-drop": max_acc_drop, "--size-kb": size_kb, "--latency-ms": latency_ms}
    given = [k for k, v in budgets.items() if v is not None]
    rules = tuple(parse_rule(r) for r in precision)
    if recipe is not None:
        if rules or given:
            _refuse("--recipe", "--precision" if rules else given[0])
        mode, io, calib_samples, allow_float_fallback, rules = _export_settings(recipe, mode, io, calib_samples,
                                                                                 allow_float_fallback)
    if rules and given:
        _refuse("--precision", given[0])
    options = ConvertOptions(
        mode=mode, io=io, calib_samples=calib_samples, verify=not no_verify, verify_samples=verify_samples,
        allow_float_fallback=allow_float_fallback, threads=threads, safe_mode=not unsafe, x_key=x_key, y_key=y_key,
        image=image, labels=read_labels(labels_file), device=device_option(device), precision=rules,
    )
    console = make_console()
    plan = plan_text = None
    with console.status("[bold]starting[/] ...") as status:
        if given:
            plan, data = _choose_plan(model, data, options, objects, max_acc_drop, size_kb, latency_ms,
                                      stage_printer(status))
            from dataclasses import replace

            options = replace(options, precision=plan.rules)
        result = run_convert(model, data, output=output, options=options, verify_data=verify_data,
                             custom_objects=objects, on_progress=stage_printer(status))
    if plan is not None:
        from tfcompress.export.outputs import sidecar_paths
        from tfcompress.precision.auto import plan_recipe, write_plan

        report_path, _ = sidecar_paths(result.path)
        plan_path = report_path.with_name(report_path.name.removesuffix(".report.json") + ".precision.yaml")
        plan_text = plan_recipe(plan, name=result.report.model, mode=mode, calib_samples=calib_samples,
                                command="convert " + " ".join(f"{k} {v}" for k, v in budgets.items() if v is not None))
        write_plan(plan_text, plan_path)
    if as_json:
        click.echo(json.dumps(result.report.to_dict(), indent=2))
        return
    render(result.report, console)
    if plan is not None:
        _print_plan(plan, console)
        console.print(f"wrote the plan {plan_path} (rebuild with --recipe {plan_path.name})")
    console.print(f"wrote {result.path}, {result.report_path.name}, {result.meta_path.name}")


def _refuse(first: str, second: str) -> None:
    from tfcompress.errors import TfcompressError

    raise TfcompressError(f"{first} and {second} cannot be combined",
                          "per-op precision comes from one place: --precision rules, a --recipe, or a budget")


def _export_settings(recipe: str, mode: str, io: str | None, calib_samples: int, allow_float_fallback: bool
                     ) -> tuple[str, str | None, int, bool, tuple[Any, ...]]:
    """A recipe's export settings for `convert` (a recipe with training stages belongs to `compress`)."""
    from tfcompress.errors import TfcompressError
    from tfcompress.recipe import load_recipe

    rec = load_recipe(recipe)
    if rec.stages:
        raise TfcompressError(f"recipe {rec.name} has {len(rec.stages)} training stage(s); convert does not train",
                              f"use tfcompress compress MODEL --recipe {recipe} --data TRAIN.npz -o OUT.tflite")
    e = rec.export
    return e.mode, e.io if e.io is not None else io, e.calib_samples, e.allow_float_fallback or allow_float_fallback, \
        e.precision


def _choose_plan(model: str, data: str | None, options: Any, objects: Any, max_acc_drop: float | None,
                 size_kb: float | None, latency_ms: float | None, say: Any) -> tuple[Any, Any]:
    """The budgeted plan (`precision.auto.choose_precision`) on the same samples convert will use."""
    from tfcompress import data as data_mod
    from tfcompress.errors import DataError
    from tfcompress.loading import load_source
    from tfcompress.precision.auto import choose_precision

    if data is None:
        raise DataError("a precision budget needs --data", "labelled samples: the first --calib-samples calibrate, "
                        "the next --verify-samples measure each candidate")
    if options.mode.value != "int8":
        from tfcompress.errors import TfcompressError

        raise TfcompressError("budgeted precision starts from full int8", "drop --mode (or give --precision rules)")
    say("loading the model")
    source = load_source(model, safe_mode=options.safe_mode, custom_objects=objects)
    samples = data_mod.load_samples(data, source.input_specs(), x_key=options.x_key, y_key=options.y_key,
                                    image=options.image, max_samples=options.calib_samples + options.verify_samples)
    plan = choose_precision(source.model if source.model is not None else model, samples, max_acc_drop=max_acc_drop,
                            size_kb=size_kb, latency_ms=latency_ms, device=options.device,
                            calib_samples=options.calib_samples, samples=options.verify_samples,
                            safe_mode=options.safe_mode, on_progress=say)
    return plan, samples


def _print_plan(plan: Any, console: Any) -> None:
    from rich.table import Table

    def acc(q: Any) -> str:
        return f"{100 * q.accuracy:.2f}%" if q.accuracy is not None else \
            (f"agreement {100 * q.agreement:.2f}%" if q.agreement is not None else "-")

    t = Table(title="precision plan: " + ("every budget met" if plan.met else "NOT met: " + "; ".join(plan.unmet)),
              title_justify="left")
    for col in ("step", "layers", "kept", "accuracy", "SNR dB", "bytes"):
        t.add_column(col)
    t.add_row("full int8", "-", "-", acc(plan.full_int8), f"{plan.full_int8.snr_db:.1f}", f"{plan.full_int8_bytes:,}")
    for s in plan.steps:
        t.add_row(s.precision, ", ".join(s.layers), s.why, acc(s.quality), f"{s.quality.snr_db:.1f}",
                  f"{s.tflite_bytes:,}")
    t.add_row("chosen", f"float: {', '.join(plan.float_layers) or '-'}; int4: {', '.join(plan.int4_layers) or '-'}",
              "", acc(plan.quality), f"{plan.quality.snr_db:.1f}", f"{plan.tflite_bytes:,}")
    console.print(t)


class _ListsShippedRecipes(click.Command):
    """A command whose help names the shipped recipes on disk (read when the help is shown, not at import)."""

    def format_help_text(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from tfcompress.recipe import list_shipped_recipes

        template = self.help or ""
        self.help = template.replace("{recipes}", ", ".join(list_shipped_recipes()))
        try:
            super().format_help_text(ctx, formatter)
        finally:
            self.help = template  # the folder is read again at the next --help


@main.command(cls=_ListsShippedRecipes)
@click.argument("model", type=click.Path(path_type=str))
@click.option("-o", "--output", required=True, type=click.Path(path_type=str), help="Where to write the .tflite (OUT.report.json with the per-stage table and OUT.meta.json go beside it).")
@click.option("--recipe", "recipe", default=None, help="A recipe file (.yaml / .json) or a shipped recipe name (`tfcompress recipes` lists them). Default: mobile-int8.")
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
@click.option("--wide/--narrow", "wide", default=None, help="Every column of the stage and weight tables and every weight (default: wide on terminals of 120+ columns; narrow in a pipe or at 80).")
@user_errors
def compress(model: str, output: str, recipe: str | None, data: str, val_data: str | None, x_key: str, y_key: str,
             image_scale: str | None, log_dir: str | None, backup_dir: str | None, no_stage_metrics: bool, unsafe: bool,
             device: str, as_json: bool, wide: bool | None) -> None:
    """Run a compression RECIPE on MODEL with fine-tuning, then convert and verify.

    \b
    Examples:
      tfcompress compress model.keras --data train.npz -o model.tflite               # mobile-int8
      tfcompress compress model.keras --recipe pcqat --data train.npz -o m.tflite
      tfcompress compress model.h5 --recipe my_recipe.yaml --data imgs/ -o m.tflite --backup-dir ckpt/

    Shipped recipes: {recipes} (`tfcompress recipes` shows their stages; README lists what each measured).
    """
    from tfcompress.compression import compress as run_compress
    from tfcompress.data import ImageSpec
    from tfcompress.render import render, render_stages

    console = make_console()
    image = ImageSpec(scale=image_scale) if image_scale else None
    result = run_compress(
        model, recipe, data, output=output, val_data=val_data, x_key=x_key, y_key=y_key, image=image,
        safe_mode=not unsafe, log_dir=log_dir, backup_dir=backup_dir, measure_stages=not no_stage_metrics,
        console=None if as_json else console, on_progress=None if as_json else (lambda m: console.print(f"[dim]- {m}[/]")),
        device=device_option(device), on_warning=lambda w: make_console(stderr=True).print(f"[yellow]warning:[/] {w}", soft_wrap=True),
    )
    if as_json:
        click.echo(Path(result.convert.report_path or "").read_text() if result.convert.report_path else "{}")
        return
    render(result.convert.report, console)
    render_stages(result.report, console, wide)
    console.print(f"wrote {output} (recipe {result.recipe.name})")




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

    console = make_console()
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
