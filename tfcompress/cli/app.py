"""The `tfcompress` click group and what every command shares: consoles, error handling, argument helpers.

Problems with the user's input are `TfcompressError`s: printed as one
`error:` line plus a `hint:` line on stderr, exit code 2, no traceback.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect as pyinspect
import os
import sys
from pathlib import Path
from typing import Any, Callable

import click

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow is imported anywhere

MODES = ("int8", "int16x8", "float16", "dynamic")
IO_TYPES = ("int8", "uint8", "int16", "float32")
EXIT_USER_ERROR = 2


def make_console(stderr: bool = False) -> Any:
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
            err = make_console(stderr=True)
            err.print(f"[bold red]error:[/] {e.message}", soft_wrap=True)
            if e.hint:
                err.print(f"[bold]hint:[/] {e.hint}", soft_wrap=True)
            sys.exit(EXIT_USER_ERROR)
        except KeyboardInterrupt:
            make_console(stderr=True).print("interrupted; nothing was written")
            sys.exit(130)

    return wrapper


def stage_printer(status: Any) -> Callable[[str], None]:
    def say(msg: str) -> None:
        status.update(f"[bold]{msg}[/] ...")

    return say


def load_custom_objects(path: str | None, unsafe: bool) -> dict[str, Any] | None:
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


def read_labels(path: str | None) -> tuple[str, ...] | None:
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


def device_option(name: str) -> str | None:
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
      tfcompress analyze model.keras --data d.npz -o analysis/   which ops int8 hurts

    Every command explains its options with --help.
    """
