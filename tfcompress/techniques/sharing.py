"""Cross-layer weight sharing (`share_weights`): one set of weights for several same-shaped layers.

Repeated blocks (the same conv in block 3, 4 and 5) often learn similar
kernels. Tying them rebuilds the model so that ONE layer object is called at
each of their places: Keras shares the variables, fine-tuning trains them
tied, and the TFLite converter writes one constant that every op reads.

Which layers are tied:
    groups=("block[3-5]_pw",)   each regex (searched in layer names) ties the layers it matches
                                that have the same class, config and weight shapes
    no groups                   layers of the same class / config / shapes whose kernels have
                                cosine similarity >= `similarity` with a group's first layer

A tied layer shares everything: kernel AND bias (layers with `use_bias=False`
followed by their own BatchNormalization keep separate BN statistics). The
shared weights start as the members' mean (`init="mean"`) or the first
member's (`init="first"`).

A size win is only real if the exported .tflite stores one copy.
`tflite_sharing(tflite)` reads the flatbuffer and reports which constant
buffers several operators read and the bytes that saves; the benchmark and
tests claim the saving only from that. (Measured: a BatchNormalization after
each tied conv is folded into that op's per-channel int8 scales, so the int8
kernel stays one buffer while the BN gammas keep their sign per channel; when
they do not, the converter writes copies, and `tflite_sharing` shows it.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, field_validator

from tfcompress.types import LayerRule
from tfcompress.techniques.base import Capability, StageContext, Technique
from tfcompress.techniques.rules import compile_pattern, search

__all__ = [
    "TECHNIQUE",
    "Params",
    "SharePlan",
    "SharedBuffer",
    "TfliteSharing",
    "apply",
    "plan_sharing",
    "share_weights",
    "tflite_sharing",
]


class Params(BaseModel):
    """Parameters of a `share_weights` stage (field descriptions are the docs and the JSON Schema)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    groups: tuple[StrictStr, ...] = Field(
        (), max_length=256, description="regexes (re.search semantics, run by RE2) on layer names; each one's "
        "matches are tied. "
        "Empty: groups are chosen by kernel cosine similarity")
    similarity: StrictFloat = Field(0.9, ge=-1.0, le=1.0, description="cosine threshold for automatic grouping")
    init: Literal["mean", "first"] = Field(
        "mean", description='"mean" (average of the members) or "first" (the first member\'s weights)')
    min_params: StrictInt = Field(256, ge=0, le=10**12, description="layers with fewer weights are not tied automatically")

    @field_validator("groups")
    @classmethod
    def _regexes(cls, groups: tuple[str, ...]) -> tuple[str, ...]:
        for g in groups:
            compile_pattern(g)  # ValueError: invalid, not runnable by RE2, too long, NUL
        return groups


@dataclass(frozen=True)
class SharePlan:
    """Tied groups: layer names (the first gives the shared layer its name), and the smallest cosine in each."""

    groups: tuple[tuple[str, ...], ...]
    cosine: tuple[float, ...]
    params_saved: int = 0

    def table(self) -> str:
        lines = [f"{'cosine':>7s}  layers"]
        lines += [f"{c:7.3f}  {', '.join(g)}" for g, c in zip(self.groups, self.cosine)]
        lines.append(f"parameters saved: {self.params_saved:,d}")
        return "\n".join(lines)


def _signature(layer: Any) -> tuple:
    config = {k: v for k, v in layer.get_config().items() if k != "name"}
    return type(layer).__name__, repr(sorted(config.items())), tuple(tuple(w.shape) for w in layer.weights)


def _flat(layer: Any) -> np.ndarray:
    return np.concatenate([np.ravel(w) for w in layer.get_weights()]).astype(np.float64)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else 0.0


def plan_sharing(model: Any, params: Params | None = None, rules: tuple[LayerRule, ...] = (), **overrides: Any) -> SharePlan:
    """Choose the groups of layers to tie (nothing is changed yet)."""
    from tfcompress.surgery.graph import as_tf_keras, trace
    from tfcompress.techniques.rules import plan_layers

    p = Params.model_validate({**(params or Params()).model_dump(), **overrides})
    graph = trace(as_tf_keras(model))
    calls: dict[int, int] = {}
    for node in graph.nodes:
        calls[id(node.layer)] = calls.get(id(node.layer), 0) + 1
    layers = [l for l in graph.layers() if l.weights and calls[id(l)] == 1]
    allowed = plan_layers(layers, rules, p, lambda layer: True, where="share_weights").params
    layers = [l for l in layers if l.name in allowed]

    groups: list[tuple[str, ...]] = []
    cosines: list[float] = []
    taken: set[str] = set()
    if p.groups:
        for pattern in p.groups:
            by_sig: dict[tuple, list[Any]] = {}
            for layer in layers:
                if layer.name not in taken and search(pattern, layer.name):
                    by_sig.setdefault(_signature(layer), []).append(layer)
            for members in by_sig.values():
                if len(members) > 1:
                    groups.append(tuple(m.name for m in members))
                    cosines.append(min(_cosine(_flat(members[0]), _flat(m)) for m in members[1:]))
                    taken |= {m.name for m in members}
    else:
        by_sig = {}
        for layer in layers:
            if layer.count_params() >= p.min_params:
                by_sig.setdefault(_signature(layer), []).append(layer)
        for members in by_sig.values():
            flats = {m.name: _flat(m) for m in members}
            for i, lead in enumerate(members):
                if lead.name in taken:
                    continue
                tied = [lead]
                cos = []
                for other in members[i + 1 :]:
                    if other.name in taken:
                        continue
                    c = _cosine(flats[lead.name], flats[other.name])
                    if c >= p.similarity:
                        tied.append(other)
                        cos.append(c)
                if len(tied) > 1:
                    groups.append(tuple(m.name for m in tied))
                    cosines.append(min(cos))
                    taken |= {m.name for m in tied}
    by_name = {l.name: l for l in layers}
    saved = sum(by_name[g[0]].count_params() * (len(g) - 1) for g in groups)
    return SharePlan(tuple(groups), tuple(cosines), saved)


