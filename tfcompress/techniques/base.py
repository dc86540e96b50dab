"""The technique contract: what a compression technique declares, and what it does.

Every technique module ends with one declaration::

    TECHNIQUE = Technique(
        name="prune",
        summary="magnitude pruning with a schedule (TF-MOT)",
        params_type=Params,                 # pydantic model: the stage's `params:` in a recipe
        apply=apply,                        # (model, params, rules, ctx) -> model ready to fine-tune
        strip=strip,                        # training-time wrappers off (default: identity)
        callbacks=callbacks,                # (params, ctx) -> Keras callbacks for fit (default: none)
        resolve=resolve,                    # (params, ctx) -> params with training-length defaults filled
        details=details,                    # (before, after, params, rules) -> JSON-able dict for the report
        capabilities=frozenset({Capability.WRAPS_LAYERS}),
    )

and the registry (`tfcompress.techniques`) has one line naming the module. The
generic loop (`tfcompress.compression`) reads only this entry: it never names a
technique, never inspects a signature. What a stage gets besides its model,
params and rules travels in a `StageContext`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from tfcompress.types import LayerRule

if TYPE_CHECKING:
    from tfcompress.hardware.profile import DeviceProfile


class Capability(str, enum.Enum):
    """What a technique does to a model, or needs to do it (read by the generic loop and the docs)."""

    CHANGES_STRUCTURE = "changes_structure"  # rebuilds the model: other layers / shapes (graph surgery)
    WRAPS_LAYERS = "wraps_layers"  # TF-MOT wrappers while training; `strip` removes them
    USES_DATA = "uses_data"  # `apply` reads labelled samples (ctx.data) when it has them
    NEEDS_TEACHER = "needs_teacher"  # `apply` needs ctx.teacher (the model before the recipe, or a file)
    TRAINING_WRAPPER = "training_wrapper"  # `apply` returns a training model around the one being compressed
    STAYS_WRAPPED = "stays_wrapped"  # the stripped model keeps training-time layers (QAT's fake quantization):
    #                                  it cannot be checkpointed as a plain Keras file; the converter reads it


@dataclass(frozen=True)
class StageContext:
    """What a stage gets besides model, params and rules.

    Attributes:
        data: (x, y) labelled samples for data-driven criteria (None: none given).
        teacher: tf_keras model to learn from (None: none).
        total_steps: training steps of the stage (fills schedules' end_step).
        log_dir: TensorBoard directory of this stage (None: no summaries).
        device: device profile whose predicted latency is logged each epoch (None: off).
    """

    data: tuple[Any, Any] | None = None
    teacher: Any = None
    total_steps: int = 1
    log_dir: str | None = None
    device: str | Path | DeviceProfile | None = None


def _identity(model: Any) -> Any:
    return model


def _no_callbacks(params: Any, ctx: StageContext) -> list[Any]:
    return []


def _keep(params: Any, ctx: StageContext) -> Any:
    return params


def _no_details(before: Any, after: Any, params: Any, rules: tuple[LayerRule, ...]) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class Technique:
    """A registry entry: one compression technique.

    Attributes:
        name: the `technique:` value in recipes.
        summary: one line for `--help` and docs.
        params_type: the pydantic model of the stage's `params:`.
        apply: (model, params, rules, ctx) -> tf_keras model to fine-tune.
        strip: model -> model with training-time wrappers removed (default: identity).
        callbacks: (params, ctx) -> Keras callbacks the stage's fine-tuning needs (default: none).
        resolve: (params, ctx) -> params with defaults that depend on the training length filled in.
        unwrap: training model -> the model being compressed inside it (for a `TRAINING_WRAPPER`).
        details: (model before apply, model after the stage, params, rules) -> a JSON-able dict the compress
            report keeps for the stage (`StageReport.details`: e.g. what a swap did; default: none).
        capabilities: what the technique does and needs.
        trains: whether the stage usually fine-tunes (docs, `tfcompress recipes`).
        size_advice: what shrinks the file when the result is no smaller than the model converted as is
            (compress's size check; None: nothing to say).
    """

    name: str
    summary: str
    params_type: type
    apply: Callable[[Any, Any, tuple[LayerRule, ...], StageContext], Any]
    strip: Callable[[Any], Any] = _identity
    callbacks: Callable[[Any, StageContext], list[Any]] = _no_callbacks
    resolve: Callable[[Any, StageContext], Any] = _keep
    unwrap: Callable[[Any], Any] = _identity
    details: Callable[[Any, Any, Any, tuple[LayerRule, ...]], dict[str, Any]] = _no_details
    capabilities: frozenset[Capability] = field(default_factory=frozenset)
    trains: bool = True
    size_advice: str | None = None

    def can(self, capability: Capability) -> bool:
        """Whether the technique declares `capability`."""
        return capability in self.capabilities
