"""What a genome costs on the target device, before any training: LUT-predicted latency, int8 size (and the
estimate with int4 weights where they may go), params.

`Predictor.cost(genome)` builds the genome's architecture (graph surgery, no training), converts it to
int8 on random calibration data (latency does not depend on the values) and asks the device profile's
`LatencyModel`. Results are cached by genome and can be preloaded from a saved search (resume).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Sequence

from pydantic import BaseModel, ConfigDict

from tfcompress.search.space import Genome, SearchSpace

__all__ = ["Cost", "Predictor", "compute_cost", "genome_cost"]


class Cost(BaseModel):
    """A genome's predicted cost on the device."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str
    predicted_ms: float
    int8_bytes: int
    int4_bytes: int  # estimate: int8_bytes less half the int8 weights of every op that may take int4 (int4_saving)
    params: int
    flops: int


def compute_cost(model: Any, genome: Genome, space: SearchSpace, latency: Any) -> tuple[Cost, bytes]:
    """Build the genome's architecture, convert it to int8 (random calibration) and predict it: (cost, .tflite)."""
    from tfcompress.export.converter import convert_int8_random
    from tfcompress.hardware.kernels import kernels_of
    from tfcompress.precision.auto import int4_saving
    from tfcompress.search.trial import build
    from tfcompress.surgery import count_flops

    built = build(model, genome, space, None)
    content = convert_int8_random(built, what=f"the search candidate {genome.describe()}")
    pred = latency.predict(kernels_of(content, [layer.name for layer in built.layers]))
    return Cost(key=genome.key(), predicted_ms=round(pred.total_ms, 5), int8_bytes=len(content),
                int4_bytes=len(content) - int4_saving(content), params=int(built.count_params()),
                flops=int(count_flops(built).flops)), content


class Predictor:
    """Predicted cost of genomes of one model on one device profile (cached).

    `costs(genomes)` computes the missing ones on the executor's workers (in parallel) when it has one.
    """

    def __init__(self, model: Any, space: SearchSpace, profile: Any,
                 on_cost: Callable[[Cost], None] | None = None, known: Mapping[str, Cost] | None = None,
                 executor: Any = None, assets: Any = None) -> None:
        from tfcompress.hardware.predict import LatencyModel
        from tfcompress.hardware.profile import resolve_profile

        self.model = model
        self.space = space
        self.latency = LatencyModel(profile if not isinstance(profile, str) else resolve_profile(profile))
        self._cache: dict[str, Cost] = dict(known or {})
        self._tflite: dict[str, bytes] = {}
        self._on_cost = on_cost
        self._executor = executor if executor is not None and getattr(executor, "workers", 1) > 1 else None
        self._assets = assets
        self.seconds = 0.0
        self.built = 0

    def _keep(self, c: Cost) -> None:
        self._cache[c.key] = c
        self.built += 1
        if self._on_cost is not None:
            self._on_cost(c)

    def costs(self, genomes: Sequence[Genome]) -> list[Cost]:
        """Costs of many genomes; the uncached ones in parallel on the executor (if any)."""
        todo = [g for g in dict.fromkeys(g.normal() for g in genomes) if g.key() not in self._cache]
        if len(todo) > 1 and self._executor is not None and self._assets is not None:
            t0 = time.perf_counter()
            self._executor.run(genome_cost, todo, self._assets, lambda _i, c: self._keep(c))
            self.seconds += time.perf_counter() - t0
        return [self.cost(g) for g in genomes]

    def cost(self, genome: Genome) -> Cost:
        got = self._cache.get(genome.key())
        if got is None:
            t0 = time.perf_counter()
            got, content = compute_cost(self.model, genome, self.space, self.latency)
            self._tflite = {genome.key(): content}  # only the latest: finalists ask right after
            self.seconds += time.perf_counter() - t0
            self._keep(got)
        return got

    def ms(self, genome: Genome) -> float:
        return self.cost(genome).predicted_ms

    def tflite(self, genome: Genome) -> bytes:
        """The genome's int8 architecture (random calibration): what finalists are timed with."""
        key = genome.key()
        if key not in self._tflite:
            _, content = compute_cost(self.model, genome, self.space, self.latency)
            self._tflite = {key: content}
        return self._tflite[key]


_LATENCY: dict[str, Any] = {}


def genome_cost(genome: Genome, assets: Any) -> Cost:
    """The genome's `Cost` on the assets' device profile, computed in a worker (`Predictor.costs`)."""
    from tfcompress.hardware.predict import LatencyModel
    from tfcompress.search.trial import loaded

    original, _ = loaded(assets)
    if assets.key not in _LATENCY:
        _LATENCY.clear()
        _LATENCY[assets.key] = LatencyModel(assets.profile)
    return compute_cost(original, genome, assets.space, _LATENCY[assets.key])[0]
