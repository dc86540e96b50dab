"""The predictor: LUT + regression + whole-model calibration, per-layer breakdown, profile lookup."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tfcompress.errors import TfcompressError
from tfcompress.hardware.kernels import KernelKey, KernelUse
from tfcompress.hardware.predict import LatencyModel, fit_calibration, predict_latency_ms
from tfcompress.hardware.profile import (
    Calibration,
    DeviceProfile,
    LutEntry,
    Observation,
    load_profile,
    resolve_profile,
    save_profile,
    shipped_profiles,
)


def _conv(h: int, cin: int, cout: int) -> KernelKey:
    return KernelKey("CONV_2D", "int8", (1, h, h, cin), (1, h, h, cout), cin, cout, (1, 1), (1, 1), "VALID", "")


KEYS = [_conv(h, c, c) for h in (4, 8, 16) for c in (8, 16)]


def _profile(**kw) -> DeviceProfile:
    entries = tuple(LutEntry(k, 0.01 + k.macs * 1e-6) for k in KEYS)
    return DeviceProfile("test", "ai-edge-litert x", overhead_ms=0.005, entries=entries, **kw)


def _observations(scale: float, per_op: float, rng: np.random.Generator) -> list[Observation]:
    """Whole models made of LUT kernels, 'measured' with a known scale and per-op cost."""
    table = _profile().table()
    obs = []
    for i in range(8):
        keys = tuple(KEYS[j] for j in rng.integers(0, len(KEYS), size=int(rng.integers(2, 12))))
        ms = 0.005 + scale * sum(table[k] for k in keys) + per_op * len(keys)
        obs.append(Observation(f"m{i}", ms, keys))
    return obs


def test_fit_calibration_recovers_scale_and_per_op_cost():
    obs = _observations(1.3, 0.002, np.random.default_rng(0))
    cal = fit_calibration(_profile(), obs)
    assert cal.scale == pytest.approx(1.3, rel=1e-6)
    assert cal.per_op_ms == pytest.approx(0.002, rel=1e-5)
    assert cal.fitted_on == 8 and cal.median_abs_error == pytest.approx(0.0, abs=1e-6)


def test_models_their_kernels_cannot_explain_do_not_move_the_calibration():
    from dataclasses import replace

    obs = _observations(1.0, 0.0, np.random.default_rng(2))
    rng = np.random.default_rng(3)
    noisy = [replace(o, measured_ms=o.measured_ms * (1 + rng.uniform(-0.02, 0.02))) for o in obs]
    odd = [replace(o, name=f"odd{i}", measured_ms=o.measured_ms / 1.45) for i, o in enumerate(obs[:2])]
    cal = fit_calibration(_profile(), noisy + odd)  # two models run 45% faster than their kernels add up to
    assert cal.fitted_on == 8 and cal.scale == pytest.approx(1.0, abs=0.03)
    assert fit_calibration(_profile(), noisy).fitted_on == 8  # none left out when all agree
    assert fit_calibration(_profile(), noisy[:2] + odd).fitted_on == 4  # fewer than 3 would be left: all are fitted


def test_fit_calibration_needs_three_models():
    assert fit_calibration(_profile(), _observations(2.0, 0.0, np.random.default_rng(1))[:2]) == Calibration()


def test_calibration_applies_to_every_row_and_the_total():
    cal = Calibration(scale=2.0, per_op_ms=0.001, fitted_on=5)
    lm = LatencyModel(_profile(calibration=cal))
    uses = [KernelUse(i, k, (f"layer{i}",)) for i, k in enumerate(KEYS[:3])]
    pred = lm.predict(uses)
    raw = sum(lm.table[k] for k in KEYS[:3])
    assert pred.total_ms == pytest.approx(0.005 + 2.0 * raw + 3 * 0.001)
    assert [r.ms for r in pred.rows] == pytest.approx([2.0 * r.kernel_ms + 0.001 for r in pred.rows])
    assert sum(pred.by_layer().values()) == pytest.approx(pred.total_ms - pred.overhead_ms)
    json.dumps(pred.to_dict())  # JSON-able, for the reports


def test_fused_op_time_is_split_between_its_layers():
    lm = LatencyModel(_profile())
    pred = lm.predict([KernelUse(0, KEYS[0], ("conv", "bn", "relu")), KernelUse(1, KEYS[1], ())])
    by_layer = pred.by_layer()
    assert by_layer["conv"] == pytest.approx(pred.rows[0].ms / 3)
    assert by_layer["<CONV_2D>"] == pytest.approx(pred.rows[1].ms)


def test_profile_with_calibration_and_observations_round_trips(tmp_path):
    obs = _observations(1.1, 0.001, np.random.default_rng(2))
    prof = _profile(calibration=Calibration(1.1, 0.001, 8, 0.0), observations=tuple(obs))
    assert load_profile(save_profile(prof, tmp_path / "p.json")) == prof


def test_resolve_profile_by_shipped_name_path_or_object(tmp_path):
    assert "host" in shipped_profiles()
    host = resolve_profile("host")
    assert host.entries and host.dtype == "int8" and host.calibration.fitted_on >= 3
    path = save_profile(_profile(), tmp_path / "mine.json")
    assert resolve_profile(str(path)).device == "test"
    prof = _profile()
    assert resolve_profile(prof) is prof
    with pytest.raises(TfcompressError, match="unknown device 'pixel99'") as err:
        resolve_profile("pixel99")
    assert "host" in err.value.hint
    with pytest.raises(TfcompressError, match="not found"):
        resolve_profile(tmp_path / "missing.json")


def test_predict_accepts_a_device_name_and_a_keras_model():
    from tfcompress.keras_compat import tf_keras

    x = tf_keras.Input((16, 16, 3), batch_size=1)
    y = tf_keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="stem")(x)
    y = tf_keras.layers.GlobalAveragePooling2D(name="pool")(y)
    model = tf_keras.Model(x, tf_keras.layers.Dense(4, name="head")(y))
    pred = predict_latency_ms(model, "host")
    assert pred.device == resolve_profile("host").device
    assert pred.total_ms > pred.overhead_ms > 0
    assert {"stem", "pool", "head"} <= set(pred.by_layer())


def test_channel_wise_work_is_counted_in_tiles_of_sixteen_channels():
    from tfcompress.hardware.predict import _features

    def dw(c):
        return KernelKey("DEPTHWISE_CONV_2D", "int8", (1, 32, 32, c), (1, 32, 32, c), c, c, (5, 5), (1, 1), "SAME", "")

    def add(c):
        return KernelKey("ADD", "int8", (1, 32, 32, c), (1, 32, 32, c), extra=(1, 32, 32, c))

    assert np.array_equal(_features(dw(8))[:3], _features(dw(16))[:3])  # MACs, activations: XNNPACK processes 16 int8 channels at once
    assert _features(dw(24))[1] == pytest.approx(2 * _features(dw(16))[1])
    assert _features(add(8))[2] == pytest.approx(_features(add(16))[2] / 2)  # element-wise: the flat tensor


def _dense(cin: int, cout: int) -> KernelKey:
    return KernelKey("FULLY_CONNECTED", "int8", (1, cin), (1, cout), cin, cout, (0, 0), (0, 0), "", "")


def test_streamed_weights_are_all_of_a_model_too_big_for_the_cache_and_none_otherwise():
    from tfcompress.hardware.predict import streamed_weight_mb, weight_mb

    small = _dense(500, 1000)  # 0.5 MB of int8 weights
    assert weight_mb([small, small]) == pytest.approx(1.0)
    assert streamed_weight_mb([small, small], 1.0) == 0.0  # 1.0 MB fits a 1 MB cache
    assert streamed_weight_mb([small, small, small], 1.0) == pytest.approx(1.5)  # all of it streams, not the excess
    assert streamed_weight_mb([small, small, small], 2.0) == 0.0


def test_fit_calibration_recovers_the_per_megabyte_cost_and_the_cache_size_of_streamed_weights():
    from tfcompress.hardware.predict import streamed_weight_mb

    rng = np.random.default_rng(3)
    table = _profile().table()
    heavy = [_dense(500, 1000)] * 12  # up to 6 MB
    obs = []
    for i in range(14):
        keys = tuple(KEYS[j] for j in rng.integers(0, len(KEYS), size=int(rng.integers(2, 12))))
        keys = keys + tuple(heavy[: i % 13])  # 0-6 MB of weights: over the 4 MB cache from 4.5 MB
        table_ms = sum(table.get(k, 0.0) for k in keys)
        obs.append(Observation(f"m{i}", 0.005 + 1.1 * table_ms + 0.07 * streamed_weight_mb(keys, 4.0), keys))
    prof = DeviceProfile("test", "ai-edge-litert x", overhead_ms=0.005,
                         entries=_profile().entries + (LutEntry(_dense(500, 1000), 0.0),))
    cal = fit_calibration(prof, obs)
    assert cal.weight_cache_mb == 4.0
    assert cal.per_weight_mb_ms == pytest.approx(0.07, rel=1e-4) and cal.scale == pytest.approx(1.1, rel=1e-4)
    light = fit_calibration(prof, [o for o in obs if sum(k.weight_elements for k in o.kernels) <= 4e6])
    assert light.per_weight_mb_ms == 0.0 and light.scale == pytest.approx(1.1, rel=1e-4)  # nothing streamed: no term
    heavy = heavy[:9]  # 4.5 MB
    heavy_pred = LatencyModel(DeviceProfile(**{**prof.__dict__, "calibration": cal})).predict(
        [KernelUse(i, k, ()) for i, k in enumerate(heavy)])
    assert heavy_pred.total_ms == pytest.approx(0.005 + 0.07 * 4.5, rel=1e-4)


def test_unmeasured_convolutions_are_corrected_by_their_measured_neighbours():
    # 1x1 convolutions whose true time is 3x what a line through the small ones says, above 32 channels
    def true_ms(k: KernelKey) -> float:
        return 1e-6 * k.macs * (3.0 if k.cin >= 32 else 1.0) + 0.002

    measured = [_conv(h, c, c) for h in (8, 16, 32) for c in (8, 16, 24, 32, 40, 48, 56, 64)]
    prof = DeviceProfile("t", "ai-edge-litert x", entries=tuple(LutEntry(k, true_ms(k)) for k in measured))
    lm = LatencyModel(prof)
    query = _conv(24, 60, 60)  # not measured: among the 3x neighbours
    ms, source = lm.kernel_ms(query)
    assert source == "fit:CONV_2D/k1+near"
    from tfcompress.hardware.ops import spec_of

    line = float(spec_of(query).features(query) @ lm.fits["CONV_2D/k1"])
    assert abs(ms - true_ms(query)) < abs(line - true_ms(query))  # closer than the group's line alone
    assert abs(ms - true_ms(query)) / true_ms(query) < 0.15
    assert lm.kernel_ms(query) == (ms, source)  # memoized, same answer
    assert lm.kernel_ms(measured[0]) == (true_ms(measured[0]), "lut")  # measured ones are used as they are


def test_swish_products_and_squeeze_excite_products_are_fitted_apart():
    # swish (x * sigmoid(x)) at 0.2 ns an element, squeeze-excite scaling at 0.4: one line would miss both
    def mul(h: int, c: int, broadcast: bool) -> KernelKey:
        other = (1, 1, 1, c) if broadcast else (1, h, h, c)
        return KernelKey("MUL", "int8", (1, h, h, c), (1, h, h, c), 0, 0, (0, 0), (0, 0), "", "", other)

    def true_ms(k: KernelKey) -> float:
        return (0.4e-6 if k.extra[1] == 1 else 0.2e-6) * int(np.prod(k.in_shape)) + 0.001

    keys = [mul(h, c, b) for h in (8, 16, 32) for c in (16, 32, 64) for b in (True, False)]
    lm = LatencyModel(DeviceProfile("t", "ai-edge-litert x", entries=tuple(LutEntry(k, true_ms(k)) for k in keys)))
    for b in (True, False):
        query = mul(24, 48, b)
        ms, source = lm.kernel_ms(query)
        assert source == f"fit:MUL/{'broadcast' if b else 'elementwise'}"
        assert ms == pytest.approx(true_ms(query), rel=0.02)


def test_unmeasured_dense_layers_are_corrected_by_their_measured_neighbours():
    # big Dense layers stream their weights: 2x a line through the many small ones
    def true_ms(k: KernelKey) -> float:
        return 1e-6 * k.cin * k.cout * (2.0 if k.cin * k.cout >= 1_000_000 else 1.0) + 0.001

    small = [_dense(c, o) for c in (16, 32, 64, 128, 256) for o in (10, 64, 100)]
    big = [_dense(c, o) for c in (1024, 2048) for o in (1024, 2048, 4096)]
    lm = LatencyModel(DeviceProfile("t", "ai-edge-litert x",
                                    entries=tuple(LutEntry(k, true_ms(k)) for k in small + big)))
    query = _dense(4096, 4096)
    ms, source = lm.kernel_ms(query)
    assert source == "fit:FULLY_CONNECTED+near" and ms == pytest.approx(true_ms(query), rel=0.15)
