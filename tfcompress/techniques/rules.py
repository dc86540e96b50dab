"""Per-layer rules: which layers a stage touches, with which parameters.

First matching rule wins; `skip: true` leaves the layer alone; a rule's
`params` override the stage's for its layers. A rule that matches no layer of
the model is a warning, not an error: shipped recipes target common layer
names and classes that a given model may not have.

Rule regexes come from recipe files, so they run on RE2 (`google-re2`), whose matching time is linear
in the name: a pattern such as `^(a+)+$` cannot hang. `compile_pattern` is the one place a rule or a
technique's layer-name regex is compiled; it refuses what RE2 cannot run (backreferences, lookaround),
patterns over `MAX_PATTERN_CHARS` and NUL characters. Layer names over `MAX_NAME_CHARS` match no rule.
"""

from __future__ import annotations

import functools
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import re2

from tfcompress.types import LayerMatch, LayerRule

MAX_PATTERN_CHARS = 1000  # a rule regex longer than this is an error
MAX_NAME_CHARS = 1024  # a layer / class name longer than this matches no rule

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # RE2 would print every rejected pattern to stderr


class UnmatchedRuleWarning(UserWarning):
    """A recipe rule matched no layer of the model."""


class LongLayerNameWarning(UserWarning):
    """A layer name too long to match against rules (it gets the stage's params)."""


@functools.lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> Any:
    """`pattern` compiled by RE2 (linear-time matching; `.search(text)` as `re.search`).

    A pattern must be valid Python `re` syntax (its error messages are the clearer ones) that RE2 can run.

    Raises:
        ValueError: the reason, naming the pattern.
    """
    shown = pattern if len(pattern) <= 60 else pattern[:57] + "..."
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ValueError(f"regular expression of {len(pattern):,} characters: the limit is {MAX_PATTERN_CHARS:,}")
    if "\x00" in pattern:
        raise ValueError(f"regular expression {shown!r} contains a NUL character")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "possible nested set" and such: RE2 has the last word
            re.compile(pattern)
    except re.error as e:
        raise ValueError(f"invalid regular expression {shown!r}: {e}") from None
    except (OverflowError, RecursionError) as e:  # a huge repeat count, deep nesting
        raise ValueError(f"invalid regular expression {shown!r}: {type(e).__name__}: {str(e)[:120]}") from None
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except Exception as e:  # re2.error; its message is bytes
        reason = e.args[0].decode("utf-8", "replace") if e.args and isinstance(e.args[0], bytes) else str(e)
        raise ValueError(
            f"regular expression {shown!r} needs what the linear-time engine (RE2) rules run on does not have: "
            f"{reason[:120]} (no backreferences, lookahead / lookbehind, \\Z, verbose mode or repeats over 1000)"
        ) from None


def search(pattern: str, text: str) -> bool:
    """Whether `pattern` (a rule regex) is found in `text`; texts over `MAX_NAME_CHARS` never match."""
    if len(text) > MAX_NAME_CHARS:
        warnings.warn(f"layer name of {len(text):,} characters ({text[:40]!r}...) is over {MAX_NAME_CHARS:,}: no "
                      "rule matches it", LongLayerNameWarning, stacklevel=3)
        return False
    return compile_pattern(pattern).search(text) is not None


def matches(match: LayerMatch, layer: Any) -> bool:
    """Whether `layer` satisfies a rule's name / class regexes (re.search semantics, run by RE2)."""
    if match.name is not None and not search(match.name, layer.name):
        return False
    if match.class_name is not None and not search(match.class_name, type(layer).__name__):
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
    try:
        copy.set_weights(model.get_weights())
    except ValueError:  # a layer lists its weights in another order than a new one: match them by name
        # (TF-MOT's strip_clustering leaves MultiHeadAttention's kernels first, then its biases)
        for new, old in zip(copy.layers, model.layers):
            values = {w.name: w for w in old.weights}
            if sorted(values) == sorted(w.name for w in new.weights):
                new.set_weights([values[w.name].numpy() for w in new.weights])
            else:
                new.set_weights(old.get_weights())
    return copy
