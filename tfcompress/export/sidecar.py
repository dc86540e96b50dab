"""`OUT.meta.json`: what a device-side app needs to feed and read the model.

Schema `tfcompress.meta/1` (documented in docs/sidecar.md):

    schema            "tfcompress.meta/1"
    model_file        the .tflite file name (same folder)
    model_sha256      sha256 of the .tflite bytes
    report_sha256     sha256 of OUT.report.json (added by export.outputs.write_outputs)
    mode              int8 | int16x8 | float16 | dynamic
    inputs / outputs  [{name, index, shape, dtype, scale, zero_point,
                        quantization: {scales, zero_points, quantized_dimension}}]
                      scale/zero_point are the per-tensor values (0.0 / 0 when
                      the tensor is not quantized); real = (q - zero_point) * scale
    preprocessing     how raw data became model input (tfcompress.data record)
    labels            class names indexed by class id, or null
    runtime           {resolver: "default" | "builtin", notes: [...]}: what
                      the model needs to run in LiteRT
    precision         per-op precision models only (else null): {default, rules,
                      delegate, ops: [{index, op, layers, precision, runs_on,
                      tensors: [entries as inputs / outputs, every tensor the
                      op reads or writes: int4 / int16 scales and zero points]}]}
    source            {path, format, sha256, name} of the Keras model
    versions          tfcompress, tensorflow, tf_keras, keras, litert
    created           ISO-8601 UTC time of conversion
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from typing import Any

SCHEMA = "tfcompress.meta/1"


def tensor_entry(detail: Any) -> dict[str, Any]:
    """One input / output entry from a `tflite_file` tensor detail."""
    scales = [float(s) for s in detail.scales]
    zero_points = [int(z) for z in detail.zero_points]
    return {
        "name": detail.name,
        "index": int(detail.index),
        "shape": [int(d) for d in detail.shape],
        "dtype": detail.dtype,
        "scale": scales[0] if len(scales) == 1 else 0.0,
        "zero_point": zero_points[0] if len(zero_points) == 1 else 0,
        "quantization": {
            "scales": scales,
            "zero_points": zero_points,
            "quantized_dimension": int(detail.quantized_dimension),
        },
    }


def build_meta(
    tfl: Any,
    tflite: bytes,
    *,
    model_file: str,
    mode: str,
    source: Any,
    preprocessing: dict[str, Any],
    labels: tuple[str, ...] | list[str] | None,
    resolver: str,
    runtime_notes: tuple[str, ...],
    versions: dict[str, str],
    precision: Any = None,
) -> dict[str, Any]:
    """The sidecar dict for a converted model (see module doc for the schema); `precision`: a `PrecisionInfo`."""
    return {
        "schema": SCHEMA,
        "model_file": model_file,
        "model_sha256": hashlib.sha256(tflite).hexdigest(),
        "mode": mode,
        "inputs": [tensor_entry(tfl.tensors[i]) for i in tfl.inputs],
        "outputs": [tensor_entry(tfl.tensors[i]) for i in tfl.outputs],
        "preprocessing": preprocessing,
        "labels": list(labels) if labels is not None else None,
        "runtime": {"resolver": resolver, "notes": list(runtime_notes)},
        "precision": precision_entry(tfl, precision) if precision is not None else None,
        "source": {"path": source.path, "format": source.format, "sha256": source.sha256, "name": source.name},
        "versions": versions,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def precision_entry(tfl: Any, info: Any) -> dict[str, Any]:
    """The sidecar's `precision`: per op, its stored precision, where it runs and every tensor it touches."""
    ops = {op.index: op for op in tfl.operators if op.subgraph == 0}
    return {
        "default": info.default,
        "rules": list(info.rules),
        "delegate": info.delegate,
        "ops": [
            {"index": row.index, "op": row.op, "layers": list(row.layers), "precision": row.found,
             "runs_on": row.runs_on,
             "tensors": [tensor_entry(tfl.tensors[i]) for i in (*ops[row.index].inputs, *ops[row.index].outputs)
                         if i >= 0]}
            for row in info.ops
        ],
    }
