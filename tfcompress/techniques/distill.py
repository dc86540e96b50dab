"""Knowledge distillation (`distill`): train the compressed model to match a teacher.

    loss = alpha * CE(labels, student) + (1 - alpha) * T^2 * KL(softmax(teacher / T) || softmax(student / T))
           [+ hint_weight * mean over hint pairs of MSE(adapter(student feature), teacher feature)]

Hinton et al. (2015): the teacher's softened outputs carry more than the
labels do (which wrong classes are close), so a model that lost capacity to
surgery, or a cheaper architecture altogether (a block swap), learns more
than from labels alone. The teacher is the model as it was before the recipe
(`compress` passes it), any model file with the same outputs (`teacher: PATH`),
or any model (`distiller(student, teacher)`). Optional FitNets hints match
intermediate feature maps too (`tfcompress.techniques.hints`).

When `fit` gets arrays, the inputs are the same every epoch (nothing augments
them), so the teacher runs once over them and its outputs are cached: in
memory, or with `cache: disk` as a .npz under the stage's log dir (a rerun on
the same data reuses it). With a tf.data.Dataset or a generator the teacher
runs on every batch.

Use it as its own fine-tuning stage after stages that change the structure
(swap, structured_prune, low_rank, share_weights). It refuses a model still
wrapped by TF-MOT (prune / cluster / QAT): those need their own callbacks on
their own layers, and plain fine-tuning afterwards would undo their sparsity
or clusters.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictStr

from tfcompress.errors import TfcompressError
from tfcompress.training import outputs_are_probabilities
from tfcompress.techniques.base import Capability, StageContext, Technique
from tfcompress.techniques.hints import HintPair, adapter, hint_pairs
from tfcompress.types import LayerRule

__all__ = ["TECHNIQUE", "HintPair", "Params", "apply", "strip", "distiller"]

TFMOT_WRAPPERS = ("PruneLowMagnitude", "ClusterWeights", "QuantizeWrapper", "QuantizeWrapperV2", "QuantizeLayer")
CACHE_LIMIT_BYTES = 2 << 30  # teacher outputs (with hint features) larger than this are not cached


class Params(BaseModel):
    """Parameters of a `distill` stage (field descriptions are the docs and the JSON Schema)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: StrictFloat = Field(
        4.0, gt=0.0, le=1000.0, description="softening of both models' outputs (higher = softer; 2-8 is usual)")
    alpha: StrictFloat = Field(
        0.1, ge=0.0, le=1.0, description="weight of the hard-label loss; 1 - alpha goes to matching the teacher")
    teacher: StrictStr | None = Field(
        None, min_length=1, max_length=4096,
        description="teacher model file or SavedModel dir (any format `tfcompress convert` loads; relative to the "
        "working directory); default: the model before the recipe")
    cache: Literal["memory", "disk", "off"] = Field(
        "memory", description="keep the teacher's outputs on array inputs so it runs once per data set: in memory, "
        "on disk under the stage's log dir (memory without one), or off (teacher on every batch)")
    hints: Literal["off", "auto"] | tuple[HintPair, ...] = Field(
        "off", description="FitNets feature hints: off, auto (pairs the last layers of each feature-map size both "
        "models have) or a list of {student: REGEX, teacher: REGEX} (the last layer matching each)")
    hint_weight: StrictFloat = Field(
        1.0, ge=0.0, le=1e6, description="weight of the hint loss (mean squared error through learned 1x1 adapters "
        "where the channel counts differ)")


def _features(model: Any, names: list[str]) -> Any:
    """`model`, or a model returning its output and the outputs of the layers `names`."""
    from tfcompress.keras_compat import tf_keras

    if not names:
        return model
    return tf_keras.Model(model.inputs, [model.outputs[0], *(model.get_layer(n).output for n in names)])


def _at_student_resolution(features: Any, teacher: Any, student: Any) -> Any:
    """`features` behind a bilinear resize when the teacher's image input differs in size from the student's
    (a student scaled to a lower resolution learns from the teacher at its own resolution)."""
    from tfcompress.keras_compat import tf_keras

    if len(teacher.inputs) != 1 or len(student.inputs) != 1:
        return features
    t_shape, s_shape = tuple(teacher.inputs[0].shape), tuple(student.inputs[0].shape)
    if len(t_shape) != 4 or len(s_shape) != 4 or t_shape[1:3] == s_shape[1:3] or None in (*t_shape[1:3], *s_shape[1:3]):
        return features
    inp = tf_keras.Input(s_shape[1:], name="student_resolution")
    x = tf_keras.layers.Resizing(int(t_shape[1]), int(t_shape[2]), interpolation="bilinear", name="to_teacher")(inp)
    return tf_keras.Model(inp, features(x, training=False), name="teacher_at_student_resolution")


