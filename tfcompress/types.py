"""Vocabulary shared by every module: enums and frozen dataclasses.

Modules that own a concept (data loading, the .tflite reader, verification)
define their own result dataclasses next to the code; what several modules
speak lives here.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Sequence

import re2
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator, model_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass


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


# ----------------------------------------------------------------- per-op precision

Precision = Literal["int8", "int16x8", "int4", "int4w", "float"]
PRECISIONS: tuple[str, ...] = ("int8", "int16x8", "int4", "int4w", "float")


MAX_RULE_NAME_CHARS = 1024  # a layer / class name longer than this matches no precision rule
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # RE2 would print every rejected pattern to stderr


@functools.lru_cache(maxsize=1024)
def rule_regex(pattern: str) -> Any:
    """A precision rule's regex compiled by RE2: linear-time search, so a user's pattern cannot hang.

    Raises:
        ValueError: what RE2 refuses (invalid syntax; backreferences, lookaround, repeats over 1000), naming the pattern.
    """
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except Exception as e:  # re2.error; its message is bytes
        reason = e.args[0].decode("utf-8", "replace") if e.args and isinstance(e.args[0], bytes) else str(e)
        shown = pattern if len(pattern) <= 60 else pattern[:57] + "..."
        raise ValueError(f"invalid regular expression {shown!r}: {reason[:120]} (RE2 syntax: no backreferences, "
                         "lookahead / lookbehind or repeats over 1000)") from None


def _found(pattern: str, text: str) -> bool:
    return len(text) <= MAX_RULE_NAME_CHARS and rule_regex(pattern).search(text) is not None


@pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid", strict=True, populate_by_name=True))
class PrecisionRule:
    """Ops whose Keras layer name / layer class / TFLite op type match get `precision`.

    Regexes, `re.search` semantics, run by RE2 (linear time); several given: all must match (a layer's name and
    class: the same layer). The same value is a recipe's `export: {precision: [...]}` entry (the class under the
    key `class`), a `--precision` flag (`tfcompress.precision.mixed.parse_rule`) and an argument of `quantize_mixed`.
    """

    precision: Precision = Field(description="int8 | int16x8 (int16 activations) | int4 (int4 weights, int8 "
                                 "activations) | int4w (int4 weights, float compute) | float")
    layer: StrictStr | None = Field(None, max_length=1000, description="regex searched in the op's Keras layer "
                                    "name(s), e.g. `^head$`")
    op: StrictStr | None = Field(None, max_length=1000, description="regex searched in the TFLite op type, e.g. "
                                 "`FULLY_CONNECTED`")
    class_name: StrictStr | None = Field(None, alias="class", max_length=1000, description="regex searched in the "
                                         "class name of the op's Keras layer(s), e.g. `^Dense$`; needs a Keras model")

    @field_validator("layer", "op", "class_name")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            rule_regex(pattern)  # ValueError: not a pattern RE2 runs
        return pattern

    @model_validator(mode="after")
    def _one(self) -> PrecisionRule:
        if self.layer is None and self.op is None and self.class_name is None:
            raise ValueError("a precision rule needs 'layer', 'class' and/or 'op' (regexes)")
        return self

    def matches(self, op_type: str, layers: Sequence[str], classes: Sequence[str] = ()) -> bool:
        """Whether an op of `op_type` made from `layers` (whose classes are `classes`, same order) is this rule's."""
        if self.op is not None and not _found(self.op, op_type):
            return False
        if self.layer is None and self.class_name is None:
            return True
        named = classes if self.class_name is not None else ("",) * len(layers)
        return any((self.layer is None or _found(self.layer, name)) and
                   (self.class_name is None or _found(self.class_name, kind)) for name, kind in zip(layers, named))

    @classmethod
    def parse(cls, text: str) -> PrecisionRule:
        """'[op:OP@][class:CLASS@]LAYER=PRECISION' with the LAYER part optional after op: / class: (ValueError if not).

        e.g. 'head=float', 'op:FULLY_CONNECTED=int4', 'class:^Dense$=int4', 'op:CONV_2D@^block_3=int16x8',
        'op:FULLY_CONNECTED@class:Dense@^enc=int4'.
        """
        pattern, sep, precision = text.rpartition("=")
        if not sep or not pattern:
            raise ValueError(f"precision rule {text!r} is not PATTERN=PRECISION")
        op = class_name = None
        layer: str | None = pattern
        if pattern.startswith("op:"):
            op, at, rest = pattern[3:].partition("@")
            layer = rest if at else None
        if layer is not None and layer.startswith("class:"):
            class_name, at, rest = layer[6:].partition("@")
            layer = rest if at else None
        return cls(precision.strip(), layer=layer, op=op, class_name=class_name)  # type: ignore[arg-type]

    def entry(self) -> dict[str, str]:
        """The recipe form (`export: {precision: [...]}`): the fields that are set, the class under `class`."""
        return {k: v for k, v in (("layer", self.layer), ("class", self.class_name), ("op", self.op),
                                  ("precision", self.precision)) if v is not None}

    def text(self) -> str:
        """The `--precision` form (`parse` reads it back): 'LAYER=P', 'op:OP=P', 'class:CLASS=P', 'op:OP@LAYER=P', ..."""
        parts = [*(("op:" + self.op,) if self.op is not None else ()),
                 *(("class:" + self.class_name,) if self.class_name is not None else ()),
                 *((self.layer,) if self.layer is not None else ())]
        return "@".join(parts) + "=" + self.precision


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
    precision: tuple[PrecisionRule, ...] = Field(
        (), description="per-op precision, first matching rule wins, other ops get `mode` (int8 or int16x8): "
        "`- {layer: REGEX, precision: float}`, `- {class: Dense, precision: int4}` or `- {op: FULLY_CONNECTED, "
        "precision: int4}` (regexes, run by RE2); precisions: int8, "
        "int16x8, int4, int4w, float; the model gets float32 input and output (docs/precision.md)")

    @model_validator(mode="after")
    def _precision_fits_mode(self) -> ExportSettings:
        if self.precision:
            if self.mode not in ("int8", "int16x8"):
                raise ValueError(f"per-op precision needs mode int8 or int16x8 (the default of the other ops), "
                                 f"not {self.mode}")
            if self.io not in (None, "float32"):
                raise ValueError(f"a model with per-op precision has float32 input and output, not {self.io}")
            if self.sparse:
                raise ValueError("per-op precision and the sparse encoding cannot be combined yet")
        return self




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
