"""Run a recipe: its stages with fine-tuning, then a verified .tflite (what `tfcompress compress` calls).

Per stage: apply -> fine-tune -> strip, then (optionally) a quick int8
conversion for the per-stage table (accuracy, size, gzip size, host and
predicted latency); finally the conversion with the recipe's export settings
and the same report and sidecar as `convert`, plus the stage table. The loop
reads each technique's registry entry (`tfcompress.techniques.base`) and
names none. For your own training loop see `tfcompress.stages`.

With a backup dir, each finished stage is saved as `stageN_TECHNIQUE.done.keras` (temp file + rename, so a
kill never leaves a partial one) and a rerun restores it instead of training again. The dir is keyed by
`tfcompress-backup.json`: the source model's sha256, the recipe's canonical form and the data's shapes. A
backup made by another model, recipe or data is refused; an unreadable checkpoint is re-made, with a warning.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from tfcompress.errors import DataError, TfcompressError
from tfcompress.export.weight_stats import WeightStat
from tfcompress.conversion import ConvertResult
from tfcompress.monitoring import kernel_stats, overall_sparsity
from tfcompress.report import CompressReport, RecipeRef, StageReport
from tfcompress.stages import StageRun, load, training_stages
from tfcompress.techniques import Capability
from tfcompress.types import Recipe

if TYPE_CHECKING:
    from tfcompress.data import ImageSpec
    from tfcompress.hardware.profile import DeviceProfile

# Samples handed to techniques that use data (importance criteria): enough for a stable estimate.
_TECHNIQUE_SAMPLES = 2048
BACKUP_SCHEMA = "tfcompress.backup/1"
BACKUP_FINGERPRINT = "tfcompress-backup.json"


@dataclass(frozen=True)
class CompressResult:
    """What `compress` made: the final conversion plus the per-stage table.

    Attributes:
        convert: the final conversion (its .tflite, report and sidecar).
        report: the compress report (OUT.report.json).
        recipe: the recipe that ran.
        model: the final Keras model (still wrapped where a technique stays wrapped, e.g. QAT).
    """

    convert: ConvertResult
    report: CompressReport
    recipe: Recipe
    model: Any = field(repr=False)

    @property
    def stages(self) -> tuple[StageReport, ...]:
        """Measured after each stage."""
        return self.report.stages

    @property
    def weight_stats(self) -> tuple[WeightStat, ...]:
        """Weights read back from the .tflite (`tfcompress.export.weight_stats.WeightStat`)."""
        return self.report.weights


def split_train_val(samples: Any, val: Any, val_fraction: float) -> tuple[Any, Any]:
    if val is not None:
        return samples, val
    n = len(samples)
    n_val = max(1, min(int(n * val_fraction), 5000))
    if n - n_val < 1:
        raise DataError(f"only {n} samples: too few to fine-tune and validate", "pass more data or --val-data")
    return samples.take(0, n - n_val), samples.take(n - n_val, n)


def compress(
    model: Any,
    recipe: Recipe | str | Path | None,
    data: Any,
    *,
    output: str | Path | None = None,
    val_data: Any = None,
    val_fraction: float = 0.1,
    x_key: str = "x",
    y_key: str = "y",
    image: ImageSpec | None = None,
    labels: tuple[str, ...] | None = None,
    safe_mode: bool = True,
    log_dir: str | None = None,
    backup_dir: str | Path | None = None,
    verify: bool = True,
    measure_stages: bool = True,
    console: Any = None,
    on_progress: Callable[[str], None] | None = None,
    device: str | Path | DeviceProfile | None = "host",
    on_warning: Callable[[str], None] | None = None,
) -> CompressResult:
    """Run `recipe` on `model` with fine-tuning on `data`, then convert and verify.

    Args:
        model: path or in-memory Keras 3 / tf_keras model (bridged to tf_keras).
        recipe: a Recipe, a recipe file, or a shipped recipe name (default "mobile-int8").
        data: labelled training data (.npz with x / y, image folder, arrays, (x, y), ...).
        output: where to write the .tflite (+ .report.json with the stage table, + .meta.json).
        val_data: validation data for per-stage accuracy and final verification
            (default: the last `val_fraction` of `data`, at most 5000 samples).
        log_dir: TensorBoard logs of per-layer sparsity / clusters per stage.
        backup_dir: resume point: BackupAndRestore per stage, and finished stages saved; only
            reused by the same model, recipe and data shapes (module doc).
        measure_stages: convert after every stage for the stage table (int8 accuracy, size, latency).
        console: rich console for progress bars (None: no bars).
        device: device profile for predicted latency (per epoch, per stage, final
            report): shipped name ("host"), profile JSON path, or None for none.

    Raises:
        TfcompressError: bad model / recipe / data / output, or a stage that cannot apply.
    """
    from tfcompress import data as data_mod
    from tfcompress.export.outputs import check_outputs, write_outputs
    from tfcompress.conversion import ConvertOptions, convert
    from tfcompress.hardware.profile import resolve_profile
    from tfcompress.keras_compat import tf_keras
    from tfcompress.loading import load_model, load_source
    from tfcompress.training import fine_tune

    say = on_progress or (lambda _msg: None)
    warn = on_warning or (lambda msg: warnings.warn(msg, stacklevel=3))
    rec = load(recipe)
    out = check_outputs(output) if output is not None else None
    device = resolve_profile(device) if device is not None else None  # once, and a bad one fails before training
    say("loading the model")
    source = load_source(model, safe_mode=safe_mode)
    keras_model = load_model(model, safe_mode=safe_mode) if source.flavor != "tf_keras" else source.model
    specs = source.input_specs()
    say("loading data")
    samples = data_mod.load_samples(data, specs, x_key=x_key, y_key=y_key, image=image)
    val = data_mod.load_samples(val_data, specs, x_key=x_key, y_key=y_key, image=image) if val_data is not None else None
    train, val = split_train_val(samples, val, val_fraction)
    if any(s.epochs > 0 for s in rec.stages) and train.y is None:
        raise DataError(f"recipe '{rec.name}' fine-tunes but {samples.source} has no labels", "put labels under 'y' in the .npz")
    export = rec.export

    loaded = (train, val)  # a stage that changes the input size gets the data resized from these
    calib, x_train, x_val, labelled = _arrays(train, val, export.calib_samples)
    results: list[StageReport] = []
    current = keras_model
    backup = _open_backup(Path(backup_dir), _fingerprint(source.sha256, rec, train, val)) if backup_dir else None
    for run in training_stages(rec, steps_per_epoch=1, log_dir=log_dir, device=device):
        t0 = time.perf_counter()
        stage, technique = run.stage, run.technique
        run = run.with_steps((stage.steps_per_epoch or _steps(len(train), stage.batch_size)) * max(stage.epochs, 1))
        done = backup / f"stage{run.index}_{stage.technique}.done.keras" if backup else None
        restored = _restore(done, warn) if done is not None else None
        if restored is not None:
            say(f"stage {run.index} ({stage.technique}): restored from {done}")
            current = restored
            train, val = _follow_inputs(current, loaded, (train, val))
            calib, x_train, x_val, labelled = _arrays(train, val, export.calib_samples)
            continue
        say(f"stage {run.index}: {stage.technique}")
        prepared = run.prepare(
            current,
            data=labelled if technique.can(Capability.USES_DATA) else None,
            teacher=keras_model if technique.can(Capability.NEEDS_TEACHER) else None,
        )
        train, val = _follow_inputs(technique.unwrap(prepared), loaded, (train, val))
        calib, x_train, x_val, labelled = _arrays(train, val, export.calib_samples)
        if stage.epochs > 0:
            cbs = run.callbacks()
            if backup is not None:
                cbs.append(tf_keras.callbacks.BackupAndRestore(str(backup / f"stage{run.index}_{stage.technique}")))
            if console is not None:
                from tfcompress.progress import RichProgress

                cbs.append(RichProgress(stage.epochs, console, label=f"stage {run.index} {stage.technique}"))
            validation = (x_val, val.y) if val.y is not None else None
            fine_tune(prepared, technique.unwrap(prepared), stage, x_train, train.y, validation, cbs)
            for reason in dict.fromkeys(r for cb in cbs if (r := getattr(cb, "not_predicted", None))):
                warn(f"stage {run.index} ({stage.technique}): latency per epoch {reason}")
        before, current = current, run.finalize(prepared)
        if done is not None and not technique.can(Capability.STAYS_WRAPPED):
            _save_checkpoint(current, done)
        details = run.details(before, current)
        results.append(_measure(run, current, calib, val, time.perf_counter() - t0, measure_stages, say, details))

    say("converting the final model")
    options = ConvertOptions(
        mode=export.mode,
        io=export.io,
        calib_samples=export.calib_samples,
        allow_float_fallback=export.allow_float_fallback,
        sparse=export.sparse,
        precision=export.precision,
        verify=verify,
        verify_samples=None,
        labels=labels,
        safe_mode=False,
        device=device,
    )
    final = convert(current, calib, verify_data=val if verify else None, options=options, on_progress=say, output=None)
    convert_report = dataclasses.replace(final.report, output=str(out)) if out is not None else final.report
    plain, size_note = _against_plain_convert(keras_model, current, loaded[0].take(0, export.calib_samples), options,
                                              rec, final.tflite, say)
    if size_note is not None:
        warn(size_note)
    report = CompressReport(convert_report, RecipeRef(rec.name, rec.source), tuple(results), _weight_stats(final.tflite),
                            plain, size_note)
    if out is not None:
        meta = dict(final.meta)
        meta["model_file"] = out.name
        meta["source"] = {"path": source.path, "format": source.format, "sha256": source.sha256, "name": source.name}
        meta["recipe"] = rec.name
        report_path, meta_path = write_outputs(out, final.tflite, report, meta)
        final = ConvertResult(final.tflite, out, convert_report, meta, report_path, meta_path)
    return CompressResult(final, report, rec, current)


def _against_plain_convert(original: Any, result: Any, calib: Any, options: ConvertOptions, rec: Any, tflite: bytes,
                           say: Callable[[str], None]) -> tuple[int | None, str | None]:
    """The original converted as is with the same export options; when the result is larger, where the bytes
    went (weights and constants vs names, quantization parameters and graph, read from both files) and what would
    shrink it (issue 17: a compress result larger than `convert` of the same model must say why).
    (None, None): the original does not convert alone (not comparable)."""
    from tfcompress.conversion import convert
    from tfcompress.export.tflite_file import read_tflite

    say("converting the original as is (same export), to compare sizes")
    try:
        plain = convert(original, calib, options=dataclasses.replace(options, verify=False, device=None)).tflite
    except TfcompressError:
        return None, None
    if len(tflite) <= len(plain):
        return len(plain), None
    a, b = read_tflite(tflite), read_tflite(plain)
    weights = a.constant_bytes - b.constant_bytes
    names = sum(len(t.name) for t in a.tensors) - sum(len(t.name) for t in b.tensors)
    why = [f"weights and constants {weights:+,} B ({len(a.tensors)} tensors vs {len(b.tensors)})",
           f"names, quantization parameters and graph {len(tflite) - len(plain) - weights:+,} B "
           f"(tensor names {names:+,} B)"]
    shared = _shared_constant_bytes(b) - _shared_constant_bytes(a)
    if shared > 0:
        why.append(f"the original converted as is stores identical constants once ({shared:,} B saved: equal "
                   "biases, as the all-zero ones of an untrained model or of freshly initialised BatchNormalization; "
                   "after training they differ and that saving is gone from any file)")
    ops_a, ops_b = a.op_counts(), b.op_counts()
    more = {op: ops_a.get(op, 0) - ops_b.get(op, 0) for op in {*ops_a, *ops_b}}
    if any(more.values()):
        why.append("operators " + ", ".join(f"{op} {n:+d}" for op, n in sorted(more.items(), key=lambda kv: -kv[1]) if n))
    before, after = _trainable_count(original), _trainable_count(result)
    if after > before:
        why.append(f"the stages added trainable parameters ({before:,} -> {after:,})")
    from tfcompress.techniques import get_technique

    advice = [a for t in dict.fromkeys(st.technique for st in rec.stages) if (a := get_technique(t).size_advice)]
    return len(plain), (f"the result ({len(tflite):,} B) is larger than the original converted as is "
                        f"({len(plain):,} B, +{100 * (len(tflite) - len(plain)) / len(plain):.1f}%): "
                        + "; ".join(why) + ("; " + "; ".join(advice) if advice else ""))

def _trainable_count(model: Any) -> int:
    """Trainable weights of the layers themselves: what a training wrapper adds around a layer (quantizer ranges,
    shared-value centroids, masks) is not a parameter of the result."""
    layers = [getattr(layer, "layer", layer) for layer in getattr(model, "layers", [model])]
    return int(sum(np.prod(w.shape) for layer in layers for w in layer.trainable_weights))


def _shared_constant_bytes(parsed: Any) -> int:
    """Bytes a .tflite saves by letting constant tensors with identical contents share one buffer."""
    users: dict[int, list[int]] = {}
    for t in parsed.tensors:
        if t.is_constant:
            users.setdefault(t.buffer, []).append(t.nbytes)
    return sum(sum(sizes[1:]) for sizes in users.values())


def _arrays(train: Any, val: Any, calib_samples: int) -> tuple[Any, Any, Any, Any]:
    """Calibration samples, training and validation inputs, and the labelled samples techniques get."""
    x_train = train.x[0] if len(train.x) == 1 else list(train.x)
    x_val = val.x[0] if len(val.x) == 1 else list(val.x)
    labelled = (train.x[0][:_TECHNIQUE_SAMPLES], train.y[:_TECHNIQUE_SAMPLES]) if train.y is not None else None
    return train.take(0, calib_samples), x_train, x_val, labelled


def _follow_inputs(model: Any, loaded: tuple[Any, Any], now: tuple[Any, Any]) -> tuple[Any, Any]:
    """(train, val) at the model's input size: `now` when it fits, else resized from the data as `loaded`."""
    from tfcompress.data import fits_inputs, follow_inputs, input_shapes

    shapes = input_shapes(model)
    if all(fits_inputs(s, shapes) for s in now):
        return now
    return follow_inputs(loaded[0], shapes), follow_inputs(loaded[1], shapes)


