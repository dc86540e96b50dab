"""Issue 18: data-dependent kernels (LiteRT's int8 RELU) are timed on new inputs every invoke, as inside a model;
pooling and padding are costed by the work they do; products with constants are a regression group of their own."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tfcompress.edge import edge_profile
from tfcompress.hardware.kernels import KernelKey

from test_timing_protocol import FakeClock  # noqa: E402  (tests/ is on the path: pytest's rootdir-relative import)


def _relu(h: int, c: int, op: str = "RELU") -> KernelKey:
    return KernelKey(op, "int8", (1, h, h, c), (1, h, h, c))


class Branchy:
    """An interpreter whose invoke() takes 1 ms, and setting an input 0.25 ms, on a fake clock; it records what it got."""

    def __init__(self, clock, shapes=((1, 8, 8, 4),)):
        self.clock, self.shapes, self.seen = clock, shapes, []

    def get_input_details(self):
        return [{"index": i, "shape": np.array(s), "dtype": np.int8} for i, s in enumerate(self.shapes)]

    def set_tensor(self, index, x):
        self.clock.now += 0.25e-3
        self.last = x

    def invoke(self):
        self.clock.now += 1e-3
        self.seen.append(self.last.tobytes())


def test_fresh_inputs_change_every_invoke_and_their_setting_is_not_counted(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(edge_profile, "time", clock)
    monkeypatch.setattr(edge_profile, "_proc_stat", lambda: None)
    it = Branchy(clock)
    fresh = edge_profile.FreshInputs(it, seed=7)
    assert len(fresh.pool) == 64  # 256 elements an input: the pool's cap, far more than one fixed input
    (m,) = edge_profile.measure_items([fresh], rounds=3, warmup=0, runs=30, budget_s=10.0)
    assert m.median_ms == pytest.approx(1.0) and all(r == pytest.approx(1.0) for r in m.rounds_ms)
    assert m.set_ms == pytest.approx(0.25) and m.fresh_inputs == 64
    assert len(set(it.seen)) == min(len(it.seen), 64)  # no input repeats before the pool is used up
    assert all(a != b for a, b in zip(it.seen, it.seen[1:]))
    plain = Branchy(FakeClock())  # an ordinary interpreter is measured as before: nothing set, nothing taken off
    plain.last = np.zeros(1, np.int8)
    monkeypatch.setattr(edge_profile, "time", plain.clock)
    (m,) = edge_profile.measure_items([plain], rounds=3, warmup=0, runs=6, budget_s=10.0)
    assert m.median_ms == pytest.approx(1.0) and m.set_ms == 0.0 and m.fresh_inputs == 0


def test_a_big_input_cycles_a_small_pool_of_at_least_four():
    it = Branchy(FakeClock(), shapes=((1, 128, 128, 64),))
    assert len(edge_profile.FreshInputs(it, seed=0).pool) == 4
    it = Branchy(FakeClock(), shapes=((1, 64, 64, 16), (1, 64, 64, 16)))  # two inputs share the budget
    assert len(edge_profile.FreshInputs(it, seed=0).pool) == 8


def test_relu_kernels_and_the_models_that_hold_them_are_timed_on_fresh_inputs(tmp_path):
    from tfcompress.hardware.measure import data_dependent, kernel_tflite, measure, write_bundle
    from tfcompress.hardware.ops import fresh_inputs

    assert fresh_inputs(_relu(8, 4)) and fresh_inputs(_relu(8, 4, "RELU6"))
    add = KernelKey("ADD", "int8", (1, 8, 8, 4), (1, 8, 8, 4), extra=(1, 8, 8, 4))
    assert not fresh_inputs(add)
    relu, other = kernel_tflite(_relu(8, 4)), kernel_tflite(add)
    assert data_dependent(relu) and not data_dependent(other)
    (tmp_path / "b").mkdir()
    bundle = write_bundle(tmp_path / "b", [(_relu(8, 4), relu), (add, other)], [("r", relu), ("a", other)],
                          overhead=other)
    assert [k.get("fresh_inputs", False) for k in bundle["kernels"]] == [True, False]
    assert [m.get("fresh_inputs", False) for m in bundle["models"]] == [True, False]

    cache = tmp_path / "cache"
    got = measure([_relu(8, 4), add], [("r", relu)], cache_dir=cache)
    (_, r), (_, a) = got.kernels
    assert r["fresh_inputs"] >= 4 and r["set_ms"] > 0 and "fresh_inputs" not in a
    assert got.models[0]["fresh_inputs"] >= 4
    # a ReLU timed on one fixed input by an older tfcompress is timed again, not reused
    path = next(cache.glob(f"{_relu(8, 4).digest()}-*.json"))
    stale = {k: v for k, v in json.loads(path.read_text()).items() if k not in ("fresh_inputs", "set_ms")}
    path.write_text(json.dumps({**stale, "ms": 123.0}))
    again = measure([_relu(8, 4)], cache_dir=cache)
    assert again.kernels[0][1]["ms"] != 123.0 and again.kernels[0][1]["fresh_inputs"] >= 4


def test_prepared_models_with_a_relu_set_new_inputs_before_each_invoke():
    from tfcompress.hardware.measure import kernel_tflite, prepared

    interp = prepared(kernel_tflite(_relu(8, 4)))
    assert isinstance(interp, edge_profile.FreshInputs)
    interp.invoke()
    first = interp.get_tensor(interp.get_input_details()[0]["index"]).copy()
    interp.invoke()
    assert not np.array_equal(first, interp.get_tensor(interp.get_input_details()[0]["index"]))
    add = KernelKey("ADD", "int8", (1, 8, 8, 4), (1, 8, 8, 4), extra=(1, 8, 8, 4))
    assert not isinstance(prepared(kernel_tflite(add)), edge_profile.FreshInputs)


def test_pooling_is_costed_by_its_windows_and_padding_by_its_positions():
    from tfcompress.hardware.ops import spec_of

    def pool(stride: int) -> KernelKey:
        out = 16 // stride
        return KernelKey("AVERAGE_POOL_2D", "int8", (1, 16, 16, 32), (1, out, out, 32), kernel=(3, 3),
                         stride=(stride, stride), padding="SAME")

    work = [spec_of(k).features(k)[1] for k in (pool(1), pool(2))]
    assert work[0] == pytest.approx(4 * work[1]) and work[0] == pytest.approx(16 * 16 * 32 * 9 / 1e6)

    def pad(c: int) -> KernelKey:
        return KernelKey("PAD", "int8", (1, 64, 64, c), (1, 70, 70, c))

    # a 3-channel stem and a 64-channel tensor padded to the same size: the same positions, 21x the elements
    (_, pos3, act3, _), (_, pos64, act64, _) = (spec_of(k).features(k) for k in (pad(3), pad(64)))
    assert pos3 == pos64 == pytest.approx(70 * 70 / 1e6) and act64 > 20 * act3


def test_products_with_a_constant_are_fitted_apart_and_timed_as_such():
    from tfcompress.hardware.kernels import kernels_of
    from tfcompress.hardware.measure import kernel_tflite
    from tfcompress.hardware.ops import spec_of
    from tfcompress.hardware.predict import LatencyModel
    from tfcompress.hardware.profile import DeviceProfile, LutEntry

    def mul(h: int, c: int, kind: str) -> KernelKey:
        other = {"constant": (), "broadcast": (1, 1, 1, c), "elementwise": (1, h, h, c)}[kind]
        return KernelKey("MUL", "int8", (1, h, h, c), (1, h, h, c), extra=other)

    rate = {"constant": 0.2e-6, "broadcast": 0.4e-6, "elementwise": 0.3e-6}

    def true_ms(k: KernelKey) -> float:
        return rate[spec_of(k).groups(k)[0].split("/")[1]] * int(np.prod(k.in_shape)) + 0.001

    keys = [mul(h, c, kind) for h in (8, 16, 32) for c in (16, 32, 64) for kind in rate]
    lm = LatencyModel(DeviceProfile("t", "ai-edge-litert x", entries=tuple(LutEntry(k, true_ms(k)) for k in keys)))
    for kind in rate:
        ms, source = lm.kernel_ms(mul(24, 48, kind))
        assert source == f"fit:MUL/{kind}" and ms == pytest.approx(true_ms(mul(24, 48, kind)), rel=0.02)
    # the one-op model of a product with a constant is one MUL with one activation input, as in DenseNet
    key = KernelKey("MUL", "int8", (1, 8, 8, 24), (1, 8, 8, 24), activation="RELU")
    assert [u.key for u in kernels_of(kernel_tflite(key))] == [key]


def test_verification_latency_invokes_a_new_sample_each_time(monkeypatch):
    from tfcompress.export.verify import TfliteRunner
    from tfcompress.hardware.measure import kernel_tflite

    got = []
    real = edge_profile.measure_items

    def spy(items, **kw):
        got.extend(items)
        return real(items, **kw)

    monkeypatch.setattr(edge_profile, "measure_items", spy)
    runner = TfliteRunner(kernel_tflite(_relu(8, 4)))
    samples = np.random.default_rng(0).normal(size=(5, 8, 8, 4)).astype(np.float32)
    lat = runner.latency((samples,), runs=9, budget_s=0.3)
    (item,) = got
    assert isinstance(item, edge_profile.FreshInputs) and len(item.pool) == 5 and lat.median_ms > 0
    assert len({a.tobytes() for ((_, a),) in item.pool}) == 5  # each sample its own input
    got.clear()
    runner.latency((samples[:1],), runs=9, budget_s=0.3)  # one sample: nothing to cycle
    assert not isinstance(got[0], edge_profile.FreshInputs)


def test_a_device_result_with_fresh_input_kernels_and_models_imports(tmp_path):
    from tfcompress.export.converter import convert_int8_random
    from tfcompress.hardware.bundle import export_bundle, read_edge_result
    from tfcompress.keras_compat import tf_keras

    L = tf_keras.layers
    x = tf_keras.Input((8, 8, 4), batch_size=1)
    t = L.Conv2D(4, 1)(x)
    model = convert_int8_random(tf_keras.Model(x, L.Add()([L.ReLU()(t), t])))  # a standalone ReLU
    export_bundle([model], tmp_path / "b", command="test")
    result = edge_profile.run_bundle(tmp_path / "b", tmp_path / "r.json", warmup=1, runs=6, rounds=3)
    relu = [k for k in result["kernels"] if k["key"]["op"] == "RELU"]
    assert relu and relu[0]["fresh_inputs"] >= 4 and result["models"][0]["fresh_inputs"] >= 4
    profile = read_edge_result(tmp_path / "r.json")
    assert {e.key.op for e in profile.entries} >= {"RELU", "CONV_2D"} and len(profile.observations) == 1
