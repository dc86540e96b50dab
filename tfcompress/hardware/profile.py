"""Device profiles: a latency lookup table (LUT) plus how and where it was measured.

A profile is plain JSON (schema in docs/latency.md) so it can be measured on a
device and read anywhere; `ProfileDoc` validates it on reading. No TensorFlow here.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from tfcompress.errors import TfcompressError
from tfcompress.hardware.kernels import KernelKey
from tfcompress.hardware.schema import (
    Closed,
    Count,
    KeyDoc,
    Ms,
    Name,
    Number,
    Str,
    Threads,
    parse,
    parse_json,
    read_document,
)

__all__ = ["SCHEMA", "Provenance", "LutEntry", "Observation", "Calibration", "DeviceProfile", "ProfileDoc", "load_profile",
           "save_profile", "write_json_atomic", "SHIPPED_DIR", "DEFAULT_DEVICE", "shipped_profiles", "resolve_profile",
           "profile_file_name", "checked"]

SCHEMA = "tfcompress.device_profile/1"

SHIPPED_DIR = Path(__file__).parent / "profiles"
"""Profiles that ship with the package: `<name>.json`, found by name."""

DEFAULT_DEVICE = "host"
"""The shipped profile reports predict with when no device is named."""

MAX_SCALE = 1e6
"""Largest calibration scale a profile may hold (fitted ones are about 1)."""

MAX_WEIGHT_CACHE_MB = 1e6
"""Largest cache size a calibration may hold (fitted ones are one of predict.WEIGHT_CACHE_CANDIDATES_MB)."""


@dataclass(frozen=True)
class Provenance:
    """How, when and by which command the LUT was measured."""

    command: str = ""
    measured_at: str = ""  # ISO 8601 UTC
    host: str = ""
    method: str = ""  # e.g. "one-op int8 models, warm-up 10, median of <=50 after MAD outlier rejection"
    load_average: float | None = None  # 1-minute load when measuring began
    busy_items: int = 0  # kernels / models timed while other processes used the CPU (after retries)
    cpus: tuple[int, ...] | None = None  # the CPUs the timing was pinned to (None: not pinned)


@dataclass(frozen=True)
class LutEntry:
    """The measured latency of one kernel (interpreter overhead subtracted)."""

    key: KernelKey
    ms: float
    runs: int = 0
    spread_ms: float = 0.0  # run-to-run noise: range of the round medians (older profiles: MAD of the runs)


@dataclass(frozen=True)
class Observation:
    """A whole model measured on the device: its kernel sequence and its measured latency.

    Observations calibrate the sum of kernel times against what whole models
    really take (see `Calibration`).
    """

    name: str
    measured_ms: float
    kernels: tuple[KernelKey, ...]
    energy_mj: float | None = None  # per inference, whole device (the Android app's battery readings)
    energy_above_idle_mj: float | None = None  # the same above the idle draw measured just before


@dataclass(frozen=True)
class Calibration:
    """Whole-model correction: total = scale * sum(kernel ms) + per_op_ms * n_ops + per_weight_mb_ms * streamed MB
    + overhead_ms, the streamed megabytes being all the model's weights when they exceed weight_cache_mb
    (`predict.streamed_weight_mb`).

    Fitted on `fitted_on` observed models; one-op timings miss what running ops
    back to back costs (cache traffic between ops, per-op dispatch, and weights that
    no longer stay in cache between invokes: a one-op model reads its weights hot).
    """

    scale: float = 1.0
    per_op_ms: float = 0.0
    fitted_on: int = 0
    median_abs_error: float | None = None  # on the observations it was fitted on
    per_weight_mb_ms: float = 0.0
    weight_cache_mb: float = 1.0


@dataclass(frozen=True)
class DeviceProfile:
    """A device + runtime configuration and its LUT.

    `overhead_ms` is the per-invoke cost of a model that does (almost)
    nothing: the interpreter call, input / output handling. It is added once
    per predicted model.
    """

    device: str
    runtime: str
    delegate: str = "XNNPACK"
    threads: int = 1
    dtype: str = "int8"
    overhead_ms: float = 0.0
    provenance: Provenance = field(default_factory=Provenance)
    entries: tuple[LutEntry, ...] = ()
    calibration: Calibration = field(default_factory=Calibration)
    observations: tuple[Observation, ...] = ()

    def table(self) -> dict[KernelKey, float]:
        return {e.key: e.ms for e in self.entries}

    def with_entries(self, entries: list[LutEntry] | tuple[LutEntry, ...]) -> DeviceProfile:
        """A copy whose LUT is this one's plus `entries` (a new entry replaces an old one with the same key)."""
        merged = {e.key: e for e in self.entries}
        merged.update({e.key: e for e in entries})
        return replace(self, entries=tuple(sorted(merged.values(), key=lambda e: e.key)))

    def with_observations(self, observations: list[Observation] | tuple[Observation, ...]) -> DeviceProfile:
        """A copy with `observations` added (one with the same name replaces the old one)."""
        merged = {o.name: o for o in self.observations}
        merged.update({o.name: o for o in observations})
        return replace(self, observations=tuple(merged.values()))

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "device": self.device,
            "runtime": self.runtime,
            "delegate": self.delegate,
            "threads": self.threads,
            "dtype": self.dtype,
            "overhead_ms": self.overhead_ms,
            "provenance": vars(self.provenance).copy(),
            "entries": [
                {"key": e.key.to_json(), "ms": e.ms, "runs": e.runs, "spread_ms": e.spread_ms} for e in self.entries
            ],
            "calibration": vars(self.calibration).copy(),
            "observations": [
                {"name": o.name, "measured_ms": o.measured_ms, "kernels": [k.to_json() for k in o.kernels],
                 **{f: getattr(o, f) for f in ("energy_mj", "energy_above_idle_mj") if getattr(o, f) is not None}}
                for o in self.observations
            ],
        }

    @classmethod
    def from_json(cls, d: dict[str, Any], label: str = "profile") -> DeviceProfile:
        """A profile from its JSON (`to_json`), validated by `ProfileDoc`.

        Raises:
            TfcompressError: another schema, or a bad field (naming `label` and the key path).
        """
        schema = d.get("schema") if isinstance(d, dict) else None
        if schema != SCHEMA:
            raise TfcompressError(
                f"{label} is not a tfcompress device profile (schema {schema!r}, expected {SCHEMA!r})",
                "build one with `tfcompress profile`",
            )
        return parse(ProfileDoc, d, where=label, hint="rebuild it with `tfcompress profile`").profile()