def _fingerprint(model_sha256: str, rec: Recipe, train: Any, val: Any) -> dict[str, Any]:
    """What a backup dir is keyed by: the source model, the recipe (canonical form) and the data shapes."""
    from tfcompress.recipe import recipe_to_dict

    canonical = json.dumps(recipe_to_dict(rec), sort_keys=True, separators=(",", ":"), default=str)

    def shapes(samples: Any) -> dict[str, Any]:
        y = samples.y
        return {"x": [[list(a.shape), str(a.dtype)] for a in samples.x], "y": None if y is None else list(y.shape)}

    parts = {
        "model_sha256": model_sha256,
        "recipe_sha256": hashlib.sha256(canonical.encode()).hexdigest(),
        "data": {"train": shapes(train), "validation": shapes(val)},
    }
    key = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    return {"schema": BACKUP_SCHEMA, "fingerprint": key, "recipe": rec.name, **parts}


def _open_backup(backup: Path, fingerprint: dict[str, Any]) -> Path:
    """The backup dir, created and keyed by `fingerprint`; refuses one made for another run.

    Raises:
        TfcompressError: the dir was made by another model / recipe / data, or has checkpoints of unknown origin.
    """
    from tfcompress.files import atomic_writer

    hint = f"use a fresh --backup-dir, or delete {backup} to start over"
    if backup.exists() and not backup.is_dir():
        raise TfcompressError(f"backup dir {backup} is not a directory", hint)
    key_file = backup / BACKUP_FINGERPRINT
    if key_file.exists() or key_file.is_symlink():
        if not key_file.is_file():
            raise TfcompressError(f"backup dir {backup}: {BACKUP_FINGERPRINT} is not a regular file", hint)
        try:
            stored = json.loads(key_file.read_text())
        except (OSError, ValueError) as e:
            raise TfcompressError(f"backup dir {backup}: cannot read {BACKUP_FINGERPRINT} ({e})", hint) from None
        if not isinstance(stored, dict) or stored.get("fingerprint") != fingerprint["fingerprint"]:
            stored = stored if isinstance(stored, dict) else {}
            what = {"model_sha256": "another model", "recipe_sha256": f"another recipe ({stored.get('recipe')!r})",
                    "data": "data of other shapes"}
            differs = [w for k, w in what.items() if stored.get(k) != fingerprint[k]] or ["another tfcompress"]
            raise TfcompressError(f"backup dir {backup} was made by {' and '.join(differs)}", hint)
        return backup
    if backup.is_dir() and any(p.name.startswith("stage") for p in backup.iterdir()):
        raise TfcompressError(f"backup dir {backup} has checkpoints but no {BACKUP_FINGERPRINT} (another run made them)", hint)
    backup.mkdir(parents=True, exist_ok=True)
    with atomic_writer(key_file, "w") as f:
        json.dump(fingerprint, f, indent=2)
    return backup


