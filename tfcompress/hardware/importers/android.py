"""`tfcompress.android_benchmark/1`, written by the Android demo app -> per-op times and whole-model latencies.

Its models are matched by sha256 to the .tflite files passed with it. The
schema is ours (docs/latency.md) and closed, except the free-form parts the app
fills from the phone: `device` and the `latency_ms` statistics may carry more
than we read. `latency_ms.energy` (battery-based energy per inference, whole phone and
above its idle draw) is kept on the model's observation in the profile.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from tfcompress.errors import TfcompressError
from tfcompress.hardware.importers.edge_result import MALFORMED_HINT, RunDoc, kernel_entries
from tfcompress.hardware.importers.source import (
    Imported,
    ImportFormat,
    MeasurementFile,
    TfliteFile,
    median_entries,
    schema_is,
)
from tfcompress.hardware.profile import LutEntry, Observation
from tfcompress.hardware.schema import Closed, Count, Int, Ms, Name, Number, Open, Str, parse

__all__ = ["ANDROID_BENCHMARK_SCHEMA", "AndroidBenchmarkDoc", "FORMAT"]

ANDROID_BENCHMARK_SCHEMA = "tfcompress.android_benchmark/1"


class _DeviceDoc(Open):
    manufacturer: Name | None = None
    model: Name | None = None
    soc: Str | None = None
    android_sdk: Int | Str | None = None
    abi: Str | None = None


class _EnergyDoc(Open):
    """The app's battery-based energy (android_demo/core Energy.kt); `unavailable` says why there is none."""

    mj_per_inference: Annotated[Number, Field(ge=0)] | None = None
    mj_per_inference_above_baseline: Number | None = None
    unavailable: Str | None = None


class _LatencyDoc(Open):
    median: Ms
    energy: _EnergyDoc | None = None


class _OpDoc(Closed):
    index: Int
    op: Str
    ms: Ms


class _ModelDoc(Closed):
    name: Name
    sha256: Str
    warmup: Count | None = None
    runs: Count | None = None
    latency_ms: _LatencyDoc
    ops: tuple[_OpDoc, ...] = ()


class AndroidBenchmarkDoc(RunDoc):
    schema_: Literal["tfcompress.android_benchmark/1"] = Field(alias="schema")
    app_version: Str | None = None
    device: _DeviceDoc
    models: tuple[_ModelDoc, ...] = ()


def _parse(source: MeasurementFile, models: list[TfliteFile], device: str | None) -> Imported:
    doc = parse(AndroidBenchmarkDoc, source.json, where=str(source.path), hint=MALFORMED_HINT)
    warnings: list[str] = []
    entries = kernel_entries(doc, source, warnings)
    observations: list[Observation] = []
    by_sha = {m.sha256: m for m in models}
    used: set[str] = set()
    for i, entry in enumerate(doc.models):
        sha = entry.sha256.lower()
        model = by_sha.get(sha)
        if model is None:
            warnings.append(
                f"{source.path}: models[{i}] {entry.name!r} (sha256 {sha[:12]}...) matches none of the models "
                "passed: its per-op times and latency were not imported"
            )
            continue
        used.add(sha)
        for j, op in enumerate(entry.ops):
            where = f"{source.path}: models[{i}].ops[{j}]"
            if not 0 <= op.index < len(model.uses):
                raise TfcompressError(
                    f"{where} index {op.index} but {model.label} has {len(model.uses)} ops",
                    "the app profiled another model with the same sha256? write the file again",
                )
            key = model.uses[op.index].key
            if op.op != key.op:
                raise TfcompressError(
                    f"{where} is {op.op} but op {op.index} of {model.label} is {key.op}",
                    "the per-op profile does not belong to this model; write the file again",
                )
            entries.append(LutEntry(key, op.ms, entry.runs or 0, 0.0))
        energy = entry.latency_ms.energy
        if energy is not None and energy.mj_per_inference is None and energy.unavailable:
            warnings.append(f"{source.path}: models[{i}] {entry.name!r} has no energy: {energy.unavailable[:300]}")
        observations.append(Observation(entry.name, entry.latency_ms.median, tuple(u.key for u in model.uses),
                                        energy.mj_per_inference if energy is not None else None,
                                        energy.mj_per_inference_above_baseline if energy is not None else None))
    for m in models:
        if m.sha256 not in used:
            warnings.append(
                f"{m.label} (sha256 {m.sha256[:12]}...) matches no models[] entry of {source.path}: not imported"
            )
    info = doc.device
    name = " ".join(v for v in (info.manufacturer, info.model) if v is not None)[:256] or "android"
    host = ", ".join(f"{k} {v}" for k in ("soc", "android_sdk", "abi") if (v := getattr(info, k)) is not None)
    return Imported(
        source_format="android_benchmark",
        device=device or name,
        entries=median_entries(entries),
        observations=tuple(observations),
        warnings=tuple(warnings),
        host=f"{name} ({host})" if host else name,
        **doc.run_fields(source),
    )


FORMAT = ImportFormat(
    schema_is(ANDROID_BENCHMARK_SCHEMA), _parse,
    f"{ANDROID_BENCHMARK_SCHEMA} JSON from the Android app; pass its .tflite files",
)
