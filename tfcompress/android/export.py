"""`tfcompress android-export`: a checked model, its sidecar and labels into the demo app's assets.

The three files replace the previous ones together (`tfcompress.files.write_files_atomically`: all written
to temp files first, then renamed, the model last), so the app never sees a model beside another model's
sidecar; the app itself compares the model's sha256 with the sidecar's before it runs anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfcompress.android.fit import check_model
from tfcompress.android.project import ASSET_LABELS, ASSET_MODEL, ASSET_SIDECAR, read_app_project
from tfcompress.files import check_writable, write_files_atomically

__all__ = ["AndroidExport", "export_to_app"]


@dataclass(frozen=True)
class AndroidExport:
    """What `export_to_app` wrote, for the terminal and `--json`."""

    model: Path
    assets: Path
    files: tuple[Path, ...]
    sha256: str
    input: str
    output: str
    labels: int
    labels_from_sidecar: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": str(self.model),
            "assets": str(self.assets),
            "files": [str(p) for p in self.files],
            "sha256": self.sha256,
            "input": self.input,
            "output": self.output,
            "labels": self.labels,
            "labels_from_sidecar": self.labels_from_sidecar,
        }


def export_to_app(model: str | Path, app: str | Path) -> AndroidExport:
    """Check `model` (and its `.meta.json`) against the app at `app`, then write it into the app's assets.

    Raises:
        TfcompressError: `app` is not the demo app, or the model does not fit it (`fit.check_model`), or a
            target cannot be written; nothing is written then.
    """
    project = read_app_project(app)
    checked = check_model(model)
    assets = project.assets
    labels_text = "".join(f"{label.strip()}\n" for label in checked.labels).encode("utf-8")
    targets = {
        assets / ASSET_LABELS: labels_text,
        assets / ASSET_SIDECAR: checked.sidecar_bytes,
        assets / ASSET_MODEL: checked.tflite,
    }
    check_writable(assets / ASSET_MODEL)  # makes app/src/main/assets when a fresh checkout has none
    write_files_atomically(targets)
    return AndroidExport(
        model=checked.path,
        assets=assets,
        files=tuple(targets),
        sha256=checked.sha256,
        input=_describe(checked.input),
        output=_describe(checked.output),
        labels=checked.classes,
        labels_from_sidecar=checked.labels_from_sidecar,
    )


def _describe(entry: dict[str, Any]) -> str:
    text = f"{entry['dtype']} {entry['shape']}"
    if entry["dtype"] != "float32":
        text += f" (scale {entry['scale']:.6g}, zero point {entry['zero_point']})"
    return text

