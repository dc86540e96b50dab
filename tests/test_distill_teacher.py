"""Distillation across architectures: a teacher from a file, cached teacher outputs, FitNets hints."""

from __future__ import annotations

import numpy as np
import pytest

from tfcompress.errors import TfcompressError
from tfcompress.keras_compat import keras3, tf, tf_keras
from tfcompress.techniques import StageContext
from tfcompress.techniques.distill import HintPair, Params, apply, distiller


class Count(tf_keras.layers.Layer):
    """Counts the samples that pass through it (a teacher that reports how often it ran)."""

    def build(self, shape):
        self.seen = self.add_weight(name="seen", shape=(), initializer="zeros", trainable=False)

    def call(self, x):
        self.seen.assign_add(tf.cast(tf.shape(x)[0], tf.float32))
        return x


def cnn(width, seed, count=False, flavor=tf_keras, residual=False):
    flavor.utils.set_random_seed(seed)
    L = flavor.layers
    inp = flavor.Input((8, 8, 1))
    x = Count(name="count")(inp) if count else inp
    x = L.Conv2D(width, 3, padding="same", activation="relu", name="stem")(x)
    y = L.Conv2D(width, 3, padding="same", activation="relu", name="b1")(x)
    x = L.Add(name="b1_add")([x, y]) if residual else y
    x = L.Conv2D(2 * width, 3, strides=2, padding="same", activation="relu", name="down")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return flavor.Model(inp, L.Dense(4, name="logits")(x))


def data(n=64):
    rng = np.random.default_rng(0)
    x = rng.random((n, 8, 8, 1), dtype=np.float32)
    return x, (x[:, :4, :4, 0].mean(axis=(1, 2)) * 8).astype("int64") % 4


