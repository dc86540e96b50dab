"""The fine-tuning loss follows the model's head: logits or softmax probabilities, wrappers seen through.

Found by benchmarks/model_matrix.py (issue 17): keras.applications models end in a softmax Dense; under QAT
that layer's activation becomes TF-MOT's QuantizeAwareActivation (no __name__), so the loss took the softmax
output for logits ("`sparse_categorical_crossentropy` received `from_logits=True`, but the `output` argument
was produced by a Softmax activation").
"""

from __future__ import annotations

import pytest

from tfcompress.training import classification_loss, outputs_are_probabilities


def head(activation):
    from tfcompress.keras_compat import tf_keras

    inp = tf_keras.Input((8,))
    x = tf_keras.layers.Dense(8, activation="relu")(inp)
    return tf_keras.Model(inp, tf_keras.layers.Dense(4, activation=activation)(x))


@pytest.mark.parametrize("activation, probabilities", [("softmax", True), (None, False)])
def test_wrapped_heads_keep_their_loss(activation, probabilities):
    import tensorflow_model_optimization as tfmot

    model = head(activation)
    qat = tfmot.quantization.keras.quantize_model(model)
    pruned = tfmot.sparsity.keras.prune_low_magnitude(head(activation))
    for m in (model, qat, pruned):
        assert outputs_are_probabilities(m) is probabilities, type(m.layers[-1]).__name__
        assert classification_loss(m).get_config()["from_logits"] is (not probabilities)
