"""Time an edge bundle's one-op models with LiteRT (format: docs/latency.md, edge bundle).

    python3 DIR/edge_profile.py DIR [-o result.json] [--threads N] [--resolver default|builtin] [--device NAME]

The one timing loop of tfcompress. This file is copied into every bundle and
runs as a plain script on the device, so it imports only the standard library,
numpy and the LiteRT interpreter (`ai_edge_litert`, or `tflite_runtime` on old
images): never TensorFlow or tfcompress. Keep it Python 3.9 compatible. In
tfcompress it is the lowest layer: `tfcompress.runtime` takes its runtime and
resolver tables from here, and the desktop profiler (`tfcompress.hardware.measure`)
writes a bundle and calls `run_bundle` in process, so a kernel is timed the same
way on both sides. It is kept whole (over the ~500-line guideline) because a
device gets exactly this one file and nothing else.

The result is rewritten atomically after every kernel; running the same
command again skips the kernels already measured (resume after an interrupt).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import inspect
import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

BUNDLE_SCHEMA = "tfcompress.edge_bundle/1"
RESULT_SCHEMA = "tfcompress.edge_result/1"
RESULT_NAME = "result.json"

RUNTIMES: tuple[tuple[str, str], ...] = (
    ("ai_edge_litert.interpreter", "ai-edge-litert"),
    ("tflite_runtime.interpreter", "tflite-runtime"),
)
"""(interpreter module, pip package), the first importable one is used."""

RESOLVERS: dict[str, str] = {
    "default": "AUTO",  # builtin kernels + the default XNNPACK delegate
    "builtin": "BUILTIN_WITHOUT_DEFAULT_DELEGATES",  # optimized builtin kernels, no XNNPACK delegate
}
"""Resolver names users see -> OpResolverType member names."""

DELEGATES: dict[str, str] = {"default": "XNNPACK", "builtin": "none"}

WARMUP = 10
RUNS = 50
BUDGET_S = 0.5
MIN_RUNS = 7
CHUNK = 16
"""Items timed together in interleaved rounds (and saved together)."""
OVERHEAD_RUNS = 200
OVERHEAD_BUDGET_S = 0.3
OVERHEAD_REPEATS = 5

# An existing result is resumed only if it was measured in the same configuration.
_RESUME_FIELDS = ("bundle_sha256", "device", "machine", "runtime", "delegate", "threads")


class EdgeError(Exception):
    """A problem the user can fix (bad bundle, no runtime, unusable output): one line + a hint.

    The device-side twin of `tfcompress.errors.TfcompressError` (this file cannot import tfcompress).
    """

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(f"{message} ({hint})" if hint else message)
        self.message, self.hint = message, hint


# ------------------------------------------------------------------ runtime


def load_runtime() -> tuple[Any, str, str]:
    """(interpreter module, package, version) of the first importable LiteRT runtime.

    Raises:
        ImportError: neither ai-edge-litert nor tflite-runtime is installed.
    """
    from importlib import metadata

    for module_name, package in RUNTIMES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        try:
            version = metadata.version(package)
        except metadata.PackageNotFoundError:
            version = "unknown"
        return module, package, version
    raise ImportError("no LiteRT runtime: pip install ai-edge-litert")


def _resolver_kwargs(module: Any, resolver: str) -> dict[str, Any]:
    """`experimental_op_resolver_type=...` where this runtime has it (old ones may not)."""
    if resolver not in RESOLVERS:
        raise EdgeError(f"unknown resolver {resolver!r}", f"use one of {', '.join(RESOLVERS)}")
    types = getattr(module, "OpResolverType", None)
    member = getattr(types, RESOLVERS[resolver], None) if types is not None else None
    try:
        accepted = "experimental_op_resolver_type" in inspect.signature(module.Interpreter).parameters
    except (TypeError, ValueError):  # a signature inspect cannot read: trust OpResolverType
        accepted = types is not None
    if member is not None and accepted:
        return {"experimental_op_resolver_type": member}
    if resolver != "default":
        raise EdgeError(f"this LiteRT runtime cannot select the {resolver!r} op resolver",
                        "upgrade it (pip install -U ai-edge-litert) or use --resolver default")
    return {}


def create_interpreter(module: Any, content: bytes, *, num_threads: int = 1, resolver: str = "default") -> Any:
    """An allocated `module.Interpreter` for .tflite bytes (resolver: a key of RESOLVERS)."""
    interpreter = module.Interpreter(model_content=content, num_threads=num_threads,
                                     **_resolver_kwargs(module, resolver))
    interpreter.allocate_tensors()
    return interpreter


@contextlib.contextmanager
def _quiet_native(enabled: bool = True) -> Iterator[None]:
    """Hide what the native runtime prints on fd 2 ("INFO: Created TensorFlow Lite XNNPACK delegate...")."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


