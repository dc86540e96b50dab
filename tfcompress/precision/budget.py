"""Choosing which ops stay float: the fewest, most useful ones that bring int8 within an accuracy budget.

Greedy over the sensitivity ranking (`tfcompress.precision.sensitivity`): start
from full int8; while the budget is not met, take the next op that leaving float
helps (ranked by the SNR it wins back alone), keep it if the model measured with
it gets better and still fits the size budget, else drop it; stop when the
budget holds or the candidates run out. Every step is measured (one
re-quantization of the same calibration, run in LiteRT), so the result is the
measured model, not an estimate.

Budgets: `max_acc_drop` (percentage points below the float model's accuracy on
labelled samples; top-1 agreement with the float model when there are no
labels), `min_snr_db` (output SNR against the float model), `size_kb` (the
.tflite may not grow past it), and `accept` (any other check of a candidate
model, e.g. its predicted latency: `tfcompress.precision.auto`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from tfcompress.precision.sensitivity import Quality, SensitivityReport, VariantBench, analyze


@dataclass(frozen=True)
class ChoiceStep:
    """One candidate tried: the op, the model measured with it float, whether it was kept."""

    tensor: str
    layers: tuple[str, ...]
    quality: Quality
    tflite_bytes: int
    kept: bool
    why: str


@dataclass(frozen=True)
class PrecisionChoice:
    """The ops chosen to stay float, the model that makes, and how it measured."""

    float_ops: tuple[str, ...]  # output tensor names (`quantize_calibrated`'s float_ops)
    float_layers: tuple[str, ...]
    quality: Quality
    full_int8: Quality
    float_accuracy: float | None
    tflite: bytes
    met: bool
    steps: tuple[ChoiceStep, ...]

    def loss_recovered(self) -> float | None:
        """Fraction of full int8's accuracy (or agreement) loss this choice wins back; None when int8 lost nothing."""
        ref = self.float_accuracy if self.float_accuracy is not None else 1.0
        before = _score(self.full_int8, self.float_accuracy)
        after = _score(self.quality, self.float_accuracy)
        if before is None or after is None or ref - before <= 0:
            return None
        return (after - before) / (ref - before)


def _score(q: Quality, float_accuracy: float | None) -> float | None:
    return q.accuracy if float_accuracy is not None else q.agreement


def choose_float_ops(
    model: Any,
    data: Any,
    *,
    max_acc_drop: float | None = None,
    min_snr_db: float | None = None,
    size_kb: float | None = None,
    calib_samples: int = 200,
    samples: int = 500,
    safe_mode: bool = True,
    report: SensitivityReport | None = None,
    bench: VariantBench | None = None,
    on_progress: Callable[[str], None] | None = None,
    accept: Callable[[bytes], str | None] | None = None,
) -> PrecisionChoice:
    """The greedy choice described in the module doc (at least one of the accuracy / SNR budgets is needed).

    `accept(tflite)` returns why a candidate model is refused (None: accepted).
    """
    if max_acc_drop is None and min_snr_db is None:
        raise ValueError("give max_acc_drop (percentage points) and / or min_snr_db")
    say = on_progress or (lambda _m: None)
    b = bench or VariantBench(model, data, calib_samples=calib_samples, samples=samples, safe_mode=safe_mode, say=say)
    ranking = report or analyze(None, None, device=None, bench=b, on_progress=say)

    def fits(q: Quality) -> bool:
        ok = True
        if min_snr_db is not None:
            ok = ok and q.snr_db >= min_snr_db
        if max_acc_drop is not None:
            score = _score(q, b.float_accuracy)
            ref = b.float_accuracy if b.float_accuracy is not None else 1.0
            ok = ok and score is not None and 100.0 * (ref - score) <= max_acc_drop
        return ok

    chosen: list[str] = []
    best = b.measure(())
    best_model = b.build(())
    steps: list[ChoiceStep] = []
    candidates = [r for r in ranking.ops if r.recovered_snr_db is not None and r.recovered_snr_db > 0]
    for op in candidates:
        if fits(best):
            break
        trial = (*chosen, op.tensor)
        tflite = b.build(trial)
        q = b.measure(trial)
        too_big = size_kb is not None and len(tflite) > size_kb * 1024
        refused = accept(tflite) if accept is not None and not too_big else None
        better = q.snr_db > best.snr_db
        kept = better and not too_big and refused is None
        why = "kept" if kept else ("over the size budget" if too_big else refused if refused is not None
                                   else "did not help with the others float")
        say(f"{'+' if kept else '-'} {', '.join(op.layers) or op.tensor}: SNR {q.snr_db:.1f} dB ({why})")
        steps.append(ChoiceStep(op.tensor, op.layers, q, len(tflite), kept, why))
        if kept:
            chosen.append(op.tensor)
            best, best_model = q, tflite
    layers = tuple(name for r in ranking.ops if r.tensor in chosen for name in r.layers)
    return PrecisionChoice(tuple(chosen), layers, best, ranking.full_int8, b.float_accuracy, best_model, fits(best),
                           tuple(steps))
