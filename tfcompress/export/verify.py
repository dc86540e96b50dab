"""Run the source model and the .tflite side by side on held-out samples.

The .tflite runs in the LiteRT interpreter users ship with (`ai_edge_litert`,
default op resolver = builtin kernels + XNNPACK). If it cannot even be
prepared there, it is retried with the reference builtin kernels and the
report says the model needs that resolver.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Annotated, Any, Callable

import numpy as np
from pydantic import BeforeValidator

from tfcompress.errors import ConversionError
from tfcompress.runtime import RESOLVERS, make_interpreter, runtime_version

def _null_is_inf(value: Any) -> Any:
    return math.inf if value is None else value


SnrDb = Annotated[float, BeforeValidator(_null_is_inf)]
"""An SNR in dB as reports hold it: JSON has no infinity, so a perfect match is written as null and read back."""


_INT_RANGES: dict[str, tuple[int, int]] = {
    "int8": (-128, 127),
    "uint8": (0, 255),
    "int16": (-32768, 32767),
}


@dataclass(frozen=True)
class OutputMetrics:
    """How far one .tflite output is from the source model's."""

    name: str
    shape: tuple[int, ...]
    snr_db: SnrDb
    max_abs_error: float
    mean_abs_error: float
    top1_agreement: float | None  # fraction; None when the output is not a class vector
    # Class vectors: samples whose float top-1 leads its runner-up by no more than one output step (the output's
    # quantization scale, or for a float output the largest error seen) can flip on rounding alone: near-ties.
    near_ties: float | None = None  # fraction of samples that are near-ties
    decisive_agreement: float | None = None  # top-1 agreement on the other samples (None: all are near-ties)
    step: float | None = None  # the output step the margins were compared with


@dataclass(frozen=True)
class Accuracy:
    """Top-1 accuracy on labelled verification samples (first output)."""

    source: float
    tflite: float
    samples: int

    @property
    def delta_pp(self) -> float:
        """tflite minus source, in percentage points."""
        return 100.0 * (self.tflite - self.source)


@dataclass(frozen=True)
class Latency:
    """Host latency of one batch-1 inference."""

    median_ms: float
    p90_ms: float
    mean_ms: float
    runs: int
    threads: int
    spread_ms: float = 0.0  # range of the 3 round medians: the run-to-run noise
    busy: bool = False  # other processes used the CPU while it was timed (even after retries)


@dataclass(frozen=True)
class VerifyReport:
    """Everything verification measured."""

    samples: int
    held_out: bool
    outputs: tuple[OutputMetrics, ...]
    accuracy: Accuracy | None
    latency: Latency
    resolver: str  # key of runtime.RESOLVERS the model ran with
    runtime: str
    notes: tuple[str, ...]


