"""Terminal tables for reports (rich): the conversion summary, the op table, the per-stage table."""

from __future__ import annotations

import math
from typing import Any

from tfcompress.export.report import ConvertReport
from tfcompress.report import CompressReport


def human_bytes(n: int) -> str:
    """'96,656 B (94.4 KiB)'."""
    return f"{n:,} B ({n / 1024:.1f} KiB)" if n >= 1024 else f"{n:,} B"


def render(report: ConvertReport, console: Any) -> None:
    """Print the report as rich tables."""
    from rich.table import Table

    summary = Table(title=f"tfcompress convert: {report.model} -> {report.mode}", show_header=False, title_justify="left")
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row("source", f"{report.source_format}" + (f"  {report.source_path}" if report.source_path else ""))
    summary.add_row("output", report.output or "(in memory)")
    summary.add_row("I/O dtypes", ", ".join(report.io_dtypes))
    summary.add_row("weights", ", ".join(report.weight_dtypes) or "-")
    size = report.size
    summary.add_row("size", f"{human_bytes(size.tflite_bytes)}, gzip {human_bytes(size.gzip_bytes)}")
    if size.bytes_per_param:
        summary.add_row("bytes / parameter", f"{size.bytes_per_param:.3f} ({size.source_params:,} parameters)")
    cal = report.calibration
    summary.add_row("calibration", f"{cal.samples} samples from {cal.source or '-'}")
    summary.add_row("float ops", "; ".join(report.float_ops) if report.float_ops else "none")
    summary.add_row("convert time", f"{report.convert_seconds:.2f} s")
    for note in report.notes:
        summary.add_row("note", note)
    v = report.verify
    if v is not None:
        held = "held-out" if v.held_out else "calibration (not held out)"
        summary.add_row("verified on", f"{v.samples} {held} samples, {v.runtime}, resolver {v.resolver}")
        if v.accuracy is not None:
            a = v.accuracy
            summary.add_row(
                "accuracy",
                f"source {100 * a.source:.2f}%  tflite {100 * a.tflite:.2f}%  ({a.delta_pp:+.2f} pp, {a.samples} labelled)",
            )
        for o in v.outputs:
            agree = f", top-1 agreement {100 * o.top1_agreement:.2f}%" if o.top1_agreement is not None else ""
            if o.near_ties:  # low agreement from near-ties reads like a broken conversion: say which it is
                rest = (f"; {100 * o.decisive_agreement:.2f}% on the others" if o.decisive_agreement is not None
                        else "")
                agree += f" ({100 * o.near_ties:.0f}% near-ties within one output step{rest})"
            snr = "inf" if not math.isfinite(o.snr_db) else f"{o.snr_db:.1f}"
            summary.add_row(f"output {o.name}", f"SNR {snr} dB, max |err| {o.max_abs_error:.4g}{agree}")
        lat = v.latency
        summary.add_row(
            "host latency",
            f"median {lat.median_ms:.3f} ms, p90 {lat.p90_ms:.3f} ms ({lat.runs} runs, {lat.threads} thread(s))"
            + (" — MACHINE BUSY while timing: not a reliable figure" if lat.busy else ""),
        )
        for note in v.notes:
            summary.add_row("note", note)
    p = report.predicted_latency
    if p is not None:
        summary.add_row(
            "predicted latency",
            f"{p.total_ms:.3f} ms on '{p.device}' ({p.runtime}, {p.delegate}, {p.threads} thread(s); "
            f"{100 * p.lut_hit_rate:.0f}% of ops measured in its LUT)",
        )
    console.print(summary)

    ops = Table(title="ops", title_justify="left")
    for col in ("op", "inputs", "outputs", "count"):
        ops.add_column(col, justify="right" if col == "count" else "left")
    for row in report.op_table:
        ops.add_row(row.op, ", ".join(row.input_dtypes), ", ".join(row.output_dtypes), str(row.count))
    console.print(ops)
    if report.precision is not None:
        render_precision(report.precision, console)


