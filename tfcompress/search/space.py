"""What a search may change in a model, one knob per layer, and how a choice becomes a recipe.

A `SearchSpace` is read from the model once:

    keep    per prunable channel group (named by its first producer layer): the fraction of
            channels kept, from `KEEP_LEVELS` (structured pruning, kept counts rounded to 8)
    swap    per k x k Conv2D that is not a stem (>= `MIN_SWAP_IN` input channels): replaced by a
            depthwise-separable block initialised from its kernel (the `swap` technique)
    rank    per hidden Dense with >= `MIN_RANK_PARAMS` weights: factorised to a fraction of its
            full rank, from `RANK_LEVELS` (the `low_rank` technique)
    resolution  the model's input side x r, from `RESOLUTION_LEVELS` (the `scale` technique; images are
            resized to match), for single-image-input models without a Flatten

A `Genome` is one choice per knob (defaults: unchanged). `genome_recipe` turns it into the
structural stages of a recipe, each with one rule per changed layer and a catch-all `skip`, so
`tfcompress compress` replays exactly the architecture the search measured.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "KEEP_LEVELS",
    "RANK_LEVELS",
    "RESOLUTION_LEVELS",
    "Genome",
    "Knob",
    "SearchSpace",
    "genome_from_json",
    "genome_stages",
    "read_space",
]

KEEP_LEVELS: tuple[float, ...] = (1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25)
RANK_LEVELS: tuple[float, ...] = (1.0, 0.5, 0.25, 0.125)
RESOLUTION_LEVELS: tuple[float, ...] = (1.0, 0.875, 0.75, 0.625, 0.5)
INPUT = "<input>"  # the resolution knob's layer name
MIN_SWAP_IN = 8  # a conv reading fewer channels is a stem: separable saves nothing there
MIN_RANK_PARAMS = 4096
ROUND_TO = 8  # kept channels rounded to a multiple of XNNPACK's int8 SIMD width
MAX_KNOBS = 512  # bounded: a model with more is searched on its largest layers only


class Genome(BaseModel):
    """One choice per knob; a knob left out is unchanged (keep 1.0, no swap, full rank).

    Attributes:
        keep: channel group (first producer's name) -> fraction of its channels kept.
        swap: Conv2D layers replaced by depthwise-separable blocks.
        rank: Dense layer -> fraction of its full rank kept.
        resolution: input side multiplier (1.0: unchanged).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    keep: dict[str, float] = Field(default_factory=dict)
    swap: tuple[str, ...] = ()
    rank: dict[str, float] = Field(default_factory=dict)
    resolution: float = 1.0

    def key(self) -> str:
        """Canonical text of the choices (equal genomes, equal keys): trial cache and state key."""
        return json.dumps(
            {"keep": {k: v for k, v in sorted(self.keep.items()) if v < 1.0},
             "swap": sorted(set(self.swap)),
             "rank": {k: v for k, v in sorted(self.rank.items()) if v < 1.0},
             **({"res": self.resolution} if self.resolution != 1.0 else {})},
            sort_keys=True, separators=(",", ":"))

    def __hash__(self) -> int:
        return hash(self.key())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Genome) and self.key() == other.key()

    def normal(self) -> Genome:
        """The same choices without unchanged entries (keep 1.0, rank 1.0), sorted."""
        return Genome(keep={k: v for k, v in sorted(self.keep.items()) if v < 1.0},
                      swap=tuple(sorted(set(self.swap))),
                      rank={k: v for k, v in sorted(self.rank.items()) if v < 1.0}, resolution=self.resolution)

    def describe(self) -> str:
        """Short text for tables: `conv2:0.5 sep(conv3) dense1:r0.25`, or `original`."""
        parts = [f"res:{self.resolution:g}"] if self.resolution != 1.0 else []
        parts += [f"{k}:{v:g}" for k, v in sorted(self.keep.items()) if v < 1.0]
        parts += [f"sep({n})" for n in sorted(self.swap)]
        parts += [f"{k}:r{v:g}" for k, v in sorted(self.rank.items()) if v < 1.0]
        return " ".join(parts) or "original"