def _restore(done: Path, warn: Callable[[str], None]) -> Any:
    """The model a finished stage saved, or None (none saved, or unreadable: the stage runs again)."""
    from tfcompress.keras_compat import tf_keras

    if not done.is_file():
        return None
    try:
        return tf_keras.models.load_model(done, compile=False)
    except Exception as e:  # a truncated / foreign file fails in zipfile, h5py or Keras, with any error type
        warn(f"checkpoint {done} is unreadable ({type(e).__name__}): running that stage again")
        return None


def _save_checkpoint(model: Any, done: Path) -> None:
    """Save under a temp name beside `done`, then rename: a kill never leaves a partial checkpoint."""
    from tfcompress.files import atomic_path

    with atomic_path(done) as tmp:
        model.save(tmp)


def _steps(n: int, batch: int) -> int:
    return max(1, -(-n // batch))


def _measure(run: StageRun, model: Any, calib: Any, val: Any, seconds: float, convert_it: bool, say: Callable,
             details: dict[str, Any]) -> StageReport:
    """Float accuracy, then (optionally) a quick int8 conversion for size / int8 accuracy / latency."""
    from tfcompress.conversion import convert

    stats = kernel_stats(model)
    float_acc = None
    if val.y is not None:
        x = val.x[0] if len(val.x) == 1 else list(val.x)
        pred = np.asarray(model.predict(x, verbose=0, batch_size=256))
        float_acc = float(np.mean(np.argmax(pred, axis=-1) == val.y))
    tfl_bytes = gz = 0
    int8_acc = latency = predicted = None
    if convert_it:
        say(f"stage {run.index}: measuring the int8 model")
        res = convert(model, calib, verify_data=val, verify_samples=None, latency_runs=20, safe_mode=False,
                      allow_float_fallback=True, device=run.context.device)
        tfl_bytes, gz = res.report.size.tflite_bytes, res.report.size.gzip_bytes
        acc = res.report.verify.accuracy
        int8_acc = acc.tflite if acc else None
        latency = res.report.verify.latency.median_ms
        if res.report.predicted_latency is not None:
            predicted = res.report.predicted_latency.total_ms
    return StageReport(
        index=run.index,
        technique=run.stage.technique,
        epochs=run.stage.epochs,
        float_accuracy=float_acc,
        int8_accuracy=int8_acc,
        tflite_bytes=tfl_bytes,
        gzip_bytes=gz,
        latency_ms=latency,
        predicted_ms=predicted,
        mean_sparsity=overall_sparsity(stats),
        max_unique=max((u for _, u, _ in stats.values()), default=0),
        seconds=round(seconds, 2),
        details=details,
    )


def _weight_stats(tflite: bytes) -> tuple[WeightStat, ...]:
    from tfcompress.export.weight_stats import weight_stats

    return tuple(weight_stats(tflite))