def render_precision(info: Any, console: Any) -> None:
    """Per-op precision read back from the file (asked vs stored) and where each op runs."""
    from rich.table import Table

    rules = "; ".join(info.rules) or "none"
    table = Table(title=f"per-op precision (default {info.default}; rules: {rules}): {info.delegate}",
                  title_justify="left")
    for col in ("#", "op", "layers", "asked", "in the file", "activations", "weights", "runs on"):
        table.add_column(col)
    for r in info.ops:
        table.add_row(str(r.index), r.op, ", ".join(r.layers) or "-", r.asked or "-", r.found, r.activations,
                      r.weights or "-", r.runs_on)
    console.print(table)


WIDE_COLUMNS = 120  # below this many terminal columns the stage and weight tables are the narrow ones
NARROW_WEIGHT_ROWS = 12  # the narrow weight table: the largest tensors only


def render_stages(report: CompressReport, console: Any, wide: bool | None = None) -> None:
    """The per-stage table of a `compress` run (and read-back weight statistics).

    `wide` None: wide when the console has >= WIDE_COLUMNS columns. Narrow (80 columns, a pipe): the columns
    that decide (accuracy, size, latency), numbers never cut, and the largest weights only; the rest is in
    the report JSON and with `--wide`.
    """
    from rich.table import Table

    wide = console.width >= WIDE_COLUMNS if wide is None else wide
    cols = ("stage", "epochs", "float acc", "int8 acc", ".tflite B", "gzip B", "latency ms", "predicted ms",
            "sparsity", "max unique", "s")
    show = cols if wide else ("stage", "float acc", "int8 acc", ".tflite B", "predicted ms", "s")
    table = Table(title=f"recipe {report.recipe.name}: after each stage", title_justify="left")
    for col in show:
        table.add_column(col, justify="left" if col == "stage" else "right", overflow="fold")

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.2f}%"

    for s in report.stages:
        cells = dict(zip(cols, (
            f"{s.index} {s.technique}", str(s.epochs), pct(s.float_accuracy), pct(s.int8_accuracy),
            f"{s.tflite_bytes:,}" if s.tflite_bytes else "-", f"{s.gzip_bytes:,}" if s.gzip_bytes else "-",
            f"{s.latency_ms:.3f}" if s.latency_ms is not None else "-",
            f"{s.predicted_ms:.3f}" if s.predicted_ms is not None else "-", f"{100 * s.mean_sparsity:.1f}%",
            str(s.max_unique), f"{s.seconds:.0f}",
        )))
        table.add_row(*(cells[c] for c in show))
    console.print(table)
    render_stage_details(report, console, wide)

    if report.weights:
        rows = list(report.weights) if wide else sorted(report.weights, key=lambda w: -w.stored_bytes)[:NARROW_WEIGHT_ROWS]
        weights = Table(title="weights read back from the .tflite" + ("" if wide else ": the largest"),
                        title_justify="left")
        wcols = ("tensor", "op", "shape", "encoding", "zeros", "unique / channel", "stored B")
        wshow = wcols if wide else ("tensor", "shape", "zeros", "unique / channel", "stored B")
        for col in wshow:
            weights.add_column(col, justify="left" if col in ("tensor", "op", "encoding") else "right",
                               overflow="fold")
        for w in rows:
            cells = dict(zip(wcols, (w.tensor[-40:] if wide else w.tensor[-24:], w.op_type, "x".join(map(str, w.shape)),
                                     w.encoding, f"{100 * w.zeros:.1f}%", str(w.unique_per_channel),
                                     f"{w.stored_bytes:,}")))
            weights.add_row(*(cells[c] for c in wshow))
        console.print(weights)
    if not wide:
        more = len(report.weights) - NARROW_WEIGHT_ROWS
        console.print("[dim]narrow tables" + (f" ({more} smaller weight tensors not shown)" if more > 0 else "")
                      + ": every column with --wide, or in the report JSON[/]")


DETAIL_ROWS = 12  # narrow: rows of each list in a stage's details (the rest: --wide, the report JSON)
_COSTS = (("params", "params"), ("macs", "MACs"), ("flops", "FLOPs"))