def share_weights(
    model: Any,
    groups: tuple[str, ...] | list[str] | None = None,
    *,
    params: Params | None = None,
    rules: tuple[LayerRule, ...] = (),
    plan: SharePlan | None = None,
    **overrides: Any,
) -> Any:
    """Tie same-shaped layers; returns a new tf_keras model where each group is one shared layer.

    Example:
        tied = share_weights(model, groups=[r"block[2-4]_conv2"])
        tied = share_weights(model, similarity=0.8)     # automatic grouping
    """
    from tfcompress.surgery.graph import Replacement, as_tf_keras, clone_layer, rebuild

    model = as_tf_keras(model)
    p = Params.model_validate({**(params or Params()).model_dump(), **overrides})
    if groups is not None:
        p = Params.model_validate({**p.model_dump(), "groups": tuple(groups)})
    plan = plan or plan_sharing(model, p, rules)
    layers = {l.name: l for l in _all_layers(model)}
    tied: dict[str, Replacement] = {}
    for group in plan.groups:
        members = [layers[n] for n in group]
        weights = members[0].get_weights()
        if p.init == "mean":
            weights = [np.mean(ws, axis=0) for ws in zip(*(m.get_weights() for m in members))]
        shared = clone_layer(members[0])
        rep = Replacement((shared,), (weights,))
        tied.update({n: rep for n in group})
    return rebuild(model, lambda layer: tied.get(layer.name))


def _all_layers(model: Any) -> list[Any]:
    from tfcompress.surgery.graph import trace

    return trace(model).layers()


# --------------------------------------------------------------------- the .tflite side


@dataclass(frozen=True)
class SharedBuffer:
    """A constant buffer that several operators read."""

    buffer: int
    nbytes: int
    readers: int
    tensors: tuple[str, ...]
    op_types: tuple[str, ...]


@dataclass(frozen=True)
class TfliteSharing:
    """What a .tflite really shares: buffers read by more than one operator, and the bytes that saves."""

    shared: tuple[SharedBuffer, ...]
    constant_bytes: int

    @property
    def bytes_saved(self) -> int:
        """Bytes a copy per reader would have added."""
        return sum(b.nbytes * (b.readers - 1) for b in self.shared)


def tflite_sharing(tflite: Any) -> TfliteSharing:
    """Read a .tflite (bytes or path) and list the constant buffers read by several operators."""
    from tfcompress.export.tflite_file import read_tflite

    tfl = read_tflite(tflite)
    readers: dict[int, list[tuple[str, str]]] = {}
    sizes: dict[int, int] = {}
    for sg in tfl.subgraphs:
        for op in sg.operators:
            for index, const in zip(op.inputs, op.constant_inputs):
                if index < 0 or not const:
                    continue
                t = sg.tensors[index]
                if t.nbytes == 0:
                    continue
                readers.setdefault(t.buffer, []).append((t.name, op.op_type))
                sizes[t.buffer] = t.nbytes
    shared = tuple(
        SharedBuffer(
            buffer=b,
            nbytes=sizes[b],
            readers=len(r),
            tensors=tuple(dict.fromkeys(name for name, _ in r)),
            op_types=tuple(op for _, op in r),
        )
        for b, r in sorted(readers.items())
        if len(r) > 1
    )
    return TfliteSharing(shared, tfl.constant_bytes)


# --------------------------------------------------------------------- registry contract


def apply(model: Any, params: Params, rules: tuple[LayerRule, ...] = (), ctx: StageContext = StageContext()) -> Any:
    """Recipe stage: tie the layers (fine-tune afterwards: they train tied)."""
    return share_weights(model, params=params, rules=rules)


# Nothing to strip (tied layers are ordinary shared Keras layers), no callbacks.
TECHNIQUE = Technique(
    name="share_weights",
    summary="tie kernels across repeated blocks",
    params_type=Params,
    apply=apply,
    capabilities=frozenset({Capability.CHANGES_STRUCTURE}),
)
