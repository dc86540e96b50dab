"""Per-layer int4 weights in a search (`SearchSettings.int4`): the size the budget judges, and the int4 layers.

While searching, a genome's size is an estimate: its int8 .tflite less half the int8 weights of every
CONV_2D / FULLY_CONNECTED op that may take int4 (`precision.auto.int4_saving`, `Cost.int4_bytes`); the
structure is chosen on that figure. Then, when the final int8 model is over the size budget,
`precision.auto.choose_precision` gives its least harmful layers int4 weights one at a time (each step a
model quantized by ai-edge-quantizer and run in LiteRT, undone if it breaks the accuracy or latency budget)
until the size holds. Its rules go into the recipe's export, and the final model is converted again with
them (`conversion.convert`: verified in LiteRT, every op's precision read back from the file). When the
written file is still over (the planner refused layers the estimate counted), the search tightens the size
budget it judges estimates against and goes on (`runner.search`, `state.sizes`). int4 is chosen after the
structure, not jointly with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tfcompress.errors import TfcompressError
from tfcompress.search.cost import Cost
from tfcompress.search.settings import SearchSettings

__all__ = ["Int4Result", "add_int4", "budget_bytes", "check_int4"]


@dataclass(frozen=True)
class Int4Result:
    """What the int4 step did to the final model."""

    layers: tuple[str, ...]  # layers given int4 weights (empty: none; the int8 model is kept)
    float_layers: tuple[str, ...]  # layers the plan's accuracy pass left float (only with int4 layers)
    rules: tuple[str, ...]  # the precision rules (`--precision` text) in best.yaml's export
    bytes_before: int  # the final int8 .tflite
    bytes_after: int  # the written .tflite
    accuracy_before: float | None  # the final int8 model in LiteRT, on the validation data
    accuracy_after: float | None  # the written model in LiteRT, on the validation data
    predicted_ms: float | None  # the written model, predicted on the device (int4 ops by the per-op-type regression)
    unmet: tuple[str, ...]  # budgets the plan could not meet, with the figures


def check_int4(s: SearchSettings) -> None:
    """With int4 on: a size budget, and ai-edge-quantizer importable (before any work)."""
    if not s.int4:
        return
    if s.size_kb is None:
        raise TfcompressError("int4 needs a size budget: layers take int4 weights only where it needs them",
                              "give size_kb (on the command line: --size-kb KB), or leave int4 off")
    from tfcompress.precision.mixed import require_quantizer

    require_quantizer("int4 in the search")


def budget_bytes(c: Cost, s: SearchSettings) -> int:
    """The size a genome is judged on while searching: the int4 estimate with int4 on, else its int8 size."""
    return c.int4_bytes if s.int4 else c.int8_bytes


def add_int4(result: Any, calib: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray],
             reference: float, s: SearchSettings, profile: Any, output: Path,
             say: Callable[[str], None]) -> tuple[Int4Result, Any]:
    """int4 layers for `result` (a `compress` result over the size budget), planned on its Keras model.

    `calib` / `val`: labelled samples at the original's input size (resized here to the model's); the accuracy
    budget is the search's (points below `reference`, the original's float accuracy), so the plan gets what the
    final model's own float accuracy leaves of it. Returns (what was done, the new `ConvertResult` written to
    `output`, or None when no layer took int4 and `result`'s model stays).
    """
    from tfcompress.conversion import ConvertOptions, convert
    from tfcompress.data import Samples, follow_inputs, input_shapes
    from tfcompress.precision.auto import choose_precision
    from tfcompress.search.trial import accuracy

    model = result.model
    shapes = input_shapes(model)
    calib_s = follow_inputs(Samples((calib[0],), calib[1], "search: training data"), shapes)
    val_s = follow_inputs(Samples((val[0],), val[1], "search: validation data"), shapes)
    before = len(result.convert.tflite)
    verify = result.convert.report.verify
    acc_before = verify.accuracy.tflite if verify is not None and verify.accuracy is not None else None
    drop = None
    if s.max_acc_drop is not None:
        drop = max(0.0, s.max_acc_drop - 100 * (reference - accuracy(model, val_s.x[0], val[1])))
    say(f"the result is {before:,} B > {s.size_kb:g} KiB: choosing int4 layers (each step measured in LiteRT)")
    both = Samples((np.concatenate([calib_s.x[0], val_s.x[0]]),), np.concatenate([calib[1], val[1]]), "search")
    plan = choose_precision(model, both, max_acc_drop=drop, size_kb=s.size_kb, latency_ms=s.latency_ms,
                            device=profile, calib_samples=len(calib_s), samples=len(val_s), on_progress=say)
    if not plan.int4_layers:
        say("no layer could take int4 weights within the budgets: the int8 model stays")
        return Int4Result((), (), (), before, before, acc_before, acc_before, None, plan.unmet), None
    say(f"converting again with {len(plan.int4_layers)} int4 layer(s): {', '.join(plan.int4_layers)}")
    options = ConvertOptions(mode="int8", calib_samples=len(calib_s), verify=True, verify_samples=None,
                             safe_mode=False, device=profile, precision=plan.rules)
    mixed = convert(model, calib_s, verify_data=val_s, options=options, output=output, on_progress=say)
    v, pred = mixed.report.verify, mixed.report.predicted_latency
    acc_after = v.accuracy.tflite if v is not None and v.accuracy is not None else None
    return Int4Result(plan.int4_layers, plan.float_layers, tuple(r.text() for r in plan.rules), before,
                      len(mixed.tflite), acc_before, acc_after, pred.total_ms if pred is not None else None,
                      plan.unmet), mixed
