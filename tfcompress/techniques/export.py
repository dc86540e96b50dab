"""The last stage of a recipe (`technique: convert`): how the result becomes a .tflite.

Its params are the `tfcompress convert` options that make sense in a recipe;
`tfcompress.compress` hands them to `tfcompress.convert`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from tfcompress.types import LayerRule


@dataclass(frozen=True)
class Params:
    """Recipe `params:` of the convert stage.

    Attributes:
        mode: int8 | int16x8 | float16 | dynamic.
        io: input/output dtype (None = the mode's default: int8 for int8).
        sparse: also convert with TFLite's sparse tensor encoding and keep that file when it is
            smaller (it pays from ~70% zeros); verification says which op resolver it needs.
        calib_samples: calibration samples.
        allow_float_fallback: accept ops that stay float in integer modes.
    """

    mode: Literal["int8", "int16x8", "float16", "dynamic"] = "int8"
    io: Literal["int8", "uint8", "int16", "float32"] | None = None
    sparse: bool = False
    calib_samples: int = 200
    allow_float_fallback: bool = False

    def __post_init__(self) -> None:
        if self.calib_samples < 1:
            raise ValueError(f"calib_samples must be >= 1, got {self.calib_samples}")


def apply(model: Any, params: Params, rules: tuple[LayerRule, ...] = ()) -> Any:
    """Nothing to do to the Keras model: conversion happens in `tfcompress.compress`."""
    return model


def strip(model: Any) -> Any:
    """Nothing to strip."""
    return model


def callbacks(params: Params, log_dir: str | None = None) -> list[Any]:
    """No training, no callbacks."""
    return []