# ------------------------------------------------------------------ the JSON document


class _ProvenanceDoc(Closed):
    command: Str = ""
    measured_at: Str = ""
    host: Str = ""
    method: Str = ""
    load_average: Annotated[Number, Field(ge=0)] | None = None
    busy_items: Count = 0
    cpus: Annotated[tuple[Count, ...], Field(max_length=4096)] | None = None


class _EntryDoc(Closed):
    key: KeyDoc
    ms: Ms
    runs: Count = 0
    spread_ms: Ms = 0.0


class _CalibrationDoc(Closed):
    scale: Annotated[Number, Field(ge=0, le=MAX_SCALE)] = 1.0
    per_op_ms: Ms = 0.0
    per_weight_mb_ms: Ms = 0.0
    weight_cache_mb: Annotated[Number, Field(ge=0, le=MAX_WEIGHT_CACHE_MB)] = 1.0
    fitted_on: Count = 0
    median_abs_error: Annotated[Number, Field(ge=0)] | None = None


class _ObservationDoc(Closed):
    name: Name
    measured_ms: Ms
    kernels: tuple[KeyDoc, ...]
    energy_mj: Annotated[Number, Field(ge=0)] | None = None
    energy_above_idle_mj: Number | None = None  # may be < 0: the idle draw varies


