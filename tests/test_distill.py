"""Knowledge distillation: the loss, the wrapper, the recipe stage after structured pruning."""

from __future__ import annotations

import numpy as np
import pytest

import tfcompress
from tfcompress.compression import compress
from tfcompress.monitoring import kernel_stats
from tfcompress.techniques import StageContext
from tfcompress.errors import TfcompressError
from tfcompress.keras_compat import tf, tf_keras
from tfcompress.recipe import parse_recipe_dict
from tfcompress.techniques.distill import Params, apply, distiller, strip


def _mlp(units: int, softmax: bool = False, seed: int = 0) -> tf_keras.Model:
    tf_keras.utils.set_random_seed(seed)
    x = tf_keras.Input((8,))
    y = tf_keras.layers.Dense(units, activation="relu", name="hidden")(x)
    y = tf_keras.layers.Dense(4, activation="softmax" if softmax else None, name="out")(y)
    return tf_keras.Model(x, y)


def _data(n: int = 256):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 8)).astype("float32")
    return x, (x[:, :4].argmax(axis=1)).astype("int64")


def _fit(model, x, y, epochs=1):
    model.compile(tf_keras.optimizers.Adam(1e-2),
                  tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)


def test_distillation_pulls_the_student_onto_the_teacher():
    x, y = _data()
    teacher = _mlp(32, seed=1)  # untrained: a function the labels do not describe, only the soft loss can teach it
    t = tf.nn.softmax(teacher(x) / 4.0).numpy()

    def gap(student):
        s = tf.nn.softmax(student(x) / 4.0).numpy()
        return float(np.mean(np.sum(t * (np.log(t + 1e-12) - np.log(s + 1e-12)), axis=-1)))

    def trained(alpha):
        student = _mlp(8, seed=2)
        d = distiller(student, teacher, Params(temperature=4.0, alpha=alpha))
        return student, d, _fit(d, x, y, epochs=5)

    before = gap(_mlp(8, seed=2))
    kd, d, history = trained(0.0)  # the teacher only
    labels_only, _, _ = trained(1.0)  # the same student, same steps, labels only
    assert gap(kd) < 0.5 * before
    assert gap(kd) < 0.7 * gap(labels_only), "matching the teacher is what the soft loss does"
    assert history.history["distill_loss"][-1] < history.history["distill_loss"][0]
    assert strip(d) is kd
    np.testing.assert_allclose(d.predict(x, verbose=0), kd.predict(x, verbose=0), rtol=1e-6)


def test_teacher_is_not_trained_nor_changed():
    x, y = _data()
    teacher = _mlp(16, softmax=True, seed=3)  # a softmax teacher works too
    before = [w.copy() for w in teacher.get_weights()]
    trainable = teacher.trainable
    _fit(distiller(_mlp(8, seed=4), teacher, Params()), x, y, epochs=2)
    for a, b in zip(before, teacher.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert teacher.trainable == trainable


def test_distilling_a_model_into_itself_uses_a_frozen_copy():
    x, y = _data()
    model = _mlp(8, seed=5)
    d = apply(model, Params(), (), StageContext(teacher=model))
    assert d.teacher is not model and d.student is model
    _fit(d, x, y)


def test_bad_teacher_or_wrapped_student_is_a_clear_error():
    with pytest.raises(TfcompressError, match="same outputs"):
        distiller(_mlp(8), tf_keras.Sequential([tf_keras.Input((8,)), tf_keras.layers.Dense(3)]))
    with pytest.raises(TfcompressError, match="needs a teacher"):
        apply(_mlp(8), Params())
    pruned = tfcompress.prepare(_mlp(8), parse_recipe_dict(
        {"name": "p", "stages": [{"technique": "prune", "epochs": 1}]}), steps_per_epoch=2)
    with pytest.raises(TfcompressError, match="wrapped by TF-MOT"):
        distiller(pruned, _mlp(8))
    with pytest.raises(ValueError, match="alpha"):
        Params(alpha=1.5)


@pytest.mark.slow
def test_recipe_structured_prune_then_distill(fmnist):
    from tfcompress.models import fmnist_cnn

    (x, y), (xt, yt) = fmnist
    base = fmnist_cnn("tf_keras")
    recipe = parse_recipe_dict({"name": "kd", "stages": [
        {"technique": "structured_prune", "epochs": 0, "params": {"ratio": 0.5}},
        {"technique": "distill", "epochs": 1, "steps_per_epoch": 5, "params": {"temperature": 2.0}},
    ]})
    result = compress(base, recipe, (x[:400], y[:400]), val_data=(xt[:100], yt[:100]), measure_stages=False,
                      device=None)
    assert [s.technique for s in result.stages] == ["structured_prune", "distill"]
    assert result.model.count_params() < 0.7 * base.count_params(), "the student (pruned) ships, not the teacher"
    assert not hasattr(result.model, "teacher")
    assert kernel_stats(result.model)
    assert result.convert.report.io_dtypes == ("int8", "int8")
