"""Build a device profile here: time the kernels of some models, then calibrate on the models whole.

    profile = build_profile([model, "m.tflite"], cache_dir="~/.cache/tfcompress/lut")

The timing is `measure.measure`: the kernels' one-op int8 models go into an
edge bundle that the device script's loop (`tfcompress.edge.edge_profile.run_bundle`)
times in process, so this machine is measured exactly as a device is. Each
measured key is cached as it completes (file name = the key's content hash +
runtime + threads), so an interrupted build resumes where it stopped. The
interpreter's per-invoke overhead, timed on a near-empty model, is subtracted
from each kernel and added back once per predicted model.

The source models are timed whole too (`Observation`s, cached the same way)
and the profile's calibration is fitted on them (`predict.calibrated`).
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from tfcompress.edge import edge_profile
from tfcompress.errors import TfcompressError
from tfcompress.hardware.kernels import KernelKey, to_tflite
from tfcompress.hardware.measure import PASSES, measure, resolver_of, select_kernels, source_name
from tfcompress.hardware.predict import calibrated
from tfcompress.hardware.profile import DeviceProfile, LutEntry, Observation, Provenance, checked

__all__ = ["METHOD", "build_profile"]

METHOD = (f"one-op int8 models, random calibration; pinned to the least busy CPU; warm-up {edge_profile.WARMUP}, "
          f"then {edge_profile.ROUNDS} rounds interleaved across {edge_profile.CHUNK} kernels, "
          f"<={edge_profile.RUNS} runs / {edge_profile.BUDGET_S} s in all; median of the round medians (each after "
          f"3-MAD rejection), spread = their range; rounds with other processes > {edge_profile.BUSY_CORES} cores or "
          f"steal > {edge_profile.BUSY_STEAL:.0%} retimed {edge_profile.BUSY_RETRIES} times, then marked busy; "
          f"empty-model overhead subtracted; {PASSES} sweeps over all kernels and models, minutes apart, the fastest "
          "kept; data-dependent kernels (RELU, RELU6) and models holding them on new random inputs every invoke, "
          "setting them not counted")
"""How `build_profile` measures (the profile's provenance)."""


def build_profile(
    sources: Iterable[Any],
    *,
    device: str = "host",
    cache_dir: str | os.PathLike[str],
    base: DeviceProfile | None = None,
    threads: int = 1,
    resolver: str | None = None,
    max_keys: int | None = None,
    time_budget_s: float | None = None,
    observe: bool = True,
    command: str = "",
    on_progress: Callable[[int, int, KernelKey], None] | None = None,
) -> DeviceProfile:
    """Build (or extend `base`) a profile by timing the kernels of `sources`.

    Args:
        sources: Keras models, .tflite bytes / paths, or KernelKeys. Models are
            converted to int8 first; their kernels are what gets timed.
        cache_dir: measured keys are stored here one file each, as they complete;
            a second call finds them and measures only the rest.
        max_keys / time_budget_s: stop early; the most frequent keys (then the
            most expensive, by MACs) are measured first.
        resolver: "default" (XNNPACK delegate) or "builtin" (LiteRT's own kernels, recorded as delegate
            "none"); default: `base`'s, else "default".
        observe: also time every source model whole, record it as an
            `Observation` and fit the profile's `Calibration` on all its
            observations (see `tfcompress.hardware.predict`).
        on_progress: called as (done, total, key) after each key timed now.
    """
    resolver = resolver or (resolver_of(base) if base is not None else "default")
    if resolver not in edge_profile.RESOLVERS:
        raise TfcompressError(f"unknown resolver {resolver!r}", f"use one of {', '.join(edge_profile.RESOLVERS)}")
    if base is not None and resolver_of(base) != resolver:
        raise TfcompressError(f"the base profile was measured with delegate {base.delegate!r}, not resolver {resolver!r}",
                              "latencies of another delegate do not mix: make a new profile (another -o)")
    named = [(source_name(src, i), src if isinstance(src, KernelKey) else to_tflite(src))
             for i, src in enumerate(sources)]
    have = base.table() if base is not None else {}
    todo = [k for k in select_kernels([c for _, c in named]).keys if k not in have]
    if max_keys is not None:
        todo = todo[:max_keys]
    models = [(name, c) for name, c in named if not isinstance(c, KernelKey)] if observe else []
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    measured = measure(todo, models, cache_dir=cache_dir, threads=threads, resolver=resolver,
                       time_budget_s=time_budget_s, passes=PASSES,
                       command=command, on_progress=on_progress)

    entries = [LutEntry(key, float(r["ms"]), int(r["runs"]), float(r["spread_ms"])) for key, r in measured.kernels]
    prov = Provenance(
        command=command,
        measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        host=f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus",
        method=METHOD,
        load_average=load,
        busy_items=measured.busy_items,
        cpus=measured.cpus,
    )
    profile = base or DeviceProfile(device=device, runtime=measured.runtime, threads=threads,
                                    delegate=edge_profile.DELEGATES[resolver])
    profile = replace(profile.with_entries(entries), overhead_ms=measured.overhead_ms, provenance=prov)
    if not observe:
        return checked(profile, f"the {device!r} profile")
    observed = [Observation(f"{r['name']}#{r['sha256'][:8]}", float(r["ms"]),
                            tuple(KernelKey.from_json(k) for k in r["kernels"])) for r in measured.models]
    return checked(calibrated(profile.with_observations(observed)), f"the {device!r} profile")
