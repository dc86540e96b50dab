"""Models with integer inputs (token ids: Embedding text classifiers, Transformers) through the latency step.

Issue 17: `compress` failed on every such model because the profiling conversion fed float32 random data to an
int32 input ("Cannot set tensor: Got value of type FLOAT32 but expected type INT32"). Random calibration data now
follows each input's dtype, and a model the predictor cannot cover is "not predicted (reason)", never a failure.
"""

from __future__ import annotations

import numpy as np
import pytest


def text_model(vocab: int = 200, length: int = 16):
    from tfcompress.keras_compat import tf_keras

    tf_keras.utils.set_random_seed(0)
    L = tf_keras.layers
    inp = tf_keras.Input((length,), dtype="int32", name="tokens")
    x = L.Embedding(vocab, 16, name="embed")(inp)
    x = L.GlobalAveragePooling1D(name="pool")(x)
    x = L.Dense(32, activation="relu", name="hidden")(x)
    return tf_keras.Model(inp, L.Dense(4, name="logits")(x), name="text")


def test_random_calibration_follows_integer_input_dtypes():
    from tfcompress.export.converter import convert_int8_random
    from tfcompress.runtime import make_interpreter

    content = convert_int8_random(text_model())
    interp = make_interpreter(content)
    (inp,) = interp.get_input_details()
    assert inp["dtype"] == np.int32 and tuple(inp["shape"]) == (1, 16)
    interp.allocate_tensors()
    interp.set_tensor(inp["index"], np.ones((1, 16), np.int32))
    interp.invoke()


def test_predicted_latency_of_a_text_model():
    from tfcompress.hardware.predict import predict_latency_ms

    pred = predict_latency_ms(text_model(), "host")
    assert pred.total_ms > 0 and any(r.op == "FULLY_CONNECTED" for r in pred.rows)


def test_latency_logger_says_not_predicted_instead_of_failing():
    """A variable-length input cannot be priced (latency depends on the length): the callback records why and
    training goes on, without a predicted_latency_ms entry in the logs."""
    from tfcompress.keras_compat import tf_keras
    from tfcompress.monitoring import LatencyLogger

    L = tf_keras.layers
    inp = tf_keras.Input((None,), dtype="int32")
    model = tf_keras.Model(inp, L.Dense(4)(L.GlobalAveragePooling1D()(L.Embedding(50, 8)(inp))))
    cb = LatencyLogger("host")
    cb.set_model(model)
    logs: dict = {}
    cb.on_epoch_end(0, logs)
    assert "predicted_latency_ms" not in logs and cb.history == []
    assert cb.not_predicted is not None and cb.not_predicted.startswith("not predicted (") \
        and "variable size" in cb.not_predicted


@pytest.mark.slow
def test_compress_a_text_model_end_to_end(tmp_path):
    from tfcompress.compression import compress
    from tfcompress.keras_compat import tf_keras

    rng = np.random.default_rng(0)
    x = rng.integers(0, 200, (384, 16)).astype(np.int32)
    y = (x[:, 0] % 4).astype(np.int64)
    model = text_model()
    model.compile("adam", tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "text.keras")
    np.savez(tmp_path / "text.npz", x=x, y=y)
    result = compress(str(tmp_path / "text.keras"), "prune-50", str(tmp_path / "text.npz"),
                      output=tmp_path / "out" / "text.tflite")
    assert (tmp_path / "out" / "text.tflite").is_file()
    assert result.report.convert.predicted_latency is not None
    assert result.report.convert.predicted_latency.total_ms > 0


def test_compress_says_when_the_per_epoch_latency_is_not_predicted(tmp_path):
    """Issue 17: the callback's reason used to stay inside it; compress now warns with it, naming the stage. (The
    variable-length input also used to stop verification: 'Dimension mismatch. Got 12 but expected 1'; the
    interpreter's open dimensions are now sized as the samples.)"""
    from tfcompress.compression import compress
    from tfcompress.keras_compat import tf_keras
    from tfcompress.recipe import parse_recipe_dict

    L = tf_keras.layers
    inp = tf_keras.Input((None,), dtype="int32")
    model = tf_keras.Model(inp, L.Dense(4)(L.GlobalAveragePooling1D()(L.Embedding(50, 8)(inp))))
    x = np.random.default_rng(0).integers(0, 50, (64, 12)).astype(np.int32)
    recipe = parse_recipe_dict({"name": "p", "stages": [{"technique": "prune", "epochs": 1, "steps_per_epoch": 2}],
                                "export": {"mode": "dynamic"}})
    warned: list[str] = []
    compress(model, recipe, (x, x[:, 0] % 4), measure_stages=False, on_warning=warned.append)
    assert any(w.startswith("stage 0 (prune): latency per epoch not predicted (") for w in warned), warned


def test_the_callbacks_run_in_a_keras3_models_own_fit():
    """Issue 17: LatencyLogger stripped TF-MOT wrappers with TF-MOT, which refuses a Keras 3 model ('Expected model
    to be a `keras.Model` instance'); a Keras 3 model holds no wrappers and is priced as it is."""
    from tfcompress import CompressionLogger, LatencyLogger  # the public names
    from tfcompress.keras_compat import keras3

    inp = keras3.Input((16,), dtype="int32")
    h = keras3.layers.GlobalAveragePooling1D()(keras3.layers.Embedding(200, 16)(inp))
    model = keras3.Model(inp, keras3.layers.Dense(4)(keras3.layers.Dense(32, activation="relu")(h)))
    model.compile("adam", keras3.losses.SparseCategoricalCrossentropy(from_logits=True))
    latency, compression = LatencyLogger("host"), CompressionLogger()
    x = np.random.default_rng(0).integers(0, 200, (32, 16)).astype(np.int32)
    history = model.fit(x, x[:, 0] % 4, epochs=2, batch_size=16, verbose=0, callbacks=[latency, compression])
    assert len(latency.history) == 2 and latency.history[0] > 0 and latency.not_predicted is None
    assert history.history["predicted_latency_ms"] == latency.history
    assert len(compression.history) == 2 and "mean_sparsity" in compression.history[0]
