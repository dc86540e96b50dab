"""Reports of `compress` as frozen values with a JSON round trip (OUT.report.json of `compress`).

A `CompressReport` is the final conversion's `ConvertReport` plus the recipe,
the per-stage table and the weights read back from the .tflite.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from tfcompress.export.report import ConvertReport, clean_json, load_as
from tfcompress.export.weight_stats import WeightStat

__all__ = ["COMPRESS_SCHEMA", "CompressReport", "ConvertReport", "RecipeRef", "StageReport"]

COMPRESS_SCHEMA = "tfcompress.compress_report/1"


@dataclass(frozen=True)
class StageReport:
    """Measured after one stage of a recipe.

    `details`: what the stage's technique reports about itself (`Technique.details`), e.g. a swap's params /
    FLOPs before and after and how each new layer started; {} for techniques that report nothing.
    """

    index: int
    technique: str
    epochs: int
    float_accuracy: float | None
    int8_accuracy: float | None
    tflite_bytes: int
    gzip_bytes: int
    latency_ms: float | None
    predicted_ms: float | None
    mean_sparsity: float
    max_unique: int
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RecipeRef:
    """Which recipe a compress run used."""

    name: str
    source: str | None = None


@dataclass(frozen=True)
class CompressReport:
    """What `tfcompress.compress` did (written as OUT.report.json): the final conversion and the way there."""

    convert: ConvertReport
    recipe: RecipeRef
    stages: tuple[StageReport, ...]
    weights: tuple[WeightStat, ...] = ()
    plain_convert_bytes: int | None = None  # the original converted as is, same mode (None: not measured)
    size_note: str | None = None  # why the compressed file is not smaller than that, when it is not

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        return {
            "schema": COMPRESS_SCHEMA,
            "recipe": dataclasses.asdict(self.recipe),
            "stages": clean_json([dataclasses.asdict(s) for s in self.stages]),
            "weights": clean_json([dataclasses.asdict(w) for w in self.weights]),
            "plain_convert_bytes": self.plain_convert_bytes,
            "size_note": self.size_note,
            "convert": self.convert.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CompressReport:
        """The report `to_dict` wrote."""
        if not isinstance(d, dict) or not isinstance(d.get("convert"), dict):
            raise ValueError("not a compress report: no 'convert' section")
        body = {k: v for k, v in d.items() if k != "convert"}
        loaded = load_as(_CompressBody, body, COMPRESS_SCHEMA)
        return cls(ConvertReport.from_dict(d["convert"]), loaded.recipe, loaded.stages, loaded.weights,
                   loaded.plain_convert_bytes, loaded.size_note)


@dataclass(frozen=True)
class _CompressBody:
    recipe: RecipeRef
    stages: tuple[StageReport, ...]
    weights: tuple[WeightStat, ...] = ()
    plain_convert_bytes: int | None = None
    size_note: str | None = None
