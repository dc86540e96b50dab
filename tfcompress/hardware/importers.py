"""Import latencies measured on a device into a device profile (LUT).

    imported = import_measurements("op_profile.csv", models=["model.tflite"], device="pixel7")
    imported.entries, imported.observations, imported.warnings
    profile = to_profile(imported, base=load_profile("pixel7.json"))    # or base=None for a new profile

Formats (`FORMATS`: name -> detector + parser; the file's content decides, not its name):

- ``benchmark_model_csv``: the per-op profile of TFLite's ``benchmark_model
  --enable_op_profiling=true --op_profiling_output_mode=csv
  --op_profiling_output_file=F`` (the default text table of stdout reads too).
  Needs the profiled .tflite: a row names its node as
  ``[output tensor names]:node index``, and the index is the op's index in
  subgraph 0, checked against the op type and the output tensor names.
  Delegate rows (one ``TfLiteXNNPackDelegate`` row per delegated partition
  before TF 2.9.1; XNNPACK's own ``Delegate/<xnnpack operator>:<n>`` rows since)
  cover ops that cannot be told apart, so they give no LUT entries.
- ``edge_result``: ``tfcompress.edge_result/1`` written by ``edge_profile.py``.
- ``android_benchmark``: ``tfcompress.android_benchmark/1`` written by the
  Android demo app; its per-op times and whole-model latencies are matched to
  the .tflite files passed in ``models`` by sha256.

No TensorFlow here: kernel keys come from `kernels_of`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any

from tfcompress.errors import TfcompressError
from tfcompress.export import tflite_file
from tfcompress.export.tflite_file import PathOrBytes, read_tflite, read_tflite_bytes
from tfcompress.hardware.kernels import KernelKey, KernelUse, kernels_of
from tfcompress.hardware.predict import calibrated
from tfcompress.hardware.profile import DeviceProfile, LutEntry, Observation, Provenance

__all__ = ["EDGE_RESULT_SCHEMA", "ANDROID_BENCHMARK_SCHEMA", "Imported", "ImportFormat", "FORMATS",
           "import_measurements", "to_profile"]

EDGE_RESULT_SCHEMA = "tfcompress.edge_result/1"
ANDROID_BENCHMARK_SCHEMA = "tfcompress.android_benchmark/1"


@dataclass(frozen=True)
class Imported:
    """Latencies read from one measurement file, ready to become (part of) a profile.

    `threads` is None when the file does not record it (a benchmark_model
    CSV); `overhead_ms` is None when the file has no per-invoke overhead.
    Entries hold one LutEntry per kernel key (the median of duplicates).
    """

    source_format: str
    device: str
    runtime: str
    delegate: str
    threads: int | None
    measured_at: str
    entries: tuple[LutEntry, ...]
    overhead_ms: float | None
    observations: tuple[Observation, ...]
    warnings: tuple[str, ...]
    source: str = ""  # the file it was read from
    host: str = ""  # what the file says about the machine (model, SoC, platform)
    load_average: float | None = None
    method: str = ""  # how the file's numbers were measured, when it says


# ------------------------------------------------------------------ inputs


class _Source:
    """The measurement file: its text and (when it is JSON) its parsed content, read once."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            raise TfcompressError(f"measurement file not found: {self.path}", "check the path") from None
        except OSError as exc:
            raise TfcompressError(
                f"cannot read {self.path}: {exc.strerror or exc}", "check the file's permissions"
            ) from exc
        try:
            self.text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise TfcompressError(
                f"{self.path} is not a text file", f"pass one of: {_known_formats()}"
            ) from None

    @cached_property
    def json(self) -> Any:
        """The parsed JSON, None when the file is not JSON (a truncated JSON file is an error)."""
        if not self.text.lstrip().startswith(("{", "[")):
            return None
        try:
            return json.loads(self.text)
        except json.JSONDecodeError as exc:
            raise TfcompressError(
                f"{self.path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})",
                "the file is truncated or was edited by hand; copy it from the device again",
            ) from None


@dataclass(frozen=True)
class _Model:
    """A .tflite the user passed: its bytes, sha256, kernels and op output names."""

    label: str
    data: bytes

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @cached_property
    def uses(self) -> list[KernelUse]:
        return kernels_of(self.data)

    @cached_property
    def ops(self) -> list[tuple[str, tuple[str, ...]]]:
        """(op type, output tensor names) of each op of subgraph 0."""
        sg = read_tflite(self.data, label=self.label).subgraphs[0]
        return [(op.op_type, tuple(sg.tensors[i].name for i in op.outputs if i >= 0)) for op in sg.operators]

    @property
    def name(self) -> str:
        return Path(self.label).name


