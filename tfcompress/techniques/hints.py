"""FitNets feature hints for `distill`: which student layer learns to match which teacher layer.

Romero et al. (2015): besides the teacher's outputs, the student matches some
of its intermediate feature maps (mean squared error), through a learned 1x1
adapter where the channel counts differ. Pairs come from name rules (the last
layer whose name matches each regex) or, with "auto", from spatial size: for
each feature-map size (H x W, larger than 1 x 1) both models have, the last
layer of that size in each; models with no 2-D feature maps at all (text, audio) get
no hints from "auto" (a `HintWarning` says so).
"""

from __future__ import annotations

import warnings
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator

from tfcompress.errors import TfcompressError

__all__ = ["HintPair", "HintWarning", "hint_pairs"]


class HintWarning(UserWarning):
    """`hints: auto` found nothing to pair and distillation goes on with the outputs only."""


class HintPair(BaseModel):
    """One hint: the last student layer and the last teacher layer whose names match these regexes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    student: StrictStr = Field(description="regex searched in the student's layer names")
    teacher: StrictStr = Field(description="regex searched in the teacher's layer names")

    @field_validator("student", "teacher")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        from tfcompress.techniques.rules import compile_pattern

        compile_pattern(pattern)
        return pattern


def _single_outputs(model: Any) -> list[tuple[str, tuple]]:
    """(layer name, output shape) in order, for layers called once with one output (no inputs)."""
    out = []
    for layer in model.layers:
        if type(layer).__name__ == "InputLayer" or len(getattr(layer, "_inbound_nodes", ())) != 1:
            continue
        shape = layer.output.shape if not isinstance(layer.output, (list, tuple)) else None
        if shape is not None:
            out.append((layer.name, tuple(shape)))
    return out


def _last_matching(model: Any, pattern: str, role: str) -> tuple[str, tuple]:
    from tfcompress.techniques.rules import search

    found = [(n, s) for n, s in _single_outputs(model) if search(pattern, n)]
    if not found:
        names = ", ".join(n for n, _ in _single_outputs(model)[:12])
        raise TfcompressError(f"hint: no {role} layer name matches {pattern!r}", f"{role} layers: {names}, ...")
    return found[-1]


def hint_pairs(student: Any, teacher: Any, hints: Any) -> list[tuple[str, str, tuple, tuple]]:
    """[(student layer, teacher layer, student shape, teacher shape)] for `hints`: "off", "auto" or HintPairs.

    Raises:
        TfcompressError: a rule matches no layer, or a pair's feature maps differ in spatial size / rank.
    """
    if hints == "off":
        return []
    if hints == "auto":
        def by_size(model: Any) -> dict[tuple, tuple[str, tuple]]:
            sizes: dict[tuple, tuple[str, tuple]] = {}
            for name, shape in _single_outputs(model):
                if len(shape) == 4 and None not in shape[1:3] and shape[1] * shape[2] > 1:
                    sizes[shape[1:3]] = (name, shape)  # the last layer of each size wins
            return sizes

        s_sizes, t_sizes = by_size(student), by_size(teacher)
        if not s_sizes and not t_sizes:
            warnings.warn(f"hints: auto: '{student.name}' and its teacher have no 2-D feature maps (not an image "
                          "model): distilling the outputs only", HintWarning, stacklevel=2)
            return []
        pairs = [(s_sizes[k][0], t_sizes[k][0], s_sizes[k][1], t_sizes[k][1]) for k in s_sizes if k in t_sizes]
        if not pairs:
            raise TfcompressError("hints: auto found no feature-map size the student and the teacher share",
                                  "name the pairs: hints: [{student: REGEX, teacher: REGEX}], or hints: off")
        return pairs
    pairs = []
    for rule in hints:
        s_name, s_shape = _last_matching(student, rule.student, "student")
        t_name, t_shape = _last_matching(teacher, rule.teacher, "teacher")
        if len(s_shape) != len(t_shape) or s_shape[1:-1] != t_shape[1:-1]:
            raise TfcompressError(
                f"hint: student layer '{s_name}' {s_shape[1:]} and teacher layer '{t_name}' {t_shape[1:]} differ in "
                "spatial size", "pair layers whose feature maps have the same height and width (or use hints: auto)")
        pairs.append((s_name, t_name, s_shape, t_shape))
    return pairs


def adapter(student_shape: tuple, teacher_shape: tuple, index: int) -> Any:
    """The learned 1x1 map from the student's channels to the teacher's (None when they are equal)."""
    from tfcompress.keras_compat import tf_keras

    if student_shape[-1] == teacher_shape[-1]:
        return None
    if len(teacher_shape) == 4:
        return tf_keras.layers.Conv2D(teacher_shape[-1], 1, name=f"hint_adapter_{index}")
    return tf_keras.layers.Dense(teacher_shape[-1], name=f"hint_adapter_{index}")
