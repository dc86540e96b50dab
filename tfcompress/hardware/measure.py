"""Time kernels on this machine: one-op int8 models in an edge bundle, timed by the device script's loop.

    selection = select_kernels([model, "m.tflite"])      # measurable keys, most frequent first
    measured = measure(selection.keys, [("m", content)], cache_dir="cache/", threads=1)
    measured.kernels, measured.models, measured.overhead_ms   # edge result records

There is one timing loop: `tfcompress.edge.edge_profile.run_bundle`, the script a
device runs. Here the same bundle (`write_bundle`, also what
`bundle.export_bundle` ships) is written to a temporary folder and that loop
runs in process, in batches, so that converting and timing alternate and
progress shows. Each measured kernel and whole model is written to the cache
folder as it completes (file name = content hash + runtime + threads): an
interrupted build resumes, and a build with other models times only new keys.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tfcompress.edge import edge_profile
from tfcompress._version import __version__
from tfcompress.edge.edge_profile import BUNDLE_SCHEMA, EdgeError
from tfcompress.errors import TfcompressError
from tfcompress.hardware.kernels import KernelKey, kernels_of, to_tflite
from tfcompress.hardware.ops import MEASURABLE_OPS, fresh_inputs, kernel_model
from tfcompress.hardware.schema import MAX_MS, parse_json, read_document

__all__ = ["OVERHEAD_KEY", "BATCH", "PASSES", "KernelSelection", "Timing", "Measured", "kernel_tflite", "kernel_tflites",
           "fastest", "fastest_ms", "overhead_model_bytes", "source_name", "select_kernels", "time_tflite", "time_tflites",
           "time_interpreters", "prepared", "data_dependent", "write_bundle", "measure"]

OVERHEAD_KEY = KernelKey(op="ADD", dtype="int8", in_shape=(1, 1, 1, 1), out_shape=(1, 1, 1, 1),
                         extra=(1, 1, 1, 1))
"""The near-empty model whose invoke time is the per-invoke overhead."""

BATCH = 16
"""Kernels converted, then timed, per bundle."""

PASSES = 2
"""Sweeps `build_profile` times every kernel and whole model in, minutes apart; each keeps its fastest sweep.

The rounds of one sweep lie seconds apart, and one 2-core VM ran through slow phases longer than that: the same
3x3 depthwise kernel measured 8.98 us in one cold build and 14.55 us (its three rounds within 0.34 us) in the next,
an 80x80x8 one 54 and 89 us; a LUT of such figures over-predicted MobileNet a0.25 by 22% (docs/latency.md). A
second sweep minutes later rarely meets the same phase, and the fastest figure is the machine's speed, as
`fastest` keeps for whole models."""

Progress = Callable[[int, int, KernelKey], None]


# ------------------------------------------------------------------ one-op models


def kernel_tflite(key: KernelKey) -> bytes:
    """The int8 .tflite of the one-op model of `key`."""
    from tfcompress.export.converter import convert_int8_random

    return convert_int8_random(kernel_model(key), what=f"the one-op model of {key.describe()}")


def overhead_model_bytes() -> bytes:
    """The int8 .tflite of `OVERHEAD_KEY` (one ADD of two 1-element tensors)."""
    return kernel_tflite(OVERHEAD_KEY)


def kernel_tflites(
    keys: Sequence[KernelKey], on_progress: Progress | None = None
) -> tuple[list[tuple[KernelKey, bytes]], list[tuple[KernelKey, str]]]:
    """(key, .tflite) of each key, and (key, why) of those the converter cannot reproduce."""
    done: list[tuple[KernelKey, bytes]] = []
    failed: list[tuple[KernelKey, str]] = []
    for n, key in enumerate(keys, 1):
        try:
            done.append((key, kernel_tflite(key)))
        except Exception as exc:  # noqa: BLE001 - a key the converter cannot reproduce is left to the regression
            failed.append((key, f"one-op model failed: {' '.join(str(exc).split())[:200]}"))
        if on_progress is not None:
            on_progress(n, len(keys), key)
    return done, failed


def source_name(source: Any, index: int) -> str:
    """A short name for a source model: the file name, the Keras model's name, else model<index>."""
    if isinstance(source, (str, os.PathLike)):
        return Path(source).name
    name = getattr(source, "name", None)
    return str(name) if isinstance(name, str) else f"model{index}"


