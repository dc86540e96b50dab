"""The accuracy / latency / size trade-off a search found: Pareto front, table, JSON and PNG."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

__all__ = ["Point", "pareto", "plot_front", "table"]


@dataclass(frozen=True)
class Point:
    """One trained genome: trial accuracy, LUT-predicted latency, int8 size (and the int4 estimate when searching
    with int4); measured latency when timed."""

    genome: str
    accuracy: float
    predicted_ms: float
    int8_bytes: int
    params: int
    measured_ms: float | None = None
    within_budget: bool = False
    chosen: bool = False
    int4_bytes: int | None = None  # searching with int4: the int8 size less half the int4-eligible weights (estimate)

    @property
    def size_bytes(self) -> int:
        """The size the budget judges: the int4 estimate when searching with int4, else the int8 size."""
        return self.int4_bytes if self.int4_bytes is not None else self.int8_bytes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pareto(points: Sequence[Point]) -> list[Point]:
    """The points no other point beats on accuracy, predicted latency and size (`size_bytes`) at once, fastest
    first."""
    front = []
    for p in points:
        dominated = any(
            q.accuracy >= p.accuracy and q.predicted_ms <= p.predicted_ms and q.size_bytes <= p.size_bytes
            and (q.accuracy > p.accuracy or q.predicted_ms < p.predicted_ms or q.size_bytes < p.size_bytes)
            for q in points)
        if not dominated:
            front.append(p)
    return sorted(front, key=lambda p: (p.predicted_ms, -p.accuracy))


def table(points: Sequence[Point], budget_ms: float | None) -> str:
    """The front as a text table (markdown pipes, readable in a terminal too)."""
    within = f"<= {budget_ms:g} ms" if budget_ms else "within budget"
    int4 = any(p.int4_bytes is not None for p in points)
    lines = [f"| trial acc | predicted ms | measured ms | int8 bytes |{' int4 bytes (est.) |' if int4 else ''} "
             f"params | {within} | genome |", "|---:|---:|---:|---:|" + ("---:|" if int4 else "") + "---:|:-:|---|"]
    for p in points:
        measured = f"{p.measured_ms:.3f}" if p.measured_ms is not None else "-"
        mark = ("yes" if p.within_budget else "no") + (" *" if p.chosen else "")
        est = (f" {p.int4_bytes:,} |" if p.int4_bytes is not None else " - |") if int4 else ""
        lines.append(f"| {100 * p.accuracy:.2f}% | {p.predicted_ms:.3f} | {measured} | {p.int8_bytes:,} |{est} "
                     f"{p.params:,} | {mark} | {p.genome} |")
    return "\n".join(lines)


def plot_front(points: Sequence[Point], front: Sequence[Point], budget_ms: float, path: Path, title: str) -> None:
    """Accuracy vs predicted latency of every trained genome (colour: int8 size), the front, the budget,
    and measured latencies where the finalists were timed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    sc = ax.scatter([p.predicted_ms for p in points], [100 * p.accuracy for p in points],
                    c=[p.int8_bytes / 1024 for p in points], cmap="viridis", s=22, label="trials (predicted)")
    fig.colorbar(sc, ax=ax, label="int8 size (KiB)")
    ax.plot([p.predicted_ms for p in front], [100 * p.accuracy for p in front], "k-", lw=1, label="Pareto front")
    timed = [p for p in points if p.measured_ms is not None]
    if timed:
        ax.scatter([p.measured_ms for p in timed], [100 * p.accuracy for p in timed], marker="x", c="tab:red",
                   s=40, label="finalists (measured)")
    chosen = [p for p in points if p.chosen]
    if chosen:
        ax.scatter([chosen[0].predicted_ms], [100 * chosen[0].accuracy], marker="*", s=160, c="tab:orange",
                   edgecolors="k", label="chosen", zorder=5)
    ax.axvline(budget_ms, color="tab:red", ls="--", lw=1, label=f"budget {budget_ms:g} ms")
    ax.set_xlabel("int8 latency (ms)")
    ax.set_ylabel("trial accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