@dataclass(frozen=True)
class Knob:
    """One per-layer choice the search can make.

    Attributes:
        kind: "keep", "swap", "rank" or "resolution" (layer `INPUT`).
        layer: the layer (for "keep": the channel group's first producer).
        levels: the values, from unchanged to the most compressed.
        size: channels of the group ("keep"), or full rank ("rank"), or kernel weights ("swap").
        accepts: values a genome may also hold (the configured keep levels whose channel count rounds to
            that of a listed level).
    """

    kind: str
    layer: str
    levels: tuple[Any, ...]
    size: int
    accepts: tuple[Any, ...] = ()  # further values a genome may hold (keep levels that round to a listed one)

    def value(self, genome: Genome) -> Any:
        if self.kind == "keep":
            return genome.keep.get(self.layer, 1.0)
        if self.kind == "rank":
            return genome.rank.get(self.layer, 1.0)
        if self.kind == "resolution":
            return genome.resolution
        return self.layer in genome.swap

    def set(self, genome: Genome, value: Any) -> Genome:
        """`genome` with this knob at `value`."""
        d = genome.model_dump()
        if self.kind == "keep":
            d["keep"] = {**genome.keep, self.layer: float(value)}
        elif self.kind == "rank":
            d["rank"] = {**genome.rank, self.layer: float(value)}
        elif self.kind == "resolution":
            d["resolution"] = float(value)
        else:
            d["swap"] = tuple(set(genome.swap) | {self.layer} if value else set(genome.swap) - {self.layer})
        return Genome.model_validate(d).normal()

    def steps_down(self, genome: Genome) -> list[Genome]:
        """Genomes that compress this knob further, smallest change first."""
        now = self.value(genome)
        if self.kind == "swap":
            return [] if now else [self.set(genome, True)]
        if self.kind == "keep":
            return [self.set(genome, v) for v in self.levels
                    if v < now and kept_channels(self.size, v) < kept_channels(self.size, now)]
        return [self.set(genome, v) for v in self.levels if v < now]


@dataclass(frozen=True)
class SearchSpace:
    """The knobs of one model (`read_space`)."""

    knobs: tuple[Knob, ...]

    def knob(self, kind: str, layer: str) -> Knob | None:
        return next((k for k in self.knobs if k.kind == kind and k.layer == layer), None)

    def check(self, genome: Genome, where: str = "the genome") -> None:
        """Raise a TfcompressError when `genome` names a layer or level the space does not have."""
        from tfcompress.errors import TfcompressError

        res = [(INPUT, genome.resolution)] if genome.resolution != 1.0 else []
        for kind, items in (("keep", genome.keep.items()), ("rank", genome.rank.items()),
                            ("swap", ((n, True) for n in genome.swap)), ("resolution", res)):
            for layer, value in items:
                knob = self.knob(kind, layer)
                if knob is None:
                    raise TfcompressError(f"{where}: '{layer}' is not a {kind} choice of this model",
                                          f"choices: {', '.join(k.layer for k in self.knobs if k.kind == kind) or 'none'}")
                if value not in knob.levels and value not in knob.accepts:
                    raise TfcompressError(f"{where}: {kind} {value!r} for '{layer}' is not one of {knob.levels}",
                                          "use one of the listed levels")

    def table(self) -> str:
        return "\n".join(f"{k.kind:5} {k.layer:30} size {k.size:6}  levels {k.levels}" for k in self.knobs)


def kept_channels(size: int, keep: float) -> int:
    """Channels a group of `size` keeps at `keep` (structured pruning's rounding: to 8, at least 8)."""
    n = int(round(int(math.floor(size * keep + 0.5)) / ROUND_TO)) * ROUND_TO
    return int(min(size, max(n, ROUND_TO)))


def _distinct_keep_levels(size: int, levels: tuple[float, ...]) -> tuple[float, ...]:
    """The levels that keep different channel counts (0.875 and 0.75 of 16 both keep 16 after rounding)."""
    out: list[float] = []
    seen: set[int] = set()
    for v in levels:
        n = kept_channels(size, v)
        if n not in seen:
            seen.add(n)
            out.append(v)
    return tuple(out)


