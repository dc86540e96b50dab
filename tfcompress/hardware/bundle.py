"""Edge bundles: measure a LUT on a device that has no TensorFlow (format: docs/latency.md).

    info = export_bundle([model, "other.tflite"], "bundle/")    # desktop: one-op int8 models + edge_profile.py
    # device: python3 bundle/edge_profile.py bundle/            # writes bundle/result.json
    profile = read_edge_result("bundle/result.json")            # desktop: a DeviceProfile

The device side is `tfcompress/edge/edge_profile.py`, copied into the bundle byte for
byte; it needs only python3, numpy and ai-edge-litert (or tflite-runtime). The
bundle is written by `measure.write_bundle`, the same writer the host profiler
uses before it runs that script's loop in process.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfcompress.edge.edge_profile import BUNDLE_SCHEMA, RESULT_SCHEMA
from tfcompress.errors import OutputError, TfcompressError
from tfcompress.hardware.importers import import_measurements, to_profile
from tfcompress.hardware.kernels import KernelKey, to_tflite
from tfcompress.hardware.measure import kernel_tflites, overhead_model_bytes, select_kernels, source_name, write_bundle
from tfcompress.hardware.profile import DeviceProfile

__all__ = ["BundleInfo", "export_bundle", "read_edge_result", "BUNDLE_SCHEMA", "RESULT_SCHEMA"]

_README = """\
tfcompress edge bundle: {n} one-op int8 models to time on the device.

On the device (needs python3 >= 3.9, numpy and ai-edge-litert or tflite-runtime; no TensorFlow):

    pip install numpy ai-edge-litert          # or: pip install tflite-runtime
    python3 {name}/edge_profile.py {name}      # add --threads N, --resolver builtin, --device NAME

Progress goes to the terminal; the result is {name}/result.json (-o to write elsewhere).
It is saved after every kernel: if the run is interrupted, run the same command again to resume.
Measure on an idle device (the result records the load average).

Then copy result.json back to the desktop and import it into a device profile
with `tfcompress profile --import result.json -o device.json`.
"""


@dataclass(frozen=True)
class BundleInfo:
    """What `export_bundle` wrote."""

    path: Path
    n_kernels: int
    skipped: tuple[tuple[str, str], ...]  # (KernelKey.describe(), why it is not in the bundle)
    n_models: int = 0  # whole source models, timed too: they calibrate the device's profile


def export_bundle(
    sources: Iterable[Any],
    out_dir: str | os.PathLike[str],
    *,
    threads: int = 1,
    command: str = "",
    on_progress: Callable[[int, int, KernelKey], None] | None = None,
    names: Sequence[str] | None = None,
) -> BundleInfo:
    """Write an edge bundle for the kernels of `sources` into `out_dir`.

    The bundle is built in a temporary sibling folder and renamed into place
    at the end, so `out_dir` never holds half a bundle.

    Args:
        sources: Keras models, .tflite bytes / paths, or KernelKeys (as for
            `lut.build_profile`).
        out_dir: a new (or empty) folder.
        threads: the interpreter threads edge_profile.py uses by default.
        command: the command line, stored in bundle.json.
        on_progress: called as (done, total, key) after each kernel model.
        names: the whole models' names in bundle.json and the result (default: file / model names), one per
            source.

    Raises:
        OutputError: `out_dir` exists and is not an empty folder, or cannot be written.
        TfcompressError: the sources have no kernel that can be timed.
    """
    out = Path(out_dir).expanduser()
    _check_empty(out)
    sources = list(sources)
    if names is not None and len(names) != len(sources):
        raise ValueError(f"{len(names)} names for {len(sources)} sources")
    sources = [s if isinstance(s, KernelKey) else (names[i] if names is not None else source_name(s, i), to_tflite(s))
               for i, s in enumerate(sources)]
    whole = [s for s in sources if not isinstance(s, KernelKey)]
    selection = select_kernels([s if isinstance(s, KernelKey) else s[1] for s in sources])
    skipped = [(k.describe(), why) for k, why in selection.skipped]
    if not selection.keys:
        raise TfcompressError("the models have no kernel that can be timed (none is an int8 op a one-op model "
                              "can reproduce)", "convert them to full int8 first")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    except OSError as exc:
        raise OutputError(f"cannot create the bundle folder {out}: {exc.strerror or exc}",
                          "choose a writable location") from None
    try:
        kernels, failed = kernel_tflites(selection.keys, on_progress)
        skipped += [(k.describe(), why) for k, why in failed]
        write_bundle(tmp, kernels, whole, overhead=overhead_model_bytes(), threads=threads, command=command)
        (tmp / "README.txt").write_text(_README.format(n=len(kernels), name=out.name))
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o777 & ~mask)  # mkdtemp makes 0700
        os.replace(tmp, out)  # replaces an empty folder; fails on a non-empty one
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(f"could not write the bundle {out}: {exc.strerror or exc}",
                          "check free space and permissions; give a new folder") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return BundleInfo(out, len(kernels), tuple(skipped), len(whole))


def _check_empty(out: Path) -> None:
    """Refuse an existing file or non-empty folder before any long work."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"bundle path {out} is a file", "give a new folder name")
    if out.is_dir() and any(out.iterdir()):
        raise OutputError(f"bundle folder {out} is not empty", "give a new folder, or delete this one first")


# ------------------------------------------------------------------ reading results


def read_edge_result(path: str | os.PathLike[str], *, device: str | None = None) -> DeviceProfile:
    """A DeviceProfile from the result.json that edge_profile.py wrote on the device.

    The same reader as `tfcompress profile --import` (`importers`, format "edge_result").

    Raises:
        TfcompressError: missing, unreadable, foreign or malformed JSON (naming the file and field).
    """
    return to_profile(import_measurements(path, format="edge_result", device=device))
