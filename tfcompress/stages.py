"""A recipe's stages as steps of your own training loop.

    for stage in tfcompress.training_stages(recipe, steps_per_epoch=len(ds)):
        model = stage.prepare(model)
        model.compile(...)
        model.fit(ds, epochs=stage.epochs, callbacks=stage.callbacks())
        model = stage.finalize(model)

or, for a recipe with one training stage, `prepare` / `callbacks` / `finalize`.
A stage changes the model's structure (TF-MOT wraps layers, surgery rebuilds
it), so stages switch between `fit` calls, never inside one. Everything here
reads the technique's registry entry (`tfcompress.techniques.base.Technique`):
no technique is named.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

from tfcompress.errors import TfcompressError
from tfcompress.techniques import StageContext, Technique, get_technique, strip_training_wrappers
from tfcompress.types import Recipe, Stage

DEFAULT_RECIPE = "mobile-int8"


@dataclass(frozen=True)
class StageRun:
    """One training stage of a recipe, ready to drive `fit`.

    Attributes:
        stage: the recipe stage.
        index: its position in the recipe.
        context: what the stage gets besides the model (total steps, log dir, device; data and
            teacher are given to `prepare`).
    """

    stage: Stage
    index: int
    context: StageContext

    @property
    def technique(self) -> Technique:
        """The stage's registry entry."""
        return get_technique(self.stage.technique)

    @property
    def epochs(self) -> int:
        """Epochs to fine-tune in this stage."""
        return self.stage.epochs

    @property
    def total_steps(self) -> int:
        """Training steps of this stage."""
        return self.context.total_steps

    @property
    def params(self) -> Any:
        """The technique params with training-length defaults resolved."""
        return self.technique.resolve(self.stage.params, self.context)

    def with_steps(self, total_steps: int) -> StageRun:
        """The same stage, trained for `total_steps` steps."""
        return replace(self, context=replace(self.context, total_steps=total_steps))

    def prepare(self, model: Any, data: Any = None, teacher: Any = None) -> Any:
        """Apply the technique to a tf_keras model (Keras 3 models are bridged).

        Args:
            model: the model to compress.
            data: (x, y) for techniques that use data (e.g. data-driven importance criteria).
            teacher: the model to learn from, for techniques that need one (`compress` passes the
                model as it was before the recipe).
        """
        from tfcompress.loading import load_model

        model = _tf_keras(model, load_model)
        ctx = self.context
        if data is not None:
            ctx = replace(ctx, data=data)
        if teacher is not None:
            ctx = replace(ctx, teacher=_tf_keras(teacher, load_model))
        return self.technique.apply(model, self.params, self.stage.rules, ctx)

    def callbacks(self) -> list[Any]:
        """The Keras callbacks this stage needs in `fit` (plus compression and latency logging)."""
        from tfcompress.monitoring import CompressionLogger, LatencyLogger

        technique = self.technique
        cbs = list(technique.callbacks(self.params, self.context))
        cbs.append(CompressionLogger(self.context.log_dir, unwrap=technique.unwrap))
        if self.context.device is not None:
            cbs.append(LatencyLogger(self.context.device, self.context.log_dir, inference_model=self.finalize))
        return cbs

    def finalize(self, model: Any) -> Any:
        """Strip this stage's training-time wrappers (some, like QAT's, stay: the converter reads them)."""
        return self.technique.strip(model)

    def details(self, before: Any, after: Any) -> dict[str, Any]:
        """What the technique reports about this stage (`Technique.details`), from the models before and after."""
        return self.technique.details(before, after, self.params, self.stage.rules)


def training_stages(
    recipe: Recipe | str | Path, *, steps_per_epoch: int, log_dir: str | None = None, device: Any = None
) -> Iterator[StageRun]:
    """The recipe's stages in order (`device`: log its predicted latency each epoch)."""
    recipe = load(recipe)
    for i, stage in enumerate(recipe.stages):
        steps = (stage.steps_per_epoch or steps_per_epoch) * max(stage.epochs, 1)
        stage_log = f"{log_dir}/stage{i}_{stage.technique}" if log_dir else None
        yield StageRun(stage, i, StageContext(total_steps=steps, log_dir=stage_log, device=device))


def _single_stage(recipe: Recipe | str | Path, steps_per_epoch: int = 1, **kwargs: Any) -> StageRun:
    runs = list(training_stages(recipe, steps_per_epoch=steps_per_epoch, **kwargs))
    if len(runs) != 1:
        raise TfcompressError(
            f"recipe has {len(runs)} training stages; prepare/callbacks/finalize drive exactly one",
            "loop over tfcompress.training_stages(recipe, ...) or use tfcompress.compress",
        )
    return runs[0]


def prepare(model: Any, recipe: Recipe | str | Path, *, steps_per_epoch: int = 1) -> Any:
    """Apply a one-training-stage recipe to `model` for your own `fit`."""
    return _single_stage(recipe, steps_per_epoch).prepare(model)


def callbacks(
    recipe: Recipe | str | Path, *, steps_per_epoch: int = 1, log_dir: str | None = None, device: Any = None
) -> list[Any]:
    """Callbacks for `fit` with a model from `prepare` (UpdatePruningStep, logging; predicted latency on `device`)."""
    return _single_stage(recipe, steps_per_epoch, log_dir=log_dir, device=device).callbacks()


def finalize(model: Any) -> Any:
    """Strip every technique's training wrappers from `model`."""
    return strip_training_wrappers(model)


def load(recipe: Recipe | str | Path | None) -> Recipe:
    """A Recipe as it is, or loaded from a file / shipped name (default: mobile-int8)."""
    from tfcompress.recipe import load_recipe

    if isinstance(recipe, Recipe):
        return recipe
    return load_recipe(recipe or DEFAULT_RECIPE)


def _tf_keras(model: Any, load_model: Any) -> Any:
    from tfcompress.keras_compat import is_tf_keras_model

    return model if is_tf_keras_model(model) else load_model(model, safe_mode=False)