@dataclass(frozen=True)
class KernelSelection:
    """The kernels of some sources: what can be timed, in measuring order, and what cannot."""

    keys: tuple[KernelKey, ...]  # measurable: most frequent first, then most MACs
    skipped: tuple[tuple[KernelKey, str], ...]  # (key, why it is not timed), same order


def select_kernels(sources: Iterable[Any]) -> KernelSelection:
    """Collect the kernel keys of `sources` (Keras models, .tflite bytes / paths, KernelKeys); split off the rest."""
    counts: Counter[KernelKey] = Counter()
    for src in sources:
        if isinstance(src, KernelKey):
            counts[src] += 1
        else:
            counts.update(u.key for u in kernels_of(to_tflite(src)))
    keys: list[KernelKey] = []
    skipped: list[tuple[KernelKey, str]] = []
    for k in sorted(counts, key=lambda k: (-counts[k], -k.macs, k)):
        if k.op not in MEASURABLE_OPS:
            skipped.append((k, f"no one-op model for {k.op}; predicted by regression"))
        elif k.dtype != "int8":
            skipped.append((k, f"computes in {k.dtype}; only int8 kernels are timed"))
        else:
            keys.append(k)
    return KernelSelection(tuple(keys), tuple(skipped))


# ------------------------------------------------------------------ timing


@dataclass(frozen=True)
class Timing:
    """One model timed under the protocol (`edge_profile.measure_interleaved`)."""

    median_ms: float  # median of the round medians
    mad_ms: float  # within-round noise (median of the rounds' MADs)
    runs: int  # kept after outlier rejection, all rounds
    spread_ms: float = 0.0  # run-to-run noise: range of the round medians
    rounds_ms: tuple[float, ...] = ()
    busy: bool = False  # other processes used the CPU while it was timed, even after retries
    p90_ms: float = 0.0
    mean_ms: float = 0.0


def _timing(m: edge_profile.Measurement) -> Timing:
    return Timing(m.median_ms, m.mad_ms, m.runs, m.spread_ms, tuple(m.rounds_ms), m.busy, m.p90_ms, m.mean_ms)


def resolver_of(profile: Any) -> str:
    """The LiteRT resolver a profile was measured with: "builtin" when its delegate is "none", else "default"."""
    return next((r for r, d in edge_profile.DELEGATES.items() if d == profile.delegate), "default")


def data_dependent(content: bytes) -> bool:
    """Whether a .tflite holds a kernel whose speed depends on the data (`ops.fresh_inputs`): it is timed on new
    inputs every invoke, as its kernels are."""
    return any(fresh_inputs(u.key) for u in kernels_of(content))


def prepared(content: bytes, *, threads: int = 1, seed: int = 0, resolver: str = "default") -> Any:
    """An allocated interpreter of `content` with seeded random inputs set (RuntimeError / ValueError: unusable);
    for a model with a data-dependent kernel (`data_dependent`), wrapped to set new inputs before every invoke
    (`edge_profile.FreshInputs`; the timing takes the setting off).

    `resolver`: "default" (XNNPACK delegate) or "builtin" (LiteRT's own kernels, no delegate)."""
    from tfcompress.runtime import make_interpreter

    interp = make_interpreter(content, num_threads=threads, resolver=resolver)
    edge_profile.fill_inputs(interp, seed)
    return edge_profile.FreshInputs(interp, seed) if data_dependent(content) else interp


def time_interpreters(
    interpreters: Sequence[Any], *, threads: int = 1, warmup: int = 10, runs: int = 50, budget_s: float = 0.5,
    rounds: int = edge_profile.ROUNDS, cpu: str | int | None = "auto", chunk: int = edge_profile.CHUNK,
    on_progress: Callable[[int, int], None] | None = None,
) -> list[Timing]:
    """Time prepared interpreters (inputs set) under the timing protocol: pinned, rounds interleaved per chunk."""
    out: list[Timing] = []
    for start in range(0, len(interpreters), chunk):
        with edge_profile.pinned(cpu, threads):
            got = edge_profile.measure_items(interpreters[start:start + chunk], rounds=rounds, warmup=warmup,
                                             runs=runs, budget_s=budget_s)
        out += [_timing(m) for m in got]
        if on_progress is not None:
            on_progress(len(out), len(interpreters))
    return out