def _load_models(models: Sequence[PathOrBytes]) -> list[_Model]:
    out = []
    for n, m in enumerate(models):
        label = f"model bytes #{n}" if isinstance(m, (bytes, bytearray, memoryview)) else str(m)
        out.append(_Model(label, read_tflite_bytes(m)))
    return out


# ------------------------------------------------------------------ registry


@dataclass(frozen=True)
class ImportFormat:
    """How to recognise one file format and read it."""

    detect: Callable[[_Source], bool]
    parse: Callable[[_Source, list[_Model], str | None], Imported]
    description: str


def _known_formats() -> str:
    return ", ".join(FORMATS)


def import_measurements(
    path: str | os.PathLike[str],
    *,
    models: Sequence[PathOrBytes] = (),
    device: str | None = None,
    format: str | None = None,  # noqa: A002 - the CLI's --format
) -> Imported:
    """Read device measurements from `path` (format detected from the content).

    Args:
        models: the .tflite files (paths or bytes) the measurements were taken
            on: the one profiled model for ``benchmark_model_csv``; the models
            of an ``android_benchmark`` file, matched by sha256.
        device: the profile's device name (default: what the file says).
        format: skip detection (a key of `FORMATS`).

    Raises:
        TfcompressError: unknown format, malformed or truncated file (naming
            the file and, for a CSV, the line), a model that does not match.
    """
    source = _Source(path)
    if format is None:
        format = next((name for name, f in FORMATS.items() if f.detect(source)), None)
        if format is None:
            found = source.json.get("schema") if isinstance(source.json, dict) else None
            what = f"schema {found!r}" if found else "an unknown format"
            raise TfcompressError(
                f"{source.path} is {what}: not a measurement file tfcompress can import",
                f"known formats: {'; '.join(f'{n} ({f.description})' for n, f in FORMATS.items())}",
            )
    elif format not in FORMATS:
        raise TfcompressError(f"unknown measurement format {format!r}", f"known formats: {_known_formats()}")
    elif not FORMATS[format].detect(source):
        found = source.json.get("schema") if isinstance(source.json, dict) else None
        raise TfcompressError(
            f"{source.path} is not a measurement file of format {format}"
            + (f" (its schema is {found!r})" if found else ""),
            f"expected: {FORMATS[format].description}",
        )
    return FORMATS[format].parse(source, _load_models(models), device)


def to_profile(imported: Imported, base: DeviceProfile | None = None, command: str = "") -> DeviceProfile:
    """A DeviceProfile from `imported`, or `base` with the imported entries merged in.

    An imported entry replaces the base's entry for the same key; imported
    observations replace base observations of the same name; a measured
    overhead replaces the base's. With 3 or more observations the calibration
    is refitted (`predict.fit_calibration`); otherwise the base's is kept.

    Raises:
        TfcompressError: `base` was measured with another runtime, delegate or
            thread count: those latencies do not mix.
    """
    method = f"imported from {imported.source_format} {imported.source}".strip()
    if imported.method:
        method = f"{method}: {imported.method}"
    if base is None:
        return calibrated(DeviceProfile(
            device=imported.device,
            runtime=imported.runtime,
            delegate=imported.delegate,
            threads=imported.threads if imported.threads is not None else 1,
            overhead_ms=imported.overhead_ms or 0.0,
            provenance=Provenance(command=command, measured_at=imported.measured_at, host=imported.host,
                                  method=method, load_average=imported.load_average),
            entries=imported.entries,
            observations=imported.observations,
        ))
    clashes = [
        f"{what} {mine!r} vs {theirs!r}"
        for what, mine, theirs in (
            ("runtime", imported.runtime, base.runtime),
            ("delegate", imported.delegate, base.delegate),
            ("threads", imported.threads, base.threads),
        )
        if mine is not None and str(mine).casefold() != str(theirs).casefold()
    ]
    if clashes:
        raise TfcompressError(
            f"cannot merge {imported.source or imported.source_format} into the {base.device!r} profile: "
            + "; ".join(clashes),
            "latencies of another runtime, delegate or thread count do not mix: make a new profile "
            "(to_profile without a base)",
        )
    provenance = replace(base.provenance, method="; ".join(m for m in (base.provenance.method, method) if m))
    return calibrated(replace(
        base.with_entries(imported.entries).with_observations(imported.observations),
        overhead_ms=imported.overhead_ms if imported.overhead_ms is not None else base.overhead_ms,
        provenance=provenance,
    ))



