"""`tfcompress.convert`: load -> data -> convert -> check -> verify -> predict latency -> write.

Every check that can fail on the user's input runs before the converter
does; outputs (.tflite, .report.json, .meta.json) are written together at
the very end through temp files, so a failure leaves nothing behind.
"""

from __future__ import annotations

import gzip
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from tfcompress.errors import ConversionError, DataError, TfcompressError
from tfcompress.export.outputs import check_outputs, write_outputs
from tfcompress.export.report import CalibrationInfo, ConvertReport, OpRow, PredictedLatency, SizeInfo, versions
from tfcompress.types import IOType, Mode, PrecisionRule

if TYPE_CHECKING:
    from tfcompress.data import ImageSpec
    from tfcompress.hardware.profile import DeviceProfile

DEFAULT_CALIB_SAMPLES = 200
DEFAULT_VERIFY_SAMPLES = 1000


@dataclass(frozen=True)
class ConvertOptions:
    """Everything `convert` can be told (the CLI flags, as data).

    Attributes:
        mode: what to quantize to.
        io: input/output dtype; None = the mode's default (int8 for int8).
        calib_samples: samples fed to the converter's calibration.
        verify: compare source and .tflite after converting.
        verify_samples: held-out samples for verification (None = all the rest).
        allow_float_fallback: in integer modes, accept ops that stay float (listed in the report).
        sparse: store pruned weights in TFLite's sparse tensor encoding (Optimize.EXPERIMENTAL_SPARSITY).
        threads: LiteRT threads for verification and latency.
        latency_runs: timed batch-1 runs.
        safe_mode: refuse Lambda layers / custom classes when loading.
        x_key: key(s) of the inputs in .npz data (comma-separated for several inputs).
        y_key: key of the labels in .npz data.
        image: scaling / resize for image folders and uint8 arrays (`tfcompress.data.ImageSpec`).
        labels: class names, indexed by class id, for the sidecar.
        device: device profile for the predicted latency in the report: a shipped
            profile name ("host"), a profile JSON path, or None for no prediction.
        precision: per-op precision rules (`PrecisionRule`s or their `--precision` text), first match wins;
            `mode` (int8 or int16x8) is the precision of the other ops. The model gets float32 I/O
            (`tfcompress.precision.mixed`; docs/precision.md).
    """

    mode: Mode = Mode.INT8
    io: IOType | None = None
    calib_samples: int = DEFAULT_CALIB_SAMPLES
    verify: bool = True
    verify_samples: int | None = DEFAULT_VERIFY_SAMPLES
    allow_float_fallback: bool = False
    sparse: bool = False
    threads: int = 1
    latency_runs: int = 50
    safe_mode: bool = True
    x_key: str = "x"
    y_key: str = "y"
    image: ImageSpec | None = None
    labels: tuple[str, ...] | None = None
    device: str | Path | DeviceProfile | None = "host"
    precision: tuple[PrecisionRule, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", Mode(self.mode))
        if self.io is not None:
            object.__setattr__(self, "io", IOType(self.io))
        if self.precision:
            from tfcompress.precision.mixed import parse_rule

            rules = tuple(r if isinstance(r, PrecisionRule) else parse_rule(r) for r in self.precision)
            object.__setattr__(self, "precision", rules)
            _check_mixed(self)
        if self.calib_samples < 1:
            raise DataError(f"--calib-samples must be at least 1, got {self.calib_samples}", "the default is 200")
        if self.threads < 1:
            raise ConversionError(f"--threads must be at least 1, got {self.threads}", "use 1 for a phone-like figure")


@dataclass(frozen=True)
class ConvertResult:
    """What `convert` made.

    Attributes:
        tflite: the .tflite bytes.
        path: where it was written (None when no output path was given).
        report: the conversion / verification report.
        meta: the sidecar dict (schema in `tfcompress.export.sidecar`).
        report_path: OUT.report.json, when written.
        meta_path: OUT.meta.json, when written.
    """

    tflite: bytes = field(repr=False)
    path: Path | None
    report: ConvertReport
    meta: dict[str, Any] = field(repr=False)
    report_path: Path | None = None
    meta_path: Path | None = None


def convert(
    model: Any,
    data: Any = None,
    *,
    output: str | Path | None = None,
    options: ConvertOptions | None = None,
    verify_data: Any = None,
    custom_objects: dict[str, Any] | None = None,
    on_progress: Callable[[str], None] | None = None,
    **kwargs: Any,
) -> ConvertResult:
    """Convert a Keras model to a verified .tflite (full int8 by default).

    Args:
        model: path to .keras / .h5 / SavedModel, or an in-memory Keras 3 / tf_keras model.
        data: calibration (and verification) data: .npy / .npz path, image folder,
            arrays, (x, y), callable or tf.data.Dataset (see `tfcompress.data`).
        output: where to write the .tflite (plus .report.json / .meta.json beside it);
            None keeps everything in memory.
        options: a `ConvertOptions`; keyword arguments override its fields
            (e.g. `mode="float16"`, `io="uint8"`).
        verify_data: separate verification data (e.g. a test set); default: the
            samples of `data` not used for calibration.
        custom_objects: classes the model needs to load.
        on_progress: called with a short message at each stage.

    Returns:
        A `ConvertResult`.

    Raises:
        TfcompressError: bad model, data or output path; a float op in an
            integer mode without `allow_float_fallback`; a converter failure.
    """
    from tfcompress import data as data_mod
    from tfcompress.export import converter as conv
    from tfcompress.export.sidecar import build_meta
    from tfcompress.export.tflite_file import read_tflite
    from tfcompress.export.verify import verify as run_verify
    from tfcompress.hardware.profile import resolve_profile
    from tfcompress.loading import load_source

    opts = replace(options or ConvertOptions(), **kwargs)
    if opts.precision and isinstance(model, (str, Path)) and Path(model).suffix.lower() == ".tflite":
        from tfcompress.precision.mixed import check_class_rules

        check_class_rules(opts.precision, False, f"{Path(model).name} (a .tflite file)")  # before "is a .tflite"
    say = on_progress or (lambda _msg: None)
    io = IOType.FLOAT32 if opts.precision else conv.resolve_io(opts.mode, opts.io)
    out = check_outputs(output) if output is not None else None  # the sidecars' paths too, before any work
    profile = resolve_profile(opts.device) if opts.device is not None else None  # a bad --device fails before converting
    if opts.mode.needs_calibration and data is None:
        raise DataError(
            f"mode {opts.mode.value} needs calibration data",
            "pass --data samples.npz (inputs under 'x'), a .npy or an image folder; or use --mode float16 / dynamic",
        )

    say("loading the model")
    source = load_source(model, safe_mode=opts.safe_mode, custom_objects=custom_objects)
    specs = source.input_specs()

    calib = verification = None
    split_info: dict[str, Any] = {}
    preprocessing: dict[str, Any] = {}
    labels = opts.labels
    if data is not None:
        say("loading calibration data")
        want = None
        if verify_data is None and opts.verify and opts.verify_samples is not None:
            want = opts.calib_samples + opts.verify_samples
        samples = data_mod.load_samples(
            data, specs, x_key=opts.x_key, y_key=opts.y_key, image=opts.image, max_samples=want
        )
        calib, verification, split_info = data_mod.split(samples, opts.calib_samples, opts.verify_samples)
        preprocessing = samples.preprocessing
        labels = labels or samples.labels
    if verify_data is not None:
        verification = data_mod.load_samples(
            verify_data, specs, x_key=opts.x_key, y_key=opts.y_key, image=opts.image, max_samples=opts.verify_samples
        )
        split_info = {**split_info, "verification": len(verification), "verification_held_out": True}
        labels = labels or verification.labels
    if opts.verify and verification is None:
        raise DataError(
            "verification needs data",
            "pass --data (a few hundred labelled samples make a useful report), or --no-verify",
        )

    say(f"converting to {opts.mode.value} (calibrating on {len(calib) if calib else 0} samples)")
    t0 = time.perf_counter()
    representative = (lambda: data_mod.representative_dataset(calib)) if calib is not None else None
    mixed = None
    if opts.precision:
        from tfcompress.precision.mixed import quantize_source

        mixed = quantize_source(source, calib, opts.precision, default=opts.mode.value)
        tflite = mixed.tflite
    else:
        converter = conv.build_converter(source, opts.mode, io, representative)
        tflite = conv.run_converter(converter, f"model '{source.name}'")
    sparse_note = bridge_note = None
    if opts.sparse:
        # The sparse encoding's index arrays cost more than they save below ~60-70% zeros:
        # convert both ways and keep the smaller file.
        say("converting again with the sparse tensor encoding")
        sparse_converter = conv.build_converter(source, opts.mode, io, representative, sparse=True)
        sparse = conv.run_converter(sparse_converter, f"model '{source.name}' (sparse)")
        kept = "sparse" if len(sparse) < len(tflite) else "dense"
        sparse_note = f"sparse encoding: {len(sparse):,} B vs dense {len(tflite):,} B -> kept {kept}"
        tflite = sparse if kept == "sparse" else tflite
    convert_s = time.perf_counter() - t0

    say("checking the converted model")
    tfl = read_tflite(tflite)
    float_inputs = [_is_float(s.dtype) for s in specs]
    check = conv.check_promises(tfl, opts.mode, io, source.layer_names(), float_inputs)
    precision_info = None
    if mixed is not None:  # per-op precision: each op's stored precision is checked instead of the mode's
        from tfcompress.precision.readback import check_read_back, read_back

        precision_info = read_back(tflite, mixed.plan, source.layer_names(), opts.precision, opts.mode.value)
        check_read_back(precision_info, opts.allow_float_fallback)
        check = replace(check, problems=tuple(p for p in check.problems if p.startswith("tensor ")))
    elif check.float_ops and (twin := _through_tf_keras(source, opts, io, representative, float_inputs)):
        layers = sorted({name for op in check.float_ops for name in op.layers})
        bridge_note = (f"converted through the tf_keras rebuild of the model (same weights): Keras 3 lowers "
                       f"{', '.join(layers)[:200] or 'some layers'} to ops without {opts.mode.value} kernels "
                       "(LayerNormalization: NEG); verified against the original Keras 3 model")
        tflite, tfl, check = twin
    if check.float_ops and not opts.allow_float_fallback and mixed is None:
        listed = "; ".join(op.describe() for op in check.float_ops[:5])
        more = f" and {len(check.float_ops) - 5} more" if len(check.float_ops) > 5 else ""
        raise ConversionError(
            f"{len(check.float_ops)} op(s) cannot run in {opts.mode.value}: {listed}{more}",
            "replace those layers, or pass --allow-float-fallback to keep them in float (listed in the report)",
        )
    if check.problems:
        raise ConversionError(
            f"the converted model breaks what mode {opts.mode.value} promises: {'; '.join(check.problems)}",
            "report this with the model; --mode dynamic is the most permissive",
        )

    verify_report = None
    verify_s = 0.0
    if opts.verify:
        t1 = time.perf_counter()
        verify_report = run_verify(
            source,
            tflite,
            verification,
            held_out=bool(split_info.get("verification_held_out", False)),
            threads=opts.threads,
            latency_runs=opts.latency_runs,
            on_progress=say,
        )
        verify_s = time.perf_counter() - t1

    predicted, predict_note = _predict(tflite, opts.mode.value, profile, source.layer_names())

    params = _count_params(source)
    size = SizeInfo(
        tflite_bytes=len(tflite),
        gzip_bytes=len(gzip.compress(tflite, compresslevel=9)),
        source_params=params,
        bytes_per_param=(len(tflite) / params) if params else None,
    )
    report = ConvertReport(
        model=source.name,
        source_format=source.format,
        source_path=source.path,
        mode=opts.mode.value,
        io=io.value,
        output=str(out) if out else None,
        calibration=CalibrationInfo(
            samples=len(calib) if calib is not None else 0,
            source=(calib.source if calib is not None else None),
            **split_info,
        ),
        preprocessing=preprocessing,
        size=size,
        float_ops=tuple(op.describe() for op in check.float_ops),
        io_dtypes=check.io_found,
        weight_dtypes=check.weight_dtypes,
        op_table=tuple(OpRow(op, tuple(ins), tuple(outs), count) for op, ins, outs, count in tfl.op_dtype_table()),
        verify=verify_report,
        predicted_latency=predicted,
        convert_seconds=round(convert_s, 3),
        verify_seconds=round(verify_s, 3),
        versions=versions(),
        precision=precision_info,
    )
    resolver = verify_report.resolver if verify_report else "default"
    notes = verify_report.notes if verify_report else ()
    report_notes = tuple(n for n in (sparse_note, bridge_note, predict_note) if n)
    if report_notes:
        report = replace(report, notes=report_notes)
    meta = build_meta(
        tfl,
        tflite,
        model_file=out.name if out else "model.tflite",
        mode=opts.mode.value,
        source=source,
        preprocessing=preprocessing,
        labels=labels,
        resolver=resolver,
        runtime_notes=tuple(n for n in notes if "resolver" in n.lower() or "delegate" in n.lower()),
        versions=versions(),
        precision=precision_info,
    )
    report_path = meta_path = None
    if out is not None:
        report_path, meta_path = write_outputs(out, tflite, report, meta)
    return ConvertResult(tflite, out, report, meta, report_path, meta_path)


def _through_tf_keras(source: Any, opts: ConvertOptions, io: Any, representative: Any,
                      float_inputs: list[bool]) -> tuple[bytes, Any, Any] | None:
    """A Keras 3 model converted through its tf_keras rebuild (`tfcompress.bridge`, same weights), when that has
    no float ops: Keras 3 lowers some layers (LayerNormalization: NEG) to ops without int8 kernels that tf_keras
    lowers to int8-able ones, which is why `compress` (which trains the rebuild) got a full-int8 file and
    `convert` did not. None when the model is not Keras 3, cannot be rebuilt, or the rebuild has float ops too."""
    if source.flavor != "keras3" or source.model is None or opts.sparse:
        return None
    from tfcompress.bridge import to_tf_keras
    from tfcompress.errors import BridgeError
    from tfcompress.export import converter as conv
    from tfcompress.export.tflite_file import read_tflite

    try:
        twin = replace(source, model=to_tf_keras(source.model), flavor="tf_keras")
    except BridgeError:
        return None
    tflite = conv.run_converter(conv.build_converter(twin, opts.mode, io, representative), f"model '{source.name}'")
    tfl = read_tflite(tflite)
    check = conv.check_promises(tfl, opts.mode, io, twin.layer_names(), float_inputs)
    return None if check.float_ops or check.problems else (tflite, tfl, check)

def _predict(tflite: bytes, mode: str, profile: DeviceProfile | None, layer_names: Any) -> tuple[PredictedLatency | None, str | None]:
    """The predicted latency on `profile`'s device, or why there is none."""
    if profile is None:
        return None, None
    from tfcompress.hardware.kernels import kernels_of
    from tfcompress.hardware.predict import LatencyModel

    if mode != profile.dtype:
        return None, f"no predicted latency: device profile '{profile.device}' is {profile.dtype}, the model is {mode}"
    try:
        pred = LatencyModel(profile).predict(kernels_of(tflite, list(layer_names)))
    except (TfcompressError, ValueError, KeyError) as exc:  # the model's ops are beyond the predictor: say so
        reason = exc.message if isinstance(exc, TfcompressError) else f"{type(exc).__name__}: {exc}"
        return None, f"not predicted ({reason[:300]})"
    return PredictedLatency(
        **pred.to_dict(), threads=profile.threads, runtime=profile.runtime, delegate=profile.delegate
    ), None


def _check_mixed(opts: ConvertOptions) -> None:
    """Per-op precision: the other ops get `mode` (int8 / int16x8), I/O is float32, no sparse encoding."""
    if opts.mode not in (Mode.INT8, Mode.INT16X8):
        raise ConversionError(f"per-op precision needs --mode int8 or int16x8 (what the other ops get), "
                              f"not {opts.mode.value}", "give float16 / float ops with rules instead")
    if opts.io not in (None, IOType.FLOAT32):
        raise ConversionError(f"a model with per-op precision has float32 input and output, not {opts.io.value}",
                              "drop --io (quantize at the app's boundary from the sidecar's scales)")
    if opts.sparse:
        raise ConversionError("per-op precision and the sparse encoding cannot be combined yet",
                              "drop one of them")


def _is_float(dtype: str) -> bool:
    return dtype.startswith(("float", "bfloat", "half"))


def _count_params(source: Any) -> int | None:
    if source.model is None:
        return None
    return int(source.model.count_params())