def time_tflites(
    contents: Sequence[bytes], *, threads: int = 1, warmup: int = 10, runs: int = 50, budget_s: float = 0.5,
    rounds: int = edge_profile.ROUNDS, seed: int = 0, chunk: int = edge_profile.CHUNK, resolver: str = "default",
) -> list[Timing]:
    """invoke() times of .tflite models on random inputs, interleaved in chunks (the bundle loop's protocol).

    `resolver`: "default" (XNNPACK delegate) or "builtin" (LiteRT's own kernels; `resolver_of(profile)`).

    Raises:
        RuntimeError / ValueError: the runtime cannot prepare or run one of them.
    """
    return time_interpreters([prepared(c, threads=threads, seed=seed, resolver=resolver) for c in contents],
                             threads=threads,
                             warmup=warmup, runs=runs, budget_s=budget_s, rounds=rounds, chunk=chunk)


def time_tflite(
    content: bytes, *, threads: int = 1, warmup: int = 10, runs: int = 50, budget_s: float = 0.5, seed: int = 0,
    rounds: int = edge_profile.ROUNDS,
) -> Timing:
    """Median invoke() time of one .tflite on random inputs, under the timing protocol."""
    return time_tflites([content], threads=threads, warmup=warmup, runs=runs, budget_s=budget_s, rounds=rounds,
                        seed=seed)[0]


def fastest(contents: Sequence[bytes], *, times: int = 5, pause_s: float = 0.5, threads: int = 1,
            resolver: str = "default") -> list[tuple[float, tuple[float, ...], bool]]:
    """Per .tflite (fastest, all, busy): the models timed together (interleaved) `times` times, `pause_s` apart;
    each one's fastest median invoke() ms.

    One 2-core VM measured here ran the same model at 0.28 ms or 0.39 ms depending on the second (both modes seen
    within three timings a second apart, with nothing else running; 7 of 9 timings slow at another moment): a
    single timing, even interleaved, picks a mode by chance, and a flip in the middle of one distorts the ratio of
    two models by up to 1.4x. The fastest of several is the machine's speed, for each model alike.
    """
    figures: list[list[float]] = [[] for _ in contents]
    busy = [False] * len(contents)
    interpreters = [prepared(c, threads=threads, resolver=resolver) for c in contents]  # once: each timing warms up
    for i in range(max(1, times)):
        if i:
            time.sleep(pause_s)
        for j, t in enumerate(time_interpreters(interpreters, threads=threads)):
            figures[j].append(t.median_ms)
            busy[j] = busy[j] or t.busy
    return [(min(f), tuple(f), b) for f, b in zip(figures, busy)]


def fastest_ms(content: bytes, *, times: int = 5, pause_s: float = 0.5, threads: int = 1,
               resolver: str = "default") -> tuple[float, tuple[float, ...]]:
    """(fastest, all) median invoke() ms of one .tflite timed `times` times, `pause_s` apart (`fastest`)."""
    ms, figures, _ = fastest([content], times=times, pause_s=pause_s, threads=threads, resolver=resolver)[0]
    return ms, figures


# ------------------------------------------------------------------ bundles


def write_bundle(
    root: Path,
    kernels: Sequence[tuple[KernelKey, bytes]],
    models: Sequence[tuple[str, bytes]],
    *,
    overhead: bytes,
    threads: int = 1,
    command: str = "",
) -> dict[str, Any]:
    """Write bundle.json, models/ and edge_profile.py into the existing folder `root`; returns bundle.json."""
    folder = root / "models"
    folder.mkdir()
    listed = []
    for key, content in kernels:
        digest = key.digest()
        (folder / f"{digest}.tflite").write_bytes(content)
        entry = {"digest": digest, "file": f"models/{digest}.tflite", "key": key.to_json()}
        if fresh_inputs(key):
            entry["fresh_inputs"] = True
        listed.append(entry)
    whole = []
    for name, content in models:
        sha = hashlib.sha256(content).hexdigest()
        (folder / f"model-{sha[:16]}.tflite").write_bytes(content)
        keys = [u.key for u in kernels_of(content)]
        whole.append({"name": name, "sha256": sha, "file": f"models/model-{sha[:16]}.tflite",
                      "kernels": [k.to_json() for k in keys]})
        if any(fresh_inputs(k) for k in keys):  # timed as its data-dependent kernels are
            whole[-1]["fresh_inputs"] = True
    (folder / "overhead.tflite").write_bytes(overhead)
    bundle = {
        "schema": BUNDLE_SCHEMA,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "created_by": f"tfcompress {__version__}",
        "command": command,
        "threads": threads,
        "overhead_model": "models/overhead.tflite",
        "kernels": listed,
        "models": whole,
    }
    (root / "bundle.json").write_text(json.dumps(bundle, indent=1) + "\n")
    shutil.copyfile(edge_profile.__file__, root / "edge_profile.py")
    return bundle