def _is_arrays(x: Any) -> bool:
    if isinstance(x, (list, tuple)):
        return bool(x) and all(isinstance(a, np.ndarray) for a in x)
    return isinstance(x, np.ndarray)


def _fingerprint(x: Any) -> str:
    h = hashlib.sha256()
    for a in (x if isinstance(x, (list, tuple)) else [x]):
        h.update(repr((a.shape, str(a.dtype))).encode())
        h.update(np.ascontiguousarray(a).data)
    return h.hexdigest()


class _Cache:
    """The teacher's outputs on the last data set (`key`: its fingerprint)."""

    key: str = ""
    outputs: list[np.ndarray] = []


def distiller(student: Any, teacher: Any, params: Params | None = None, *, cache_dir: str | Path | None = None) -> Any:
    """A tf_keras model that trains `student` on labels + `teacher`'s softened outputs (+ feature hints).

    Compile and fit it like the student (its loss is the hard-label loss);
    `predict` / `evaluate` run the student; `strip` returns the student.
    `cache_dir`: where `cache: disk` keeps the teacher's outputs.
    """
    from tfcompress.keras_compat import tf, tf_keras

    p = params or Params()
    wrapped = [layer.name for layer in student.layers if type(layer).__name__ in TFMOT_WRAPPERS]
    if wrapped:
        raise TfcompressError(
            f"distill cannot fine-tune a model wrapped by TF-MOT (layers {', '.join(wrapped[:4])})",
            "put distill before prune / cluster / qat stages, or after structured_prune / low_rank",
        )
    s_out, t_out = tuple(student.outputs[0].shape[1:]), tuple(teacher.outputs[0].shape[1:])
    if s_out != t_out:
        raise TfcompressError(
            f"teacher '{teacher.name}' outputs {t_out} but the student '{student.name}' outputs {s_out}",
            "distill needs a teacher with the same outputs (the model before compression)",
        )
    teacher_probs, student_probs = outputs_are_probabilities(teacher), outputs_are_probabilities(student)
    pairs = hint_pairs(student, teacher, p.hints)
    student_features = _features(student, [s for s, _, _, _ in pairs])
    teacher_features = _at_student_resolution(_features(teacher, [t for _, t, _, _ in pairs]), teacher, student)
    adapters = [adapter(s_shape, t_shape, i) for i, (_, _, s_shape, t_shape) in enumerate(pairs)]
    cache_mode = p.cache if p.cache != "disk" or cache_dir is not None else "memory"

    def log_softmax(y: Any, probs: bool, temperature: float) -> Any:
        logits = tf.math.log(tf.clip_by_value(y, 1e-7, 1.0)) if probs else y
        return tf.nn.log_softmax(logits / temperature, axis=-1)

    def as_list(y: Any) -> list[Any]:
        return list(y) if isinstance(y, (list, tuple)) else [y]

    class Distiller(tf_keras.Model):
        """Student + frozen teacher; trains the student (and the hint adapters) only."""

        def __init__(self) -> None:
            super().__init__(name=f"distill_{student.name}")
            self.student = student
            self.teacher = teacher  # called with training=False; only the student's variables get gradients
            self.hint_pairs = tuple((s, t) for s, t, _, _ in pairs)
            self.adapters = [a for a in adapters if a is not None]
            self.distill_tracker = tf_keras.metrics.Mean(name="distill_loss")
            self.hint_tracker = tf_keras.metrics.Mean(name="hint_loss")
            self.teacher_passes = 0  # full passes of the teacher over a data set (cache fills)
            self._cache = _Cache()  # a plain object: Keras does not track (or copy) what it holds
            self._packed = False  # labels arrive as (y, *teacher outputs) from the cache
            for a, (_, _, s_shape, _) in zip(adapters, pairs):
                if a is not None:
                    a.build((None, *s_shape[1:]))

        def call(self, inputs: Any, training: bool | None = None) -> Any:
            return self.student(inputs, training=training)

        @property
        def metrics(self) -> list[Any]:
            return [*super().metrics, self.distill_tracker] + ([self.hint_tracker] if pairs else [])

        def teacher_outputs(self, x: Any, batch_size: int = 256) -> list[np.ndarray]:
            """The teacher's outputs (and hint features) on arrays `x`, from the cache when it has them."""
            key = _fingerprint(x)
            if self._cache.key == key:
                return self._cache.outputs
            path = Path(cache_dir) / f"teacher_outputs_{key[:16]}.npz" if cache_mode == "disk" else None
            if path is not None and path.is_file():
                with np.load(path) as saved:
                    outs = [saved[f"out{i}"] for i in range(len(saved.files))]
            else:
                outs = as_list(teacher_features.predict(x, batch_size=batch_size, verbose=0))
                self.teacher_passes += 1
                if path is not None:
                    from tfcompress.files import atomic_writer

                    path.parent.mkdir(parents=True, exist_ok=True)
                    with atomic_writer(path, "wb") as f:
                        np.savez(f, **{f"out{i}": o for i, o in enumerate(outs)})
            self._cache.key, self._cache.outputs = key, outs
            return outs

        def fit(self, x: Any = None, y: Any = None, *args: Any, **kwargs: Any) -> Any:
            n = len(x[0] if isinstance(x, (list, tuple)) else x) if _is_arrays(x) else 0
            packed = (cache_mode != "off" and n > 0 and isinstance(y, np.ndarray) and not kwargs.get("class_weight"))
            if packed:
                per_sample = sum(int(np.prod(s[1:])) for s in [teacher.outputs[0].shape] +
                                 [t_shape for _, _, _, t_shape in pairs])
                if 4 * per_sample * n > CACHE_LIMIT_BYTES:
                    warnings.warn(f"distill: teacher outputs for {n} samples would take {4 * per_sample * n:,} bytes; "
                                  "not cached (the teacher runs on every batch)", stacklevel=2)
                    packed = False
            if packed:
                y = (y, *self.teacher_outputs(x))
            if packed != self._packed:
                self._packed, self.train_function = packed, None  # retrace train_step for the other label layout
            return super().fit(x, y, *args, **kwargs)

        def train_step(self, data: Any) -> dict[str, Any]:
            x, y = data[0], data[1]
            if self._packed:
                y, t_all = y[0], list(y[1:])
            else:
                t_all = as_list(teacher_features(x, training=False))
            soft_targets = tf.exp(log_softmax(t_all[0], teacher_probs, p.temperature))
            with tf.GradientTape() as tape:
                s_all = as_list(student_features(x, training=True))
                out = s_all[0]
                hard = self.compiled_loss(y, out, regularization_losses=self.student.losses)
                soft_log = log_softmax(out, student_probs, p.temperature)
                kl = tf.reduce_mean(
                    tf.reduce_sum(soft_targets * (tf.math.log(soft_targets + 1e-12) - soft_log), axis=-1)
                )
                loss = p.alpha * hard + (1.0 - p.alpha) * p.temperature**2 * kl
                if pairs:
                    hint = tf.add_n([
                        tf.reduce_mean(tf.square((a(s) if a is not None else s) - tf.cast(t, s.dtype)))
                        for a, s, t in zip(adapters, s_all[1:], t_all[1:])
                    ]) / len(pairs)
                    loss = loss + p.hint_weight * hint
            variables = self.student.trainable_variables + [v for a in self.adapters for v in a.trainable_variables]
            self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
            self.compiled_metrics.update_state(y, out)
            self.distill_tracker.update_state(kl)
            if pairs:
                self.hint_tracker.update_state(hint)
            return {m.name: m.result() for m in self.metrics}

    return Distiller()


