"""Per-op quantization sensitivity: which ops lose accuracy in int8, what each costs, ranked.

The model is calibrated once; every variant is then a millisecond re-quantization
of the same calibration (`export.converter.quantize_calibrated`), so the
variants differ only in which ops stay float. For every op of the model:

* alone: only this op in int8, every other op float -> the error it adds by itself;
* kept float: every op in int8 except this one -> how much of the full-int8 loss
  leaving it float wins back (`recovered_snr_db`).

Each variant runs in LiteRT (with float inputs and outputs, so the model's own
I/O quantization is charged to no op) on held-out samples and is compared with the float
Keras model: output SNR, top-1 agreement and, with labels, accuracy. Next to
that: the op's int8 weight bytes and its predicted latency on a device profile.
Ops are ranked by `recovered_snr_db` (most harmful in int8 first). Results are
cached per variant in the output folder, keyed by the calibrated model and the
samples, so an interrupted analysis resumes.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
from pydantic import TypeAdapter

from tfcompress.errors import ConversionError
from tfcompress.export.report import clean_json, load_as
from tfcompress.export.verify import SnrDb
from tfcompress.types import IOType

SCHEMA = "tfcompress.sensitivity/1"
_SKIP_OPS = frozenset({"QUANTIZE", "DEQUANTIZE"})


@dataclass(frozen=True)
class Quality:
    """How close a variant's first output is to the float model's."""

    snr_db: SnrDb
    agreement: float | None  # top-1 agreement with the float model (class outputs)
    accuracy: float | None  # with labels


@dataclass(frozen=True)
class OpSensitivity:
    """One op: what int8 does to it, what it costs."""

    rank: int
    op_index: int
    op_type: str
    tensor: str  # its output tensor in the calibrated model: the name per-op precision rules use
    layers: tuple[str, ...]
    weight_bytes: int  # its constant inputs in the full-int8 model
    predicted_ms: float | None
    alone: Quality | None  # None: that variant could not be built (see note)
    kept_float: Quality | None
    recovered_snr_db: float | None  # kept_float.snr_db - full-int8 snr_db
    note: str = ""


@dataclass(frozen=True)
class SensitivityReport:
    """The analysis of one model (OUT/sensitivity.json)."""

    model: str
    samples: int
    labelled: bool
    device: str | None
    full_int8: Quality
    ops: tuple[OpSensitivity, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, **clean_json(asdict(self))}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SensitivityReport:
        return load_as(cls, d, SCHEMA)


def quality(reference: np.ndarray, output: np.ndarray, labels: np.ndarray | None) -> Quality:
    """SNR / agreement against the float outputs, accuracy against labels."""
    from tfcompress.export.verify import output_metrics

    m = output_metrics("out", reference, output)
    accuracy = None
    if labels is not None and output.ndim == 2 and output.shape[1] > 1:
        accuracy = float(np.mean(np.argmax(output, axis=1) == labels))
    return Quality(float(m.snr_db), m.top1_agreement, accuracy)


class VariantBench:
    """One calibration of a model plus the held-out samples every per-op variant is measured on.

    `build(float_ops)` re-quantizes the calibration with those ops left float (milliseconds);
    `measure(float_ops)` runs the result in LiteRT (float I/O, so an op left float really gives
    float results and the model's own I/O quantization is charged to no op) against the float model.
    """

    def __init__(self, model: Any, data: Any, *, calib_samples: int = 200, samples: int = 500,
                 safe_mode: bool = True, say: Callable[[str], None] = lambda _m: None) -> None:
        from tfcompress import data as data_mod
        from tfcompress.export.converter import calibrate
        from tfcompress.export.tflite_file import read_tflite
        from tfcompress.loading import load_source

        self.source = load_source(model, safe_mode=safe_mode)
        loaded = data_mod.load_samples(data, self.source.input_specs(), max_samples=calib_samples + samples)
        calib, self.held, _ = data_mod.split(loaded, calib_samples, samples)
        self.calib = calib
        say(f"calibrating on {len(calib)} samples")
        self.calibrated = calibrate(self.source, lambda: data_mod.representative_dataset(calib))
        tfl = read_tflite(self.calibrated)
        self.ops = [op for op in tfl.operators if op.op_type not in _SKIP_OPS]
        self.tensors = [tfl.tensors[op.outputs[0]].name for op in self.ops]
        self.reference = self.source.predict(self.held.x)[0]
        self.labels = self.held.y
        self.float_accuracy = (
            float(np.mean(np.argmax(self.reference, axis=1) == self.labels))
            if self.labels is not None and self.reference.ndim == 2 and self.reference.shape[1] > 1 else None
        )

    def build(self, float_ops: tuple[str, ...] = ()) -> bytes:
        from tfcompress.export.converter import quantize_calibrated

        return quantize_calibrated(self.calibrated, IOType.FLOAT32, float_ops)

    def measure(self, float_ops: tuple[str, ...] = ()) -> Quality:
        from tfcompress.export.verify import TfliteRunner

        return quality(self.reference, TfliteRunner(self.build(float_ops)).run(self.held.x)[0], self.labels)


def analyze(
    model: Any,
    data: Any,
    *,
    out_dir: str | Path | None = None,
    device: Any = "host",
    calib_samples: int = 200,
    samples: int = 500,
    safe_mode: bool = True,
    on_progress: Callable[[str], None] | None = None,
    bench: VariantBench | None = None,
) -> SensitivityReport:
    """Rank the ops of `model` by how much int8 costs them (see the module doc).

    Args:
        model: Keras model or path (as `tfcompress.convert` takes).
        data: samples (labels optional): the first `calib_samples` calibrate, the next `samples` measure.
        out_dir: where the cache (and, from the CLI, the report / PNG) go; None: no cache.
        device: device profile for per-op predicted latency (None: none).
        bench: an existing calibration + samples to reuse (then model / data / sample counts are not read).
    """
    from tfcompress.export.converter import quantize_calibrated

    say = on_progress or (lambda _m: None)
    b = bench or VariantBench(model, data, calib_samples=calib_samples, samples=samples, safe_mode=safe_mode, say=say)
    tensors = b.tensors
    cache = _Cache(Path(out_dir) if out_dir else None, b.calibrated, b.held)
    full = cache.get("full", b.measure)
    weight_bytes, predicted, layers = _costs(quantize_calibrated(b.calibrated), tensors, b.source.layer_names(), device)
    rows = []
    for i, (op, tensor) in enumerate(zip(b.ops, tensors)):
        say(f"op {i + 1}/{len(b.ops)}: {op.op_type} {tensor[:60]}")
        note = []
        alone = kept = None
        try:
            alone = cache.get(f"alone:{tensor}", lambda: b.measure(tuple(t for t in tensors if t != tensor)))
        except ConversionError as e:
            note.append(f"alone: {e.message}")
        try:
            kept = cache.get(f"float:{tensor}", lambda: b.measure((tensor,)))
        except ConversionError as e:
            note.append(f"kept float: {e.message}")
        recovered = kept.snr_db - full.snr_db if kept is not None and math.isfinite(full.snr_db) else None
        rows.append(
            OpSensitivity(0, op.index, op.op_type, tensor, tuple(layers.get(tensor, ())), weight_bytes.get(tensor, 0),
                          predicted.get(tensor), alone, kept, recovered, "; ".join(note))
        )
    ranked = sorted(rows, key=lambda r: (-(r.recovered_snr_db if r.recovered_snr_db is not None else -math.inf),
                                         r.alone.snr_db if r.alone else math.inf))
    ranked = [replace(r, rank=k + 1) for k, r in enumerate(ranked)]
    name = getattr(device, "device", device) if device is not None else None
    return SensitivityReport(b.source.name, len(b.held), b.labels is not None, name, full, tuple(ranked))


def constant_bytes(tfl: Any, op: Any, dtype: str | None = None) -> int:
    """Bytes of an op's constant inputs (weights, biases) as stored; `dtype`: only the tensors of that dtype."""
    return sum(tfl.tensors[i].nbytes for i, const in zip(op.inputs, op.constant_inputs)
               if const and i >= 0 and (dtype is None or tfl.tensors[i].dtype == dtype))


def _costs(full_int8: bytes, tensors: list[str], layer_names: list[str], device: Any
           ) -> tuple[dict[str, int], dict[str, float], dict[str, tuple[str, ...]]]:
    """Per op output tensor: int8 weight bytes, predicted ms on `device`, Keras layers."""
    from tfcompress.export.op_layers import layer_names_for_ops
    from tfcompress.export.tflite_file import read_tflite

    tfl = read_tflite(full_int8)
    by_name = {tfl.tensors[op.outputs[0]].name: op for op in tfl.operators if op.outputs}
    weight_bytes = {t: constant_bytes(tfl, by_name[t]) for t in tensors if t in by_name}
    layers_by_op = layer_names_for_ops(tfl, None, layer_names)
    layers = {t: tuple(layers_by_op.get(by_name[t].index, ())) for t in tensors if t in by_name}
    predicted: dict[str, float] = {}
    if device is not None:
        from tfcompress.hardware.kernels import kernels_of
        from tfcompress.hardware.predict import LatencyModel
        from tfcompress.hardware.profile import resolve_profile

        pred = LatencyModel(resolve_profile(device)).predict(kernels_of(full_int8, layer_names))
        ms_by_index = {row.op_index: row.ms for row in pred.rows}
        predicted = {t: ms_by_index[by_name[t].index] for t in tensors if t in by_name and by_name[t].index in ms_by_index}
    return weight_bytes, predicted, layers


_QUALITY = TypeAdapter(Quality)


class _Cache:
    """Per-variant results in OUT/sensitivity.cache.json, valid for one calibrated model and sample set."""

    def __init__(self, folder: Path | None, calibrated: bytes, held: Any) -> None:
        h = hashlib.sha256(calibrated)
        for x in held.x:
            h.update(np.ascontiguousarray(x).tobytes())
        self.key = h.hexdigest()
        self.path = folder / "sensitivity.cache.json" if folder else None
        self.entries: dict[str, dict[str, Any]] = {}
        if self.path is not None and self.path.is_file():
            try:
                doc = json.loads(self.path.read_text())
                if doc.get("key") == self.key:
                    self.entries = dict(doc.get("entries", {}))
            except (OSError, ValueError):
                self.entries = {}  # unreadable cache: measure again

    def get(self, name: str, compute: Callable[[], Quality]) -> Quality:
        if name in self.entries:
            return _QUALITY.validate_python(self.entries[name])
        q = compute()
        self.entries[name] = clean_json(asdict(q))
        if self.path is not None:
            from tfcompress.files import atomic_writer

            self.path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_writer(self.path, "w") as f:
                json.dump({"key": self.key, "entries": self.entries}, f)
        return q
