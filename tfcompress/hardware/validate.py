"""Check the predictor against measured latency on random MobileNet / EfficientNet-style models.

    arch = random_arch(rng)                     # widths, kernels 3/5, expansions, 96-160 px, SE, strides
    result = validate(profile, n=20, seed=1)    # convert int8, time (1 thread), predict
    result.within(0.10), result.median_abs_error
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tfcompress.hardware.lut import LatencyModel, convert_int8, predict_latency_ms, time_tflite
from tfcompress.hardware.profile import DeviceProfile

__all__ = ["Block", "Arch", "random_arch", "build_arch", "ValidationRow", "Validation", "validate", "scatter_png"]

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

    @property
    def errors(self) -> np.ndarray:
        return np.array([r.error for r in self.rows])

    def within(self, tol: float) -> float:
        return float(np.mean(np.abs(self.errors) <= tol)) if self.rows else 0.0

    @property
    def median_abs_error(self) -> float:
        return float(np.median(np.abs(self.errors))) if self.rows else 0.0


def arch_tflites(n: int, seed: int) -> list[tuple[Arch, bytes]]:
    """`n` random architectures from `seed`, converted to int8."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        arch = random_arch(rng)
        out.append((arch, convert_int8(build_arch(arch))))
    return out


def validate(
    profile: DeviceProfile, n: int = 20, seed: int = 1, threads: int = 1, models: list[tuple[Arch, bytes]] | None = None
) -> Validation:
    """Measure and predict `n` random architectures (seed them apart from the LUT's)."""
    lm = LatencyModel(profile)
    rows = []
    for arch, content in models if models is not None else arch_tflites(n, seed):
        measured = time_tflite(content, threads=threads, runs=50, budget_s=1.0).median_ms
        t0 = time.perf_counter()
        pred = predict_latency_ms(content, lm)
        rows.append(ValidationRow(arch, measured, pred.total_ms, pred.lut_hit_rate, time.perf_counter() - t0))
    return Validation(tuple(rows))


def scatter_png(v: Validation, path: str | Path) -> Path | None:
    """Predicted-vs-measured scatter with the ±10% band; None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    m = np.array([r.measured_ms for r in v.rows])
    p = np.array([r.predicted_ms for r in v.rows])
    fig, ax = plt.subplots(figsize=(5, 5))
    lim = (0, float(max(m.max(), p.max())) * 1.1)
    ax.plot(lim, lim, "k-", lw=0.8)
    ax.plot(lim, [lim[0] * 1.1, lim[1] * 1.1], "k:", lw=0.8)
    ax.plot(lim, [lim[0] * 0.9, lim[1] * 0.9], "k:", lw=0.8)
    ax.scatter(m, p, s=12)
    ax.set(xlim=lim, ylim=lim, xlabel="measured ms", ylabel="predicted ms",
           title=f"{v.within(0.10):.0%} within ±10%, median |err| {v.median_abs_error:.1%}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
