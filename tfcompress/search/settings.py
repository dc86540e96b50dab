"""The settings of a search (one pydantic model: validated once, part of the resume fingerprint)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tfcompress.search.space import KEEP_LEVELS, RANK_LEVELS, RESOLUTION_LEVELS

__all__ = ["SearchSettings"]


class SearchSettings(BaseModel):
    """How a search runs (field descriptions are the CLI's --help)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    latency_ms: float | None = Field(None, gt=0, le=1e6, description="budget: LUT-predicted int8 latency on the device")
    size_kb: float | None = Field(None, gt=0, le=1e9, description="budget: .tflite size in KiB (int8, or with "
                                  "int4 layers when int4 is on)")
    max_acc_drop: float | None = Field(
        None, ge=0, le=100, description="accuracy budget in percentage points below the original's float accuracy "
        "(checked on the final model; the result says whether it held)")
    strategy: Literal["netadapt", "evolve"] = Field("netadapt", description="netadapt (greedy rounds) or evolve "
                                                    "(Optuna NSGA-II)")
    step: float = Field(0.1, gt=0, le=1, description="netadapt: each round's cut, a fraction of the start cost")
    trials: int = Field(40, ge=1, le=100_000, description="evolve: genomes sampled")
    trial_steps: int = Field(100, ge=0, le=10**6, description="training steps of each trial's short fine-tune")
    trial_samples: int = Field(8192, ge=16, le=10**7, description="training samples trials draw from")
    val_samples: int = Field(2000, ge=16, le=10**7, description="validation samples trials are scored on")
    batch_size: int = Field(128, ge=1, le=65536)
    learning_rate: float = Field(1e-3, gt=0, le=1)
    final_epochs: int = Field(5, ge=0, le=10_000, description="the chosen genome's final fine-tune, distilled from "
                              "the original")
    final_steps: int | None = Field(None, ge=1, le=10**7, description="steps per final epoch (None: all data)")
    temperature: float = Field(4.0, gt=0, le=100)
    alpha: float = Field(0.5, ge=0, le=1, description="final fine-tune: weight of the labels vs the teacher")
    keep_levels: tuple[float, ...] = Field(KEEP_LEVELS, min_length=1, max_length=32)
    rank_levels: tuple[float, ...] = Field(RANK_LEVELS, min_length=1, max_length=32)
    resolution_levels: tuple[float, ...] = Field(RESOLUTION_LEVELS, min_length=1, max_length=32,
                                                 description="input side multipliers (1 alone: keep the resolution)")
    swaps: bool = Field(True, description="consider depthwise-separable swaps of k x k convolutions")
    int4: bool = Field(False, description="let layers take int4 weights (ai-edge-quantizer, CONV_2D / "
                       "FULLY_CONNECTED) where the size budget needs it; chosen per layer after the structural "
                       "search, each step measured in LiteRT, undone if it breaks --max-acc-drop or --latency-ms. "
                       "Needs --size-kb; while searching, a genome's size is its int8 size less half the int8 "
                       "weights of every op that may take int4")
    finalists: int = Field(3, ge=1, le=64,
                           description="most accurate genomes within budget that are timed (here or on the device)")
    seed: int = Field(0, ge=0, le=2**31 - 1)

    @model_validator(mode="after")
    def _checked(self) -> SearchSettings:
        if self.latency_ms is None and self.size_kb is None:
            raise ValueError("give a budget: latency_ms and / or size_kb")
        for name, levels in (("keep_levels", self.keep_levels), ("rank_levels", self.rank_levels),
                             ("resolution_levels", self.resolution_levels)):
            if levels[0] != 1.0 or any(not 0 < v <= 1 for v in levels) or list(levels) != sorted(levels, reverse=True):
                raise ValueError(f"{name} must start at 1.0 and fall, each in (0, 1], got {list(levels)}")
        return self
