"""Import latencies measured on a device into a device profile (LUT).

    imported = import_measurements("op_profile.csv", models=["model.tflite"], device="pixel7")
    imported.entries, imported.observations, imported.warnings
    profile = to_profile(imported, base=load_profile("pixel7.json"))    # or base=None for a new profile

One module per format, each an `ImportFormat` (detector + parser) in `FORMATS`;
the file's content decides, not its name:

- ``edge_result`` (`edge_result.py`): ``tfcompress.edge_result/1`` written by ``edge_profile.py``.
- ``android_benchmark`` (`android.py`): ``tfcompress.android_benchmark/1`` written by the
  Android demo app; its models are matched to the .tflite files passed in ``models`` by sha256.
- ``benchmark_model_csv`` (`benchmark_model.py`): TFLite ``benchmark_model``'s per-op profile
  of the one .tflite passed in ``models``.

The JSON formats are validated by pydantic models (errors name the file and the
key path). No TensorFlow here: kernel keys come from `kernels_of`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace

from tfcompress.errors import TfcompressError
from tfcompress.export.tflite_file import PathOrBytes
from tfcompress.hardware.importers import android, benchmark_model, edge_result
from tfcompress.hardware.importers.android import ANDROID_BENCHMARK_SCHEMA
from tfcompress.hardware.importers.edge_result import EDGE_RESULT_SCHEMA
from tfcompress.hardware.importers.source import Imported, ImportFormat, MeasurementFile, load_models
from tfcompress.hardware.predict import calibrated
from tfcompress.hardware.profile import DeviceProfile, Provenance, checked
from tfcompress.hardware.schema import is_name, short_repr

__all__ = ["EDGE_RESULT_SCHEMA", "ANDROID_BENCHMARK_SCHEMA", "Imported", "ImportFormat", "FORMATS",
           "import_measurements", "to_profile"]

FORMATS: dict[str, ImportFormat] = {
    "edge_result": edge_result.FORMAT,
    "android_benchmark": android.FORMAT,
    "benchmark_model_csv": benchmark_model.FORMAT,
}
"""Format name -> detector + parser. Detectors are tried in this order; JSON schemas first."""


def _known_formats() -> str:
    return ", ".join(FORMATS)


def import_measurements(
    path: str | os.PathLike[str],
    *,
    models: Sequence[PathOrBytes] = (),
    device: str | None = None,
    format: str | None = None,  # noqa: A002 - the CLI's --format
) -> Imported:
    """Read device measurements from `path` (format detected from the content).

    Args:
        models: the .tflite files (paths or bytes) the measurements were taken
            on: the one profiled model for ``benchmark_model_csv``; the models
            of an ``android_benchmark`` file, matched by sha256.
        device: the profile's device name (default: what the file says).
        format: skip detection (a key of `FORMATS`).

    Raises:
        TfcompressError: unknown format, malformed or truncated file (naming
            the file and, for a CSV, the line), a model that does not match.
    """
    if device is not None and not is_name(device):
        raise TfcompressError(f"device name {short_repr(device)} is not a name",
                              "give 1-256 characters without NUL or other control characters")
    source = MeasurementFile(path, _known_formats())
    if format is None:
        format = next((name for name, f in FORMATS.items() if f.detect(source)), None)
        if format is None:
            found = source.json.get("schema") if isinstance(source.json, dict) else None
            what = f"schema {found!r}" if found else "an unknown format"
            raise TfcompressError(
                f"{source.path} is {what}: not a measurement file tfcompress can import",
                f"known formats: {'; '.join(f'{n} ({f.description})' for n, f in FORMATS.items())}",
            )
    elif format not in FORMATS:
        raise TfcompressError(f"unknown measurement format {format!r}", f"known formats: {_known_formats()}")
    elif not FORMATS[format].detect(source):
        found = source.json.get("schema") if isinstance(source.json, dict) else None
        raise TfcompressError(
            f"{source.path} is not a measurement file of format {format}"
            + (f" (its schema is {found!r})" if found else ""),
            f"expected: {FORMATS[format].description}",
        )
    return FORMATS[format].parse(source, load_models(models), device)


def to_profile(imported: Imported, base: DeviceProfile | None = None, command: str = "") -> DeviceProfile:
    """A DeviceProfile from `imported`, or `base` with the imported entries merged in.

    An imported entry replaces the base's entry for the same key; imported
    observations replace base observations of the same name; a measured
    overhead replaces the base's. With 3 or more observations the calibration
    is refitted (`predict.fit_calibration`); otherwise the base's is kept.

    Raises:
        TfcompressError: `base` was measured with another runtime, delegate or
            thread count: those latencies do not mix.
    """
    method = f"imported from {imported.source_format} {imported.source}".strip()
    if imported.method:
        method = f"{method}: {imported.method}"
    where = f"the profile from {imported.source or imported.source_format}"
    if base is None:
        return checked(calibrated(DeviceProfile(
            device=imported.device,
            runtime=imported.runtime,
            delegate=imported.delegate,
            threads=imported.threads if imported.threads is not None else 1,
            overhead_ms=imported.overhead_ms or 0.0,
            provenance=Provenance(command=command, measured_at=imported.measured_at, host=imported.host,
                                  method=method, load_average=imported.load_average,
                                  busy_items=imported.busy_items),
            entries=imported.entries,
            observations=imported.observations,
        )), where)
    clashes = [
        f"{what} {mine!r} vs {theirs!r}"
        for what, mine, theirs in (
            ("runtime", imported.runtime, base.runtime),
            ("delegate", imported.delegate, base.delegate),
            ("threads", imported.threads, base.threads),
        )
        if mine is not None and str(mine).casefold() != str(theirs).casefold()
    ]
    if clashes:
        raise TfcompressError(
            f"cannot merge {imported.source or imported.source_format} into the {base.device!r} profile: "
            + "; ".join(clashes),
            "latencies of another runtime, delegate or thread count do not mix: make a new profile "
            "(to_profile without a base)",
        )
    provenance = replace(base.provenance, method="; ".join(m for m in (base.provenance.method, method) if m))
    return checked(calibrated(replace(
        base.with_entries(imported.entries).with_observations(imported.observations),
        overhead_ms=imported.overhead_ms if imported.overhead_ms is not None else base.overhead_ms,
        provenance=provenance,
    )), where)