def _median_entries(entries: Sequence[LutEntry]) -> tuple[LutEntry, ...]:
    """One entry per key: the median ms of duplicates (their runs summed), sorted by key."""
    by_key: dict[KernelKey, list[LutEntry]] = defaultdict(list)
    for e in entries:
        by_key[e.key].append(e)
    return tuple(
        LutEntry(key, float(statistics.median(e.ms for e in group)), sum(e.runs for e in group),
                 float(statistics.median(e.spread_ms for e in group)))
        for key, group in sorted(by_key.items())
    )


def _mtime_iso(path: Path) -> str:
    return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")


# ------------------------------------------------------------------ benchmark_model


_SECTION_INIT = "Profiling Info for Benchmark Initialization:"
_SECTION_RUNS = "Operator-wise Profiling Info for Regular Benchmark Runs:"
_LOG_PREFIX = re.compile(r"^(?:INFO|WARNING|ERROR|VERBOSE): ")
_TITLE = re.compile(r"^=+ (?P<title>.+?) =+$")
_TIMINGS = re.compile(r"^Timings \(microseconds\): (?P<stat>.*)$")
_STAT_FIELD = re.compile(r"(\w+)=([-+0-9.eE]+)")
_NODE = re.compile(r"^\[(?P<outputs>.*)\]:(?P<index>\d+)$")
_INFERENCE = re.compile(r"Inference timings in us: .*Inference \(avg\): (?P<us>[-+0-9.eE]+)")
_THREADS = re.compile(r"^Num threads: \[(?P<n>-?\d+)\]")
_BUILTIN_OPS: frozenset[str] = frozenset(
    k for k in vars(tflite_file._schema.BuiltinOperator) if k.isupper() and k != "DELEGATE"
)
"""Builtin op names: a row past the model's last op with one of these is a model mismatch, not a delegate."""
_DELEGATE_NAMES: dict[str, str] = {
    "TfLiteXNNPackDelegate": "XNNPACK",
    "TfLiteGpuDelegateV2": "GPU",
    "TfLiteGpuDelegate": "GPU",
    "TfLiteMetalDelegate": "GPU",
    "TfLiteNnapiDelegate": "NNAPI",
    "TfLiteHexagonDelegate": "Hexagon",
    "TfLiteCoreMlDelegate": "CoreML",
}
"""Node type of a delegate's macro node (one row per delegated partition) -> the profile's delegate name."""
_XNNPACK_OPERATOR = re.compile(r"\((?:NHWC|NCHW|NC|ND|NWC)\b")  # "Convolution (NHWC, QC8) IGEMM"
_RERUN_HINT = (
    "rerun benchmark_model with --use_xnnpack=false (and no --use_gpu / --use_nnapi) so each op is timed by "
    "its own kernel; delegate rows, XNNPACK's per-operator 'Delegate/...' rows included, time the delegate's "
    "operators, which do not map one-to-one onto the model's ops"
)


@dataclass(frozen=True)
class _Row:
    line: int
    node_type: str
    values: dict[str, float]
    name: str


def _is_benchmark_model(source: _Source) -> bool:
    text = source.text
    return source.json is None and (
        _SECTION_RUNS in text or _SECTION_INIT in text or "node type, first, avg_ms" in text
        or "node type, start, first, avg_ms" in text
    )


def _columns(header: str) -> tuple[list[str], bool] | None:
    """Normalised column names of a table header and whether it is the CSV form (else the text table)."""
    if header.startswith("node type,"):
        names, is_csv = header.split(","), True
    elif "[node type]" in header:
        names, is_csv = re.findall(r"\[([^\]]+)\]", header), False
    else:
        return None
    return [re.sub(r"[\s_]+", " ", n.strip().lower()) for n in names], is_csv


def _number(token: str, column: str) -> float | None:
    if column.endswith("%"):
        if not token.endswith("%"):
            return None
        token = token[:-1]
    try:
        return float(token)
    except ValueError:
        return None


