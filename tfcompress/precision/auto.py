"""The per-op precision plan under a budget: float where int8 hurts, int4 where it is safe, as rules.

Two greedy passes over the sensitivity ranking (`tfcompress.precision.sensitivity`),
every step a measured model:

1. accuracy (`max_acc_drop`, percentage points below the float model; top-1
   agreement without labels): `budget.choose_float_ops` leaves the most harmful
   ops float until the budget holds;
2. size (`size_kb`, the whole .tflite): while the model is too big, the least
   harmful CONV_2D / FULLY_CONNECTED ops with at least `min_int4_bytes` of int8
   weights get int4 weights (int8 activations, ai-edge-quantizer); a step that
   breaks the accuracy or latency budget is undone.

`latency_ms` on `device` refuses any step whose predicted latency
(`hardware.predict.predict_latency_ms`) exceeds it. Device profiles measure
int8 kernels only: a float or int4 op is predicted by the profile's per-op-type
regression (MACs, bytes), not by a measured kernel; the prediction's LUT hit rate
says how much was measured.

The plan is a list of `PrecisionRule`s, one per layer it changed (`^name$`),
which `tfcompress convert --precision` / a recipe's `export: {precision: ...}`
turn back into the same model (`plan_recipe` writes that recipe).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from tfcompress.precision.budget import choose_float_ops
from tfcompress.precision.mixed import INT4_OPS, quantize_source
from tfcompress.precision.sensitivity import Quality, VariantBench, analyze, constant_bytes, quality
from tfcompress.types import PrecisionRule

MIN_INT4_BYTES = 1024


@dataclass(frozen=True)
class PlanStep:
    """One candidate tried: which layers, to what precision, how the model measured, kept or why not."""

    precision: str
    layers: tuple[str, ...]
    quality: Quality
    tflite_bytes: int
    predicted_ms: float | None
    kept: bool
    why: str


@dataclass(frozen=True)
class PrecisionPlan:
    """The chosen per-op precision, the model it makes and how that measured against the budgets."""

    rules: tuple[PrecisionRule, ...]
    float_layers: tuple[str, ...]
    int4_layers: tuple[str, ...]
    quality: Quality
    full_int8: Quality
    full_int8_bytes: int
    float_accuracy: float | None
    tflite_bytes: int
    predicted_ms: float | None
    met: bool
    unmet: tuple[str, ...]  # each budget missed, with the figures
    steps: tuple[PlanStep, ...]


def rules_for(float_layers: Sequence[str], int4_layers: Sequence[str]) -> tuple[PrecisionRule, ...]:
    """One exact-name rule per layer: float first, then int4 (CONV_2D / FULLY_CONNECTED ops of that layer)."""
    float_rules = [PrecisionRule("float", layer=f"^{re.escape(n)}$") for n in float_layers]
    int4 = [PrecisionRule("int4", layer=f"^{re.escape(n)}$", op="^(CONV_2D|FULLY_CONNECTED)$") for n in int4_layers]
    return (*float_rules, *int4)


def int4_saving(int8_tflite: bytes, min_int4_bytes: int = MIN_INT4_BYTES) -> int:
    """Bytes an int8 .tflite would lose with int4 weights on every op `choose_precision` may give them: half the
    int8 weight bytes of each CONV_2D / FULLY_CONNECTED op whose constant inputs hold >= `min_int4_bytes`
    (an estimate: ai-edge-quantizer's packing and the float32 I/O a mixed model gets are not counted)."""
    from tfcompress.export.tflite_file import read_tflite

    tfl = read_tflite(int8_tflite)
    return sum(constant_bytes(tfl, op, "int8") // 2 for op in tfl.operators
               if op.op_type in INT4_OPS and constant_bytes(tfl, op) >= min_int4_bytes)


def choose_precision(
    model: Any,
    data: Any,
    *,
    max_acc_drop: float | None = None,
    size_kb: float | None = None,
    latency_ms: float | None = None,
    device: Any = "host",
    calib_samples: int = 200,
    samples: int = 500,
    min_int4_bytes: int = MIN_INT4_BYTES,
    safe_mode: bool = True,
    on_progress: Callable[[str], None] | None = None,
) -> PrecisionPlan:
    """The plan described in the module doc (at least one budget)."""
    from tfcompress.errors import TfcompressError
    from tfcompress.export.converter import convert_float32
    from tfcompress.export.verify import TfliteRunner

    if max_acc_drop is None and size_kb is None and latency_ms is None:
        raise TfcompressError("a precision plan needs a budget", "give --max-acc-drop, --size-kb and / or --latency-ms")
    say = on_progress or (lambda _m: None)
    bench = VariantBench(model, data, calib_samples=calib_samples, samples=samples, safe_mode=safe_mode, say=say)
    predict = _latency(latency_ms, device)
    ranking = analyze(None, None, device=None, bench=bench, on_progress=say)
    full_bytes = len(bench.build(()))
    ref = bench.float_accuracy if bench.float_accuracy is not None else 1.0

    def acc_ok(q: Quality) -> bool:
        score = q.accuracy if bench.float_accuracy is not None else q.agreement
        return max_acc_drop is None or (score is not None and 100.0 * (ref - score) <= max_acc_drop)

    def latency_refusal(tflite: bytes) -> str | None:
        ms = predict(tflite)
        return f"predicted {ms:.3f} ms > {latency_ms} ms" if ms is not None and ms > latency_ms else None

    steps: list[PlanStep] = []
    float_tensors: tuple[str, ...] = ()
    tflite = bench.build(())
    q = bench.measure(())
    if max_acc_drop is not None:
        choice = choose_float_ops(None, None, max_acc_drop=max_acc_drop, report=ranking, bench=bench,
                                  on_progress=say, accept=latency_refusal if latency_ms is not None else None)
        float_tensors, tflite, q = choice.float_ops, choice.tflite, choice.quality
        steps += [PlanStep("float", s.layers, s.quality, s.tflite_bytes, None, s.kept, s.why) for s in choice.steps]
    float_layers = tuple(n for r in ranking.ops if r.tensor in float_tensors for n in r.layers)
    int4_layers: list[str] = []
    if size_kb is not None and len(tflite) > size_kb * 1024:
        float_tflite = convert_float32(bench.source)
        candidates = [r for r in reversed(ranking.ops) if r.op_type in INT4_OPS and r.tensor not in float_tensors
                      and r.weight_bytes >= min_int4_bytes and r.layers]
        for r in candidates:
            if len(tflite) <= size_kb * 1024:
                break
            trial = [*int4_layers, *r.layers]
            mixed = quantize_source(bench.source, bench.calib, rules_for(float_layers, trial), float_tflite=float_tflite)
            tq = quality(bench.reference, TfliteRunner(mixed.tflite).run(bench.held.x)[0], bench.labels)
            refused = None if acc_ok(tq) else "breaks the accuracy budget"
            refused = refused or (latency_refusal(mixed.tflite) if latency_ms is not None else None)
            kept = refused is None
            say(f"{'+' if kept else '-'} int4 {', '.join(r.layers)}: {len(mixed.tflite):,} B, SNR {tq.snr_db:.1f} dB"
                f" ({refused or 'kept'})")
            steps.append(PlanStep("int4", r.layers, tq, len(mixed.tflite), predict(mixed.tflite), kept,
                                  refused or "kept"))
            if kept:
                int4_layers, tflite, q = trial, mixed.tflite, tq
    ms = predict(tflite)
    unmet = []
    if not acc_ok(q):
        unmet.append(f"accuracy drop over {max_acc_drop} pp")
    if size_kb is not None and len(tflite) > size_kb * 1024:
        unmet.append(f"{len(tflite) / 1024:.1f} KiB > {size_kb} KiB")
    if latency_ms is not None and ms is not None and ms > latency_ms:
        unmet.append(f"predicted {ms:.3f} ms > {latency_ms} ms")
    return PrecisionPlan(rules_for(float_layers, int4_layers), float_layers, tuple(int4_layers), q,
                         ranking.full_int8, full_bytes, bench.float_accuracy, len(tflite), ms, not unmet,
                         tuple(unmet), tuple(steps))


def _latency(latency_ms: float | None, device: Any) -> Callable[[bytes], float | None]:
    """Predicted total ms of a .tflite on `device` (None when no latency budget is given)."""
    if latency_ms is None:
        return lambda _t: None
    from tfcompress.errors import TfcompressError
    from tfcompress.hardware.predict import LatencyModel, predict_latency_ms
    from tfcompress.hardware.profile import resolve_profile

    if device is None:
        raise TfcompressError("--latency-ms needs a device profile", "give --device host (or a profile JSON)")
    lm = LatencyModel(resolve_profile(device))
    return lambda tflite: predict_latency_ms(tflite, lm).total_ms


def plan_recipe(plan: PrecisionPlan, *, name: str, mode: str, calib_samples: int, command: str = "") -> str:
    """The plan as a recipe YAML: one `convert` stage whose precision rules rebuild the same model."""
    import yaml

    params: dict[str, Any] = {"mode": mode, "calib_samples": calib_samples,
                              "precision": [r.entry() for r in plan.rules]}
    doc = {"name": f"{name}-precision",
           "description": f"per-op precision chosen under a budget: {len(plan.float_layers)} layer(s) float, "
                          f"{len(plan.int4_layers)} int4, the rest {mode}",
           "stages": [{"technique": "convert", "params": params}]}
    head = "# per-op precision plan written by tfcompress" + (f": {command}" if command else "") + "\n" \
           "# rebuild the same model: tfcompress convert MODEL --data SAME_DATA --recipe THIS_FILE -o OUT.tflite\n"
    return head + yaml.safe_dump(doc, sort_keys=False, width=100)


def write_plan(text: str, path: str | Path) -> Path:
    """Write the plan recipe atomically."""
    from tfcompress.files import atomic_writer

    path = Path(path)
    with atomic_writer(path, "w") as f:
        f.write(text)
    return path
