"""Check the predictor against latency measured here on held-out models (MBConv space and outside it).

    result = validate(profile, n=20, seed=1)         # convert int8, time (1 thread, protocol), predict
    result = validate(profile, models=application_models())   # stock keras.applications: outside the space
    result.within(0.10), result.median_abs_error, result.noise_floor, result.busy

Each model is timed under the timing protocol (`edge_profile.measure_interleaved`: pinned, >= 3 rounds
interleaved across models, median of round medians); its run-to-run spread is the range of its round medians, and
each prediction is scored against the median and against that spread.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tfcompress.hardware.measure import prepared, time_interpreters
from tfcompress.hardware.predict import LatencyModel, predict_latency_ms
from tfcompress.hardware.profile import DeviceProfile
from tfcompress.hardware.spaces import (
    LUT_SEED,
    VALIDATION_SEED,
    Arch,
    Block,
    arch_tflites,
    build_arch,
    application_models,
    family_models,
    random_arch,
    space_models,
)

__all__ = ["Block", "Arch", "random_arch", "build_arch", "arch_tflites", "space_models", "family_models",
           "application_models",
           "ValidationRow", "Validation", "validate", "scatter_png", "LUT_SEED", "VALIDATION_SEED", "describe"]

Progress = Callable[[int, int, str], None]


def describe(arch: Arch | str) -> str:
    """One line naming a held-out model."""
    if isinstance(arch, str):
        return arch
    return (f"{arch.resolution}px {len(arch.blocks)} blocks se={sum(b.se for b in arch.blocks)} {arch.activation}")


@dataclass(frozen=True)
class ValidationRow:
    arch: Arch | str  # a random MBConv architecture, or the name of a model outside that space
    measured_ms: float  # median of the round medians
    predicted_ms: float
    lut_hit_rate: float
    predict_s: float
    rounds_ms: tuple[float, ...] = ()
    busy: bool = False  # other processes used the CPU while it was timed

    @property
    def spread(self) -> float:
        """Run-to-run noise: range of the round medians relative to their median."""
        return (max(self.rounds_ms) - min(self.rounds_ms)) / self.measured_ms if len(self.rounds_ms) > 1 else 0.0

    @property
    def within_spread(self) -> bool:
        """The prediction lies within the range of the round medians (the measurement cannot tell them apart)."""
        return bool(self.rounds_ms) and min(self.rounds_ms) <= self.predicted_ms <= max(self.rounds_ms)

    @property
    def error(self) -> float:
        """Signed relative error of the prediction."""
        return (self.predicted_ms - self.measured_ms) / self.measured_ms


@dataclass(frozen=True)
class Validation:
    rows: tuple[ValidationRow, ...]
    failed: tuple[tuple[Arch, str], ...] = ()  # models the runtime could not run (not counted in the errors)

    @property
    def errors(self) -> np.ndarray:
        return np.array([r.error for r in self.rows])

    def within(self, tol: float) -> float:
        return float(np.mean(np.abs(self.errors) <= tol)) if self.rows else 0.0

    @property
    def median_abs_error(self) -> float:
        return float(np.median(np.abs(self.errors))) if self.rows else 0.0

    @property
    def busy(self) -> int:
        """Models timed while other processes used the CPU (their errors mean little)."""
        return sum(r.busy for r in self.rows)

    @property
    def noise_floor(self) -> float:
        """Median run-to-run spread of the measured models (relative)."""
        return float(np.median([r.spread for r in self.rows])) if self.rows else 0.0

    def summary(self) -> dict[str, float]:
        """The error distribution: share within ±5/10/20%, median / mean / p90 / worst error, slowest prediction."""
        e = self.errors
        if not self.rows:
            return {"models": 0}
        return {
            "models": len(self.rows),
            "failed_to_run": len(self.failed),
            "within_5pct": self.within(0.05),
            "within_10pct": self.within(0.10),
            "within_20pct": self.within(0.20),
            "median_abs_error": self.median_abs_error,
            "mean_error": float(e.mean()),
            "p90_abs_error": float(np.percentile(np.abs(e), 90)),
            "worst_error": float(e[np.argmax(np.abs(e))]),
            "max_predict_ms": 1e3 * max(r.predict_s for r in self.rows),
            "noise_floor": self.noise_floor,
            "p90_spread": float(np.percentile([r.spread for r in self.rows], 90)),
            "within_spread": float(np.mean([r.within_spread for r in self.rows])),
            "busy": self.busy,
        }


def validate(
    profile: DeviceProfile,
    n: int = 20,
    seed: int = VALIDATION_SEED,
    threads: int | None = None,
    models: list[tuple[Any, bytes]] | None = None,
    rounds: int = 3,
    on_progress: Progress | None = None,
) -> Validation:
    """Convert, measure (this machine, LiteRT, the timing protocol) and predict held-out models.

    Args:
        models: (Arch or name, .tflite) pairs; default `n` random MBConv architectures drawn from `seed`.
        rounds: interleaved timing rounds per model (>= 3 gives a spread).

    One prediction's time includes reading the .tflite's kernel keys; the
    LUT's regressions are fitted once, beforehand (`LatencyModel`).
    """
    if seed == LUT_SEED and models is None:
        raise ValueError(f"seed {LUT_SEED} draws the LUT's own architectures: validate on held-out ones")
    lm = LatencyModel(profile)
    models = models if models is not None else arch_tflites(n, seed, on_progress)
    threads = threads or profile.threads
    failed = []
    runnable = []  # (arch, content, interpreter): each model is prepared once, checked, then timed
    for arch, content in models:  # a model the runtime cannot prepare (XNNPACK may refuse one) is not counted
        try:
            interp = prepared(content, threads=threads)
            interp.invoke()
        except (RuntimeError, ValueError) as exc:
            failed.append((arch, str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
        else:
            runnable.append((arch, content, interp))

    def step(done: int, total: int) -> None:
        if on_progress is not None:
            on_progress(done, total, f"timed {done}/{total} ({rounds} interleaved rounds)")

    measured = time_interpreters([r[2] for r in runnable], threads=threads, rounds=rounds, runs=15 * rounds,
                                 budget_s=0.3 * rounds, on_progress=step)
    rows = []
    for (arch, content, _), m in zip(runnable, measured):
        t0 = time.perf_counter()
        pred = predict_latency_ms(content, lm)
        rows.append(ValidationRow(arch, m.median_ms, pred.total_ms, pred.lut_hit_rate, time.perf_counter() - t0,
                                  m.rounds_ms, m.busy))
    return Validation(tuple(rows), tuple(failed))


def scatter_png(v: Validation, path: str | Path, title: str = "") -> Path:
    """Predicted-vs-measured scatter (log-log) with the ±10% band, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tfcompress.files import atomic_writer
    m = np.array([r.measured_ms for r in v.rows])
    p = np.array([r.predicted_ms for r in v.rows])
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    lo, hi = float(min(m.min(), p.min())) * 0.8, float(max(m.max(), p.max())) * 1.25
    line = np.array([lo, hi])
    ax.plot(line, line, "k-", lw=0.8, label="predicted = measured")
    ax.fill_between(line, line * 0.9, line * 1.1, color="tab:green", alpha=0.15, label="±10%")
    inside = np.abs(v.errors) <= 0.10
    ax.scatter(m[inside], p[inside], s=14, c="tab:blue", label="within ±10%")
    ax.scatter(m[~inside], p[~inside], s=18, c="tab:red", marker="x", label="outside")
    ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi), xlabel="measured latency (ms)",
           ylabel="predicted latency (ms)")
    ax.set_title((title + "\n" if title else "")
                 + f"{len(v.rows)} models: {v.within(0.10):.0%} within ±10%, median |err| {v.median_abs_error:.1%}",
                 fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    path = Path(path)
    with atomic_writer(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)
    return path