def _split_row(line: str, columns: list[str], is_csv: bool) -> tuple[str, dict[str, float], str] | None:
    """(node type, numeric columns, name) of a table row.

    The node type of an XNNPACK operator holds commas ("Convolution (NHWC,
    QC8) IGEMM") and so may the name (older versions joined several outputs
    with ", "): the numeric columns, found as the first run of numbers, split
    the row instead of counting commas.
    """
    tokens = [t.strip() for t in line.split(",")] if is_csv else line.split()
    numeric = columns[1:-1]
    k = len(numeric)
    join = ", " if is_csv else " "
    for i in range(1, len(tokens) - k):
        values = [_number(tokens[i + j], numeric[j]) for j in range(k)]
        if all(v is not None for v in values):
            numbers = {c: float(v) for c, v in zip(numeric, values) if v is not None}
            return join.join(tokens[:i]), numbers, join.join(tokens[i + k:])
    return None


@dataclass
class _BenchmarkTable:
    """What `_read_benchmark_model` finds: the primary graph's Run Order rows and run totals."""

    rows: list[_Row] = field(default_factory=list)
    runs: int = 0
    total_avg_us: float | None = None
    inference_avg_us: float | None = None
    threads: int | None = None


def _read_benchmark_model(source: _Source) -> _BenchmarkTable:
    """Walk the sections of benchmark_model's profile and keep the primary graph's regular-run table."""
    where = source.path
    out = _BenchmarkTable()
    section = ""  # "init" | "runs"
    graph = "primary"  # "primary" | "other" (another subgraph, or "Delegate internal")
    table = ""
    columns: list[str] | None = None
    is_csv = True
    run_order_closed = False
    last = 0
    for lineno, raw in enumerate(source.text.splitlines(), 1):
        last = lineno
        line = _LOG_PREFIX.sub("", raw.strip())
        if m := _INFERENCE.search(line):
            out.inference_avg_us = float(m["us"])
            continue
        if m := _THREADS.match(line):
            out.threads = int(m["n"])
            continue
        if line == _SECTION_INIT:
            section, table = "init", ""
            continue
        if line == _SECTION_RUNS:
            if section == "runs" or out.rows:
                raise TfcompressError(
                    f"{where}:{lineno}: a second '{_SECTION_RUNS}' section",
                    "import one benchmark_model run per file",
                )
            section, graph, table = "runs", "primary", ""
            continue
        if section != "runs":
            continue
        if line.startswith("Primary graph"):
            graph = "primary"
        elif line.startswith("Delegate internal:") or (
            line.startswith("Subgraph (index:") and line.endswith("profile:")
        ):
            graph = "other"
        elif m := _TITLE.match(line):
            table, columns = m["title"], None
        elif table == "Run Order" and graph == "primary":
            if not line:
                table, run_order_closed = "", bool(columns)
            elif columns is None:
                parsed = _columns(line)
                if parsed is None or parsed[0][0] != "node type" or parsed[0][-1] != "name" \
                        or "avg ms" not in parsed[0]:
                    raise TfcompressError(
                        f"{where}:{lineno}: not a benchmark_model table header: {line[:80]!r}",
                        "pass the file written by --op_profiling_output_file, unedited",
                    )
                columns, is_csv = parsed
            else:
                split = _split_row(line, columns, is_csv)
                if split is None:
                    raise TfcompressError(
                        f"{where}:{lineno}: cannot read this row of the Run Order table: {line[:100]!r}",
                        f"expected {len(columns)} columns ({', '.join(columns)}); the file may be truncated",
                    )
                out.rows.append(_Row(lineno, *split))
        elif graph == "primary" and (m := _TIMINGS.match(line)):
            stat = {k: float(v) for k, v in _STAT_FIELD.findall(m["stat"])}
            out.runs = int(stat.get("count", 0))
            out.total_avg_us = stat.get("avg", stat.get("curr"))
    if not section:
        raise TfcompressError(
            f"{where} has no benchmark_model profile ('{_SECTION_RUNS}')",
            "run benchmark_model with --enable_op_profiling=true --op_profiling_output_mode=csv "
            "--op_profiling_output_file=FILE",
        )
    if section != "runs":
        raise TfcompressError(
            f"{where} ends at line {last} without '{_SECTION_RUNS}' (only the initialization profile)",
            "the file is truncated or benchmark_model failed before the timed runs; rerun it",
        )
    if not run_order_closed or out.total_avg_us is None:
        raise TfcompressError(
            f"{where} is truncated: it ends at line {last}, before the run summary "
            "('Timings (microseconds): ...') of the Run Order table",
            "copy the complete --op_profiling_output_file from the device again",
        )
    return out