# ------------------------------------------------------------------ measuring here


@dataclass(frozen=True)
class Measured:
    """What `measure` found, cached or timed now, as edge result records (docs/latency.md)."""

    runtime: str
    overhead_ms: float
    kernels: tuple[tuple[KernelKey, dict[str, Any]], ...]  # {digest, key, ms, runs, spread_ms, ...}, keys' order
    models: tuple[dict[str, Any], ...]  # {name, sha256, ms, runs, spread_ms, kernels, ...}, models' order
    cpus: tuple[int, ...] | None = None  # what the timing now was pinned to (None: not pinned, or all cached)

    @property
    def busy_items(self) -> int:
        """Kernels and models (cached ones included) timed while other processes used the CPU."""
        return sum(bool(r.get("busy")) for _, r in self.kernels) + sum(bool(m.get("busy")) for m in self.models)


def _cached(path: Path, *fields: str) -> dict[str, Any] | None:
    """A cache file's record when it has `fields`; None when it is missing or unusable (measured again).

    Unusable includes what would make a profile that does not load: a time that is not a finite number in
    0..MAX_MS, a run count that is not a non-negative integer, a file that is not a regular one or too large.
    """
    if not path.exists():
        return None
    try:
        record = parse_json(read_document(path, what="cache file", hint=""), where=str(path), hint="")
    except TfcompressError:
        return None
    if not (isinstance(record, dict) and all(f in record for f in fields)):
        return None
    for f in ("ms", "raw_ms", "spread_ms"):
        v = record.get(f, 0.0)
        if f in record and v is None and f == "raw_ms":
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= MAX_MS:
            return None
    runs = record.get("runs", 0)
    if isinstance(runs, bool) or not isinstance(runs, int) or not 0 <= runs <= 2**53:
        return None
    return record


def _write(path: Path, record: dict[str, Any]) -> None:
    from tfcompress.files import atomic_writer

    with atomic_writer(path, "w") as f:
        json.dump(record, f, indent=1)
        f.write("\n")


def _sweeps(record: dict[str, Any] | None) -> int:
    """Sweeps a cached record was timed in (records from before sweeps: 1)."""
    if record is None:
        return 0
    n = record.get("passes", 1)
    return n if isinstance(n, int) and not isinstance(n, bool) and 0 < n < 1000 else 1


