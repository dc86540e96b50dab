"""Stage order: which technique after which cannot work (an error) or undoes the earlier one (a warning).

`ORDER_RULES` is the whole policy, one row per (earlier techniques, later techniques, condition); the
check only reads it. For each stage and each row naming its technique as `later`, the nearest earlier
stage of one of the row's `earlier` techniques is looked at, and the row applies when its condition
holds for the pair. Rows never share an (earlier, later) pair of names, so a pair gets one finding.

An error is raised at the later stage's line (`FILE:LINE: stages[j]: ...`); a warning is a
`StageOrderWarning` naming both stages and their lines. docs/recipes.md shows the table.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable, Literal, Sequence

from tfcompress.recipe.yaml_tree import error
from tfcompress.types import Stage

ERROR = "error"
WARNING = "warning"


class RecipeWarning(UserWarning):
    """A recipe that runs but probably does not do what was meant."""


class StageOrderWarning(RecipeWarning):
    """A stage undoes what an earlier stage made (names both stages and their lines)."""


def _param(stage: Stage, name: str, default: Any) -> Any:
    """A stage parameter, or `default` (params built in code or by another registry may lack it)."""
    return getattr(stage.params, name, default) if stage.params is not None else default


def _always(earlier: Stage, later: Stage) -> bool:
    return True


def _fine_tunes(earlier: Stage, later: Stage) -> bool:
    return later.epochs > 0


def _fills_zeros(earlier: Stage, later: Stage) -> bool:
    return _param(later, "preserve_sparsity", False) is not True


def _qat_drops_zeros(earlier: Stage, later: Stage) -> bool:
    return later.epochs > 0 and _param(later, "scheme", "auto") in ("default", "cluster_preserve")


def _qat_drops_clusters(earlier: Stage, later: Stage) -> bool:
    return later.epochs > 0 and _param(later, "scheme", "auto") in ("default", "prune_preserve")


@dataclass(frozen=True)
class OrderRule:
    """One row of the policy.

    Attributes:
        earlier / later: technique names (a stage of `later` after one of `earlier`).
        level: "error" (cannot work) or "warning" (undoes the earlier stage).
        problem: what goes wrong; `{earlier}`, `{later}`, `{epochs}` ("2 epochs", the later stage's) and
            `{scheme}` are filled in.
        hint: what to do instead.
        when: the condition on (earlier stage, later stage); default: always.
    """

    earlier: tuple[str, ...]
    later: tuple[str, ...]
    level: Literal["error", "warning"]
    problem: str
    hint: str
    when: Callable[[Stage, Stage], bool] = _always


_QAT_LAST = "put 'qat' last: its schemes keep what earlier stages made (prune_preserve, cluster_preserve, "\
    "prune_cluster_preserve; 'auto' picks one)"

ORDER_RULES: tuple[OrderRule, ...] = (
    OrderRule(("qat",), ("qat",), ERROR,
              "the model is already wrapped for quantization-aware training: a second 'qat' cannot wrap it again",
              "keep one 'qat' stage, as the last stage"),
    OrderRule(("qat",), ("prune", "cluster"), ERROR,
              "TF-MOT cannot prune or cluster a QAT-wrapped model", _QAT_LAST),
    OrderRule(("qat",), ("structured_prune", "low_rank", "share_weights", "distill"), ERROR,
              "'{later}' would change a QAT-wrapped model: graph surgery and distillation refuse TF-MOT wrappers, "
              "and new weights would not fit the ranges QAT learned", _QAT_LAST),
    OrderRule(("prune",), ("cluster",), WARNING,
              "clustering fills the zeros 'prune' made (each zero moves to its nearest centroid): the sparsity is lost",
              "set `preserve_sparsity: true` in the cluster stage's params", _fills_zeros),
    OrderRule(("prune",), ("low_rank",), WARNING,
              "'low_rank' replaces the pruned kernels by dense factors: the zeros 'prune' made are lost",
              "prune after 'low_rank' (the factors get pruned)"),
    OrderRule(("prune",), ("structured_prune", "share_weights", "distill"), WARNING,
              "'{later}' fine-tunes ({epochs}) without the pruning wrapper: training refills the zeros 'prune' "
              "made", "prune after it, or give it `epochs: 0` and fine-tune in the prune stage", _fine_tunes),
    OrderRule(("prune",), ("qat",), WARNING,
              "QAT with scheme '{scheme}' fine-tunes ({epochs}) without keeping zeros: the sparsity 'prune' "
              "made is lost", "use scheme 'prune_preserve' ('prune_cluster_preserve' after clustering, or 'auto')",
              _qat_drops_zeros),
    OrderRule(("cluster",), ("low_rank",), WARNING,
              "'low_rank' replaces the clustered kernels by their factors: the clusters 'cluster' made are lost",
              "cluster after 'low_rank'"),
    OrderRule(("cluster",), ("prune", "structured_prune", "share_weights", "distill"), WARNING,
              "'{later}' fine-tunes ({epochs}) without the clustering wrapper: training spreads the clustered "
              "values again, the clusters 'cluster' made are lost (unique values per kernel rise)",
              "cluster after it (after pruning: with `preserve_sparsity: true`), or give it `epochs: 0`", _fine_tunes),
    OrderRule(("cluster",), ("qat",), WARNING,
              "QAT with scheme '{scheme}' fine-tunes ({epochs}) without keeping the centroids: the clusters "
              "'cluster' made are lost",
              "use scheme 'cluster_preserve' ('prune_cluster_preserve' after pruning and clustering, or 'auto')",
              _qat_drops_clusters),
)


@dataclass(frozen=True)
class OrderFinding:
    """One applicable row: `rule` for stages[`earlier`] followed by stages[`later`]."""

    rule: OrderRule
    earlier: int
    later: int


def find_order_problems(stages: Sequence[Stage], rules: Sequence[OrderRule] = ORDER_RULES) -> list[OrderFinding]:
    """Every applicable row, in stage order (no technique module is imported)."""
    found = []
    for j, later in enumerate(stages):
        for rule in rules:
            if later.technique not in rule.later:
                continue
            i = next((i for i in range(j - 1, -1, -1) if stages[i].technique in rule.earlier), None)
            if i is not None and rule.when(stages[i], later):
                found.append(OrderFinding(rule, i, j))
    return found


def _where(stage: Stage, index: int) -> str:
    return f"stages[{index}]" + (f", line {stage.line}" if stage.line is not None else "")


def describe_finding(f: OrderFinding, stages: Sequence[Stage]) -> tuple[str, str]:
    """(message without the `FILE:LINE:` prefix, hint) of a finding."""
    earlier, later = stages[f.earlier], stages[f.later]
    epochs = f"{later.epochs} epoch{'' if later.epochs == 1 else 's'}"
    problem = f.rule.problem.format(earlier=earlier.technique, later=later.technique, epochs=epochs,
                                    scheme=_param(later, "scheme", "?"))
    return (f"stages[{f.later}]: '{later.technique}' after '{earlier.technique}' ({_where(earlier, f.earlier)}): "
            f"{problem}", f.rule.hint)


def check_stage_order(stages: Sequence[Stage], source: str) -> None:
    """Raise the first order error (RecipeError at the later stage's line); warn about each undoing pair.

    Raises:
        RecipeError: `SOURCE:LINE: stages[j]: 'later' after 'earlier' (stages[i], line L): problem (hint)`.
    """
    found = find_order_problems(stages)
    for f in found:
        if f.rule.level == ERROR:
            message, hint = describe_finding(f, stages)
            raise error(source, stages[f.later].line, message, hint)
    for f in found:
        message, hint = describe_finding(f, stages)
        line = stages[f.later].line
        where = f"{source}:{line}" if line is not None else source
        warnings.warn(f"{where}: {message} ({hint})", StageOrderWarning, stacklevel=2)