def apply(model: Any, params: Params, rules: tuple[LayerRule, ...] = (), ctx: StageContext = StageContext()) -> Any:
    """Recipe stage: wrap `model` (the student) with the teacher (`params.teacher`, else `ctx.teacher`)."""
    teacher = ctx.teacher
    if params.teacher is not None:
        from tfcompress.loading import load_model

        teacher = load_model(params.teacher)
    if teacher is None:
        raise TfcompressError(
            "distill needs a teacher model",
            "set `teacher: PATH` in the stage's params; tfcompress compress passes the original model; in your own "
            "loop: stage.prepare(model, teacher=original)",
        )
    if teacher is model:  # distilling a model into itself: the teacher must not move with it
        from tfcompress.techniques.rules import fresh_copy

        teacher = fresh_copy(model)
    return distiller(model, teacher, params, cache_dir=ctx.log_dir)


def strip(model: Any) -> Any:
    """The student (the model that ships); other models are returned as they are."""
    return getattr(model, "student", model)


TECHNIQUE = Technique(
    name="distill",
    summary="fine-tune on the original model's soft outputs",
    params_type=Params,
    apply=apply,
    strip=strip,
    unwrap=strip,
    capabilities=frozenset({Capability.NEEDS_TEACHER, Capability.TRAINING_WRAPPER}),
)