def render_stage_details(report: CompressReport, console: Any, wide: bool) -> None:
    """What each stage's technique reported about itself (`StageReport.details`, e.g. which layers a swap
    replaced and how each new layer started): cost before -> after, scalars, and each list as a table."""
    from rich.table import Table

    for s in report.stages:
        d = dict(s.details)
        if not d:
            continue
        costs = [f"{label} {d.pop(f'{k}_before'):,} -> {d.pop(f'{k}_after'):,}" for k, label in _COSTS
                 if f"{k}_before" in d and f"{k}_after" in d]
        scalars = [f"{k} {_cell(v)}" for k, v in d.items() if not isinstance(v, (list, dict))]
        console.print(f"stage {s.index} {s.technique}: " + "; ".join(costs + scalars))
        for key, value in d.items():
            records = isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)
            if isinstance(value, dict):
                console.print(f"  {key}: {_cell(value)}")
            elif records and not wide:
                console.print(f"  {key} ({len(value)}):")
                for row in value[:DETAIL_ROWS]:  # narrow: a line each, wrapped, rather than a table of slivers
                    first, *rest = row.items()
                    console.print(f"    {_cell(first[1])}: " + "; ".join(f"{k.replace('_', ' ')} {_cell(v)}"
                                                                       for k, v in rest))
                if len(value) > DETAIL_ROWS:
                    console.print(f"[dim]    {len(value) - DETAIL_ROWS} more: --wide, or the report JSON[/]")
            elif records:
                t = Table(title=f"stage {s.index} {s.technique}: {key} ({len(value)})", title_justify="left")
                cols = list(dict.fromkeys(k for row in value for k in row))
                for col in cols:
                    t.add_column(col.replace("_", " "), overflow="fold")
                for row in value:
                    t.add_row(*(_cell(row.get(c, ""), sep="\n") for c in cols))
                console.print(t)
            elif isinstance(value, list):
                shown = value if wide else value[:DETAIL_ROWS]
                console.print(f"  {key} ({len(value)}): " + ", ".join(_cell(v) for v in shown)
                              + (", ..." if len(value) > len(shown) else ""))


def _cell(v: Any, sep: str = ", ") -> str:
    """One value of a stage's details as short text (bounded: long lists and nested dicts are cut); a dict's
    items joined by `sep` (a new line inside a table cell)."""
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    if isinstance(v, dict):
        return sep.join(f"{k}: {_cell(x)}" for k, x in list(v.items())[:DETAIL_ROWS])
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_cell(x) for x in v[:DETAIL_ROWS]) + (", ...]" if len(v) > DETAIL_ROWS else "]")
    return str(v)


_SHORT_OPS = {"CONV_2D": "conv", "DEPTHWISE_CONV_2D": "dw", "FULLY_CONNECTED": "fc", "BATCH_MATMUL": "matmul"}


def render_sensitivity(report: Any, console: Any, top: int | None = None) -> None:
    """The ranked per-op table of `tfcompress analyze` (`tfcompress.precision.SensitivityReport`); fits 80 columns."""
    from rich.table import Table

    def snr(v: Any) -> str:
        return "-" if v is None else ("inf" if not math.isfinite(v.snr_db) else f"{v.snr_db:.1f}")

    full = report.full_int8
    extra = "".join(
        f", {label} {100 * value:.2f}%" for label, value in (("agreement", full.agreement), ("accuracy", full.accuracy))
        if value is not None
    )
    console.print(f"{report.model}, full int8 on {report.samples} held-out samples: SNR {snr(full)} dB{extra}")
    table = Table(title="ops ranked by the SNR won back when left float", title_justify="left")
    for col in ("#", "layer (op)", "won back dB", "SNR float", "SNR alone", "weights B", "pred ms"):
        table.add_column(col, justify="left" if col == "layer (op)" else "right", no_wrap=col != "layer (op)")
    for r in report.ops[:top]:
        name = r.layers[0] if r.layers else r.tensor
        table.add_row(
            str(r.rank), f"{name[:24]} ({_SHORT_OPS.get(r.op_type, r.op_type.lower())})",
            "-" if r.recovered_snr_db is None else f"{r.recovered_snr_db:+.2f}", snr(r.kept_float), snr(r.alone),
            f"{r.weight_bytes:,}", "-" if r.predicted_ms is None else f"{r.predicted_ms:.4f}",
        )
    console.print(table)
    console.print("SNR float: every op int8 but this one; SNR alone: only this op int8 (dB vs the float model)")
