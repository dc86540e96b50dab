"""Hardware-aware search: per-layer compression of a model under a latency / size budget on a device.

    from tfcompress.search import search
    result = search("m.keras", "d.npz", device="host", latency_ms=1.0, output="out/")

Modules: `space` (knobs and genomes, genome -> recipe stages), `cost` (LUT-predicted cost of a
genome), `trial` (one short fine-tune, runs in any worker), `executors` (inline / local processes /
Ray), `strategies` (NetAdapt greedy, Optuna NSGA-II), `state` (resume), `front` (Pareto front, table,
PNG), `int4` (`--int4`: the size judged while searching, int4 layers of the result), `runner` (`search`).
"""

from tfcompress.search.runner import SearchResult, final_recipe, search
from tfcompress.search.settings import SearchSettings
from tfcompress.search.space import Genome, SearchSpace, read_space

__all__ = ["Genome", "SearchResult", "SearchSettings", "SearchSpace", "final_recipe", "read_space", "search"]
