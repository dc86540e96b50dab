"""Magnitude pruning with schedules, over TF-MOT (`technique: prune`).

Unstructured, block and m-by-n (2:4) sparsity; constant or polynomial-decay
schedules; per-layer targets through recipe rules; TF-MOT's XNNPACK latency
policy where the model fits it. Zeros alone do not shrink a .tflite: the
recipe's sparse export (`export: {sparse: true}`, `tfcompress.types.ExportSettings`) does.
"""

from __future__ import annotations

import warnings
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, model_validator

from tfcompress.errors import TfcompressError
from tfcompress.techniques import load_tfmot
from tfcompress.techniques.base import Capability, StageContext, Technique
from tfcompress.types import LayerRule

class UnprunedLayerWarning(UserWarning):
    """Prunable layers a stage leaves dense because TF-MOT's sparsity pattern does not take their kernels."""


_COUNT = Annotated[StrictInt, Field(ge=1, le=1024)]  # a block side, or one of m_by_n's counts


class Params(BaseModel):
    """Recipe `params:` of a prune stage (field descriptions are the docs and the JSON Schema).

    TF-MOT supports `block_size` on 2-D kernels (Dense) only; with a block size other layers are
    left unpruned.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    schedule: Literal["polynomial", "constant"] = Field(
        "polynomial", description='"polynomial" (sparsity ramps from initial to final) or "constant"')
    initial_sparsity: StrictFloat = Field(0.0, ge=0.0, lt=1.0, description="polynomial start sparsity")
    final_sparsity: StrictFloat = Field(
        0.5, ge=0.0, lt=1.0, description="target fraction of zero weights per pruned layer")
    begin_step: StrictInt = Field(0, ge=0, le=10**9, description="training step at which pruning starts")
    end_step: StrictInt | None = Field(
        None, ge=1, le=10**9, description="step at which the target is reached; null = end of the stage's training")
    frequency: StrictInt = Field(100, ge=1, le=10**9, description="prune every this many steps")
    power: StrictFloat = Field(3.0, gt=0.0, le=100.0, description="exponent of the polynomial schedule")
    block_size: tuple[_COUNT, _COUNT] = Field(
        (1, 1), description="(rows, cols) pruned together (block sparsity); [1, 1] = unstructured")
    block_pooling: Literal["AVG", "MAX"] = Field("AVG", description="how a block's magnitude is pooled")
    m_by_n: tuple[_COUNT, _COUNT] | None = Field(
        None, description="(m, n) structured sparsity, e.g. [2, 4]: 2 zeros in every 4 weights; overrides final_sparsity")
    policy: Literal["none", "xnnpack"] = Field(
        "none", description='"xnnpack" prunes only what XNNPACK\'s sparse kernels accelerate (TF-MOT '
        "PruneForLatencyOnXNNPack); the model must fit it")

    @model_validator(mode="after")
    def _consistent(self) -> Params:
        if self.schedule == "polynomial" and self.initial_sparsity > self.final_sparsity:
            raise ValueError(
                f"initial_sparsity {self.initial_sparsity} is above final_sparsity {self.final_sparsity}"
            )
        if self.end_step is not None and self.end_step <= self.begin_step:
            raise ValueError(
                f"the schedule ends (end_step {self.end_step}) before it begins (begin_step {self.begin_step})"
            )
        if self.m_by_n is not None:
            m, n = self.m_by_n
            if not 0 < m < n:
                raise ValueError(f"m_by_n must be (m, n) with 0 < m < n, e.g. (2, 4); got {self.m_by_n}")
            if self.block_size != (1, 1):
                raise ValueError("m_by_n and block_size cannot be combined")
        return self


def resolve(params: Params, total_steps: int) -> Params:
    """Fill `end_step` (None) with the stage's last training step."""
    if params.end_step is None:
        end = max(total_steps, params.begin_step + 1)
        freq = min(params.frequency, max(1, (end - params.begin_step) // 4))
        return params.model_copy(update={"end_step": end, "frequency": freq})
    return params


def schedule(params: Params) -> Any:
    """The TF-MOT PruningSchedule for `params` (end_step must be resolved)."""
    sparsity = load_tfmot().sparsity.keras
    end = params.end_step if params.end_step is not None else -1
    if params.schedule == "constant":
        return sparsity.ConstantSparsity(params.final_sparsity, params.begin_step, end, params.frequency)
    return sparsity.PolynomialDecay(
        params.initial_sparsity, params.final_sparsity, params.begin_step, end, params.power, params.frequency
    )


def is_prunable(layer: Any) -> bool:
    """A layer TF-MOT can prune that actually has weights to prune."""
    from tensorflow_model_optimization.python.core.sparsity.keras import prune_registry

    sparsity = load_tfmot().sparsity.keras
    if isinstance(layer, sparsity.PrunableLayer):
        return True
    if not prune_registry.PruneRegistry.supports(layer):
        return False
    return bool(prune_registry.PruneRegistry._weight_names(layer))


def _wrapper_kwargs(params: Params) -> dict[str, Any]:
    return {
        "pruning_schedule": schedule(params),
        "block_size": params.block_size,
        "block_pooling_type": params.block_pooling,
        "sparsity_m_by_n": params.m_by_n,
    }


def apply(model: Any, params: Params, rules: tuple[LayerRule, ...] = (), ctx: StageContext = StageContext()) -> Any:
    """Wrap the prunable layers chosen by `rules` in TF-MOT pruning wrappers.

    Raises:
        TfcompressError: the model does not fit the XNNPACK policy, or nothing is prunable.
    """
    from tfcompress.keras_compat import tf_keras
    from tfcompress.techniques.rules import fresh_copy, plan_layers

    tfmot = load_tfmot()
    model = fresh_copy(model)  # TF-MOT wrappers mutate the layers they wrap: never the caller's
    policy = None
    if params.policy == "xnnpack":
        policy = tfmot.sparsity.keras.PruneForLatencyOnXNNPack()
        try:
            policy.ensure_model_supports_pruning(model)
        except ValueError as e:
            raise TfcompressError(
                f"model '{model.name}' does not fit the XNNPACK latency pruning policy: {e}",
                "XNNPACK's sparse kernels need NHWC float/int8 1x1 convolutions after a 3x3 stride-2 stem, ending in "
                "GlobalAveragePooling; use policy: none",
            ) from None
    left_dense: dict[str, str] = {}  # layer name -> how it is named in the warning (allowed() runs more than once)

    def allowed(layer: Any) -> bool:
        if not is_prunable(layer) or (policy is not None and not policy.allow_pruning(layer)):
            return False
        ranks = {w.shape.rank for w in layer.trainable_weights if w.shape.rank > 1}
        # TF-MOT's block sparsity works on 2-D kernels (Dense), its m-by-n sparsity on 2-D and 4-D ones (Dense,
        # Conv2D); it raises mid-training on any other (Conv1D, MultiHeadAttention's 3-D einsum kernels).
        fits = (params.block_size == (1, 1) or ranks <= {2}) and (params.m_by_n is None or ranks <= {2, 4})
        if not fits:
            left_dense[layer.name] = f"{layer.name} ({type(layer).__name__}, {'x'.join(map(str, sorted(ranks)))}-D kernel)"
        return fits

    plan = plan_layers(_all_layers(model), rules, params, allowed, where=f"prune stage of '{model.name}'")
    if left_dense:
        kind = "block" if params.block_size != (1, 1) else f"{params.m_by_n[0]}:{params.m_by_n[1]}"
        warnings.warn(f"prune stage of '{model.name}': {kind} sparsity leaves {len(left_dense)} layer(s) dense, "
                      f"TF-MOT prunes only {'2-D' if kind == 'block' else '2-D and 4-D'} kernels that way: "
                      + ", ".join(left_dense.values()), UnprunedLayerWarning, stacklevel=2)
    if not plan.params:
        raise TfcompressError(f"no prunable layer in model '{model.name}' after the recipe's rules", "check the rules' skip/match")

    def wrap(layer: Any) -> Any:
        if isinstance(layer, tf_keras.Model):
            return tf_keras.models.clone_model(layer, clone_function=wrap)
        layer_params = plan.params.get(layer.name)
        if layer_params is None:
            return layer  # shared, weights and all (as TF-MOT does)
        return tfmot.sparsity.keras.prune_low_magnitude(layer, **_wrapper_kwargs(layer_params))

    return tf_keras.models.clone_model(model, clone_function=wrap)


def _all_layers(model: Any) -> list[Any]:
    layers = []
    for layer in model.layers:
        if hasattr(layer, "layers") and not hasattr(layer, "layer"):
            layers.extend(_all_layers(layer))
        else:
            layers.append(layer)
    return layers


def strip(model: Any) -> Any:
    """Remove pruning wrappers, keeping the zeros."""
    return load_tfmot().sparsity.keras.strip_pruning(model)


def callbacks(params: Params, ctx: StageContext = StageContext()) -> list[Any]:
    """UpdatePruningStep (required) and, with a log dir, TF-MOT's sparsity summaries."""
    sparsity = load_tfmot().sparsity.keras
    cbs = [sparsity.UpdatePruningStep()]
    if ctx.log_dir:
        cbs.append(sparsity.PruningSummaries(log_dir=ctx.log_dir))
    return cbs


TECHNIQUE = Technique(
    name="prune",
    summary="magnitude pruning with a schedule (TF-MOT)",
    params_type=Params,
    apply=apply,
    strip=strip,
    callbacks=callbacks,
    resolve=lambda params, ctx: resolve(params, ctx.total_steps),
    capabilities=frozenset({Capability.WRAPS_LAYERS}),
    size_advice="pruning's zeros cost int8 bytes like any value: `sparse: true` in the recipe's export stores them "
                "sparse (pays above ~60-70% zeros), and gzip sees them (stage table)",
)