class ProfileDoc(Closed):
    """`tfcompress.device_profile/1` as written by `save_profile` (docs/latency.md)."""

    schema_: Literal["tfcompress.device_profile/1"] = Field(alias="schema")
    device: Name
    runtime: Str
    delegate: Str = "XNNPACK"
    threads: Threads = 1
    dtype: Str = "int8"
    overhead_ms: Ms = 0.0
    provenance: _ProvenanceDoc = _ProvenanceDoc()
    entries: tuple[_EntryDoc, ...] = ()
    calibration: _CalibrationDoc = _CalibrationDoc()
    observations: tuple[_ObservationDoc, ...] = ()

    def profile(self) -> DeviceProfile:
        return DeviceProfile(
            device=self.device,
            runtime=self.runtime,
            delegate=self.delegate,
            threads=self.threads,
            dtype=self.dtype,
            overhead_ms=self.overhead_ms,
            provenance=Provenance(**self.provenance.model_dump()),
            entries=tuple(LutEntry(e.key.key(), e.ms, e.runs, e.spread_ms) for e in self.entries),
            calibration=Calibration(**self.calibration.model_dump()),
            observations=tuple(Observation(o.name, o.measured_ms, tuple(k.key() for k in o.kernels), o.energy_mj,
                                           o.energy_above_idle_mj) for o in self.observations),
        )


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write JSON via a temporary file in the same folder + rename, so readers never see half a file."""
    from tfcompress.files import atomic_writer

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(path, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
    return path


def checked(profile: DeviceProfile, where: str = "the profile") -> DeviceProfile:
    """`profile` itself, once its JSON has passed `ProfileDoc` as `load_profile` will read it.

    Builders and importers call it, so a profile they return can be saved,
    loaded back and predicted with: a value no profile can hold (a NaN time,
    a NUL in a name, 0 threads) is an error where it enters, not where it is used.

    Raises:
        TfcompressError: naming `where` and the key path of the first bad value.
    """
    parse(ProfileDoc, profile.to_json(), where=where,
          hint="nothing was written; the measurements hold a value no profile can")
    return profile


def save_profile(profile: DeviceProfile, path: str | os.PathLike[str]) -> Path:
    """Write `profile` as JSON, atomically: one line per LUT entry / observation, so diffs stay readable.

    The JSON is validated as `load_profile` will read it before anything is
    written: a profile that would not load back (a NaN time, a NUL in its
    name) is an error here, not when it is used.

    Raises:
        TfcompressError: the profile would not load back (naming the key path).
    """
    from tfcompress.files import atomic_writer

    d = checked(profile, f"the profile for {Path(path)}").to_json()
    lists = {k: d.pop(k) for k in ("entries", "observations")}
    head = json.dumps(d, indent=1, allow_nan=False)[:-2]  # without the closing "\n}"
    parts = [head]
    for k, items in lists.items():
        rows = ",\n  ".join(json.dumps(x, separators=(",", ":"), allow_nan=False) for x in items)
        parts.append(f',\n "{k}": [\n  {rows}\n ]' if items else f',\n "{k}": []')
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(path, "w") as f:
        f.write("".join(parts) + "\n}\n")
    return path


_REBUILD = "rebuild it with `tfcompress profile`"


def load_profile(path: str | os.PathLike[str]) -> DeviceProfile:
    """Read a profile written by `save_profile` (a regular file of at most 64 MiB).

    Everything is range-checked here (`schema`), so a profile that loads can
    be predicted with.

    Raises:
        TfcompressError: missing, not a regular file, too large, not JSON, or
            a bad field (naming the file and the key path).
    """
    path = Path(path)
    text = read_document(path, what="device profile", hint=_REBUILD)
    return DeviceProfile.from_json(parse_json(text, where=str(path), hint=_REBUILD), label=str(path))


_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def profile_file_name(device: str, suffix: str = ".json") -> str:
    """A file name for a device's profile that is one safe path component, whatever the name holds.

    Names come from measurement files ("device": "../../x" must not write
    outside the folder): characters outside [A-Za-z0-9._-] become "_",
    dots, dashes and "_" at either end are dropped (no "..", no hidden file, no option-like name), at most 64
    characters; "device" when nothing is left.
    """
    stem = _UNSAFE_NAME_CHARS.sub("_", device).strip("._-")[:64].rstrip("._-") or "device"
    return stem + suffix


def shipped_profiles() -> dict[str, Path]:
    """{name: path} of the profiles in the package."""
    return {p.stem: p for p in sorted(SHIPPED_DIR.glob("*.json"))}


def resolve_profile(device: str | os.PathLike[str] | DeviceProfile) -> DeviceProfile:
    """A profile from a shipped name ("host"), a JSON path, or a DeviceProfile (returned as is)."""
    if isinstance(device, DeviceProfile):
        return device
    shipped = shipped_profiles()
    if str(device) in shipped:
        return load_profile(shipped[str(device)])
    path = Path(device)
    if path.suffix == ".json" or path.exists():
        return load_profile(path)
    raise TfcompressError(
        f"unknown device {str(device)!r}: not a shipped profile and not a profile file",
        f"shipped: {', '.join(shipped) or 'none'}; or pass a JSON written by `tfcompress profile`",
    )
