"""What `tfcompress analyze` leaves in its folder: sensitivity.json and a ranked bar chart, sensitivity.png."""

from __future__ import annotations

import json
from pathlib import Path

from tfcompress.precision.sensitivity import SensitivityReport


def write_report(report: SensitivityReport, folder: str | Path) -> tuple[Path, Path]:
    """OUT/sensitivity.json and OUT/sensitivity.png, each written atomically."""
    from tfcompress.files import atomic_writer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    json_path = folder / "sensitivity.json"
    with atomic_writer(json_path, "w") as f:
        json.dump(report.to_dict(), f, indent=2)
    return json_path, bar_chart(report, folder / "sensitivity.png")


def bar_chart(report: SensitivityReport, path: Path, top: int = 30) -> Path:
    """SNR won back by leaving each op float (top `top` ops, most harmful first), weight bytes on the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tfcompress.files import atomic_writer

    rows = report.ops[:top]
    labels = [f"{r.rank}. {(r.layers[0] if r.layers else r.tensor)[:28]} ({r.op_type})" for r in rows]
    gains = [r.recovered_snr_db or 0.0 for r in rows]
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(rows) + 1.6))
    y = range(len(rows))
    ax.barh(list(y), gains, color=["tab:red" if g > 0.5 else "tab:gray" for g in gains])
    ax.set_yticks(list(y), labels, fontsize=7)
    ax.invert_yaxis()
    ax.axvline(0, color="k", lw=0.6)
    for i, r in enumerate(rows):
        ax.annotate(f"{r.weight_bytes:,} B", (max(gains[i], 0), i), xytext=(3, 0), textcoords="offset points",
                    va="center", fontsize=6)
    full = report.full_int8.snr_db
    ax.set_xlabel("output SNR won back when the op stays float (dB)")
    ax.set_title(f"{report.model}: full int8 SNR {full:.1f} dB on {report.samples} samples", fontsize=9)
    fig.tight_layout()
    with atomic_writer(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)
    return path