def _fastest_sweep(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """`new` (one sweep's record) merged into `old`: the faster of the two, not-busy first; every sweep's ms kept."""
    if old is None:
        return {**new, "passes": 1, "sweeps_ms": [new["ms"]]}
    keep = min((old, new), key=lambda r: (bool(r.get("busy")), float(r["ms"])))
    return {**keep, "passes": _sweeps(old) + 1, "sweeps_ms": [*old.get("sweeps_ms", [old["ms"]]), new["ms"]]}


def measure(
    keys: Sequence[KernelKey],
    models: Sequence[tuple[str, bytes]] = (),
    *,
    cache_dir: str | os.PathLike[str],
    threads: int = 1,
    resolver: str = "default",
    time_budget_s: float | None = None,
    passes: int = 1,
    command: str = "",
    on_progress: Progress | None = None,
) -> Measured:
    """Time `keys` (one-op models) and `models` (name, .tflite) whole, reusing and filling the cache.

    Args:
        resolver: "default" (XNNPACK delegate) or "builtin" (LiteRT's own kernels); cached apart.
        passes: sweeps over all of them, one after the other; each keeps its fastest sweep (`PASSES`). A cached
            record remembers its sweeps: a resumed build times only what is left.
        time_budget_s: stop timing kernels after this many seconds (whole models are always timed).
        on_progress: called as (done, total, key) after each kernel timed now (cached ones are not).

    Raises:
        TfcompressError: no LiteRT runtime, or the bundle loop failed.
    """
    from tfcompress.runtime import runtime_version

    runtime = runtime_version()
    if resolver not in edge_profile.RESOLVERS:
        raise TfcompressError(f"unknown resolver {resolver!r}", f"use one of {', '.join(edge_profile.RESOLVERS)}")
    tag = f"{runtime.replace(' ', '_')}-t{threads}" + ("" if resolver == "default" else f"-{resolver}")
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    def kernel_file(key: KernelKey) -> Path:
        return cache / f"{key.digest()}-{tag}.json"

    def model_file(sha: str) -> Path:
        return cache / f"model-{sha[:24]}-{tag}.json"

    found = {k: r for k in keys if (r := _cached(kernel_file(k), "ms", "runs", "spread_ms")) is not None
             and (r.get("fresh_inputs") or not fresh_inputs(k))}  # timed on one fixed input before: again
    whole = [(name, content, hashlib.sha256(content).hexdigest()) for name, content in models]
    found_models: dict[str, dict[str, Any]] = {}
    for name, content, sha in whole:
        record = _cached(model_file(sha), "ms")
        if record is not None and not record.get("fresh_inputs") and data_dependent(content):
            record = None  # timed on one fixed input before: again
        if record is not None:
            if "kernels" not in record:  # caches written before bundles held only name and ms
                record["kernels"] = [u.key.to_json() for u in kernels_of(content)]
            found_models[sha] = {**record, "name": name, "sha256": sha}
    overhead_record = _cached(cache / f"overhead-{tag}.json", "ms")
    overhead = float(overhead_record["ms"]) if overhead_record else None
    passes = max(int(passes), 1)
    by_digest = {k.digest(): k for k in keys}
    total = sum(max(passes - _sweeps(found.get(k)), 0) for k in keys)
    timed = 0
    cpus: tuple[int, ...] | None = None

    def remember(kind: str, record: dict[str, Any]) -> None:
        nonlocal timed
        if kind == "kernel":
            key = by_digest[record["digest"]]
            found[key] = _fastest_sweep(found.get(key), record)
            _write(kernel_file(key), found[key])
            timed += 1
            if on_progress is not None:
                on_progress(timed, total, key)
        else:
            found_models[record["sha256"]] = _fastest_sweep(found_models.get(record["sha256"]), record)
            _write(model_file(record["sha256"]), found_models[record["sha256"]])

    def run(kernel_models: Sequence[tuple[KernelKey, bytes]], model_list: Sequence[tuple[str, bytes]],
            stop_after_s: float | None) -> None:
        nonlocal overhead, cpus
        with tempfile.TemporaryDirectory(dir=cache, prefix=".bundle-") as tmp:
            write_bundle(Path(tmp), kernel_models, model_list, overhead=overhead_model_bytes(), threads=threads,
                         command=command)
            try:
                result = edge_profile.run_bundle(tmp, Path(tmp) / edge_profile.RESULT_NAME, threads, resolver,
                                                 overhead_ms=overhead, stop_after_s=stop_after_s, on_result=remember)
            except EdgeError as exc:
                raise TfcompressError(exc.message, exc.hint) from None
        pinned_to = result.get("protocol", {}).get("cpus")
        cpus = tuple(pinned_to) if pinned_to else cpus
        if overhead is None:
            overhead = float(result["overhead_ms"])
            _write(cache / f"overhead-{tag}.json", {"ms": overhead})

    def left() -> float | None:
        return None if time_budget_s is None else time_budget_s - (time.perf_counter() - started)

    converted: dict[KernelKey, bytes] = {}  # one conversion per key, whatever the sweeps
    unconvertible: set[KernelKey] = set()
    for sweep in range(1, passes + 1):
        todo = [k for k in keys if _sweeps(found.get(k)) < sweep and k not in unconvertible]
        for i in range(0, len(todo), BATCH):
            if (budget := left()) is not None and budget <= 0:
                break
            batch = [k for k in todo[i:i + BATCH] if k not in converted]
            done, failed = kernel_tflites(batch)  # failed: left to the regression, as unmeasured
            converted.update(done)
            unconvertible.update(k for k, _ in failed)
            ready = [(k, converted[k]) for k in todo[i:i + BATCH] if k in converted]
            if ready and ((budget := left()) is None or budget > 0):
                run(ready, (), budget)
            if sweep == passes:  # timed for the last time: its model is no longer needed
                for k, _ in ready:
                    converted.pop(k, None)
        missing = [(name, content) for name, content, sha in whole if _sweeps(found_models.get(sha)) < sweep]
        if missing or overhead is None:
            run((), missing, None)
    assert overhead is not None
    return Measured(
        runtime=runtime,
        overhead_ms=overhead,
        kernels=tuple((k, found[k]) for k in keys if k in found),
        models=tuple(found_models[sha] for _, _, sha in whole if sha in found_models),
        cpus=cpus,
    )
