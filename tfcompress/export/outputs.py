"""Publishing a conversion: OUT.tflite with OUT.report.json and OUT.meta.json beside it, all or nothing.

Used by both `convert` and `compress`: the report is any frozen report value
with `to_dict` (`tfcompress.report`), the sidecar the dict of
`tfcompress.export.sidecar.build_meta`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol


class Report(Protocol):
    """A report value that has a JSON form."""

    def to_dict(self) -> dict[str, Any]: ...


def sidecar_paths(out: Path) -> tuple[Path, Path]:
    """OUT.report.json and OUT.meta.json beside OUT.tflite."""
    stem = out.name[: -len(out.suffix)] if out.suffix else out.name
    return out.with_name(f"{stem}.report.json"), out.with_name(f"{stem}.meta.json")


def write_outputs(out: Path, tflite: bytes, report: Report, meta: dict[str, Any]) -> tuple[Path, Path]:
    """Write the three files together (temp files renamed at the end); returns (report path, meta path)."""
    from tfcompress.files import write_files_atomically

    report_path, meta_path = sidecar_paths(out)
    write_files_atomically(
        {
            out: tflite,
            report_path: json.dumps(report.to_dict(), indent=2).encode(),
            meta_path: json.dumps(meta, indent=2).encode(),
        }
    )
    return report_path, meta_path
