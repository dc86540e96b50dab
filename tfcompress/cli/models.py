"""`tfcompress inspect`, `analyze` and `recipes`: look at models and recipes."""

from __future__ import annotations

import json
from pathlib import Path

import click

from tfcompress.cli.app import device_option, main, make_console, user_errors


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
    from tfcompress.export.input_files import check_not_special

    console = make_console()
    check_not_special(file, "model file")  # a FIFO or device would block or never end (a folder is a SavedModel)
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
@click.argument("model", type=click.Path(path_type=str))
@click.option("--data", "data", required=True, type=click.Path(path_type=str), help="Samples (.npz x / optional y, .npy, image folder): the first --calib-samples calibrate, the next --samples measure.")
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(path_type=str), help="Folder for sensitivity.json, sensitivity.png and the per-variant cache (a rerun resumes from it).")
@click.option("--device", default="host", show_default=True, help="Device profile for each op's predicted latency: a shipped name (tfcompress profile --list), a profile JSON, or 'none'.")
@click.option("--calib-samples", type=click.IntRange(min=1, max=100_000), default=200, show_default=True, help="Calibration samples.")
@click.option("--samples", type=click.IntRange(min=1, max=100_000), default=500, show_default=True, help="Held-out samples each variant is measured on.")
@click.option("--top", type=click.IntRange(min=1), default=None, help="Show only the N most harmful ops (the JSON has all).")
@click.option("--unsafe", is_flag=True, help="Allow Lambda layers and custom classes (runs code from the model file).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of a table.")
@user_errors
def analyze(model: str, data: str, out_dir: str, device: str, calib_samples: int, samples: int, top: int | None,
            unsafe: bool, as_json: bool) -> None:
    """Rank MODEL's ops by how much full int8 costs them (per-op quantization sensitivity).

    One calibration, then for every op two int8 variants measured against the
    float model on held-out samples: only that op in int8 (the error it adds
    alone) and every op in int8 but that one (the SNR won back by leaving it
    float). Next to each: its int8 weight bytes and predicted latency.

    \b
    Examples:
      tfcompress analyze model.keras --data calib.npz -o analysis/
      tfcompress analyze model.keras --data calib.npz -o analysis/ --device pi4.json --top 10
    """
    from tfcompress.precision.outputs import write_report
    from tfcompress.precision.sensitivity import analyze as run_analyze
    from tfcompress.render import render_sensitivity

    console = make_console()
    quiet = as_json
    report = run_analyze(
        model, data, out_dir=out_dir, device=device_option(device), calib_samples=calib_samples, samples=samples,
        safe_mode=not unsafe, on_progress=None if quiet else (lambda m: console.print(f"[dim]- {m}[/]")),
    )
    json_path, png_path = write_report(report, out_dir)
    if as_json:
        click.echo(json_path.read_text())
        return
    render_sensitivity(report, console, top)
    console.print(f"wrote {json_path} and {png_path}")
