"""Edge bundles: measure a LUT on a device that has no TensorFlow (format: docs/latency.md).

    info = export_bundle([model, "other.tflite"], "bundle/")    # desktop: one-op int8 models + edge_profile.py
    # device: python3 bundle/edge_profile.py bundle/            # writes bundle/result.json
    profile = read_edge_result("bundle/result.json")            # desktop: a DeviceProfile

The device side is `edge_profile.py`, copied into the bundle byte for byte;
it needs only python3, numpy and ai-edge-litert (or tflite-runtime).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tfcompress.errors import OutputError, TfcompressError
from tfcompress.hardware import edge_profile
from tfcompress.hardware.edge_profile import BUNDLE_SCHEMA, RESULT_SCHEMA
from tfcompress.hardware.kernels import KernelKey
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

    Raises:
        OutputError: `out_dir` exists and is not an empty folder, or cannot be written.
        TfcompressError: the sources have no kernel that can be timed.
    """
    from tfcompress import __version__
    from tfcompress.hardware import lut

    import hashlib

    from tfcompress.hardware.kernels import kernels_of

    out = Path(out_dir).expanduser()
    _check_empty(out)
    sources = [s if isinstance(s, KernelKey) else (lut.source_name(s, i), lut.to_tflite(s))
               for i, s in enumerate(sources)]
    whole = [s for s in sources if not isinstance(s, KernelKey)]
    selection = lut.select_kernels([s if isinstance(s, KernelKey) else s[1] for s in sources])
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
        models = tmp / "models"
        models.mkdir()
        kernels = []
        for n, key in enumerate(selection.keys, 1):
            try:
                content = lut.convert_int8(lut.kernel_model(key))
            except Exception as exc:  # noqa: BLE001 - a key the converter cannot reproduce is left out
                skipped.append((key.describe(), f"one-op model failed: {' '.join(str(exc).split())[:200]}"))
            else:
                digest = key.digest()
                (models / f"{digest}.tflite").write_bytes(content)
                kernels.append({"digest": digest, "file": f"models/{digest}.tflite", "key": key.to_json()})
            if on_progress is not None:
                on_progress(n, len(selection.keys), key)
        (models / "overhead.tflite").write_bytes(lut.overhead_model_bytes())
        whole_models = []
        for name, content in whole:
            sha = hashlib.sha256(content).hexdigest()
            (models / f"model-{sha[:16]}.tflite").write_bytes(content)
            whole_models.append({"name": name, "sha256": sha, "file": f"models/model-{sha[:16]}.tflite",
                                 "kernels": [u.key.to_json() for u in kernels_of(content)]})
        bundle = {
            "schema": BUNDLE_SCHEMA,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "created_by": f"tfcompress {__version__}",
            "command": command,
            "threads": threads,
            "overhead_model": "models/overhead.tflite",
            "kernels": kernels,
            "models": whole_models,
        }
        (tmp / "bundle.json").write_text(json.dumps(bundle, indent=1) + "\n")
        shutil.copyfile(edge_profile.__file__, tmp / "edge_profile.py")
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
    return BundleInfo(out, len(kernels), tuple(skipped), len(whole_models))


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
    from tfcompress.hardware.importers import import_measurements, to_profile

    return to_profile(import_measurements(path, format="edge_result", device=device))