# ------------------------------------------------------------------ timing


def fill_inputs(interpreter: Any, seed: int) -> None:
    """Set every input to random values from `numpy.random.default_rng(seed)`.

    PCG64 is platform independent, so the same seed gives the same inputs on
    every machine (needed for the cross-platform output check).
    """
    rng = np.random.default_rng(seed)
    for d in interpreter.get_input_details():
        interpreter.set_tensor(d["index"], _random_input(rng, d))


def _random_input(rng: np.random.Generator, detail: dict[str, Any]) -> np.ndarray:
    """Random values for one input: uniform over an integer type's range, 0 / 1 for booleans, normal for floats."""
    dt = np.dtype(detail["dtype"])
    shape = tuple(int(s) for s in detail["shape"])
    if dt == np.bool_:
        return rng.integers(0, 1, size=shape, endpoint=True).astype(dt)
    if np.issubdtype(dt, np.integer):
        info = np.iinfo(dt)
        return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dt)
    return rng.standard_normal(shape).astype(dt)


FRESH_ELEMENTS = 1 << 20
"""Input elements a `FreshInputs` pool holds at least (4 to 64 distinct inputs): more than a CPU's branch predictor
learns over repeated invokes."""


class FreshInputs:
    """An interpreter whose every `invoke()` first sets the next of a pool of random inputs (`set_only`: only sets).

    For kernels whose speed depends on the data (`fresh_inputs` in a bundle entry): LiteRT's int8 RELU branches on
    each element, and timed on one fixed input a CPU's branch predictor learns it: a 24x24x32 ReLU took 3.2 ns an
    element on its fixed input, 8.0 on new inputs every invoke, as it does inside a model (docs/latency.md). The
    pool's set_tensor cost is timed alone (`set_only`) and subtracted by the caller.
    """

    def __init__(self, interpreter: Any, seed: int, *, set_only: bool = False,
                 pool: list[list[tuple[int, np.ndarray]]] | None = None) -> None:
        self.interpreter, self.set_only, self._next = interpreter, set_only, 0
        if pool is None:
            details = interpreter.get_input_details()
            per_input = max(sum(int(np.prod(d["shape"])) for d in details), 1)
            size = int(min(max(-(-FRESH_ELEMENTS // per_input), 4), 64))
            rng = np.random.default_rng(seed)
            pool = [[(int(d["index"]), _random_input(rng, d)) for d in details] for _ in range(size)]
        self.pool = pool

    def setter(self) -> FreshInputs:
        """The set-only twin: sets the same pool's inputs, invokes nothing (its time is subtracted)."""
        return FreshInputs(self.interpreter, 0, set_only=True, pool=self.pool)

    def invoke(self) -> None:
        for index, x in self.pool[self._next]:
            self.interpreter.set_tensor(index, x)
        self._next = (self._next + 1) % len(self.pool)
        if not self.set_only:
            self.interpreter.invoke()

    def __getattr__(self, name: str) -> Any:  # everything else is the interpreter's
        if name == "interpreter":
            raise AttributeError(name)
        return getattr(self.interpreter, name)


def invoke_times(interpreter: Any, warmup: int = WARMUP, runs: int = RUNS, budget_s: float = BUDGET_S,
                 min_runs: int = MIN_RUNS) -> list[float]:
    """ms of up to `runs` timed `invoke()`s after `warmup` untimed ones, stopping after `budget_s` once `min_runs` are done."""
    for _ in range(warmup):
        interpreter.invoke()
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(times) < runs and (len(times) < min_runs or time.perf_counter() < deadline):
        t0 = time.perf_counter()
        interpreter.invoke()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def robust_median(times: Sequence[float]) -> tuple[float, float, int]:
    """(median, MAD, count kept) after 3-MAD outlier rejection; the MAD is scaled by 1.4826 (sigma for normal noise)."""
    arr = np.asarray(times, dtype=float)
    med = float(np.median(arr))
    mad = float(np.median(np.abs(arr - med))) * 1.4826
    kept = arr[np.abs(arr - med) <= 3 * mad + 1e-9] if mad > 0 else arr
    return float(np.median(kept)), mad, int(kept.size)


def time_invoke(
    interpreter: Any, warmup: int = WARMUP, runs: int = RUNS, budget_s: float = BUDGET_S
) -> tuple[float, float, int]:
    """(median ms, MAD ms, runs kept) of `invoke()` after 3-MAD outlier rejection (one round, no interleaving)."""
    return robust_median(invoke_times(interpreter, warmup, runs, budget_s))


def time_overhead(interpreter: Any, warmup: int = WARMUP, repeats: int = OVERHEAD_REPEATS) -> float:
    """Per-invoke overhead in ms: the best of `repeats` medians of the near-empty model."""
    return min(time_invoke(interpreter, warmup, OVERHEAD_RUNS, OVERHEAD_BUDGET_S)[0] for _ in range(repeats))


# ------------------------------------------------------------------ the timing protocol
#
# Every latency tfcompress reports is measured this way (kernels, whole models, the edge script, verification):
# the process is pinned to the least busy CPU(s) where the OS allows; each item gets `warmup` untimed invokes,
# then is timed in ROUNDS rounds that interleave with the other items of its chunk, so that a disturbance lasting
# a second hits one round of several items instead of every run of one; an item's figure is the median of its
# round medians (each a median after 3-MAD rejection) and its spread the range of those round medians (the
# run-to-run noise floor). Around every round the machine's CPU use by other processes (and hypervisor steal) is
# read from /proc/stat; a busy round is measured again (BUSY_RETRIES times) and, if the machine stays busy, the
# items are marked `busy` so that callers print a warning instead of a figure.

ROUNDS = 3
BUSY_CORES = 0.3
"""Other processes using more than this many cores during a round make it busy."""
BUSY_STEAL = 0.05
"""Hypervisor steal above this share of CPU time makes a round busy."""
BUSY_RETRIES = 2
BUSY_WAIT_S = 0.5
"""Wait before the first retry of a busy round (doubled before the second): bursts of a second or two pass."""
REWARM = 3
"""Untimed invokes before each round after the first (other items ran in between)."""


def _proc_stat() -> tuple[float, float, float] | None:
    """(busy, steal, total) CPU seconds of the whole machine since boot from /proc/stat; None where unreadable."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if len(fields) < 9 or fields[0] != "cpu":
        return None
    try:
        user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    except ValueError:
        return None
    tick = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0
    busy = user + nice + system + irq + softirq
    return busy / tick, steal / tick, (busy + idle + iowait + steal) / tick


class LoadMeter:
    """CPU use by other processes (in cores) and the steal share between `start()` and `stop()`."""

    def start(self) -> None:
        t = os.times()
        self._wall, self._own, self._stat = time.perf_counter(), t.user + t.system, _proc_stat()

    def stop(self) -> tuple[float | None, float | None]:
        """(other processes' cores, steal share); (None, None) where /proc/stat cannot be read."""
        t = os.times()
        after, wall = _proc_stat(), time.perf_counter() - self._wall
        if after is None or self._stat is None or wall <= 0:
            return None, None
        busy, steal, total = (a - b for a, b in zip(after, self._stat))
        own = t.user + t.system - self._own
        other = max(busy - own, 0.0) / wall
        return round(other, 3), round(steal / total, 4) if total > 0 else 0.0


def is_busy(other_cores: float | None, steal: float | None) -> bool:
    return (other_cores is not None and other_cores > BUSY_CORES) or (steal is not None and steal > BUSY_STEAL)


def _least_busy_cpus(allowed: Sequence[int], n: int, sample_s: float = 0.1) -> list[int]:
    """The `n` allowed CPUs that were least busy over `sample_s` (per-CPU lines of /proc/stat)."""
    def per_cpu() -> dict[int, tuple[int, int]]:
        out: dict[int, tuple[int, int]] = {}
        try:
            with open("/proc/stat") as f:
                for line in f:
                    parts = line.split()
                    if len(parts) >= 9 and parts[0].startswith("cpu") and parts[0][3:].isdigit():
                        vals = [int(v) for v in parts[1:9]]
                        out[int(parts[0][3:])] = (vals[3] + vals[4], sum(vals))
        except (OSError, ValueError):
            pass
        return out

    a = per_cpu()
    time.sleep(sample_s)
    b = per_cpu()

    def busy(cpu: int) -> float:
        if cpu not in a or cpu not in b or b[cpu][1] == a[cpu][1]:
            return 0.0
        return 1.0 - (b[cpu][0] - a[cpu][0]) / (b[cpu][1] - a[cpu][1])

    return sorted(allowed, key=lambda c: (busy(c), -c))[:n]


@contextlib.contextmanager
def pinned(cpu: str | int | None, threads: int = 1) -> Iterator[list[int] | None]:
    """Pin this process to CPUs for the block: "auto" (the `threads` least busy), a CPU number, or None (no pinning).

    Yields the CPUs pinned to, or None where the OS has no affinity call (macOS) or pinning was not asked for.
    The previous affinity is restored afterwards.
    """
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        yield None
        return
    before = sorted(os.sched_getaffinity(0))
    if cpu == "auto":
        chosen = _least_busy_cpus(before, max(threads, 1))
    else:
        if int(cpu) not in before:
            raise EdgeError(f"CPU {cpu} is not available to this process (allowed: {before})",
                            "pass --cpu auto, --cpu none or one of the allowed CPUs")
        chosen = [int(cpu)]
    try:
        os.sched_setaffinity(0, chosen)
    except OSError:
        yield None
        return
    try:
        yield chosen
    finally:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, before)


class Measurement:
    """One item's timing under the protocol: median of round medians and the run-to-run spread."""

    __slots__ = ("median_ms", "spread_ms", "mad_ms", "runs", "rounds_ms", "busy", "other_cores", "p90_ms", "mean_ms",
                 "fresh_inputs", "set_ms")

    def __init__(self, rounds_ms: list[float], mads: list[float], runs: int, all_ms: list[float], busy: bool,
                 other_cores: float | None) -> None:
        self.rounds_ms = [round(v, 6) for v in rounds_ms]
        self.median_ms = float(np.median(rounds_ms))
        self.spread_ms = float(max(rounds_ms) - min(rounds_ms)) if len(rounds_ms) > 1 else float(mads[0])
        self.mad_ms = float(np.median(mads))
        self.runs = runs
        self.busy = busy
        self.other_cores = other_cores
        self.p90_ms = float(np.percentile(all_ms, 90))
        self.mean_ms = float(np.mean(all_ms))
        self.fresh_inputs, self.set_ms = 0, 0.0

    def less_setting(self, pool: int, set_ms: float) -> Measurement:
        """This measurement of a `FreshInputs` item with the cost of setting its inputs (`set_ms`) taken off."""
        self.rounds_ms = [round(max(v - set_ms, 0.0), 6) for v in self.rounds_ms]
        self.median_ms = max(self.median_ms - set_ms, 0.0)
        self.p90_ms, self.mean_ms = max(self.p90_ms - set_ms, 0.0), max(self.mean_ms - set_ms, 0.0)
        self.fresh_inputs, self.set_ms = pool, set_ms
        return self


def measure_interleaved(
    interpreters: Sequence[Any],
    *,
    rounds: int = ROUNDS,
    warmup: int = WARMUP,
    runs: int = RUNS,
    budget_s: float = BUDGET_S,
    retries: int = BUSY_RETRIES,
) -> list[Measurement]:
    """Time each interpreter under the protocol: `rounds` interleaved rounds of about runs/rounds invokes each.

    `runs` (at most, all rounds) and `budget_s` are per item, shared between its rounds; a round stops at its
    share of the budget once it has max(MIN_RUNS // rounds, 2) invokes. A round during which other processes used
    more than BUSY_CORES cores (or steal exceeded BUSY_STEAL) is timed again up to `retries` times.
    """
    rounds = max(min(int(rounds), int(runs)), 1)  # each round times at least one invoke; all of them <= runs
    per_runs = [runs // rounds + (r < runs % rounds) for r in range(rounds)]
    min_runs = max(MIN_RUNS // rounds, 2)  # before the budget may stop a round: >= MIN_RUNS over the rounds
    per_budget = budget_s / rounds
    n = len(interpreters)
    medians: list[list[float]] = [[] for _ in range(n)]
    mads: list[list[float]] = [[] for _ in range(n)]
    kept: list[int] = [0] * n
    every: list[list[float]] = [[] for _ in range(n)]
    busy_any = [False] * n
    worst: list[float | None] = [None] * n
    meter = LoadMeter()
    for r in range(rounds):
        for attempt in range(retries + 1):
            meter.start()
            got = [invoke_times(it, warmup if r == 0 and attempt == 0 else REWARM, per_runs[r], per_budget,
                                min(min_runs, per_runs[r])) for it in interpreters]
            other, steal = meter.stop()
            busy = is_busy(other, steal)
            if not busy or attempt == retries:
                break
            time.sleep(BUSY_WAIT_S * 2 ** attempt)  # let a burst of other work pass
        for i, times in enumerate(got):
            med, mad, k = robust_median(times)
            medians[i].append(med)
            mads[i].append(mad)
            kept[i] += k
            every[i].extend(times)
            busy_any[i] = busy_any[i] or busy
            if other is not None:
                worst[i] = other if worst[i] is None else max(worst[i], other)
    return [Measurement(medians[i], mads[i], kept[i], every[i], busy_any[i], worst[i]) for i in range(n)]


def measure_items(items: Sequence[Any], **kwargs: Any) -> list[Measurement]:
    """`measure_interleaved` (same arguments) where a `FreshInputs` item is timed beside its set-only twin, whose
    median is taken off its figures (`Measurement.less_setting`): what is left is the model's, not set_tensor's."""
    fresh = [i for i, it in enumerate(items) if isinstance(it, FreshInputs)]
    got = measure_interleaved([*items, *(items[i].setter() for i in fresh)], **kwargs)
    for k, i in enumerate(fresh):
        got[i] = got[i].less_setting(len(items[i].pool), got[len(items) + k].median_ms)
    return got[:len(items)]


def output_sha256(interpreter: Any) -> str:
    """sha256 of the concatenated bytes of all outputs (call after `invoke()`)."""
    h = hashlib.sha256()
    for d in interpreter.get_output_details():
        h.update(np.ascontiguousarray(interpreter.get_tensor(d["index"])).tobytes())
    return h.hexdigest()


# ------------------------------------------------------------------ bundle


def read_bundle(bundle_dir: str | os.PathLike[str]) -> tuple[dict[str, Any], str]:
    """(bundle.json, sha256 of its bytes), validated.

    Raises:
        EdgeError: the folder or its bundle.json is missing or not an edge bundle.
    """
    root = Path(bundle_dir)
    hint = "give the folder written by the desktop's bundle export"
    if not root.is_dir():
        raise EdgeError(f"bundle folder {root} does not exist" if not root.exists()
                        else f"{root} is not a folder", hint)
    path = root / "bundle.json"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise EdgeError(f"{root} has no bundle.json: not an edge bundle", hint) from None
    except OSError as exc:
        raise EdgeError(f"cannot read {path}: {exc.strerror or exc}", hint) from None
    try:
        bundle = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EdgeError(f"{path} is not valid JSON: {exc}", "export the bundle again") from None
    if not isinstance(bundle, dict) or bundle.get("schema") != BUNDLE_SCHEMA:
        schema = bundle.get("schema") if isinstance(bundle, dict) else None
        raise EdgeError(f"{path} is not an edge bundle (schema {schema!r}, expected {BUNDLE_SCHEMA!r})", hint)
    problem = _bundle_problem(bundle, root)
    if problem:
        raise EdgeError(f"{path} is malformed: {problem}", "export the bundle again")
    return bundle, hashlib.sha256(raw).hexdigest()


def _bundle_problem(bundle: dict[str, Any], root: Path) -> str:
    """What is wrong with a bundle.json of the right schema ('' when nothing)."""
    kernels = bundle.get("kernels")
    if not isinstance(kernels, list):
        return "'kernels' is not a list"
    for i, k in enumerate(kernels):
        if not (isinstance(k, dict) and isinstance(k.get("digest"), str) and isinstance(k.get("file"), str)
                and isinstance(k.get("key"), dict) and isinstance(k["key"].get("op"), str)):
            return f"kernels[{i}] needs a digest, a file and a key with an op"
        try:
            int(k["digest"][:8], 16)
        except ValueError:
            return f"kernels[{i}] digest {k['digest']!r} is not hexadecimal"
    overhead = bundle.get("overhead_model")
    if not isinstance(overhead, str) or not (root / overhead).is_file():
        return f"overhead model {overhead!r} is missing"
    threads = bundle.get("threads", 1)
    if not isinstance(threads, int) or threads < 1:
        return f"threads {threads!r} is not a positive integer"
    return ""


def describe_key(key: dict[str, Any]) -> str:
    """'CONV_2D 16x16x8->16x16x16 k3x3 s1 SAME RELU6', 'MUL 8x8x16,1x1x16->8x8x16' from a KernelKey's JSON."""
    def dims(shape: Any) -> str:
        return "x".join(str(d) for d in list(shape or [])[1:]) or "scalar"

    operands = dims(key.get("in_shape")) + (f",{dims(key['extra'])}" if key.get("extra") else "")
    parts = [str(key.get("op", "?")), f"{operands}->{dims(key.get('out_shape'))}"]
    kernel, stride = key.get("kernel") or [0, 0], key.get("stride") or [0, 0]
    if any(kernel):
        parts.append(f"k{kernel[0]}x{kernel[1]} s{stride[0]} {key.get('padding', '')}".strip())
    if key.get("activation"):
        parts.append(str(key["activation"]))
    return " ".join(parts)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__


def _write_json_atomic(path: Path, obj: Any) -> None:
    """Temp file in the same folder + os.replace: readers never see half a file."""
    fd, tmp = tempfile.mkstemp(dir=str(path.parent), prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, str(path))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _previous_result(out: Path, header: dict[str, Any]) -> dict[str, Any] | None:
    """The existing result at `out` to resume, None when there is none.

    Raises:
        EdgeError: `out` holds something else (another bundle, device or setting):
            it is not overwritten, since it may be a measurement made elsewhere.
    """
    if not out.exists():
        return None
    hint = "pass -o NEW.json, or delete it to measure again"
    try:
        old = json.loads(out.read_text())
    except (OSError, ValueError) as exc:
        raise EdgeError(f"{out} exists and is not readable JSON ({_one_line(exc)})", hint) from None
    if not isinstance(old, dict) or old.get("schema") != RESULT_SCHEMA or not isinstance(old.get("kernels"), list):
        raise EdgeError(f"{out} exists and is not an edge result", hint)
    for field in _RESUME_FIELDS:
        if old.get(field) != header[field]:
            raise EdgeError(f"{out} holds a result for another run ({field} {old.get(field)!r}, "
                            f"this run {header[field]!r})", hint)
    return old


def run_bundle(
    bundle_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str] | None = None,
    threads: int | None = None,
    resolver: str = "default",
    device: str | None = None,
    *,
    cpu: str | int | None = "auto",
    **kwargs: Any,
) -> dict[str, Any]:
    """Time every kernel and model of a bundle under the timing protocol; returns the result (also written).

    Args:
        bundle_dir: the folder with bundle.json.
        out_path: the result file (default DIR/result.json). Rewritten after
            every chunk of kernels; an existing one of the same bundle and setting is resumed.
        threads: interpreter threads (default: the bundle's).
        resolver: "default" (XNNPACK) or "builtin" (no delegate).
        device: the device name stored in the result (default: the host name).
        cpu: pin to the least busy CPU(s) ("auto"), to one CPU (a number), or not at all (None).
        kwargs: warmup, runs, budget_s (per item, shared by its rounds), rounds, command, log,
            quiet_native, overhead_ms, stop_after_s, on_result: see `_run_bundle`.

    Raises:
        EdgeError: bad bundle, no runtime, or an output that belongs to another run.
    """
    bundle = read_bundle(bundle_dir)
    n = threads if threads is not None else bundle[0].get("threads", 1)
    with pinned(cpu, max(int(n), 1)) as cpus:
        return _run_bundle(bundle_dir, bundle, out_path, threads, resolver, device, cpus=cpus, **kwargs)


def _run_bundle(
    bundle_dir: str | os.PathLike[str],
    read: tuple[dict[str, Any], str],
    out_path: str | os.PathLike[str] | None = None,
    threads: int | None = None,
    resolver: str = "default",
    device: str | None = None,
    *,
    warmup: int = WARMUP,
    runs: int = RUNS,
    budget_s: float = BUDGET_S,
    rounds: int = ROUNDS,
    cpus: list[int] | None = None,
    command: str = "",
    log: Callable[[str], None] | None = None,
    quiet_native: bool = True,
    overhead_ms: float | None = None,
    stop_after_s: float | None = None,
    on_result: Callable[[str, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """`run_bundle` after pinning (see it for the positional arguments; `read` is `read_bundle(bundle_dir)`).

    Args:
        warmup / runs / budget_s: per item; runs and budget are shared between its `rounds` interleaved rounds.
        cpus: the CPUs the process is pinned to (recorded in the result's protocol).
        log: receives one progress line per item.
        quiet_native: hide the runtime's own log lines.
        overhead_ms: the per-invoke overhead when it is already known (the desktop
            profiler times it once per cache); None: time it on the overhead model.
        stop_after_s: stop once this many seconds have passed (what was measured is saved).
        on_result: called as ("kernel" | "model", record) after each kernel or model is measured.
    """
    say = log or (lambda line: None)
    root = Path(bundle_dir)
    bundle, bundle_sha = read  # read_bundle(bundle_dir), read once by run_bundle
    out = Path(out_path) if out_path is not None else root / RESULT_NAME
    if not out.parent.is_dir():
        raise EdgeError(f"output folder {out.parent} does not exist", "create it or pass another -o")
    try:
        module, package, version = load_runtime()
    except ImportError:
        raise EdgeError("no LiteRT runtime installed",
                        "pip install ai-edge-litert (or tflite-runtime on old systems)") from None
    threads = int(bundle.get("threads", 1)) if threads is None else int(threads)
    if threads < 1:
        raise EdgeError(f"--threads {threads} is not a positive number", "use --threads 1 or more")
    _resolver_kwargs(module, resolver)  # an unusable resolver fails before any timing

    def make(content: bytes) -> Any:
        with _quiet_native(quiet_native):
            return create_interpreter(module, content, num_threads=threads, resolver=resolver)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    result: dict[str, Any] = {
        "schema": RESULT_SCHEMA,
        "bundle_sha256": bundle_sha,
        "device": device or platform.node() or "unknown",
        "machine": platform.machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "runtime": f"{package} {version}",
        "delegate": DELEGATES[resolver],
        "threads": threads,
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "load_average": round(load, 2) if load is not None else None,
        "protocol": {"rounds": rounds, "cpus": cpus, "busy_cores": BUSY_CORES, "busy_steal": BUSY_STEAL},
        "busy_items": 0,
        "overhead_ms": 0.0,
        "kernels": [],
        "models": [],
        "failed": [],
    }
    kernels: list[dict[str, Any]] = bundle["kernels"]
    models: list[dict[str, Any]] = bundle.get("models", [])  # whole models: the profile's calibration
    old = _previous_result(out, result)
    done: dict[str, dict[str, Any]] = {}
    done_models: dict[str, dict[str, Any]] = {}
    if old is not None:
        result.update({k: old[k] for k in ("measured_at", "command", "load_average", "overhead_ms") if k in old})
        wanted = {k["digest"] for k in kernels}
        done = {k["digest"]: k for k in old["kernels"] if isinstance(k, dict) and k.get("digest") in wanted}
        wanted_models = {m["sha256"] for m in models}
        done_models = {m["sha256"]: m for m in old.get("models", [])
                       if isinstance(m, dict) and m.get("sha256") in wanted_models}
        say(f"resuming {out}: {len(done)} of {len(kernels)} kernels measured before")
    elif overhead_ms is not None:
        result["overhead_ms"] = float(overhead_ms)
    else:
        say(f"{len(kernels)} kernels, {result['runtime']}, delegate {result['delegate']}, "
            f"{threads} thread(s) -> {out}")
        try:
            interp = make((root / bundle["overhead_model"]).read_bytes())
            fill_inputs(interp, 0)
            result["overhead_ms"] = time_overhead(interp, warmup)
        except EdgeError:
            raise
        except Exception as exc:  # noqa: BLE001 - the runtime raises ValueError, RuntimeError, ...
            raise EdgeError(f"cannot run the overhead model: {_one_line(exc)}",
                            "check the LiteRT installation (python3 -c 'import ai_edge_litert')") from None
        say(f"per-invoke overhead {result['overhead_ms']:.4f} ms")
    overhead = float(result["overhead_ms"])

    measured: dict[str, dict[str, Any]] = dict(done)
    measured_models: dict[str, dict[str, Any]] = dict(done_models)
    failed: dict[str, str] = {}

    def save() -> None:
        result["kernels"] = [measured[k["digest"]] for k in kernels if k["digest"] in measured]
        result["models"] = [measured_models[m["sha256"]] for m in models if m["sha256"] in measured_models]
        result["failed"] = [{"digest": k["digest"], "error": failed[k["digest"]]}
                            for k in kernels if k["digest"] in failed]
        result["failed"] += [{"digest": m["sha256"], "error": failed[m["sha256"]]}
                             for m in models if m["sha256"] in failed]
        try:
            _write_json_atomic(out, result)
        except OSError as exc:
            raise EdgeError(f"cannot write {out}: {exc.strerror or exc}", "check free space and permissions") from None

    work = [(e["digest"], f"[{n}/{len(kernels)}] {describe_key(e['key'])}", e, measured)
            for n, e in enumerate(kernels, 1)]
    work += [(e["sha256"], f"[model {n}/{len(models)}] {e['name']}", e, measured_models)
             for n, e in enumerate(models, 1)]
    work = [w for w in work if w[0] not in w[3]]
    stop_at = None if stop_after_s is None else time.perf_counter() + stop_after_s
    for start in range(0, len(work), CHUNK):
        if stop_at is not None and time.perf_counter() > stop_at:
            say("time budget spent: stopping (run again to measure the rest)")
            break
        ready = []
        for ident, what, entry, into in work[start:start + CHUNK]:
            try:
                interp = make((root / entry["file"]).read_bytes())
                fill_inputs(interp, int(ident[:8], 16))  # inputs seeded by the digest: the same on every device
                interp.invoke()
                sha = output_sha256(interp)
                if entry.get("fresh_inputs") is True:  # data-dependent kernel: new inputs every invoke
                    interp = FreshInputs(interp, int(ident[:8], 16))
                ready.append((ident, what, entry, into, interp, sha))
            except EdgeError:
                raise
            except Exception as exc:  # noqa: BLE001 - one broken kernel or model must not stop the run
                failed[ident] = _one_line(exc)
                say(f"{what} FAILED: {failed[ident]}")
        try:
            timings = measure_items([r[4] for r in ready], rounds=rounds, warmup=warmup, runs=runs, budget_s=budget_s)
        except Exception as exc:  # noqa: BLE001 - an invoke that fails only when timed: the chunk's items fail
            timings = []
            for ident, what, *_ in ready:
                failed[ident] = _one_line(exc)
                say(f"{what} FAILED: {failed[ident]}")
        for (ident, what, entry, into, _, sha), m in zip(ready, timings):
            record = {"ms": m.median_ms, "runs": m.runs, "spread_ms": m.spread_ms, "mad_ms": m.mad_ms,
                      "rounds_ms": m.rounds_ms, "busy": m.busy, "other_cores": m.other_cores, "output_sha256": sha}
            if m.fresh_inputs:  # timed on new inputs every invoke, setting them not counted
                record.update(fresh_inputs=m.fresh_inputs, set_ms=round(m.set_ms, 6))
            if into is measured:  # a kernel: the per-invoke overhead is subtracted
                into[ident] = {"digest": ident, "key": entry["key"], **record,
                               "ms": max(m.median_ms - overhead, 0.0), "raw_ms": m.median_ms}
            else:  # a whole model: its latency includes the per-invoke overhead
                into[ident] = {"name": entry["name"], "sha256": ident, **record, "kernels": entry["kernels"]}
            result["busy_items"] = int(result.get("busy_items", 0)) + m.busy
            say(f"{what} {m.median_ms:.4f} ms (spread {m.spread_ms:.4f}){' BUSY' if m.busy else ''}")
            if on_result is not None:
                on_result("kernel" if into is measured else "model", into[ident])
        save()
    save()
    busy = int(result.get("busy_items", 0))
    say(f"done: {len(result['kernels'])} kernels and {len(result['models'])} models measured, "
        f"{len(result['failed'])} failed -> {out}")
    if busy:
        say(f"WARNING: the machine was busy (other processes > {BUSY_CORES} cores or steal > {BUSY_STEAL:.0%}) "
            f"while {busy} item(s) were timed even after {BUSY_RETRIES} retries: their times are not reliable; "
            "measure again on an idle machine")
    return result


# ------------------------------------------------------------------ CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edge_profile.py",
        description="Time the one-op models of a tfcompress edge bundle with LiteRT on this device.",
        epilog="Copy the result file back to the desktop. Interrupted? Run the same command again: "
               "kernels already measured are kept.",
    )
    p.add_argument("bundle", metavar="DIR", help="the bundle folder (with bundle.json)")
    p.add_argument("-o", "--output", metavar="OUT", help=f"result file (default DIR/{RESULT_NAME})")
    p.add_argument("--threads", type=int, default=None, help="interpreter threads (default: the bundle's)")
    p.add_argument("--resolver", choices=sorted(RESOLVERS), default="default",
                   help="default: XNNPACK delegate; builtin: builtin kernels only")
    p.add_argument("--device", metavar="NAME", help="device name stored in the result (default: host name)")
    p.add_argument("--runs", type=int, default=RUNS, help=f"timed invokes per kernel, at most (default {RUNS})")
    p.add_argument("--warmup", type=int, default=WARMUP, help=f"untimed invokes first (default {WARMUP})")
    p.add_argument("--rounds", type=int, default=ROUNDS,
                   help=f"interleaved timing rounds per kernel; the spread of their medians is the noise floor "
                        f"(default {ROUNDS})")
    p.add_argument("--cpu", default="auto", metavar="N|auto|none",
                   help="pin to this CPU, to the least busy one (auto, the default), or not at all (none)")
    p.add_argument("-v", "--verbose", action="store_true", help="show the runtime's own log lines")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2: bad bundle or setting, 130: interrupted)."""
    args = _parser().parse_args(argv)
    command = " ".join(["python3", *sys.argv] if argv is None else ["edge_profile.py", *argv])

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    if args.runs < 1 or args.warmup < 0 or args.rounds < 1:
        say("edge_profile.py: error: --runs and --rounds must be >= 1 and --warmup >= 0")
        return 2
    cpu: str | int | None = None if args.cpu == "none" else args.cpu
    if cpu not in (None, "auto"):
        if not str(cpu).isdigit():
            say(f"edge_profile.py: error: --cpu {args.cpu!r} is not a CPU number, auto or none")
            return 2
        cpu = int(str(cpu))
    try:
        run_bundle(args.bundle, args.output, args.threads, args.resolver, args.device, cpu=cpu, rounds=args.rounds,
                   warmup=args.warmup,
                   runs=args.runs, command=command, log=say, quiet_native=not args.verbose)
    except EdgeError as exc:
        say(f"edge_profile.py: error: {exc}")
        return 2
    except KeyboardInterrupt:
        say("edge_profile.py: interrupted; what was measured is saved: run the same command again to resume")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
