"""Knowledge distillation (`distill`): fine-tune the compressed model to match the original one.

    loss = alpha * CE(labels, student) + (1 - alpha) * T^2 * KL(softmax(teacher / T) || softmax(student / T))

Hinton et al. (2015): the teacher's softened outputs carry more than the
labels do (which wrong classes are close), so a model that lost capacity to
structured pruning or low rank recovers more than with labels alone. The
teacher is the model as it was before the recipe (`compress` passes it), or
any model with the same outputs (`StageRun.prepare(model, teacher=...)`).

Use it as its own fine-tuning stage after stages that change the structure
(structured_prune, low_rank, share_weights). It refuses a model still wrapped
by TF-MOT (prune / cluster / QAT): those need their own callbacks on their own
layers, and plain fine-tuning afterwards would undo their sparsity or clusters.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictFloat

from tfcompress.errors import TfcompressError
from tfcompress.training import outputs_are_probabilities
from tfcompress.techniques.base import Capability, StageContext, Technique
from tfcompress.types import LayerRule

__all__ = ["TECHNIQUE", "Params", "apply", "strip", "distiller"]

TFMOT_WRAPPERS = ("PruneLowMagnitude", "ClusterWeights", "QuantizeWrapper", "QuantizeWrapperV2", "QuantizeLayer")


class Params(BaseModel):
    """Parameters of a `distill` stage (field descriptions are the docs and the JSON Schema)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: StrictFloat = Field(
        4.0, gt=0.0, le=1000.0, description="softening of both models' outputs (higher = softer; 2-8 is usual)")
    alpha: StrictFloat = Field(
        0.1, ge=0.0, le=1.0, description="weight of the hard-label loss; 1 - alpha goes to matching the teacher")


def distiller(student: Any, teacher: Any, params: Params | None = None) -> Any:
    """A tf_keras model that trains `student` on labels + `teacher`'s softened outputs.

    Compile and fit it like the student (its loss is the hard-label loss);
    `predict` / `evaluate` run the student; `strip` returns the student.
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

    def log_softmax(y: Any, probs: bool, temperature: float) -> Any:
        logits = tf.math.log(tf.clip_by_value(y, 1e-7, 1.0)) if probs else y
        return tf.nn.log_softmax(logits / temperature, axis=-1)

    class Distiller(tf_keras.Model):
        """Student + frozen teacher; trains the student only."""

        def __init__(self) -> None:
            super().__init__(name=f"distill_{student.name}")
            self.student = student
            self.teacher = teacher  # called with training=False; only the student's variables get gradients
            self.distill_tracker = tf_keras.metrics.Mean(name="distill_loss")

        def call(self, inputs: Any, training: bool | None = None) -> Any:
            return self.student(inputs, training=training)

        @property
        def metrics(self) -> list[Any]:
            return [*super().metrics, self.distill_tracker]

        def train_step(self, data: Any) -> dict[str, Any]:
            x, y = data[0], data[1]
            soft_targets = tf.exp(log_softmax(self.teacher(x, training=False), teacher_probs, p.temperature))
            with tf.GradientTape() as tape:
                out = self.student(x, training=True)
                hard = self.compiled_loss(y, out, regularization_losses=self.student.losses)
                soft_log = log_softmax(out, student_probs, p.temperature)
                kl = tf.reduce_mean(
                    tf.reduce_sum(soft_targets * (tf.math.log(soft_targets + 1e-12) - soft_log), axis=-1)
                )
                loss = p.alpha * hard + (1.0 - p.alpha) * p.temperature**2 * kl
            variables = self.student.trainable_variables
            self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
            self.compiled_metrics.update_state(y, out)
            self.distill_tracker.update_state(kl)
            return {m.name: m.result() for m in self.metrics}

    return Distiller()


def apply(model: Any, params: Params, rules: tuple[LayerRule, ...] = (), ctx: StageContext = StageContext()) -> Any:
    """Recipe stage: wrap `model` (the student) with `ctx.teacher` for fine-tuning."""
    teacher = ctx.teacher
    if teacher is None:
        raise TfcompressError(
            "distill needs a teacher model",
            "tfcompress compress passes the original model; in your own loop: stage.prepare(model, teacher=original)",
        )
    if teacher is model:  # distilling a model into itself: the teacher must not move with it
        from tfcompress.techniques.rules import fresh_copy

        teacher = fresh_copy(model)
    return distiller(model, teacher, params)


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
