"""What every importer reads and returns: the measurement file, the .tflite files passed, `Imported`."""

from __future__ import annotations

import hashlib
import os
import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any

from tfcompress.export.tflite_file import PathOrBytes, read_tflite, read_tflite_bytes
from tfcompress.hardware.kernels import KernelKey, KernelUse, kernels_of
from tfcompress.hardware.profile import LutEntry, Observation
from tfcompress.hardware.schema import parse_json, read_document

__all__ = ["Imported", "ImportFormat", "MeasurementFile", "TfliteFile", "load_models", "median_entries",
           "mtime_iso", "schema_is"]


@dataclass(frozen=True)
class Imported:
    """Latencies read from one measurement file, ready to become (part of) a profile.

    `threads` is None when the file does not record it (a benchmark_model
    CSV); `overhead_ms` is None when the file has no per-invoke overhead.
    Entries hold one LutEntry per kernel key (the median of duplicates).
    """

    source_format: str
    device: str
    runtime: str
    delegate: str
    threads: int | None
    measured_at: str
    entries: tuple[LutEntry, ...]
    overhead_ms: float | None
    observations: tuple[Observation, ...]
    warnings: tuple[str, ...]
    source: str = ""  # the file it was read from
    host: str = ""  # what the file says about the machine (model, SoC, platform)
    load_average: float | None = None
    method: str = ""  # how the file's numbers were measured, when it says
    busy_items: int = 0  # kernels / models timed while the device was busy


class MeasurementFile:
    """The measurement file: its text and (when it is JSON) its parsed content, read once."""

    def __init__(self, path: str | os.PathLike[str], known_formats: str = "") -> None:
        self.path = Path(path)
        self.text = read_document(self.path, what="measurement file", hint=f"pass one of: {known_formats}")

    @cached_property
    def json(self) -> Any:
        """The parsed JSON, None when the file is not JSON (a truncated JSON file is an error)."""
        if not self.text.lstrip().startswith(("{", "[")):
            return None
        return parse_json(self.text, where=str(self.path),
                          hint="the file is truncated or was edited by hand; copy it from the device again")


@dataclass(frozen=True)
class TfliteFile:
    """A .tflite the user passed: its bytes, sha256, kernels and op output names."""

    label: str
    data: bytes

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @cached_property
    def uses(self) -> list[KernelUse]:
        return kernels_of(self.data)

    @cached_property
    def ops(self) -> list[tuple[str, tuple[str, ...]]]:
        """(op type, output tensor names) of each op of subgraph 0."""
        sg = read_tflite(self.data, label=self.label).subgraphs[0]
        return [(op.op_type, tuple(sg.tensors[i].name for i in op.outputs if i >= 0)) for op in sg.operators]

    @property
    def name(self) -> str:
        return Path(self.label).name


def load_models(models: Sequence[PathOrBytes]) -> list[TfliteFile]:
    """The .tflite files (paths or bytes) passed with a measurement file."""
    out = []
    for n, m in enumerate(models):
        label = f"model bytes #{n}" if isinstance(m, (bytes, bytearray, memoryview)) else str(m)
        out.append(TfliteFile(label, read_tflite_bytes(m)))
    return out


@dataclass(frozen=True)
class ImportFormat:
    """How to recognise one file format and read it."""

    detect: Callable[[MeasurementFile], bool]
    parse: Callable[[MeasurementFile, list[TfliteFile], str | None], Imported]
    description: str


def schema_is(schema: str) -> Callable[[MeasurementFile], bool]:
    """A detector: the file is a JSON object with this `schema`."""
    return lambda source: isinstance(source.json, dict) and source.json.get("schema") == schema


def median_entries(entries: Sequence[LutEntry]) -> tuple[LutEntry, ...]:
    """One entry per key: the median ms of duplicates (their runs summed), sorted by key."""
    by_key: dict[KernelKey, list[LutEntry]] = defaultdict(list)
    for e in entries:
        by_key[e.key].append(e)
    return tuple(
        LutEntry(key, float(statistics.median(e.ms for e in group)), sum(e.runs for e in group),
                 float(statistics.median(e.spread_ms for e in group)))
        for key, group in sorted(by_key.items())
    )


def mtime_iso(path: Path) -> str:
    return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")