def fit(model, x, y, epochs, **kw):
    model.compile(tf_keras.optimizers.Adam(1e-2), tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model.fit(x, y, epochs=epochs, batch_size=16, verbose=0, **kw)


def seen(teacher):
    return float(teacher.get_layer("count").seen.numpy())


def test_teacher_runs_once_per_data_set_not_per_epoch():
    x, y = data()
    teacher = cnn(8, seed=1, count=True)
    d = distiller(cnn(4, seed=2), teacher, Params())
    fit(d, x, y, epochs=3)
    assert seen(teacher) == len(x) and d.teacher_passes == 1
    fit(d, x, y, epochs=2)  # the same data again: the cache answers
    assert seen(teacher) == len(x)
    off = distiller(cnn(4, seed=2), teacher, Params(cache="off"))
    fit(off, x, y, epochs=3)
    assert seen(teacher) == len(x) + 3 * len(x), "without the cache the teacher runs on every batch of every epoch"


def test_cached_and_uncached_training_are_the_same():
    x, y = data()
    teacher = cnn(8, seed=1)
    students = []
    for cache in ("memory", "off"):
        student = cnn(4, seed=2)
        tf_keras.utils.set_random_seed(3)
        fit(distiller(student, teacher, Params(hints="auto", cache=cache)), x, y, epochs=2, shuffle=False)
        students.append(student)
    for a, b in zip(*(s.get_weights() for s in students)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_disk_cache_under_the_stage_log_dir_is_reused(tmp_path):
    x, y = data()
    teacher = cnn(8, seed=1, count=True)
    log = tmp_path / "stage1_distill"
    fit(apply(cnn(4, seed=2), Params(cache="disk"), (), StageContext(teacher=teacher, log_dir=str(log))), x, y, 2)
    assert len(list(log.glob("teacher_outputs_*.npz"))) == 1 and seen(teacher) == len(x)
    again = apply(cnn(4, seed=3), Params(cache="disk"), (), StageContext(teacher=teacher, log_dir=str(log)))
    fit(again, x, y, 1)
    assert seen(teacher) == len(x) and again.teacher_passes == 0
    fit(again, x[:32], y[:32], 1)  # other data: a new pass
    assert seen(teacher) == len(x) + 32 and len(list(log.glob("teacher_outputs_*.npz"))) == 2


def test_teacher_from_a_file_of_another_architecture(tmp_path):
    x, y = data()
    path = tmp_path / "teacher.keras"
    cnn(16, seed=5, flavor=keras3, residual=True).save(path)  # a Keras 3 file: loaded through tfcompress.loading
    student = cnn(4, seed=6)
    d = apply(student, Params(teacher=str(path)), (), StageContext(teacher=None))
    assert d.student is student and d.teacher.get_layer("stem").filters == 16
    fit(d, x, y, 1)
    with pytest.raises(TfcompressError, match="missing.keras"):
        apply(student, Params(teacher=str(tmp_path / "missing.keras")))


def test_auto_hints_pair_feature_maps_by_size_with_adapters():
    x, y = data()
    teacher, student = cnn(8, seed=1, residual=True), cnn(4, seed=2)
    d = distiller(student, teacher, Params(hints="auto", hint_weight=1.0))
    # 8x8: the student's last is b1, the teacher's b1_add; 4x4: both "down"
    assert d.hint_pairs == (("b1", "b1_add"), ("down", "down"))
    assert [a.name for a in d.adapters] == ["hint_adapter_0", "hint_adapter_1"]
    assert d.adapters[0].kernel.shape == (1, 1, 4, 8)
    history = fit(d, x, y, epochs=8)
    hint = history.history["hint_loss"]
    assert hint[-1] < 0.5 * hint[0]
    assert not any("hint_adapter" in v.name for v in student.variables), "adapters do not ship with the student"


def test_hint_rules_by_name_and_their_errors():
    teacher, student = cnn(8, seed=1), cnn(8, seed=2)
    d = distiller(student, teacher, Params(hints=(HintPair(student="^stem$", teacher="^b1$"),)))
    assert d.hint_pairs == (("stem", "b1"),) and d.adapters == [], "same channel count: no adapter"
    parsed = Params.model_validate({"hints": [{"student": "stem", "teacher": "b1"}]})
    assert parsed.hints == (HintPair(student="stem", teacher="b1"),)
    with pytest.raises(TfcompressError, match="spatial size"):
        distiller(student, teacher, Params(hints=(HintPair(student="^stem$", teacher="^down$"),)))
    with pytest.raises(TfcompressError, match="no teacher layer"):
        distiller(student, teacher, Params(hints=(HintPair(student="stem", teacher="^nothing$"),)))
    with pytest.raises(ValueError):
        Params(hints=(HintPair(student="(", teacher="b1"),))


def test_cross_architecture_resnet_teacher_mbconv_se_student():
    """ResNet-style teacher (trained a little), EfficientNet-style student (MBConv + SE by `swap`): KD + hints."""
    from tfcompress.techniques.swap import Params as SwapParams, swap_blocks

    x, y = data(128)
    teacher = cnn(8, seed=1, residual=True)
    fit(teacher, x, y, epochs=3)
    student = swap_blocks(cnn(4, seed=2), SwapParams(target="mbconv", expansion=4, se_ratio=0.5))
    assert {"b1_se_excite", "down_se_excite"} <= {layer.name for layer in student.layers}
    d = distiller(student, teacher, Params(temperature=2.0, alpha=0.0, hints="auto", hint_weight=0.5))
    # the last 8x8 student layer is the strided block's expansion (its depthwise conv is what downsamples)
    assert d.hint_pairs == (("down_expand_act", "b1_add"), ("down", "down"))
    history = fit(d, x, y, epochs=6).history
    assert history["distill_loss"][-1] < 0.7 * history["distill_loss"][0]
    assert history["hint_loss"][-1] < history["hint_loss"][0]


def test_a_student_at_a_lower_resolution_learns_from_the_teacher_at_its_own():
    """A student scaled to 8x8 inputs (scale / search resolution) distils from a 16x16 teacher: the teacher sees
    the student's batch resized back to 16x16 (bilinear), so its soft labels are what it predicts at its size."""
    tf_keras.utils.set_random_seed(0)

    def net(side: int, name: str):
        inp = tf_keras.Input((side, side, 1))
        x = tf_keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
        x = tf_keras.layers.GlobalAveragePooling2D()(x)
        return tf_keras.Model(inp, tf_keras.layers.Dense(3)(x), name=name)

    teacher, student = net(16, "teacher16"), net(8, "student8")
    x16 = np.random.default_rng(0).random((64, 16, 16, 1)).astype(np.float32)
    x8 = tf.image.resize(x16, (8, 8), method="bilinear").numpy()
    y = np.arange(64) % 3
    d = distiller(student, teacher, Params(temperature=2.0, alpha=0.5))
    got = d.teacher_outputs(x8)[0]
    want = teacher.predict(tf.image.resize(x8, (16, 16), method="bilinear").numpy(), verbose=0)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    d.compile(optimizer=tf_keras.optimizers.Adam(1e-2), loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    hist = d.fit(x8, y, epochs=2, batch_size=16, verbose=0)
    assert np.isfinite(hist.history["distill_loss"]).all()


def test_auto_hints_on_models_without_feature_maps_distill_the_outputs_only():
    """Issue 17: `mobilenet-swap` (hints: auto) stopped on text, audio and Transformer models ('found no feature-map
    size the student and the teacher share'): they have no 2-D feature maps, so auto has nothing to pair and says so.
    Image models that share no size still get the error (that is a choice to make, not nothing to pair)."""
    from tfcompress.techniques.hints import HintWarning, hint_pairs

    def text(seed):
        tf_keras.utils.set_random_seed(seed)
        inp = tf_keras.Input((12,), dtype="int32")
        h = tf_keras.layers.GlobalAveragePooling1D()(tf_keras.layers.Embedding(50, 8)(inp))
        return tf_keras.Model(inp, tf_keras.layers.Dense(3)(h), name=f"text{seed}")

    student, teacher = text(0), text(1)
    with pytest.warns(HintWarning, match="no 2-D feature maps"):
        assert hint_pairs(student, teacher, "auto") == []
    x = np.random.default_rng(0).integers(0, 50, (16, 12)).astype(np.int32)
    with pytest.warns(HintWarning):
        d = distiller(student, teacher, Params(hints="auto"))
    assert d.hint_pairs == ()
    fit(d, x, np.arange(16) % 3, epochs=1)
    small = tf_keras.Sequential([tf_keras.Input((4, 4, 1)), tf_keras.layers.Conv2D(2, 1), tf_keras.layers.Flatten()])
    big = tf_keras.Sequential([tf_keras.Input((6, 6, 1)), tf_keras.layers.Conv2D(2, 1), tf_keras.layers.Flatten()])
    with pytest.raises(TfcompressError, match="found no feature-map size"):
        hint_pairs(small, big, "auto")
