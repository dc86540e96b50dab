"""`tfcompress android-export`: put a converted model into the Android demo app (android_demo/)."""

from __future__ import annotations

import json

import click

from tfcompress.cli.app import main, make_console, user_errors


@main.command(name="android-export")
@click.argument("model", type=click.Path(path_type=str))
@click.option("--app", "app_dir", default="android_demo", show_default=True, type=click.Path(path_type=str),
              help="The Android demo app: the folder holding app/src/main (android_demo/ of the repository).")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
@user_errors
def android_export(model: str, app_dir: str, as_json: bool) -> None:
    """Copy MODEL.tflite, its sidecar (MODEL.meta.json) and labels into the Android demo app's assets.

    Writes app/src/main/assets/model.tflite, model.meta.json and labels.txt, all
    three or none. A model the app cannot run is refused with one line saying why:
    input or output dtypes other than int8, uint8 and float32, more than one input
    or output, an input that is not one image [1, H, W, 1 or 3], ops outside
    LiteRT's builtin kernels (TensorFlow Flex or custom ops), or a sidecar that is
    missing, of another model, or without the pixel scaling the app applies.

    \b
    Examples:
      tfcompress demo --out demo/
      tfcompress android-export demo/fmnist_cnn_int8.tflite --app android_demo/
      tfcompress convert model.keras --data images/ -o m.tflite && tfcompress android-export m.tflite

    Then build android_demo/ in Android Studio, run its benchmark on the phone, and
    import the JSON it writes with tfcompress profile --import (docs/android.md).
    """
    from tfcompress.android.export import export_to_app

    result = export_to_app(model, app_dir)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    console = make_console()
    names = ", ".join(p.name for p in result.files)
    console.print(f"wrote {names} to {result.assets}", soft_wrap=True)
    labels = "from the sidecar" if result.labels_from_sidecar else "numbered: the sidecar has none"
    console.print(f"input {result.input}; output {result.output}; {result.labels} labels ({labels})", soft_wrap=True)
    console.print("next: open the app folder in Android Studio and run it on a phone (docs/android.md)")
