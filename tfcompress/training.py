"""Fine-tuning a stage's model: the loss a classifier needs and one `fit` call with the stage's settings."""

from __future__ import annotations

from typing import Any, Sequence

DEFAULT_LEARNING_RATE = 1e-4


def outputs_are_probabilities(model: Any) -> bool:
    """Whether `model` ends in a softmax (else its outputs are logits)."""
    last = model.layers[-1]
    inner = getattr(last, "layer", last)  # a pruning / clustering / QAT wrapper's layer
    activation = getattr(inner, "activation", None)
    activation = getattr(activation, "activation", activation)  # QAT's QuantizeAwareActivation wraps the function
    return getattr(activation, "__name__", "") == "softmax" or type(inner).__name__ == "Softmax"


def classification_loss(model: Any) -> Any:
    """Sparse categorical cross-entropy; from_logits unless the model ends in softmax."""
    from tfcompress.keras_compat import tf_keras

    return tf_keras.losses.SparseCategoricalCrossentropy(from_logits=not outputs_are_probabilities(model))


def fine_tune(
    model: Any,
    loss_model: Any,
    stage: Any,
    x: Any,
    y: Any,
    validation: tuple[Any, Any] | None,
    callbacks: Sequence[Any],
) -> None:
    """Compile `model` (Adam at the stage's learning rate, the loss of `loss_model`) and fit it for the stage's epochs.

    `loss_model` is the model being compressed: `model` itself, or the student
    inside a training wrapper such as a distiller.
    """
    from tfcompress.keras_compat import tf_keras

    model.compile(
        optimizer=tf_keras.optimizers.Adam(stage.learning_rate or DEFAULT_LEARNING_RATE),
        loss=classification_loss(loss_model),
        metrics=["accuracy"],
    )
    model.fit(
        x,
        y,
        epochs=stage.epochs,
        batch_size=stage.batch_size,
        steps_per_epoch=stage.steps_per_epoch,
        validation_data=validation,
        callbacks=list(callbacks),
        verbose=0,
    )