class TfliteRunner:
    """Runs a .tflite on float inputs, returning dequantized float outputs.

    Args:
        model_content: the .tflite bytes.
        threads: interpreter threads.
        resolver: "default" (XNNPACK) or "builtin"; "auto" tries default, then builtin.
    """

    def __init__(self, model_content: bytes, threads: int = 1, resolver: str = "auto") -> None:
        self.content = model_content
        self.threads = threads
        self.notes: list[str] = []
        candidates = list(RESOLVERS) if resolver == "auto" else [resolver]
        errors = []
        for name in candidates:
            try:
                self.interpreter = make_interpreter(model_content, num_threads=threads, resolver=name)
                self.resolver = name
                break
            except (RuntimeError, ValueError) as e:
                errors.append(f"{name}: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}")
        else:
            raise ConversionError(
                f"the converted model does not run in {runtime_version()} ({'; '.join(errors)})",
                "report this with the model; try another --mode",
            )
        if self.resolver != "default":
            self.notes.append(
                f"fails to prepare under the default XNNPACK delegate ({errors[0]}); runs only with "
                f"OpResolverType.{RESOLVERS[self.resolver]}"
            )
        self.inputs = self.interpreter.get_input_details()
        self.outputs = self.interpreter.get_output_details()
        self._shapes = None

    def _resize(self, xs: list[np.ndarray]) -> None:
        """Inputs sized as the samples `xs` where the model leaves a dimension open (-1: the batch, a sequence
        length); fixed dimensions stay (a sample that does not fit them fails in set_tensor, naming them)."""
        shapes = tuple(
            tuple(int(n) if open_ else int(m) for n, m, open_ in zip(x.shape, d["shape"], self._open(d)))
            for x, d in zip(xs, self.inputs)
        )
        if self._shapes == shapes:
            return
        for d, shape in zip(self.inputs, shapes):
            if any(self._open(d)) or shape[:1] == (1,):
                self.interpreter.resize_tensor_input(d["index"], list(shape))
        self.interpreter.allocate_tensors()
        self.inputs = self.interpreter.get_input_details()
        self.outputs = self.interpreter.get_output_details()
        self._shapes = shapes

    @staticmethod
    def _open(d: dict) -> list[bool]:
        """Per dimension of input `d`: whether the model accepts any size there."""
        return [n == -1 for n in d.get("shape_signature", d["shape"])]

    @property
    def dynamic_batch(self) -> bool:
        """Whether every input accepts a batch dimension other than 1."""
        return all(list(d.get("shape_signature", [1]))[:1] == [-1] for d in self.inputs)

    def run(self, xs: tuple[np.ndarray, ...], batch: int = 32) -> list[np.ndarray]:
        """Run on all samples; one float array per .tflite output, in interpreter order."""
        batch = batch if self.dynamic_batch else 1
        n = len(xs[0])
        chunks: list[list[np.ndarray]] = []
        for start in range(0, n, batch):
            part = [x[start : start + batch] for x in xs]
            self._resize(part)
            for d, x in zip(self.inputs, part):
                self.interpreter.set_tensor(d["index"], quantize(x, d))
            self.interpreter.invoke()
            chunks.append([dequantize(self.interpreter.get_tensor(d["index"]), d) for d in self.outputs])
        return [np.concatenate([c[i] for c in chunks]) for i in range(len(self.outputs))]

    def latency(self, xs: tuple[np.ndarray, ...], runs: int = 50, warmup: int = 5, budget_s: float = 5.0) -> Latency:
        """Median / p90 of batch-1 invoke() times, a new sample each invoke (up to 64 in turn), under the timing
        protocol.

        The protocol is the profiler's (`tfcompress.edge.edge_profile.measure_items`): pinned to the least
        busy CPU(s), 3 rounds, median of the round medians; a machine busy with other processes is retried, then
        reported (`Latency.busy`). Setting the samples is timed apart and not counted. One sample invoked again and
        again would let the CPU learn it: LiteRT's int8 ReLU ran 2.5x faster on a repeated input (docs/latency.md).
        """
        from tfcompress.edge import edge_profile

        self._resize([x[:1] for x in xs])
        count = min(max(min(len(x) for x in xs), 1), 64)
        pool = [[(d["index"], quantize(x[i:i + 1], d)) for d, x in zip(self.inputs, xs)] for i in range(count)]
        for index, value in pool[0]:
            self.interpreter.set_tensor(index, value)
        item = edge_profile.FreshInputs(self.interpreter, 0, pool=pool) if count > 1 else self.interpreter
        with edge_profile.pinned("auto", self.threads):
            m = edge_profile.measure_items([item], warmup=warmup, runs=runs, budget_s=budget_s)[0]
        return Latency(m.median_ms, m.p90_ms, m.mean_ms, m.runs, self.threads, round(m.spread_ms, 6), m.busy)


def quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    """Float samples -> the interpreter input's dtype, with its scale / zero point."""
    dtype = np.dtype(detail["dtype"])
    scale, zero_point = detail["quantization"]
    if dtype.name in _INT_RANGES and scale:
        lo, hi = _INT_RANGES[dtype.name]
        return np.clip(np.round(x.astype(np.float32) / scale) + zero_point, lo, hi).astype(dtype)
    return x.astype(dtype)


def dequantize(q: np.ndarray, detail: dict) -> np.ndarray:
    """Interpreter output -> float32, with its scale / zero point."""
    scale, zero_point = detail["quantization"]
    if np.dtype(detail["dtype"]).name in _INT_RANGES and scale:
        return ((q.astype(np.float32) - zero_point) * scale).astype(np.float32)
    return q.astype(np.float32)