def _parse_benchmark_model(source: _Source, models: list[_Model], device: str | None) -> Imported:
    where = source.path
    if len(models) != 1:
        raise TfcompressError(
            f"{where}: a benchmark_model profile needs the one .tflite it was run on, got {len(models)} models",
            "pass the .tflite given to benchmark_model --graph (CLI: --model FILE; API: models=[FILE])",
        )
    model = models[0]
    table = _read_benchmark_model(source)
    ops = model.ops
    entries: list[LutEntry] = []
    covered: set[int] = set()
    delegate_rows: list[_Row] = []
    for row in table.rows:
        node = _NODE.match(row.name)
        base_type = row.node_type.split("/", 1)[0]
        if row.name.startswith("Delegate/") or (
            node and int(node["index"]) >= len(ops) and base_type not in _BUILTIN_OPS
        ):
            delegate_rows.append(row)
            continue
        if node is None:
            continue  # not an operator (e.g. an "Invoke/0" event of some versions)
        index = int(node["index"])
        if index >= len(ops):
            raise TfcompressError(
                f"{where}:{row.line}: node {index} ({row.node_type}) but {model.label} has {len(ops)} ops",
                "pass the .tflite that benchmark_model profiled",
            )
        op_type, outputs = ops[index]
        names = tuple(s.strip() for s in re.split(r"[,\t]", node["outputs"]) if s.strip())
        if base_type != op_type:
            raise TfcompressError(
                f"{where}:{row.line}: node {index} is {row.node_type} in the profile but {op_type} in {model.label}",
                "pass the .tflite that benchmark_model profiled",
            )
        if all(outputs) and names != outputs:
            raise TfcompressError(
                f"{where}:{row.line}: node {index} ({op_type}) writes {list(names)} in the profile but "
                f"{list(outputs)} in {model.label}",
                "pass the .tflite that benchmark_model profiled (the same file, not a re-conversion)",
            )
        ms = row.values["avg ms"]
        if not math.isfinite(ms) or ms < 0:
            raise TfcompressError(f"{where}:{row.line}: avg_ms {ms} is not a time", "the file is corrupt")
        calls = max(int(row.values.get("times called", 1)), 1)
        entries.append(LutEntry(model.uses[index].key, ms, table.runs * calls, 0.0))
        covered.add(index)

    warnings: list[str] = []
    delegate = "none"
    if delegate_rows:
        first = delegate_rows[0].node_type
        delegate = _DELEGATE_NAMES.get(first) or ("XNNPACK" if _XNNPACK_OPERATOR.search(first) else first)
        delegated_ms = sum(r.values["avg ms"] * max(r.values.get("times called", 1), 1) for r in delegate_rows)
        if not entries:
            raise TfcompressError(
                f"{where}: every timed row ({len(delegate_rows)}) is a delegate row ({first}, ...): "
                f"no op of {model.label} was timed on its own",
                _RERUN_HINT,
            )
        warnings.append(
            f"{where}: {len(ops) - len(covered)} of {len(ops)} ops ran inside {delegate} "
            f"({len(delegate_rows)} delegate rows, {delegated_ms:.4g} ms per run): no LUT entries for them; "
            + _RERUN_HINT
        )
    elif not entries:
        raise TfcompressError(f"{where}: the Run Order table has no operator rows", "rerun benchmark_model")
    elif missing := [i for i in range(len(ops)) if i not in covered]:
        warnings.append(f"{where}: ops {missing} of {model.label} have no row (not timed): no LUT entries for them")
    if table.threads is None:
        warnings.append(
            f"{where} does not record the thread count (benchmark_model --num_threads): the profile assumes "
            "the base profile's, or 1"
        )

    observations = ()
    total_us = table.inference_avg_us if table.inference_avg_us is not None else table.total_avg_us
    if total_us and table.runs:
        observations = (Observation(model.name, total_us / 1000.0, tuple(u.key for u in model.uses)),)
    return Imported(
        source_format="benchmark_model_csv",
        device=device or "unknown",
        runtime="TFLite benchmark_model",
        delegate=delegate,
        threads=table.threads,
        measured_at=_mtime_iso(source.path),
        entries=_median_entries(entries),
        overhead_ms=None,
        observations=observations,
        warnings=tuple(warnings),
        source=str(source.path),
    )


