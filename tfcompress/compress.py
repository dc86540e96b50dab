"""Run a recipe: stages of compression with fine-tuning, then a verified .tflite.

Two ways in:

* `compress(model, recipe, data, output=...)` runs everything (what
  `tfcompress compress` calls): per stage apply -> fine-tune -> strip, a
  per-stage table (accuracy, size, gzip size, host latency after each stage),
  and the final conversion with the same report and sidecar as `convert`.
* In your own training code, per stage:

      for stage in tfcompress.training_stages(recipe, steps_per_epoch=len(ds)):
          model = stage.prepare(model)
          model.compile(...)
          model.fit(ds, epochs=stage.epochs, callbacks=stage.callbacks())
          model = stage.finalize(model)

  or, for a recipe with one training stage, `prepare` / `callbacks` / `finalize`.
  A stage changes the model's structure (TF-MOT wraps layers), so stages switch
  between `fit` calls, never inside one. `BackupAndRestore` in the same `fit`
  restores the pruning step with the weights after an interruption.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from tfcompress.errors import DataError, TfcompressError
from tfcompress.types import Recipe, Stage

DEFAULT_RECIPE = "mobile-int8"


# ------------------------------------------------------------------ stages


@dataclass(frozen=True)
class StageRun:
    """One training stage of a recipe, ready to drive `fit`.

    Attributes:
        stage: the recipe stage.
        index: its position in the recipe.
        total_steps: training steps of this stage (resolves schedules' end_step).
        log_dir: TensorBoard directory for sparsity / cluster summaries (None: off).
        device: device profile whose predicted latency is logged each epoch
            (shipped name such as "host", or a profile JSON path; None: off).
    """

    stage: Stage
    index: int
    total_steps: int
    log_dir: str | None = None
    device: Any = None

    @property
    def epochs(self) -> int:
        """Epochs to fine-tune in this stage."""
        return self.stage.epochs

    @property
    def params(self) -> Any:
        """The technique params with training-length defaults resolved."""
        module = _module(self.stage.technique)
        resolve = getattr(module, "resolve", None)
        return resolve(self.stage.params, self.total_steps) if resolve else self.stage.params

    def prepare(self, model: Any, data: Any = None, teacher: Any = None) -> Any:
        """Apply the technique to a tf_keras model (Keras 3 models are bridged).

        Args:
            model: the model to compress.
            data: (x, y) for techniques with data-driven criteria (structured_prune's taylor / activation).
            teacher: the model before compression, for `distill`.
        """
        import inspect

        from tfcompress.loading import load_model

        model = load_model(model, safe_mode=False) if not _is_tf_keras(model) else model
        apply = _module(self.stage.technique).apply
        wanted = inspect.signature(apply).parameters
        extra = {k: v for k, v in (("data", data), ("teacher", teacher)) if v is not None and k in wanted}
        if "teacher" in extra and not _is_tf_keras(extra["teacher"]):
            extra["teacher"] = load_model(extra["teacher"], safe_mode=False)
        return apply(model, self.params, self.stage.rules, **extra)

    def callbacks(self) -> list[Any]:
        """The Keras callbacks this stage needs in `fit` (plus compression logging)."""
        import inspect

        make = _module(self.stage.technique).callbacks
        takes_log_dir = len(inspect.signature(make).parameters) > 1
        cbs = list(make(self.params, self.log_dir) if takes_log_dir else make(self.params))
        cbs.append(CompressionLogger(self.log_dir))
        if self.device is not None:
            cbs.append(LatencyLogger(self.device, self.log_dir, inference_model=self.finalize))
        return cbs

    def finalize(self, model: Any) -> Any:
        """Strip training-time wrappers (pruning / clustering); QAT models stay as they are."""
        return _module(self.stage.technique).strip(model)


def training_stages(
    recipe: Recipe | str | Path, *, steps_per_epoch: int, log_dir: str | None = None, device: Any = None
) -> Iterator[StageRun]:
    """The recipe's stages other than `convert`, in order (`device`: log its predicted latency each epoch)."""
    recipe = _recipe(recipe)
    for i, stage in enumerate(recipe.stages):
        if stage.technique == "convert":
            continue
        steps = (stage.steps_per_epoch or steps_per_epoch) * max(stage.epochs, 1)
        yield StageRun(stage, i, steps, f"{log_dir}/stage{i}_{stage.technique}" if log_dir else None, device)


def _single_stage(recipe: Recipe | str | Path, steps_per_epoch: int = 1) -> StageRun:
    runs = list(training_stages(recipe, steps_per_epoch=steps_per_epoch))
    if len(runs) != 1:
        raise TfcompressError(
            f"recipe has {len(runs)} training stages; prepare/callbacks/finalize drive exactly one",
            "loop over tfcompress.training_stages(recipe, ...) or use tfcompress.compress",
        )
    return runs[0]


def prepare(model: Any, recipe: Recipe | str | Path, *, steps_per_epoch: int = 1) -> Any:
    """Apply a one-training-stage recipe to `model` for your own `fit`."""
    return _single_stage(recipe, steps_per_epoch).prepare(model)


def callbacks(
    recipe: Recipe | str | Path, *, steps_per_epoch: int = 1, log_dir: str | None = None, device: Any = None
) -> list[Any]:
    """Callbacks for `fit` with a model from `prepare` (UpdatePruningStep, logging; predicted latency on `device`)."""
    run = _single_stage(recipe, steps_per_epoch)
    return StageRun(run.stage, run.index, run.total_steps, log_dir, device).callbacks()


def finalize(model: Any) -> Any:
    """Strip every tfcompress / TF-MOT training wrapper from `model`."""
    from tfcompress.techniques import clustering, pruning

    return clustering.strip(pruning.strip(model))


def _compression_logger_base() -> type:
    from tfcompress.keras_compat import tf_keras

    return tf_keras.callbacks.Callback


class CompressionLogger(_compression_logger_base()):  # type: ignore[misc]
    """Logs per-layer sparsity and unique-value counts each epoch (logs dict + TensorBoard)."""

    def __init__(self, log_dir: str | None = None) -> None:
        super().__init__()
        self.log_dir = log_dir
        self.history: list[dict[str, float]] = []
        self._writer = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        stats = kernel_stats(self.model)
        row = {"epoch": epoch}
        for name, (zeros, unique, _size) in stats.items():
            row[f"{name}/sparsity"] = zeros
            row[f"{name}/unique"] = unique
        if stats:
            total = overall_sparsity(stats)
            row["mean_sparsity"] = total
            if logs is not None:
                logs["mean_sparsity"] = total
        self.history.append(row)
        if self.log_dir:
            from tfcompress.keras_compat import tf

            if self._writer is None:
                self._writer = tf.summary.create_file_writer(self.log_dir)
            with self._writer.as_default():
                for key, value in row.items():
                    if key != "epoch":
                        tf.summary.scalar(f"compression/{key}", value, step=epoch)
                self._writer.flush()


class LatencyLogger(_compression_logger_base()):  # type: ignore[misc]
    """Logs the predicted latency of the model being compressed, each epoch (logs dict + TensorBoard).

    The model (training wrappers stripped by `inference_model`) is converted to
    int8 and predicted on `device`'s profile. Latency depends on the
    architecture, not the weight values, so a prediction is reused while the
    architecture stays the same: converting costs about a second per new one.

    Args:
        device: shipped profile name ("host"), profile JSON path or DeviceProfile.
        log_dir: TensorBoard directory (None: logs dict only).
        inference_model: turns the training model into the one that ships
            (default: strip pruning / clustering wrappers).
    """

    def __init__(self, device: Any = "host", log_dir: str | None = None,
                 inference_model: Callable[[Any], Any] | None = None) -> None:
        from tfcompress.hardware.predict import LatencyModel
        from tfcompress.hardware.profile import resolve_profile

        super().__init__()
        self.latency_model = LatencyModel(resolve_profile(device))
        self.log_dir = log_dir
        self.inference_model = inference_model or finalize
        self.history: list[float] = []
        self._by_architecture: dict[str, float] = {}
        self._writer = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        from tfcompress.hardware.predict import predict_latency_ms

        model = self.inference_model(self.model)
        arch = model.to_json()
        if arch not in self._by_architecture:
            self._by_architecture[arch] = predict_latency_ms(model, self.latency_model).total_ms
        ms = self._by_architecture[arch]
        self.history.append(ms)
        if logs is not None:
            logs["predicted_latency_ms"] = ms
        if self.log_dir:
            from tfcompress.keras_compat import tf

            if self._writer is None:
                self._writer = tf.summary.create_file_writer(self.log_dir)
            with self._writer.as_default():
                tf.summary.scalar("compression/predicted_latency_ms", ms, step=epoch)
                self._writer.flush()


def kernel_stats(model: Any) -> dict[str, tuple[float, int, int]]:
    """{layer: (fraction of zero kernel weights, unique values, size)} for Conv/Dense kernels, wrappers seen through."""
    out: dict[str, tuple[float, int, int]] = {}
    model = getattr(model, "student", model)  # a distill stage: the model being compressed
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        kernel = _effective_kernel(layer)
        if kernel is None or kernel.size < 64:
            continue
        out[inner.name] = (float(np.mean(kernel == 0)), int(np.unique(kernel).size), int(kernel.size))
    return out


def overall_sparsity(stats: dict[str, tuple[float, int, int]]) -> float:
    """Fraction of zeros over all kernels of a `kernel_stats` result, weighted by size."""
    total = sum(size for _, _, size in stats.values())
    return sum(zeros * size for zeros, _, size in stats.values()) / total if total else 0.0


def _effective_kernel(layer: Any) -> np.ndarray | None:
    """The kernel as the layer computes with it (pruning mask / cluster centroids applied)."""
    for w in getattr(layer, "weights", []):
        name = w.name.split("/")[-1]
        if name.startswith("kernel") or name.startswith("depthwise_kernel"):
            value = w.numpy()
            mask = next((m for m in layer.weights if m.name.split("/")[-1].startswith("mask")), None)
            return value * mask.numpy() if mask is not None and mask.shape == w.shape else value
    return None


# ---------------------------------------------------------------- pipeline


@dataclass(frozen=True)
class StageResult:
    """Measured after one stage."""

    index: int
    technique: str
    epochs: int
    float_accuracy: float | None
    int8_accuracy: float | None
    tflite_bytes: int
    gzip_bytes: int
    latency_ms: float | None
    predicted_ms: float | None
    mean_sparsity: float
    max_unique: int
    seconds: float


@dataclass(frozen=True)
class CompressResult:
    """What `compress` made: the final conversion plus the per-stage table."""

    convert: Any  # tfcompress.export.pipeline.ConvertResult
    stages: tuple[StageResult, ...]
    recipe: Recipe
    model: Any = field(repr=False)  # the final Keras model (QAT-wrapped if the recipe ends in qat)
    weight_stats: tuple[Any, ...] = ()


def _module(technique: str) -> Any:
    from tfcompress.techniques import get_technique

    return get_technique(technique).load()


def _recipe(recipe: Recipe | str | Path | None) -> Recipe:
    from tfcompress.recipe import load_recipe

    if isinstance(recipe, Recipe):
        return recipe
    return load_recipe(recipe or DEFAULT_RECIPE)


def _is_tf_keras(model: Any) -> bool:
    from tfcompress.keras_compat import is_tf_keras_model

    return is_tf_keras_model(model)


def _loss_for(model: Any) -> Any:
    """Sparse categorical cross-entropy; from_logits unless the model ends in softmax."""
    from tfcompress.keras_compat import tf_keras
    from tfcompress.techniques.distill import outputs_are_probabilities

    model = getattr(model, "student", model)  # a distill stage: the loss is the student's
    return tf_keras.losses.SparseCategoricalCrossentropy(from_logits=not outputs_are_probabilities(model))


def _split_train_val(samples: Any, val: Any, val_fraction: float) -> tuple[Any, Any]:
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
    image: Any = None,
    labels: tuple[str, ...] | None = None,
    safe_mode: bool = True,
    log_dir: str | None = None,
    backup_dir: str | Path | None = None,
    verify: bool = True,
    measure_stages: bool = True,
    console: Any = None,
    on_progress: Callable[[str], None] | None = None,
    device: Any = "host",
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
        backup_dir: resume point: BackupAndRestore per stage, and finished stages saved.
        measure_stages: convert after every stage for the stage table (int8 accuracy, size, latency).
        console: rich console for progress bars (None: no bars).
        device: device profile for predicted latency (per epoch, per stage, final
            report): shipped name ("host"), profile JSON path, or None for none.

    Raises:
        TfcompressError: bad model / recipe / data / output, or a stage that cannot apply.
    """
    from tfcompress import data as data_mod
    from tfcompress.export.pipeline import ConvertOptions, convert, sidecar_paths
    from tfcompress.files import check_writable
    from tfcompress.hardware.profile import resolve_profile
    from tfcompress.keras_compat import tf_keras
    from tfcompress.loading import load_model, load_source

    say = on_progress or (lambda _msg: None)
    rec = _recipe(recipe)
    out = check_writable(output) if output is not None else None
    device = resolve_profile(device) if device is not None else None  # once, and a bad one fails before training
    say("loading the model")
    source = load_source(model, safe_mode=safe_mode)
    keras_model = load_model(model, safe_mode=safe_mode) if source.flavor != "tf_keras" else source.model
    specs = source.input_specs()
    say("loading data")
    samples = data_mod.load_samples(data, specs, x_key=x_key, y_key=y_key, image=image)
    val = data_mod.load_samples(val_data, specs, x_key=x_key, y_key=y_key, image=image) if val_data is not None else None
    train, val = _split_train_val(samples, val, val_fraction)
    trains = any(s.epochs > 0 for s in rec.stages)
    if trains and train.y is None:
        raise DataError(f"recipe '{rec.name}' fine-tunes but {samples.source} has no labels", "put labels under 'y' in the .npz")
    export_stage = next((s for s in rec.stages if s.technique == "convert"), None)
    export_params = export_stage.params if export_stage is not None else _module("convert").Params()

    calib = train.take(0, export_params.calib_samples)
    x_train = train.x[0] if len(train.x) == 1 else list(train.x)
    x_val = val.x[0] if len(val.x) == 1 else list(val.x)
    results: list[StageResult] = []
    current = keras_model
    backup = Path(backup_dir) if backup_dir else None
    for run in training_stages(rec, steps_per_epoch=1, log_dir=log_dir, device=device):
        t0 = time.perf_counter()
        stage = run.stage
        steps = _steps(len(train), stage.batch_size)
        run = replace(run, total_steps=(stage.steps_per_epoch or steps) * max(stage.epochs, 1))
        done = backup / f"stage{run.index}_{stage.technique}.done.keras" if backup else None
        if done is not None and done.exists():
            say(f"stage {run.index} ({stage.technique}): restored from {done}")
            current = tf_keras.models.load_model(done, compile=False)
            continue
        say(f"stage {run.index}: {stage.technique}")
        prepared = run.prepare(current, data=(train.x[0][:2048], train.y[:2048]) if train.y is not None else None,
                               teacher=keras_model)
        if stage.epochs > 0:
            prepared.compile(
                optimizer=tf_keras.optimizers.Adam(stage.learning_rate or 1e-4),
                loss=_loss_for(prepared),
                metrics=["accuracy"],
            )
            cbs = run.callbacks()
            if backup is not None:
                cbs.append(tf_keras.callbacks.BackupAndRestore(str(backup / f"stage{run.index}_{stage.technique}")))
            if console is not None:
                from tfcompress.progress import RichProgress

                cbs.append(RichProgress(stage.epochs, console, label=f"stage {run.index} {stage.technique}"))
            prepared.fit(
                x_train,
                train.y,
                epochs=stage.epochs,
                batch_size=stage.batch_size,
                steps_per_epoch=stage.steps_per_epoch,
                validation_data=(x_val, val.y) if val.y is not None else None,
                callbacks=cbs,
                verbose=0,
            )
        current = run.finalize(prepared)
        if done is not None and stage.technique != "qat":
            done.parent.mkdir(parents=True, exist_ok=True)
            current.save(done)
        results.append(_measure(run, current, calib, val, time.perf_counter() - t0, measure_stages, say))

    say("converting the final model")
    options = ConvertOptions(
        mode=export_params.mode,
        io=export_params.io,
        calib_samples=export_params.calib_samples,
        allow_float_fallback=export_params.allow_float_fallback,
        sparse=export_params.sparse,
        verify=verify,
        verify_samples=None,
        labels=labels,
        safe_mode=False,
        device=device,
    )
    final = convert(
        current, calib, verify_data=val if verify else None, options=options, on_progress=say, output=None
    )
    stats = _weight_stats(final.tflite)
    result = CompressResult(final, tuple(results), rec, current, stats)
    if out is not None:
        _write(out, result, source, sidecar_paths)
    return result


def _steps(n: int, batch: int) -> int:
    return max(1, -(-n // batch))


def _measure(run: StageRun, model: Any, calib: Any, val: Any, seconds: float, convert_it: bool, say: Callable) -> StageResult:
    """Float accuracy, then (optionally) a quick int8 conversion for size / int8 accuracy / latency."""
    from tfcompress.export.pipeline import convert

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
                      allow_float_fallback=True, device=run.device)
        tfl_bytes, gz = res.report.size.tflite_bytes, res.report.size.gzip_bytes
        acc = res.report.verify.accuracy
        int8_acc = acc.tflite if acc else None
        latency = res.report.verify.latency.median_ms
        if res.report.predicted_latency is not None:
            predicted = res.report.predicted_latency["total_ms"]
    return StageResult(
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
    )


def _weight_stats(tflite: bytes) -> tuple[Any, ...]:
    try:
        from tfcompress.export.weight_stats import weight_stats
    except ImportError:  # pragma: no cover - module ships with the package
        return ()
    return tuple(weight_stats(tflite))


def _write(out: Path, result: CompressResult, source: Any, sidecar_paths: Callable) -> None:
    """OUT.tflite, OUT.report.json (convert report + stages + weights), OUT.meta.json, together."""
    import dataclasses

    from tfcompress.files import write_files_atomically

    report_path, meta_path = sidecar_paths(out)
    report = result.convert.report.to_dict()
    report["recipe"] = {"name": result.recipe.name, "source": result.recipe.source}
    report["stages"] = [dataclasses.asdict(s) for s in result.stages]
    report["weights"] = [dataclasses.asdict(w) for w in result.weight_stats]
    report["output"] = str(out)
    meta = dict(result.convert.meta)
    meta["model_file"] = out.name
    meta["source"] = {"path": source.path, "format": source.format, "sha256": source.sha256, "name": source.name}
    meta["recipe"] = result.recipe.name
    write_files_atomically(
        {
            out: result.convert.tflite,
            report_path: json.dumps(report, indent=2, default=str).encode(),
            meta_path: json.dumps(meta, indent=2).encode(),
        }
    )