def match_outputs(source_outs: list[np.ndarray], tflite_outs: list[np.ndarray]) -> list[int]:
    """For each source output, the index of the .tflite output with the same shape.

    The converter may reorder outputs of multi-output models; shapes decide,
    and among equal shapes the first unused one in order is taken.
    """
    used: set[int] = set()
    order = []
    for s in source_outs:
        for j, t in enumerate(tflite_outs):
            if j not in used and t.shape[1:] == s.shape[1:]:
                used.add(j)
                order.append(j)
                break
        else:
            raise ConversionError(
                f"the .tflite has no output of shape {s.shape[1:]} (its outputs: {[t.shape[1:] for t in tflite_outs]})",
                "report this with the model",
            )
    return order


def output_metrics(name: str, ref: np.ndarray, out: np.ndarray, step: float | None = None) -> OutputMetrics:
    """SNR, error and (for class vectors) top-1 agreement of one output, with near-ties set apart.

    `step`: the output's quantization scale (None: a float output; the largest error seen stands in for it).
    An untrained or near-uniform model has most samples within a step of a tie, so its agreement is low while
    its SNR is high: `near_ties` and `decisive_agreement` say which it is.
    """
    ref = ref.astype(np.float64)
    out = out.astype(np.float64)
    noise = float(np.sum((ref - out) ** 2))
    signal = float(np.sum(ref**2))
    snr = float("inf") if noise == 0 else 10.0 * np.log10(max(signal, 1e-30) / noise)
    err = np.abs(ref - out)
    top1 = ties = decisive = used = None
    if ref.ndim == 2 and ref.shape[1] > 1 and len(ref):
        same = np.argmax(ref, axis=1) == np.argmax(out, axis=1)
        top1 = float(np.mean(same))
        used = float(step) if step is not None and step > 0 else float(err.max())
        two = np.sort(ref, axis=1)[:, -2:]
        tie = (two[:, 1] - two[:, 0]) <= used
        ties = float(np.mean(tie))
        decisive = float(np.mean(same[~tie])) if (~tie).any() else None
    return OutputMetrics(name, tuple(int(d) for d in ref.shape[1:]), snr, float(err.max()), float(err.mean()), top1,
                         ties, decisive, used)


def verify(
    source: Any,
    tflite: bytes,
    samples: Any,
    *,
    held_out: bool,
    threads: int = 1,
    latency_runs: int = 50,
    on_progress: Callable[[str], None] | None = None,
) -> VerifyReport:
    """Compare a `SourceModel` and its .tflite on `samples` (a `tfcompress.data.Samples`).

    Args:
        source: the source model (`loading.SourceModel`).
        tflite: the converted model.
        samples: verification samples; labels enable accuracy.
        held_out: whether the samples were not used for calibration.
        threads: interpreter threads for outputs and latency.
        latency_runs: timed batch-1 runs.
        on_progress: called with a short stage message.
    """
    say = on_progress or (lambda _msg: None)
    runner = TfliteRunner(tflite, threads=threads)
    say(f"running the source model on {len(samples)} samples")
    ref = source.predict(samples.x)
    say(f"running the .tflite on {len(samples)} samples ({runtime_version()})")
    got_all = runner.run(samples.x)
    order = match_outputs(ref, got_all)
    got = [got_all[j] for j in order]
    names = [runner.outputs[j]["name"] for j in order]
    scales = [runner.outputs[j]["quantization"][0] if runner.outputs[j]["dtype"] != np.float32 else None
              for j in order]
    outputs = tuple(output_metrics(n, r, g, step) for n, r, g, step in zip(names, ref, got, scales))
    accuracy = None
    if samples.y is not None and ref[0].ndim == 2 and ref[0].shape[1] > 1:
        y = np.asarray(samples.y).reshape(-1)
        accuracy = Accuracy(
            float(np.mean(np.argmax(ref[0], axis=1) == y)), float(np.mean(np.argmax(got[0], axis=1) == y)), len(y)
        )
    say("timing the .tflite")
    latency = runner.latency(samples.x, runs=latency_runs)
    notes = list(runner.notes)
    if not held_out:
        notes.append("verification reused calibration samples (too few samples to hold some out)")
    return VerifyReport(
        samples=len(samples),
        held_out=held_out,
        outputs=outputs,
        accuracy=accuracy,
        latency=latency,
        resolver=runner.resolver,
        runtime=runtime_version(),
        notes=tuple(notes),
    )
