"""Per-layer rules: which layers a stage touches, with which parameters.

First matching rule wins; `skip: true` leaves the layer alone; a rule's
`params` override the stage's for its layers. A rule that matches no layer of
the model is a warning, not an error: shipped recipes target common layer
names and classes that a given model may not have.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from tfcompress.types import LayerMatch, LayerRule


class UnmatchedRuleWarning(UserWarning):
    """A recipe rule matched no layer of the model."""


def matches(match: LayerMatch, layer: Any) -> bool:
    """Whether `layer` satisfies a rule's name / class regexes (re.search)."""
    if match.name is not None and not re.search(match.name, layer.name):
        return False
    if match.class_name is not None and not re.search(match.class_name, type(layer).__name__):
        return False
    return True


@dataclass(frozen=True)
class LayerPlan:
    """The outcome of applying rules to a model's layers.

    Attributes:
        params: layer name -> the params to use for it (only layers the stage touches).
        skipped: layers a `skip` rule excluded.
        unsupported: layers a rule targeted but the technique cannot handle.
        unmatched: rules that matched no layer.
    """

    params: dict[str, Any] = field(default_factory=dict)
    skipped: tuple[str, ...] = ()
    unsupported: tuple[str, ...] = ()
    unmatched: tuple[LayerRule, ...] = ()


def plan_layers(
    layers: Iterable[Any],
    rules: tuple[LayerRule, ...],
    default: Any,
    supported: Callable[[Any], bool],
    where: str = "recipe",
) -> LayerPlan:
    """Decide, for each layer, whether and how a stage applies.

    Args:
        layers: candidate layers (usually `model.layers`, flattened).
        rules: the stage's rules, first match wins.
        default: the stage's params (a technique's pydantic `Params`).
        supported: whether the technique can handle a layer at all.
        where: recipe name for warning messages.
    """
    params: dict[str, Any] = {}
    skipped: list[str] = []
    unsupported: list[str] = []
    used: set[int] = set()
    for layer in layers:
        rule_index = next((i for i, r in enumerate(rules) if matches(r.match, layer)), None)
        if rule_index is not None:
            used.add(rule_index)
            rule = rules[rule_index]
            if rule.skip:
                skipped.append(layer.name)
                continue
            if not supported(layer):
                if rule.params:
                    unsupported.append(layer.name)
                continue
            params[layer.name] = (
                type(default).model_validate({**default.model_dump(), **rule.params}) if rule.params else default
            )
        elif supported(layer):
            params[layer.name] = default
    unmatched = tuple(r for i, r in enumerate(rules) if i not in used)
    for r in unmatched:
        at = f" (line {r.line})" if r.line else ""
        warnings.warn(f"{where}: rule{at} {_describe(r.match)} matches no layer", UnmatchedRuleWarning, stacklevel=2)
    return LayerPlan(params, tuple(skipped), tuple(unsupported), unmatched)


def _describe(match: LayerMatch) -> str:
    parts = [f"name~/{match.name}/" if match.name else "", f"class~/{match.class_name}/" if match.class_name else ""]
    return " ".join(p for p in parts if p) or "(matches everything)"


def fresh_copy(model: Any) -> Any:
    """An independent copy of a tf_keras model (new layers, same weights)."""
    from tfcompress.keras_compat import tf_keras

    copy = tf_keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy
