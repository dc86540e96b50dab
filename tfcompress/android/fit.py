"""Does a .tflite fit the Android demo app? Its Kotlin core's rules, checked before anything is copied.

The app (android_demo/core: `SidecarParser`, `TensorType`) feeds one image `[1, H, W, 1 or 3]` as int8, uint8
or float32, reads one row of class scores, runs LiteRT's builtin kernels only (no Flex delegate, no custom
op resolver), and needs the sidecar's record of how pixels were scaled. Each refusal here is one
`TfcompressError` line naming the model and the reason; tests/test_android_model.py checks that the Kotlin
core refuses the same sidecars.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfcompress.errors import TfcompressError
from tfcompress.export.outputs import sidecar_paths
from tfcompress.export.sidecar import SCHEMA as SIDECAR_SCHEMA
from tfcompress.export.tflite_file import read_tflite, read_tflite_bytes
from tfcompress.export.tflite_model import IODetail, TfliteModel

__all__ = ["APP_DTYPES", "AppModel", "check_model", "check_sidecar"]

APP_DTYPES: tuple[str, ...] = ("int8", "uint8", "float32")
"""Input / output dtypes the app's core handles (`TensorType` in android_demo/core)."""

_QUANTIZED = {"int8": (-128, 127), "uint8": (0, 255)}
_CONVERT_HINT = "convert the Keras model again with tfcompress convert (full int8 with int8 I/O fits the app)"


@dataclass(frozen=True)
class AppModel:
    """A model the app can run, with its sidecar; what `android-export` copies."""

    path: Path
    tflite: bytes
    sidecar_path: Path
    sidecar_bytes: bytes
    sha256: str
    input: dict[str, Any]
    output: dict[str, Any]
    image: tuple[int, int, int]
    labels: tuple[str, ...]
    labels_from_sidecar: bool
    ops: int

    @property
    def classes(self) -> int:
        return len(self.labels)


def check_model(path: str | Path) -> AppModel:
    """`path` and the `.meta.json` beside it, checked against what the app runs.

    Raises:
        TfcompressError: the file is not a .tflite, uses ops outside LiteRT's builtins, has I/O the app does not
            handle, or its sidecar is missing, of another model, or lacks what the app reads.
    """
    path = Path(path).expanduser()
    tflite = read_tflite_bytes(path)
    model = read_tflite(tflite, label=str(path))
    _check_ops(model, path)
    _check_io(model, path)
    sidecar_path = sidecar_paths(path)[1]
    if not sidecar_path.is_file():
        raise TfcompressError(
            f"{path} has no sidecar {sidecar_path.name} beside it: the app reads its scale, zero point and pixel scaling",
            "convert with tfcompress convert / tfcompress demo, which write it, and keep the files together",
        )
    sidecar_bytes = sidecar_path.read_bytes()
    meta = _load_json(sidecar_bytes, sidecar_path)
    sha256 = hashlib.sha256(tflite).hexdigest()
    if meta.get("model_sha256") != sha256:
        raise TfcompressError(
            f"{sidecar_path.name} describes another model than {path.name} (model_sha256 "
            f"{str(meta.get('model_sha256'))[:12]}..., the file is {sha256[:12]}...)",
            "convert again so that the .tflite and its sidecar are one set",
        )
    entry_in, entry_out, image, labels = check_sidecar(meta, where=str(sidecar_path))
    return AppModel(
        path=path,
        tflite=tflite,
        sidecar_path=sidecar_path,
        sidecar_bytes=sidecar_bytes,
        sha256=sha256,
        input=entry_in,
        output=entry_out,
        image=image,
        labels=labels if labels is not None else tuple(f"class {i}" for i in range(entry_out["shape"][-1])),
        labels_from_sidecar=labels is not None,
        ops=len(model.operators),
    )


def _check_ops(model: TfliteModel, path: Path) -> None:
    outside = [
        f"{op.op_type} (op {op.index}{'' if op.subgraph == 0 else f' of subgraph {op.subgraph}'})"
        for op in model.operators
        if op.is_custom or op.op_type.startswith("BUILTIN_")
    ]
    if not outside:
        return
    flex = any(name.startswith("Flex") for name in outside)
    kinds = "TensorFlow (Flex) and custom ops" if flex else "custom ops or ops this LiteRT schema does not know"
    shown = ", ".join(outside[:3]) + (f" and {len(outside) - 3} more" if len(outside) > 3 else "")
    raise TfcompressError(
        f"{path.name}: {len(outside)} op(s) outside LiteRT's builtin kernels, which are all the app links ({shown})",
        f"the app has no Flex delegate or custom op resolver: convert without {kinds} "
        "(tfcompress convert emits builtin ops only)",
    )


def _check_io(model: TfliteModel, path: Path) -> None:
    inputs, outputs = model.input_details(), model.output_details()
    if len(inputs) != 1 or len(outputs) != 1:
        raise TfcompressError(
            f"{path.name} has {len(inputs)} input(s) and {len(outputs)} output(s); the app feeds one image and reads "
            "one row of class scores",
            "export a single-input image classifier",
        )
    for what, detail in (("input", inputs[0]), ("output", outputs[0])):
        _check_dtype(path.name, what, detail)


