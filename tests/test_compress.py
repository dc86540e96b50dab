"""`tfcompress.compress` and the in-your-own-fit API: PCQAT end to end, resume, CLI."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

import tfcompress
from tfcompress.cli import main
from tfcompress.compression import compress
from tfcompress.monitoring import kernel_stats
from tfcompress.stages import training_stages
from tfcompress.errors import TfcompressError
from tfcompress.export.tflite_file import read_tflite
from tfcompress.keras_compat import keras3, tf_keras
from tfcompress.models import fmnist_cnn
from tfcompress.recipe import parse_recipe_dict

PCQAT_QUICK = {
    "name": "pcqat-quick",
    "stages": [
        {"technique": "prune", "epochs": 1, "steps_per_epoch": 6, "batch_size": 32, "params": {"final_sparsity": 0.5}},
        {"technique": "cluster", "epochs": 1, "steps_per_epoch": 4, "batch_size": 32,
         "params": {"clusters": 16, "preserve_sparsity": True}},
        {"technique": "qat", "epochs": 1, "steps_per_epoch": 4, "batch_size": 32,
         "params": {"scheme": "prune_cluster_preserve"}},
        {"technique": "convert", "params": {"mode": "int8", "calib_samples": 32}},
    ],
}


def _data(n, shape, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, *shape), dtype=np.float32), rng.integers(0, classes, n)


def _assert_pcqat_survived(result, min_zeros=0.4):
    tfl = read_tflite(result.convert.tflite)
    assert [d.dtype for d in tfl.input_details() + tfl.output_details()] == ["int8", "int8"]
    pointwise = [w for w in result.weight_stats if w.op_type in ("CONV_2D", "FULLY_CONNECTED") and w.elements >= 1024]
    assert pointwise, "weights read back from the .tflite"
    for w in pointwise:
        assert w.zeros >= min_zeros, (w.tensor, w.zeros)  # pruning survived
        assert w.unique_per_channel <= 17, (w.tensor, w.unique_per_channel)  # 16 centroids (+ the zero)


@pytest.mark.slow
def test_pcqat_fmnist_cnn_reaches_int8_with_sparsity_and_clusters(fmnist):
    (x, y), (xt, yt) = fmnist
    result = compress(fmnist_cnn("tf_keras"), parse_recipe_dict(PCQAT_QUICK), (x[:600], y[:600]),
                      val_data=(xt[:200], yt[:200]), measure_stages=False)
    assert [s.technique for s in result.stages] == ["prune", "cluster", "qat"]
    _assert_pcqat_survived(result)
    assert result.convert.report.verify.accuracy.samples == 200


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("TFCOMPRESS_SLOW_TESTS"),
    reason="MobileNetV2 PCQAT takes minutes on 2 cores (cluster-preserving QAT graph); TFCOMPRESS_SLOW_TESTS=1 runs it",
)
def test_pcqat_mobilenetv2(tmp_path):
    model = keras3.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), classes=10)
    recipe = json.loads(json.dumps(PCQAT_QUICK))
    for stage in recipe["stages"][:3]:
        stage["steps_per_epoch"], stage["batch_size"] = 2, 8
    x, y = _data(64, (32, 32, 3))
    result = compress(model, parse_recipe_dict(recipe), (x, y), measure_stages=False, verify=False)
    _assert_pcqat_survived(result, min_zeros=0.3)


@pytest.mark.slow
def test_stage_table_and_outputs(tmp_path, fmnist):
    (x, y), _ = fmnist
    recipe = parse_recipe_dict({"name": "p", "stages": [
        {"technique": "prune", "epochs": 1, "steps_per_epoch": 4, "params": {"final_sparsity": 0.85}},
        {"technique": "convert", "params": {"sparse": True}}]})
    out = tmp_path / "m.tflite"
    result = compress(fmnist_cnn("tf_keras"), recipe, (x[:700], y[:700]), output=out)
    stage = result.stages[0]
    assert stage.tflite_bytes > 0 and stage.int8_accuracy is not None and stage.latency_ms > 0
    assert stage.predicted_ms > 0  # predicted on the shipped host profile, next to the measured latency
    assert stage.mean_sparsity == pytest.approx(0.85, abs=0.05)
    report = json.loads(out.with_name("m.report.json").read_text())
    assert report["recipe"]["name"] == "p" and len(report["stages"]) == 1
    assert any(w["encoding"] == "sparse" for w in report["weights"])
    assert out.stat().st_size < 0.8 * stage.tflite_bytes, "sparse export really shrinks the file"
    assert "kept sparse" in report["convert"]["notes"][0]
    meta = json.loads(out.with_name("m.meta.json").read_text())
    assert meta["runtime"]["resolver"] in ("default", "builtin") and meta["recipe"] == "p"


@pytest.mark.slow
def test_user_fit_api_and_resume_with_backup_and_restore(tmp_path):
    x, y = _data(256, (28, 28, 1))
    recipe = parse_recipe_dict({"name": "p", "stages": [
        {"technique": "prune", "epochs": 3, "params": {"final_sparsity": 0.6, "frequency": 1}}]})
    steps = 256 // 32

    def run(interrupt_at=None, backup=None):
        tf_keras.utils.set_random_seed(0)
        model = tfcompress.prepare(fmnist_cnn("tf_keras"), recipe, steps_per_epoch=steps)
        model.compile("adam", tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        cbs = tfcompress.callbacks(recipe, steps_per_epoch=steps)
        if backup:
            cbs.append(tf_keras.callbacks.BackupAndRestore(str(backup)))
        if interrupt_at is not None:
            class Stop(tf_keras.callbacks.Callback):
                def on_epoch_end(self, epoch, logs=None):
                    if epoch == interrupt_at:
                        raise KeyboardInterrupt
            cbs.append(Stop())
        model.fit(x, y, epochs=3, batch_size=32, verbose=0, callbacks=cbs)
        return tfcompress.finalize(model)

    reference = kernel_stats(run())
    with pytest.raises(KeyboardInterrupt):
        run(interrupt_at=0, backup=tmp_path / "bk")
    resumed = kernel_stats(run(backup=tmp_path / "bk"))
    for name in ("block1_pw", "block4_pw", "logits"):
        assert resumed[name][0] == pytest.approx(reference[name][0], abs=0.01) == pytest.approx(0.6, abs=0.02)


def test_multi_stage_recipe_needs_the_stage_loop():
    with pytest.raises(TfcompressError, match="training_stages"):
        tfcompress.prepare(fmnist_cnn("tf_keras"), parse_recipe_dict(PCQAT_QUICK))
    runs = list(training_stages(parse_recipe_dict(PCQAT_QUICK), steps_per_epoch=10))
    assert [r.stage.technique for r in runs] == ["prune", "cluster", "qat"]


@pytest.mark.slow
def test_cli_compress_and_recipe_errors(tmp_path):
    x, y = _data(200, (28, 28, 1))
    np.savez(tmp_path / "d.npz", x=x, y=y)
    fmnist_cnn("keras3").save(tmp_path / "m.keras")
    (tmp_path / "r.yaml").write_text(
        "name: q\nstages:\n  - technique: prune\n    epochs: 1\n    steps_per_epoch: 2\n"
        "  - technique: convert\n"
    )
    r = CliRunner().invoke(main, ["compress", str(tmp_path / "m.keras"), "--recipe", str(tmp_path / "r.yaml"),
                                  "--data", str(tmp_path / "d.npz"), "-o", str(tmp_path / "o.tflite")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "o.tflite").exists() and "after each stage" in r.output
    # a pipe / 80 columns: the narrow tables, no cell cut to "flo…", every line within 80 columns (issue 17)
    saved = json.loads((tmp_path / "o.report.json").read_text())
    assert saved["plain_convert_bytes"] > 0, "the original converted as is, for the size comparison"
    assert (saved["size_note"] is None) == ((tmp_path / "o.tflite").stat().st_size <= saved["plain_convert_bytes"])
    tables = r.output[r.output.index("after each stage"):]
    assert "…" not in tables and max(len(line) for line in tables.splitlines()) <= 80, tables
    assert "gzip B" not in tables and "every column with --wide" in tables and "int8 acc" in tables
    r = CliRunner().invoke(main, ["compress", str(tmp_path / "m.keras"), "--recipe", str(tmp_path / "r.yaml"),
                                  "--data", str(tmp_path / "d.npz"), "-o", str(tmp_path / "w.tflite"), "--wide"],
                           terminal_width=200)
    assert r.exit_code == 0, r.output
    assert "gzip" in r.output and "unique" in r.output and "every column with --wide" not in r.output
    assert "…" not in r.output[r.output.index("after each stage"):], "wide cells fold, never cut"
    (tmp_path / "bad.yaml").write_text("name: q\nstages:\n  - technique: prune\n    epochz: 1\n")
    r = CliRunner().invoke(main, ["compress", str(tmp_path / "m.keras"), "--recipe", str(tmp_path / "bad.yaml"),
                                  "--data", str(tmp_path / "d.npz"), "-o", str(tmp_path / "p.tflite")])
    assert r.exit_code == 2 and "bad.yaml:4:" in r.output and "epochs" in r.output
    assert not (tmp_path / "p.tflite").exists()


@pytest.mark.slow
def test_structured_prune_stage_with_a_data_criterion(fmnist):
    (x, y), (xt, yt) = fmnist
    recipe = parse_recipe_dict({"name": "s", "stages": [
        {"technique": "structured_prune", "epochs": 1, "steps_per_epoch": 3,
         "params": {"ratio": 0.5, "criterion": "taylor"}},
        {"technique": "convert"}]})
    base = fmnist_cnn("tf_keras")
    result = compress(base, recipe, (x[:500], y[:500]), val_data=(xt[:100], yt[:100]), measure_stages=False)
    assert result.model.count_params() < 0.7 * base.count_params()
    assert result.convert.report.io_dtypes == ("int8", "int8")


def _tensorboard_tags(log_dir):
    from tfcompress.keras_compat import tf

    return {
        v.tag
        for f in log_dir.rglob("events.out.tfevents.*")
        for e in tf.compat.v1.train.summary_iterator(str(f))
        for v in e.summary.value
    }


def _fit_pruning(tmp_path, epochs, **callback_kw):
    """A 50% pruning stage run in our own fit(); returns (history, callbacks, recipe)."""
    x, y = _data(64, (28, 28, 1))
    recipe = parse_recipe_dict({"name": "p", "stages": [
        {"technique": "prune", "epochs": epochs, "params": {"final_sparsity": 0.5, "frequency": 1}}]})
    model = tfcompress.prepare(fmnist_cnn("tf_keras"), recipe, steps_per_epoch=4)
    model.compile("adam", tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    cbs = tfcompress.callbacks(recipe, steps_per_epoch=4, log_dir=str(tmp_path), **callback_kw)
    return model.fit(x, y, epochs=epochs, batch_size=16, verbose=0, callbacks=cbs), cbs, recipe


def test_callbacks_log_sparsity_to_tensorboard(tmp_path):
    history, _, _ = _fit_pruning(tmp_path, 1)
    assert history.history["mean_sparsity"][0] == pytest.approx(0.5, abs=0.05)
    tags = _tensorboard_tags(tmp_path)
    assert "compression/mean_sparsity" in tags and "compression/block4_pw/sparsity" in tags


@pytest.mark.slow
def test_callbacks_log_predicted_latency_each_epoch(tmp_path):
    from tfcompress.monitoring import LatencyLogger

    history, cbs, recipe = _fit_pruning(tmp_path, 2, device="host")
    logged = history.history["predicted_latency_ms"]
    assert len(logged) == 2 and logged[0] > 0
    logger = next(c for c in cbs if isinstance(c, LatencyLogger))
    assert len(logger._by_architecture) == 1, "same architecture each epoch: converted once"
    tags = _tensorboard_tags(tmp_path)
    assert "compression/predicted_latency_ms" in tags
    assert not any(isinstance(c, LatencyLogger) for c in tfcompress.callbacks(recipe, steps_per_epoch=4))


def test_unknown_device_fails_before_any_training(fmnist):
    (x, y), _ = fmnist
    recipe = parse_recipe_dict({"name": "p", "stages": [{"technique": "prune", "epochs": 1}]})
    with pytest.raises(TfcompressError, match="unknown device 'pixel99'"):
        compress(fmnist_cnn("tf_keras"), recipe, (x[:64], y[:64]), device="pixel99")


def test_a_result_larger_than_plain_convert_says_why(tmp_path):
    """Issue 17: `compress` never gives a file larger than `convert` of the same model without saying why: where
    the extra bytes are (read from both files) and what would shrink them."""
    from tfcompress.compression import _against_plain_convert
    from tfcompress.conversion import ConvertOptions

    model = fmnist_cnn("tf_keras")
    calib, _ = _data(64, (28, 28, 1))
    rec = parse_recipe_dict({"name": "p", "stages": [{"technique": "prune", "epochs": 1}]})
    opts = ConvertOptions(calib_samples=32)
    said: list[str] = []
    plain, none = _against_plain_convert(model, model, calib, opts, rec, b"", said.append)
    assert plain > 0 and none is None and any("as is" in m for m in said), "not larger: nothing to explain"
    wider = fmnist_cnn("tf_keras", width=2.0)  # a result that really is bigger: more parameters, more bytes
    bigger = tfcompress.convert(wider, calib, verify=False).tflite
    plain, note = _against_plain_convert(model, wider, calib, opts, rec, bigger, said.append)
    assert note is not None and f"({plain:,} B" in note and f"({len(bigger):,} B)" in note, note
    assert "weights and constants +" in note and "the stages added trainable parameters" in note and "sparse: true" in note


def test_an_untrained_originals_shared_zero_biases_are_named_as_the_cause(tmp_path):
    """Issue 17: a freshly initialised model's biases are all zero; the converter stores identical constants once,
    so any trained copy is larger by those bytes alone. The note says so (read from the two files' buffers), and
    the trained copy adds no parameters, weights or operators."""
    from tfcompress.compression import _against_plain_convert, _shared_constant_bytes
    from tfcompress.conversion import ConvertOptions
    from tfcompress.export.tflite_file import read_tflite

    model = fmnist_cnn("tf_keras")
    calib, _ = _data(64, (28, 28, 1))
    trained = tf_keras.models.clone_model(model)
    trained.set_weights(model.get_weights())
    rng = np.random.default_rng(0)
    for w in trained.weights:
        if w.name.split("/")[-1].split(":")[0] in ("bias", "beta", "moving_mean"):
            w.assign(rng.normal(0, 0.05, tuple(w.shape)).astype(np.float32))
    plain = tfcompress.convert(model, calib, verify=False).tflite
    after = tfcompress.convert(trained, calib, verify=False).tflite
    assert _shared_constant_bytes(read_tflite(plain)) > 0 and _shared_constant_bytes(read_tflite(after)) == 0
    rec = parse_recipe_dict({"name": "p", "stages": [{"technique": "prune", "epochs": 1}]})
    size, note = _against_plain_convert(model, trained, calib, ConvertOptions(calib_samples=32), rec, after,
                                        lambda _m: None)
    assert size == len(plain) < len(after) and note is not None
    assert "stores identical constants once" in note and "added trainable parameters" not in note, note
    assert "operators" not in note, note

