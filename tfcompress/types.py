"""Vocabulary shared by every module: enums and frozen dataclasses.

Modules that own a concept (data loading, the .tflite reader, verification)
define their own result dataclasses next to the code; what several modules
speak lives here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt


class Mode(str, enum.Enum):
    """What `convert` quantizes to."""

    INT8 = "int8"  # full integer: int8 weights and activations, int8 I/O by default
    INT16X8 = "int16x8"  # int16 activations, int8 weights (more accurate, fewer kernels)
    FLOAT16 = "float16"  # float16 weights, float compute
    DYNAMIC = "dynamic"  # int8 weights, float activations quantized on the fly

    @property
    def needs_calibration(self) -> bool:
        """Modes whose activation ranges come from representative data."""
        return self in (Mode.INT8, Mode.INT16X8)


class IOType(str, enum.Enum):
    """Dtype of the converted model's inputs and outputs."""

    INT8 = "int8"
    UINT8 = "uint8"
    INT16 = "int16"
    FLOAT32 = "float32"


# The I/O dtype each mode gets when the user does not choose one.
DEFAULT_IO: dict[Mode, IOType] = {
    Mode.INT8: IOType.INT8,
    Mode.INT16X8: IOType.INT16,
    Mode.FLOAT16: IOType.FLOAT32,
    Mode.DYNAMIC: IOType.FLOAT32,
}

# The I/O dtypes each mode can produce.
ALLOWED_IO: dict[Mode, tuple[IOType, ...]] = {
    Mode.INT8: (IOType.INT8, IOType.UINT8, IOType.FLOAT32),
    Mode.INT16X8: (IOType.INT16, IOType.FLOAT32),
    Mode.FLOAT16: (IOType.FLOAT32,),
    Mode.DYNAMIC: (IOType.FLOAT32,),
}


# ----------------------------------------------------------------- recipes


class ExportSettings(BaseModel):
    """How a recipe's result becomes a .tflite: the recipe's `export:` (or a last `- technique: convert` stage).

    The `tfcompress convert` options that make sense in a recipe; the field descriptions are the docs and the
    JSON Schema.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["int8", "int16x8", "float16", "dynamic"] = Field(
        "int8", description="what the .tflite quantizes to (as `tfcompress convert --mode`)")
    io: Literal["int8", "uint8", "int16", "float32"] | None = Field(
        None, description="input/output dtype; null = the mode's default (int8 for int8)")
    sparse: StrictBool = Field(
        False, description="also convert with TFLite's sparse tensor encoding and keep that file when it is smaller "
        "(it pays from ~70% zeros); verification says which op resolver it needs")
    calib_samples: StrictInt = Field(200, ge=1, le=100_000, description="calibration samples")
    allow_float_fallback: StrictBool = Field(False, description="accept ops that stay float in integer modes")




@dataclass(frozen=True)
class LayerMatch:
    """Which layers a rule targets: regexes searched in the layer name / class name.

    Both given: both must match. `re.search` semantics: anchor with ^...$ for exact names.
    """

    name: str | None = None
    class_name: str | None = None


@dataclass(frozen=True)
class LayerRule:
    """One per-layer rule of a stage: first matching rule wins.

    Attributes:
        match: which layers.
        skip: leave matching layers untouched by this stage.
        params: technique parameters overriding the stage's for matching layers (name -> value).
        line: line in the recipe file (for messages), None when built in code.
    """

    match: LayerMatch
    skip: bool = False
    params: Mapping[str, Any] = field(default_factory=dict)
    line: int | None = None


@dataclass(frozen=True)
class Stage:
    """One step of a recipe: a technique, its parameters, its fine-tuning and rules.

    Attributes:
        technique: key of `tfcompress.techniques.TECHNIQUES`.
        params: the technique's `Params` (a frozen pydantic model).
        epochs: fine-tuning epochs (0 = no training in this stage).
        steps_per_epoch: limit steps per epoch (None = whole data set).
        learning_rate: fine-tuning learning rate (None = the technique's default).
        batch_size: fine-tuning batch size.
        rules: per-layer rules, first match wins.
        line: line in the recipe file.
    """

    technique: str
    params: Any
    epochs: int = 0
    steps_per_epoch: int | None = None
    learning_rate: float | None = None
    batch_size: int = 128
    rules: tuple[LayerRule, ...] = ()
    line: int | None = None


@dataclass(frozen=True)
class Recipe:
    """An ordered list of training stages and how the result is exported, from a YAML / JSON file or code.

    Attributes:
        name: the recipe's name (reports, file names).
        stages: the stages, run in order (no `convert` stage: that is `export`).
        description: one line for humans.
        source: the file it was read from (None when built in code).
        export: how the final model becomes a .tflite.
    """

    name: str
    stages: tuple[Stage, ...]
    description: str = ""
    source: str | None = None
    export: ExportSettings = field(default_factory=ExportSettings)
