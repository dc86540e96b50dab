"""benchmark_model's per-op profile (CSV, or the stdout text table) -> LUT entries of the profiled .tflite.

The per-op profile of TFLite's ``benchmark_model --enable_op_profiling=true
--op_profiling_output_mode=csv --op_profiling_output_file=F`` (the default text
table of stdout reads too). Needs the profiled .tflite: a row names its node as
``[output tensor names]:node index``, and the index is the op's index in
subgraph 0, checked against the op type and the output tensor names. Delegate
rows (one ``TfLiteXNNPackDelegate`` row per delegated partition before TF 2.9.1;
XNNPACK's own ``Delegate/<xnnpack operator>:<n>`` rows since) cover ops that
cannot be told apart, so they give no LUT entries.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from tfcompress.errors import TfcompressError
from tfcompress.export import tflite_file
from tfcompress.hardware.importers.source import (
    Imported,
    ImportFormat,
    MeasurementFile,
    TfliteFile,
    median_entries,
    mtime_iso,
)
from tfcompress.hardware.profile import LutEntry, Observation
from tfcompress.hardware.schema import MAX_MS, MAX_THREADS

__all__ = ["FORMAT"]

_SECTION_INIT = "Profiling Info for Benchmark Initialization:"
_SECTION_RUNS = "Operator-wise Profiling Info for Regular Benchmark Runs:"
_LOG_PREFIX = re.compile(r"^(?:INFO|WARNING|ERROR|VERBOSE): ")
_TITLE = re.compile(r"^=+ (?P<title>.+?) =+$")
_TIMINGS = re.compile(r"^Timings \(microseconds\): (?P<stat>.*)$")
_STAT_FIELD = re.compile(r"(\w+)=([-+0-9.eE]+)")
_NODE = re.compile(r"^\[(?P<outputs>.*)\]:(?P<index>\d+)$")
_INFERENCE = re.compile(r"Inference timings in us: .*Inference \(avg\): (?P<us>[-+0-9.eE]+)")
_THREADS = re.compile(r"^Num threads: \[(?P<n>-?\d+)\]")
_MAX_NODE_TYPE_TOKENS = 16
"""Most comma-separated pieces a node type may have ("Convolution (NHWC, QC8) IGEMM" has 2): bounds a row's split."""
_BUILTIN_OPS: frozenset[str] = frozenset(
    k for k in vars(tflite_file.schema.BuiltinOperator) if k.isupper() and k != "DELEGATE"
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


def _is_benchmark_model(source: MeasurementFile) -> bool:
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


def _time(token: str, where: str, name: str) -> float:
    """A count or time in us of a summary line: a finite number >= 0 whose ms fit a profile."""
    try:
        value = float(token)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 <= value <= MAX_MS * 1000):
        raise TfcompressError(f"{where}: {name}={token[:40]} is not a count or time in us",
                              "the file is corrupt; copy it from the device again")
    return value


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
    for i in range(1, min(len(tokens) - k, _MAX_NODE_TYPE_TOKENS + 1)):
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


def _read_benchmark_model(source: MeasurementFile) -> _BenchmarkTable:
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
            out.inference_avg_us = _time(m["us"], f"{where}:{lineno}", "Inference (avg)")
            continue
        if m := _THREADS.match(line):
            n = m["n"]
            if len(n) > 5 or not 1 <= int(n) <= MAX_THREADS:
                raise TfcompressError(f"{where}:{lineno}: Num threads [{n[:20]}] is not a thread count "
                                      f"(1..{MAX_THREADS})", "the file is corrupt; copy it from the device again")
            out.threads = int(n)
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
                for column, value in split[1].items():
                    if not (math.isfinite(value) and value >= 0) and column != "avg ms":  # avg_ms: its own error
                        raise TfcompressError(
                            f"{where}:{lineno}: {column} {value} is not a count or time",
                            "the file is corrupt; copy it from the device again",
                        )
                out.rows.append(_Row(lineno, *split))
        elif graph == "primary" and (m := _TIMINGS.match(line)):
            stat = {k: _time(v, f"{where}:{lineno}", k) for k, v in _STAT_FIELD.findall(m["stat"])}
            count = stat.get("count", 0.0)
            if count > 2**53 or count != int(count):
                raise TfcompressError(f"{where}:{lineno}: count={count} is not a number of runs",
                                      "the file is corrupt; copy it from the device again")
            out.runs = int(count)
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


def _parse_benchmark_model(source: MeasurementFile, models: list[TfliteFile], device: str | None) -> Imported:
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
        if not math.isfinite(ms) or not 0 <= ms <= MAX_MS:
            raise TfcompressError(f"{where}:{row.line}: avg_ms {ms} is not a time", "the file is corrupt")
        calls = max(int(row.values.get("times called", 1)), 1)
        entries.append(LutEntry(model.uses[index].key, ms, min(table.runs * calls, 2**53), 0.0))
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
        measured_at=mtime_iso(source.path),
        entries=median_entries(entries),
        overhead_ms=None,
        observations=observations,
        warnings=tuple(warnings),
        source=str(source.path),
    )


FORMAT = ImportFormat(
    _is_benchmark_model, _parse_benchmark_model,
    "TFLite benchmark_model --enable_op_profiling=true --op_profiling_output_mode=csv "
    "--op_profiling_output_file=F; pass the profiled .tflite",
)