# ------------------------------------------------------------------ JSON formats


def _schema_is(schema: str) -> Callable[[_Source], bool]:
    return lambda source: isinstance(source.json, dict) and source.json.get("schema") == schema


class _Json:
    """Typed access to a JSON object whose errors name the file and the field path."""

    def __init__(self, source: _Source, data: Any, path: str = "") -> None:
        self.source, self.data, self.path = source, data, path

    def _fail(self, what: str) -> TfcompressError:
        return TfcompressError(f"{self.source.path}: {what}", "the file is malformed; write it again on the device")

    def at(self, name: str | int) -> _Json:
        here = f"{self.path}[{name}]" if isinstance(name, int) else f"{self.path}.{name}".lstrip(".")
        try:
            return _Json(self.source, self.data[name], here)
        except (KeyError, IndexError, TypeError):
            raise self._fail(f"missing {here!r}") from None

    def get(self, name: str) -> _Json | None:
        return self.at(name) if isinstance(self.data, dict) and self.data.get(name) is not None else None

    def items(self) -> list[_Json]:
        if not isinstance(self.data, list):
            raise self._fail(f"{self.path!r} is not a list")
        return [self.at(i) for i in range(len(self.data))]

    def as_str(self) -> str:
        if not isinstance(self.data, str):
            raise self._fail(f"{self.path!r} is not a string: {self.data!r}")
        return self.data

    def as_int(self) -> int:
        if isinstance(self.data, bool) or not isinstance(self.data, int):
            raise self._fail(f"{self.path!r} is not an integer: {self.data!r}")
        return self.data

    def as_float(self, what: str = "a number") -> float:
        if isinstance(self.data, bool) or not isinstance(self.data, (int, float)) or not math.isfinite(self.data):
            raise self._fail(f"{self.path!r} is not {what}: {self.data!r}")
        return float(self.data)

    def as_ms(self) -> float:
        """A time in ms: a finite number >= 0."""
        value = self.as_float("a time in ms")
        if value < 0:
            raise self._fail(f"{self.path!r} is not a time in ms: {self.data!r}")
        return value

    def as_key(self) -> KernelKey:
        try:
            return KernelKey.from_json(self.data)
        except (TypeError, ValueError, AttributeError) as exc:
            raise self._fail(f"{self.path!r} is not a kernel key ({exc})") from None


def _kernel_entries(doc: _Json, warnings: list[str]) -> list[LutEntry]:
    """LUT entries of an edge result's `kernels` (also in the Android app's JSON)."""
    entries = []
    kernels = doc.get("kernels")
    for k in kernels.items() if kernels else []:
        key = k.at("key").as_key()
        digest = k.get("digest")
        if digest is not None and digest.as_str() != key.digest():
            warnings.append(f"{doc.source.path}: {k.path} digest {digest.as_str()} is not its key's ({key.digest()})")
        spread = k.get("spread_ms")
        runs = k.get("runs")
        entries.append(
            LutEntry(key, k.at("ms").as_ms(), runs.as_int() if runs else 0, spread.as_ms() if spread else 0.0)
        )
    return entries


def _model_observations(doc: _Json) -> list[Observation]:
    """Whole models an edge result timed (they carry their kernel keys): observations for the calibration."""
    listed = doc.get("models")
    return [
        Observation(f"{m.at('name').as_str()}#{m.at('sha256').as_str()[:8]}", m.at("ms").as_ms(),
                    tuple(k.as_key() for k in m.at("kernels").items()))
        for m in (listed.items() if listed else [])
    ]


def _run_fields(doc: _Json) -> dict[str, Any]:
    """The fields both JSON formats share: how the device ran the models."""
    overhead = doc.get("overhead_ms")
    return dict(
        runtime=doc.at("runtime").as_str(),
        delegate=doc.at("delegate").as_str(),
        threads=doc.at("threads").as_int(),
        measured_at=doc.at("measured_at").as_str(),
        overhead_ms=overhead.as_ms() if overhead else None,
        source=str(doc.source.path),
    )


