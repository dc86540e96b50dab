"""The conversion report as a frozen value, with a JSON round trip (OUT.report.json of `convert`).

`to_dict` gives the JSON form (infinite SNR becomes null), `from_dict` reads
it back into the same value (pydantic validates the nested dataclasses), so a
report can be saved, loaded, diffed and compared. `load_as` does the same for
any report dataclass (`tfcompress.report.CompressReport` uses it). Terminal
tables live in `tfcompress.render`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import JsonValue, TypeAdapter

from tfcompress._version import __version__
from tfcompress.export.verify import VerifyReport

CONVERT_SCHEMA = "tfcompress.report/1"

JsonScalar = str | int | float | bool | None


@dataclass(frozen=True)
class SizeInfo:
    """Sizes of the converted model."""

    tflite_bytes: int
    gzip_bytes: int
    source_params: int | None
    bytes_per_param: float | None


@dataclass(frozen=True)
class CalibrationInfo:
    """Which samples calibrated the converter and which verified the result."""

    samples: int
    source: str | None = None
    calibration: int | None = None
    verification: int | None = None
    verification_held_out: bool | None = None
    note: str | None = None


@dataclass(frozen=True)
class OpRow:
    """One row of the op table: an op type with the dtypes it reads and writes, and how often it occurs."""

    op: str
    input_dtypes: tuple[str, ...]
    output_dtypes: tuple[str, ...]
    count: int


@dataclass(frozen=True)
class OpPrecisionRow:
    """One op of a per-op precision model, read back from the .tflite and its prepared interpreter."""

    index: int
    op: str
    layers: tuple[str, ...]
    asked: str | None  # the plan's precision for it (None: an op the quantizer added, e.g. QUANTIZE)
    found: str  # int8 | int16x8 | int4 | int4w | float | ... as the file stores it (`precision.readback`)
    activations: str  # dtype of its first non-constant input
    weights: str | None  # dtype of its largest constant input, if any
    runs_on: str  # "XNNPACK" (claimed by the default delegate) or "builtin" (LiteRT's builtin kernels)


@dataclass(frozen=True)
class PrecisionInfo:
    """What a per-op precision conversion asked for and what the file and the runtime did with it."""

    default: str
    rules: tuple[str, ...]  # as `--precision` writes them, first match wins
    ops: tuple[OpPrecisionRow, ...]
    prepares: dict[str, bool]  # resolver ("default": builtin + XNNPACK, "builtin": no delegate) -> prepared
    delegate: str  # one line, e.g. "XNNPACK runs 5 of 5 ops"


@dataclass(frozen=True)
class PredictedLatency:
    """The device LUT's prediction for the converted model (`tfcompress.hardware.predict`)."""

    device: str
    total_ms: float
    overhead_ms: float
    lut_hit_rate: float
    calibration: dict[str, JsonScalar]
    per_layer_ms: dict[str, float]
    threads: int
    runtime: str
    delegate: str


@dataclass(frozen=True)
class ConvertReport:
    """What `tfcompress.convert` did and measured (written as OUT.report.json)."""

    model: str
    source_format: str
    source_path: str | None
    mode: str
    io: str
    output: str | None
    calibration: CalibrationInfo
    preprocessing: dict[str, JsonValue]  # as recorded in the sidecar (tfcompress.data)
    size: SizeInfo
    float_ops: tuple[str, ...]
    io_dtypes: tuple[str, ...]
    weight_dtypes: tuple[str, ...]
    op_table: tuple[OpRow, ...]
    verify: VerifyReport | None
    predicted_latency: PredictedLatency | None
    convert_seconds: float
    verify_seconds: float
    versions: dict[str, str]
    notes: tuple[str, ...] = ()
    precision: PrecisionInfo | None = None  # per-op precision models only

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (infinite SNR becomes null; accuracy gains its delta_pp)."""
        d = clean_json(dataclasses.asdict(self))
        d["schema"] = CONVERT_SCHEMA
        if self.verify is not None and self.verify.accuracy is not None:
            d["verify"]["accuracy"]["delta_pp"] = round(self.verify.accuracy.delta_pp, 3)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ConvertReport:
        """The report `to_dict` wrote (ValueError naming the field if it is not one)."""
        return load_as(cls, d, CONVERT_SCHEMA)


T = TypeVar("T")


def load_as(cls: type[T], d: dict[str, Any], schema: str) -> T:
    """`d` (a report's JSON form, with `schema`) validated into the dataclass `cls`."""
    if not isinstance(d, dict):
        raise ValueError(f"a report is a JSON object, got {type(d).__name__}")
    if d.get("schema", schema) != schema:
        raise ValueError(f"report schema is {d.get('schema')!r}, expected {schema!r}")
    body = {k: v for k, v in d.items() if k != "schema"}
    verify = body.get("verify")
    if isinstance(verify, dict) and isinstance(verify.get("accuracy"), dict):
        body["verify"] = {**verify, "accuracy": {k: v for k, v in verify["accuracy"].items() if k != "delta_pp"}}
    return _adapter(cls).validate_python(body)


_ADAPTERS: dict[type, TypeAdapter] = {}


def _adapter(cls: type) -> TypeAdapter:
    if cls not in _ADAPTERS:
        _ADAPTERS[cls] = TypeAdapter(cls)
    return _ADAPTERS[cls]


def clean_json(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: clean_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_json(v) for v in obj]
    return obj


def versions() -> dict[str, str]:
    """tfcompress, TensorFlow, Keras and LiteRT versions."""
    from tfcompress.keras_compat import versions as keras_versions
    from tfcompress.runtime import runtime_version

    return {"tfcompress": __version__, **keras_versions(), "litert": runtime_version()}
