"""Publishing a conversion: OUT.tflite with OUT.report.json and OUT.meta.json beside it.

Used by both `convert` and `compress`: the report is any frozen report value
with `to_dict` (`tfcompress.report`), the sidecar the dict of
`tfcompress.export.sidecar.build_meta`.

What a reader may rely on at every instant, whatever stops the writer (an error, Ctrl-C, SIGKILL, power loss):

- Each file is whole: the previous one or the new one (`tfcompress.files`: fsynced temp file, then rename).
- OUT.meta.json pairs the set: its `model_sha256` is the sha256 of the OUT.tflite it describes and its
  `report_sha256` that of the OUT.report.json written with it. The three hashes agreeing is what
  "a complete set" means (`output_set_problems` checks it).
- Every target is checked (absent, or a regular file / a link to one) before the work starts
  (`check_outputs`) and again before the first rename; one bad target fails the write with nothing renamed.
- The renames go report, meta, then .tflite last. So a new .tflite never sits beside an old or missing
  sidecar: when OUT.tflite is new, both sidecars are already new. A writer killed between two renames leaves
  the previous .tflite with one or two new sidecars, which the hashes give away.
- The next write to the same OUT heals any such state: it replaces all three and removes the temp files
  of writers that died.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Protocol

from tfcompress.files import check_target, check_writable, write_files_atomically


class Report(Protocol):
    """A report value that has a JSON form."""

    def to_dict(self) -> dict[str, Any]: ...


def sidecar_paths(out: Path) -> tuple[Path, Path]:
    """OUT.report.json and OUT.meta.json beside OUT.tflite."""
    stem = out.name[: -len(out.suffix)] if out.suffix else out.name
    return out.with_name(f"{stem}.report.json"), out.with_name(f"{stem}.meta.json")


def check_outputs(out: str | Path) -> Path:
    """Fail before any work if OUT.tflite or a sidecar beside it cannot be written (`check_writable`).

    Returns:
        The output path, `~` expanded.
    """
    path = check_writable(out)
    for sidecar in sidecar_paths(path):
        check_target(sidecar)
    return path


def write_outputs(out: Path, tflite: bytes, report: Report, meta: dict[str, Any]) -> tuple[Path, Path]:
    """Publish the three files (order and guarantees in the module doc); returns (report path, meta path).

    `meta` is written with `model_sha256` and `report_sha256` set from the bytes written.

    Raises:
        OutputError: a target that is not a regular file, or a failed write.
    """
    report_path, meta_path = sidecar_paths(out)
    report_bytes = json.dumps(report.to_dict(), indent=2).encode()
    hashes = {
        "model_sha256": hashlib.sha256(tflite).hexdigest(),
        "report_sha256": hashlib.sha256(report_bytes).hexdigest(),
    }
    meta_bytes = json.dumps(_with_hashes(meta, hashes), indent=2).encode()
    write_files_atomically({report_path: report_bytes, meta_path: meta_bytes, out: tflite})
    return report_path, meta_path


def _with_hashes(meta: dict[str, Any], hashes: dict[str, str]) -> dict[str, Any]:
    """`meta` with the hashes set, placed after `model_file` as the schema lists them."""
    rest = {k: v for k, v in meta.items() if k not in hashes}
    head = {k: rest.pop(k) for k in ("schema", "model_file") if k in rest}
    return {**head, **hashes, **rest}


def output_set_problems(out: str | Path) -> list[str]:
    """Why OUT.tflite and its sidecars are not one complete set (empty list: they are).

    A reader that wants certainty (a device app, a CI step) calls this, or repeats its hash checks.
    """
    out = Path(out)
    report_path, meta_path = sidecar_paths(out)
    missing = [p.name for p in (out, report_path, meta_path) if not p.is_file()]
    if missing:
        return [f"missing: {', '.join(missing)}"]
    try:
        meta = json.loads(meta_path.read_bytes())
    except (OSError, ValueError) as e:
        return [f"{meta_path.name} is unreadable: {e}"]
    if not isinstance(meta, dict):
        return [f"{meta_path.name} is not a JSON object"]
    problems = []
    for key, path in (("model_sha256", out), ("report_sha256", report_path)):
        if meta.get(key) != hashlib.sha256(path.read_bytes()).hexdigest():
            problems.append(f"{meta_path.name} {key} does not match {path.name}")
    return problems
