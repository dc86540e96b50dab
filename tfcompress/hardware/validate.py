"""Check the predictor against measured latency on random MobileNet / EfficientNet-style models.

    arch = random_arch(rng)                     # widths, kernels 3/5, expansions, 96-160 px, SE, strides
    result = validate(profile, n=20, seed=1)    # convert int8, time (1 thread), predict
    result.within(0.10), result.median_abs_error
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tfcompress.export.converter import convert_int8_random as convert_int8
from tfcompress.hardware.measure import time_tflite
from tfcompress.hardware.predict import LatencyModel, predict_latency_ms
from tfcompress.hardware.profile import DeviceProfile

__all__ = ["Block", "Arch", "random_arch", "build_arch", "arch_tflites", "space_models", "ValidationRow",
           "Validation", "validate", "scatter_png", "LUT_SEED", "VALIDATION_SEED"]

LUT_SEED = 100
"""Seed of the random architectures a LUT is built from (`tfcompress profile` without models)."""
VALIDATION_SEED = 1
"""Seed of the held-out architectures `validate` draws: none of them is a LUT-building one."""

Progress = Callable[[int, int, str], None]

RESOLUTIONS = (96, 128, 160)
WIDTHS = (8, 16, 24, 32, 40, 48, 64, 80, 96)


@dataclass(frozen=True)
class Block:
    """One inverted-residual (MBConv) block."""

    out: int
    kernel: int
    stride: int
    expand: int
    se: bool


@dataclass(frozen=True)
class Arch:
    resolution: int
    stem: int
    blocks: tuple[Block, ...]
    activation: str  # "relu6" | "hswish"
    classes: int = 10


def random_arch(rng: np.random.Generator, max_blocks: int = 7) -> Arch:
    """A random MobileNetV2/V3 / EfficientNet-like architecture."""
    n = int(rng.integers(3, max_blocks + 1))
    widths = sorted(int(w) for w in rng.choice(WIDTHS, size=n))
    strides_left = int(rng.integers(2, 4))
    blocks = []
    for w in widths:
        stride = 2 if strides_left and rng.random() < 0.5 else 1
        strides_left -= stride == 2
        blocks.append(Block(w, int(rng.choice((3, 5))), stride, int(rng.choice((1, 3, 4, 6))), bool(rng.random() < 0.5)))
    return Arch(int(rng.choice(RESOLUTIONS)), int(rng.choice((8, 16, 24))), tuple(blocks),
                str(rng.choice(("relu6", "hswish"))))


def build_arch(arch: Arch) -> Any:
    """The tf_keras model of `arch` (random weights)."""
    from tfcompress.keras_compat import tf, tf_keras

    L = tf_keras.layers

    def act(y: Any) -> Any:
        if arch.activation == "relu6":
            return L.ReLU(6.0)(y)
        return L.Lambda(lambda t: t * tf.nn.relu6(t + 3.0) / 6.0)(y)

    x = tf_keras.Input((arch.resolution, arch.resolution, 3), batch_size=1)
    y = act(L.BatchNormalization()(L.Conv2D(arch.stem, 3, strides=2, padding="same", use_bias=False)(x)))
    cin = arch.stem
    for b in arch.blocks:
        inp = y
        if b.expand > 1:
            y = act(L.BatchNormalization()(L.Conv2D(cin * b.expand, 1, use_bias=False)(y)))
        y = act(L.BatchNormalization()(L.DepthwiseConv2D(b.kernel, strides=b.stride, padding="same",
                                                         use_bias=False)(y)))
        if b.se:
            mid = max(cin * b.expand // 4, 8)
            s = L.GlobalAveragePooling2D(keepdims=True)(y)
            s = L.Conv2D(mid, 1, activation="relu")(s)
            s = L.Conv2D(cin * b.expand, 1, activation="sigmoid")(s)
            y = L.Multiply()([y, s])
        y = L.BatchNormalization()(L.Conv2D(b.out, 1, use_bias=False)(y))
        if b.stride == 1 and b.out == cin:
            y = L.Add()([y, inp])
        cin = b.out
    y = L.GlobalAveragePooling2D()(y)
    y = L.Dense(arch.classes)(y)
    return tf_keras.Model(x, y)


@dataclass(frozen=True)
class ValidationRow:
    arch: Arch
    measured_ms: float
    predicted_ms: float
    lut_hit_rate: float
    predict_s: float

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
        }


def arch_tflites(n: int, seed: int, on_progress: Progress | None = None) -> list[tuple[Arch, bytes]]:
    """`n` random architectures from `seed`, converted to int8."""
    from tfcompress.keras_compat import tf_keras

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        arch = random_arch(rng)
        tf_keras.utils.set_random_seed(seed * 10_000 + i)  # weights too: the same .tflite every time
        out.append((arch, convert_int8(build_arch(arch))))
        if on_progress is not None:
            on_progress(i + 1, n, f"converted architecture {i + 1}/{n}")
    return out


def space_models(n: int = 20, seed: int = LUT_SEED, on_progress: Progress | None = None) -> list[bytes]:
    """The default LUT space: `n` random MBConv architectures plus the reference FMNIST-CNN, as int8 .tflite."""
    from tfcompress.models import fmnist_cnn

    return [c for _, c in arch_tflites(n, seed, on_progress)] + [convert_int8(fmnist_cnn("tf_keras"))]


def validate(
    profile: DeviceProfile,
    n: int = 20,
    seed: int = VALIDATION_SEED,
    threads: int | None = None,
    models: list[tuple[Arch, bytes]] | None = None,
    on_progress: Progress | None = None,
) -> Validation:
    """Convert, measure (this machine, LiteRT) and predict `n` random architectures not used for the LUT.

    One prediction's time includes reading the .tflite's kernel keys; the
    LUT's regressions are fitted once, beforehand (`LatencyModel`).
    """
    if seed == LUT_SEED:
        raise ValueError(f"seed {LUT_SEED} draws the LUT's own architectures: validate on held-out ones")
    lm = LatencyModel(profile)
    models = models if models is not None else arch_tflites(n, seed, on_progress)
    rows = []
    failed = []
    for i, (arch, content) in enumerate(models):
        try:
            measured = time_tflite(content, threads=threads or profile.threads, runs=50, budget_s=1.0).median_ms
        except RuntimeError as exc:  # the runtime cannot run it (e.g. XNNPACK fails to prepare): nothing to compare
            failed.append((arch, str(exc).splitlines()[0]))
            continue
        t0 = time.perf_counter()
        pred = predict_latency_ms(content, lm)
        rows.append(ValidationRow(arch, measured, pred.total_ms, pred.lut_hit_rate, time.perf_counter() - t0))
        if on_progress is not None:
            on_progress(i + 1, len(models), f"measured {i + 1}/{len(models)}")
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