def _check_dtype(name: str, what: str, detail: IODetail) -> None:
    if detail.dtype not in APP_DTYPES:
        raise TfcompressError(
            f"{name}: the {what} is {detail.dtype}; the app handles {', '.join(APP_DTYPES)}",
            _CONVERT_HINT + (" (int16x8 models have int16 I/O: use --io float32)" if detail.dtype == "int16" else ""),
        )
    if detail.dtype in _QUANTIZED and len(detail.scales) != 1:
        raise TfcompressError(
            f"{name}: the {what} is {detail.dtype} with {len(detail.scales)} scales; the app needs one per-tensor scale",
            _CONVERT_HINT,
        )


def check_sidecar(
    meta: dict[str, Any], *, where: str
) -> tuple[dict[str, Any], dict[str, Any], tuple[int, int, int], tuple[str, ...] | None]:
    """The sidecar's input and output entries, image (H, W, C) and labels, under the app's rules.

    The same rules, in the same order, as `SidecarParser.parse` in android_demo/core.

    Raises:
        TfcompressError: one line saying what the app could not use.
    """
    def refuse(reason: str, hint: str = _CONVERT_HINT) -> TfcompressError:
        return TfcompressError(f"{where}: {reason}", hint)

    if meta.get("schema") != SIDECAR_SCHEMA:
        raise refuse(f"the sidecar's schema is {meta.get('schema')}, not {SIDECAR_SCHEMA}")
    inputs, outputs = meta.get("inputs"), meta.get("outputs")
    if not isinstance(inputs, list) or len(inputs) != 1:
        raise refuse(f"the model has {len(inputs) if isinstance(inputs, list) else 'no'} inputs; the app feeds one image")
    if not isinstance(outputs, list) or len(outputs) != 1:
        raise refuse(f"the model has {len(outputs) if isinstance(outputs, list) else 'no'} outputs; the app reads one")
    entry_in, entry_out = _tensor(inputs[0], "input", refuse), _tensor(outputs[0], "output", refuse)
    shape = entry_in["shape"]
    if len(shape) != 4 or shape[0] != 1 or shape[1] < 1 or shape[2] < 1 or shape[3] not in (1, 3):
        raise refuse(f"the input shape {shape} is not one image [1, height, width, 1 or 3]",
                     "the app classifies images; export an image classifier")
    out_shape = entry_out["shape"]
    if not ((len(out_shape) == 2 and out_shape[0] == 1 and out_shape[1] >= 1) or (len(out_shape) == 1 and out_shape[0] >= 1)):
        raise refuse(f"the output shape {out_shape} is not one row of class scores [1, classes]",
                     "the app ranks classes; export a classifier")
    classes = out_shape[-1]
    labels = meta.get("labels")
    if labels is not None:
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise refuse("labels is not a list of names")
        if len(labels) != classes:
            raise refuse(f"the sidecar has {len(labels)} labels for {classes} output classes",
                         "pass the labels file that belongs to the model (convert --labels)")
        for i, label in enumerate(labels):
            if not label.strip() or "\n" in label or "\r" in label:
                raise refuse(f"label {i} ({label!r}) is empty or holds a line break; labels.txt has one name per line",
                             "give one-line class names (convert --labels)")
    resolver = (meta.get("runtime") or {}).get("resolver", "default")
    if resolver not in ("default", "builtin"):
        raise refuse(f"runtime.resolver is {resolver!r}, not default or builtin")
    _scaling(meta, shape[3], refuse)
    return entry_in, entry_out, (shape[1], shape[2], shape[3]), tuple(labels) if labels is not None else None


def _tensor(entry: Any, what: str, refuse: Any) -> dict[str, Any]:
    if not isinstance(entry, dict) or not isinstance(entry.get("shape"), list):
        raise refuse(f"the {what} entry has no shape")
    dtype = entry.get("dtype")
    if dtype not in APP_DTYPES:
        raise refuse(f"the {what} is {dtype}; the app handles {', '.join(APP_DTYPES)}")
    if dtype in _QUANTIZED:
        scale, zero_point = entry.get("scale"), entry.get("zero_point")
        if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not 0 < scale < float("inf"):
            raise refuse(f"the {what} is {dtype} without a per-tensor scale (scale {scale})")
        lo, hi = _QUANTIZED[dtype]
        if not isinstance(zero_point, int) or not lo <= zero_point <= hi:
            raise refuse(f"the {what}'s zero point {zero_point} is outside {dtype}")
    return entry


def _scaling(meta: dict[str, Any], channels: int, refuse: Any) -> None:
    missing = refuse(
        "the sidecar records no pixel scaling (preprocessing.inputs.*.scaling), so the app cannot know how pixels "
        "become input",
        "convert from an image folder, or from uint8 pixels with --image-scale (e.g. 0,1)",
    )
    inputs = (meta.get("preprocessing") or {}).get("inputs")
    if not isinstance(inputs, dict) or len(inputs) != 1:
        raise missing
    (name, record), = inputs.items()
    scaling = record.get("scaling") if isinstance(record, dict) else None
    if not isinstance(scaling, dict):
        raise missing
    for key in ("scale", "offset"):
        values = scaling.get(key)
        if not isinstance(values, list) or len(values) not in (1, channels):
            raise refuse(f"preprocessing.inputs.{name}.scaling.{key} has "
                         f"{len(values) if isinstance(values, list) else 'no'} values for {channels} channel(s)")


def _load_json(data: bytes, path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(data)
    except ValueError as e:
        raise TfcompressError(f"{path} is not JSON ({e})", "convert again to write the sidecar anew") from None
    if not isinstance(meta, dict):
        raise TfcompressError(f"{path} is not a JSON object", "convert again to write the sidecar anew")
    return meta