def read_space(model: Any, *, keep_levels: tuple[float, ...] = KEEP_LEVELS, swaps: bool = True,
               rank_levels: tuple[float, ...] = RANK_LEVELS,
               resolution_levels: tuple[float, ...] = RESOLUTION_LEVELS) -> SearchSpace:
    """The knobs of a tf_keras model: prunable channel groups, swappable convs, factorable Dense layers, the
    input resolution."""
    from tfcompress.surgery.channels import analyze_channels

    analysis = analyze_channels(model)
    knobs: list[Knob] = []
    for g in analysis.groups:
        levels = _distinct_keep_levels(int(g.size), keep_levels)
        if g.prunable and len(levels) > 1:
            knobs.append(Knob("keep", g.producers[0], levels, int(g.size), tuple(keep_levels)))
    outputs = set(getattr(model, "output_names", None) or [])
    for layer in model.layers:
        cls = type(layer).__name__
        if swaps and cls == "Conv2D" and min(layer.kernel_size) >= 3 and int(layer.kernel.shape[2]) >= MIN_SWAP_IN \
                and tuple(layer.dilation_rate) == (1, 1) and getattr(layer, "groups", 1) == 1:
            knobs.append(Knob("swap", layer.name, (False, True), int(math.prod(layer.kernel.shape))))
        if len(rank_levels) > 1 and cls == "Dense" and layer.name not in outputs:
            n_in, n_out = (int(d) for d in layer.kernel.shape)
            if n_in * n_out >= MIN_RANK_PARAMS:
                knobs.append(Knob("rank", layer.name, tuple(rank_levels), min(n_in, n_out)))
    knobs.sort(key=lambda k: -k.size)
    knobs = knobs[:MAX_KNOBS]
    shapes = [tuple(t.shape) for t in model.inputs]
    if len(resolution_levels) > 1 and len(shapes) == 1 and len(shapes[0]) == 4 and None not in shapes[0][1:3] \
            and not any(type(layer).__name__ == "Flatten" for layer in model.layers):
        knobs.append(Knob("resolution", INPUT, tuple(resolution_levels), int(shapes[0][1])))
    order = ("resolution", "keep", "swap", "rank")
    return SearchSpace(tuple(sorted(knobs, key=lambda k: (order.index(k.kind), k.layer))))


def _names(names: list[str]) -> str:
    import re

    return "^(" + "|".join(re.escape(n) for n in sorted(names)) + ")$"


def genome_stages(genome: Genome, space: SearchSpace) -> list[dict[str, Any]]:
    """The structural recipe stages (file format, epochs 0) that build `genome` from the original model.

    Order: resolution, structured pruning (original layer names), then swaps of the pruned convs, then Dense
    factorisation. Each stage lists the changed layers in rules and skips every other layer.
    """
    genome = genome.normal()
    space.check(genome)
    stages: list[dict[str, Any]] = []
    if genome.resolution != 1.0:
        stages.append({"technique": "scale", "epochs": 0, "params": {"resolution": genome.resolution}})
    if genome.keep:
        rules: list[dict[str, Any]] = [
            {"match": {"name": _names([layer])}, "params": {"ratio": round(1.0 - keep, 6)}}
            for layer, keep in sorted(genome.keep.items())
        ]
        stages.append({"technique": "structured_prune", "epochs": 0,
                       "params": {"ratio": 0.0, "round_to": ROUND_TO, "min_fraction": 0.0, "min_channels": ROUND_TO},
                       "rules": rules})
    if genome.swap:
        stages.append({"technique": "swap", "epochs": 0, "params": {"target": "separable"},
                       "rules": [{"match": {"name": _names(list(genome.swap))}},
                                 {"match": {"name": ".*"}, "skip": True}]})
    if genome.rank:
        rules = []
        for layer, frac in sorted(genome.rank.items()):
            size = next(k.size for k in space.knobs if k.kind == "rank" and k.layer == layer)
            rules.append({"match": {"name": _names([layer])},
                          "params": {"rank": max(1, int(round(size * frac)))}})
        rules.append({"match": {"name": ".*"}, "skip": True})
        stages.append({"technique": "low_rank", "epochs": 0, "params": {"min_params": 0, "only_if_smaller": False},
                       "rules": rules})
    return stages


def genome_from_json(data: Mapping[str, Any]) -> Genome:
    """A genome from its JSON form (state files, best.json)."""
    return Genome.model_validate(dict(data)).normal()