def _parse_edge_result(source: _Source, models: list[_Model], device: str | None) -> Imported:
    doc = _Json(source, source.json)
    warnings: list[str] = []
    entries = _kernel_entries(doc, warnings)
    failed = doc.get("failed")
    for f in failed.items() if failed else []:
        warnings.append(
            f"{source.path}: kernel {f.at('digest').as_str()} failed on the device: {f.at('error').as_str()}"
        )
    if models:
        warnings.append(f"{source.path}: an edge result does not use the models passed "
                        f"({', '.join(m.name for m in models)})")
    load = doc.get("load_average")
    bundle_sha = doc.get("bundle_sha256")
    bundle = bundle_sha.as_str() if bundle_sha is not None else "?"
    return Imported(
        source_format="edge_result",
        device=device or doc.at("device").as_str(),
        entries=_median_entries(entries),
        observations=tuple(_model_observations(doc)),
        warnings=tuple(warnings),
        host=" ".join(v.as_str() for v in (doc.get("machine"), doc.get("platform")) if v is not None),
        load_average=load.as_float() if load is not None else None,
        method=(f"edge bundle {bundle[:12]} timed on the device by edge_profile.py: one-op int8 models, seeded "
                "random int8 inputs, median of the timed invokes after 3-MAD rejection, empty-model overhead "
                "subtracted" + (f"; {len(failed.items())} kernel(s) failed to run" if failed and failed.items() else "")),
        **_run_fields(doc),
    )


def _parse_android(source: _Source, models: list[_Model], device: str | None) -> Imported:
    doc = _Json(source, source.json)
    warnings: list[str] = []
    entries = _kernel_entries(doc, warnings)
    observations: list[Observation] = []
    by_sha = {m.sha256: m for m in models}
    used: set[str] = set()
    listed = doc.get("models")
    for entry in listed.items() if listed else []:
        label = entry.at("name").as_str()
        sha = entry.at("sha256").as_str().lower()
        model = by_sha.get(sha)
        if model is None:
            warnings.append(
                f"{source.path}: {entry.path} {label!r} (sha256 {sha[:12]}...) matches none of the models passed: "
                "its per-op times and latency were not imported"
            )
            continue
        used.add(sha)
        runs = entry.get("runs")
        ops = entry.get("ops")
        for op in ops.items() if ops else []:
            index = op.at("index").as_int()
            if not 0 <= index < len(model.uses):
                raise TfcompressError(
                    f"{source.path}: {op.path} index {index} but {model.label} has {len(model.uses)} ops",
                    "the app profiled another model with the same sha256? write the file again",
                )
            key = model.uses[index].key
            if op.at("op").as_str() != key.op:
                raise TfcompressError(
                    f"{source.path}: {op.path} is {op.at('op').as_str()} but op {index} of {model.label} is {key.op}",
                    "the per-op profile does not belong to this model; write the file again",
                )
            entries.append(LutEntry(key, op.at("ms").as_ms(), runs.as_int() if runs else 0, 0.0))
        median = entry.at("latency_ms").at("median").as_ms()
        observations.append(Observation(label, median, tuple(u.key for u in model.uses)))
    for m in models:
        if m.sha256 not in used:
            warnings.append(
                f"{m.label} (sha256 {m.sha256[:12]}...) matches no models[] entry of {source.path}: not imported"
            )
    info = doc.at("device")
    maker = info.get("manufacturer")
    phone = info.get("model")
    name = " ".join(v.as_str() for v in (maker, phone) if v is not None) or "android"
    host = ", ".join(
        f"{k} {info.data[k]}" for k in ("soc", "android_sdk", "abi") if isinstance(info.data, dict) and k in info.data
    )
    return Imported(
        source_format="android_benchmark",
        device=device or name,
        entries=_median_entries(entries),
        observations=tuple(observations),
        warnings=tuple(warnings),
        host=f"{name} ({host})" if host else name,
        **_run_fields(doc),
    )


FORMATS: dict[str, ImportFormat] = {
    "edge_result": ImportFormat(
        _schema_is(EDGE_RESULT_SCHEMA), _parse_edge_result,
        f"{EDGE_RESULT_SCHEMA} JSON from edge_profile.py",
    ),
    "android_benchmark": ImportFormat(
        _schema_is(ANDROID_BENCHMARK_SCHEMA), _parse_android,
        f"{ANDROID_BENCHMARK_SCHEMA} JSON from the Android app; pass its .tflite files",
    ),
    "benchmark_model_csv": ImportFormat(
        _is_benchmark_model, _parse_benchmark_model,
        "TFLite benchmark_model --enable_op_profiling=true --op_profiling_output_mode=csv "
        "--op_profiling_output_file=F; pass the profiled .tflite",
    ),
}
"""Format name -> detector + parser. Detectors are tried in this order; JSON schemas first."""
