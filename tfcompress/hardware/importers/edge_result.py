"""`tfcompress.edge_result/1`, written by edge_profile.py on a device -> every kernel and every bundled model.

Our own schema (docs/latency.md): unknown keys are errors. `RunDoc` and
`KernelDoc` are shared with the Android app's JSON, which reports a bundle's
kernels the same way.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from tfcompress.edge.edge_profile import RESULT_SCHEMA
from tfcompress.hardware.importers.source import (
    Imported,
    ImportFormat,
    MeasurementFile,
    TfliteFile,
    median_entries,
    schema_is,
)
from tfcompress.hardware.profile import LutEntry, Observation
from tfcompress.hardware.schema import Closed, Count, KeyDoc, Ms, Name, Number, Str, Threads, parse

__all__ = ["EDGE_RESULT_SCHEMA", "MALFORMED_HINT", "KernelDoc", "RunDoc", "EdgeResultDoc", "FORMAT", "kernel_entries"]

EDGE_RESULT_SCHEMA = RESULT_SCHEMA
MALFORMED_HINT = "the file is malformed; write it again on the device"


class KernelDoc(Closed):
    """One timed one-op model of a bundle."""

    digest: Str | None = None
    key: KeyDoc
    ms: Ms  # overhead subtracted
    raw_ms: Ms | None = None
    runs: Count = 0
    spread_ms: Ms = 0.0  # range of the round medians (or the MAD of a result timed in one round)
    mad_ms: Ms | None = None
    rounds_ms: Annotated[tuple[Ms, ...], Field(max_length=1000)] = ()
    busy: bool = False
    other_cores: Annotated[Number, Field(ge=0)] | None = None
    output_sha256: Str | None = None
    fresh_inputs: Count = 0  # timed cycling this many random inputs (a data-dependent kernel)
    set_ms: Ms | None = None  # the cost of setting them, taken off


class RunDoc(Closed):
    """How the device ran the models: the fields both JSON formats share."""

    runtime: Str
    delegate: Str
    threads: Threads
    measured_at: Str
    overhead_ms: Ms | None = None
    kernels: tuple[KernelDoc, ...] = ()

    def run_fields(self, source: MeasurementFile) -> dict[str, object]:
        return dict(runtime=self.runtime, delegate=self.delegate, threads=self.threads,
                    measured_at=self.measured_at, overhead_ms=self.overhead_ms, source=str(source.path))


class _ModelDoc(Closed):
    name: Name
    sha256: Str
    ms: Ms  # the whole invoke, overhead included
    runs: Count = 0
    spread_ms: Ms = 0.0
    mad_ms: Ms | None = None
    rounds_ms: Annotated[tuple[Ms, ...], Field(max_length=1000)] = ()
    busy: bool = False
    other_cores: Annotated[Number, Field(ge=0)] | None = None
    output_sha256: Str | None = None
    fresh_inputs: Count = 0
    set_ms: Ms | None = None
    kernels: tuple[KeyDoc, ...]


class _ProtocolDoc(Closed):
    rounds: Count = 1
    cpus: tuple[Count, ...] | None = None
    busy_cores: Annotated[Number, Field(ge=0)] | None = None
    busy_steal: Annotated[Number, Field(ge=0)] | None = None


class _FailedDoc(Closed):
    digest: Str | None = None  # a kernel's digest, or a whole model's sha256
    sha256: Str | None = None
    error: Str


class EdgeResultDoc(RunDoc):
    schema_: Literal["tfcompress.edge_result/1"] = Field(alias="schema")
    bundle_sha256: Str | None = None
    device: Name
    machine: Str | None = None
    platform: Str | None = None
    python: Str | None = None
    command: Str | None = None
    load_average: Annotated[Number, Field(ge=0)] | None = None
    protocol: _ProtocolDoc | None = None
    busy_items: Count = 0
    models: tuple[_ModelDoc, ...] = ()
    failed: tuple[_FailedDoc, ...] = ()


def kernel_entries(doc: RunDoc, source: MeasurementFile, warnings: list[str]) -> list[LutEntry]:
    """LUT entries of a document's `kernels` (a digest that is not its key's is a warning)."""
    entries = []
    for i, k in enumerate(doc.kernels):
        key = k.key.key()
        if k.digest is not None and k.digest != key.digest():
            warnings.append(f"{source.path}: kernels[{i}] digest {k.digest} is not its key's ({key.digest()})")
        entries.append(LutEntry(key, k.ms, k.runs, k.spread_ms))
    return entries


def _parse(source: MeasurementFile, models: list[TfliteFile], device: str | None) -> Imported:
    doc = parse(EdgeResultDoc, source.json, where=str(source.path), hint=MALFORMED_HINT)
    warnings: list[str] = []
    entries = kernel_entries(doc, source, warnings)
    for f in doc.failed:
        warnings.append(f"{source.path}: kernel {f.digest or f.sha256} failed on the device: {f.error}")
    if doc.busy_items:
        warnings.append(f"{source.path}: the device was busy (other processes using the CPU) while "
                        f"{doc.busy_items} kernel(s) or model(s) were timed: measure again on an idle device")
    if models:
        warnings.append(f"{source.path}: an edge result does not use the models passed "
                        f"({', '.join(m.name for m in models)})")
    bundle = doc.bundle_sha256 or "?"
    failed = f"; {len(doc.failed)} kernel(s) failed to run" if doc.failed else ""
    return Imported(
        source_format="edge_result",
        device=device or doc.device,
        entries=median_entries(entries),
        observations=tuple(Observation(f"{m.name}#{m.sha256[:8]}", m.ms, tuple(k.key() for k in m.kernels))
                           for m in doc.models),
        warnings=tuple(warnings),
        host=" ".join(v for v in (doc.machine, doc.platform) if v is not None),
        load_average=doc.load_average,
        method=(f"edge bundle {bundle[:12]} timed on the device by edge_profile.py: one-op int8 models, seeded "
                f"random int8 inputs, {doc.protocol.rounds if doc.protocol else 1} interleaved round(s), median of "
                f"round medians after 3-MAD rejection, empty-model overhead subtracted{failed}"),
        busy_items=doc.busy_items,
        **doc.run_fields(source),
    )


FORMAT = ImportFormat(schema_is(EDGE_RESULT_SCHEMA), _parse, f"{EDGE_RESULT_SCHEMA} JSON from edge_profile.py")
