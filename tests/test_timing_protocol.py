"""Issue 18: one timing protocol (pinned, interleaved rounds, run-to-run spread, busy detection) everywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from tfcompress.edge import edge_profile


class FakeInterpreter:
    """invoke() sleeps for `plan(call_number)` seconds."""

    def __init__(self, plan):
        self.plan, self.calls = plan, 0

    def invoke(self):
        d = self.plan(self.calls)
        self.calls += 1
        time.sleep(d)


class FakeClock:
    """Stands in for edge_profile's `time` module: invoke() advances it, nothing else does."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now

    def sleep(self, s):
        self.now += s


def _timed_in_rounds(monkeypatch, durations):
    """One item timed in 3 rounds of 2 invokes on a fake clock; invoke k takes durations[k] seconds."""
    clock = FakeClock()
    monkeypatch.setattr(edge_profile, "time", clock)
    monkeypatch.setattr(edge_profile, "_proc_stat", lambda: None)  # no load information: never busy
    monkeypatch.setattr(edge_profile, "REWARM", 0)

    class Timed:
        calls = 0

        def invoke(self):
            clock.now += durations[self.calls]
            self.calls += 1

    (m,) = edge_profile.measure_interleaved([Timed()], rounds=3, warmup=0, runs=6, budget_s=10.0)
    return m


def test_median_of_round_medians_and_spread_are_the_round_statistics(monkeypatch):
    # within a round every invoke takes the same time, the rounds differ: 1 ms, 3 ms, 2 ms
    m = _timed_in_rounds(monkeypatch, [0.001] * 2 + [0.003] * 2 + [0.002] * 2)
    assert m.rounds_ms == pytest.approx([1.0, 3.0, 2.0])
    assert m.median_ms == pytest.approx(2.0)  # the middle round, not the last one
    assert m.spread_ms == pytest.approx(2.0)
    assert m.runs == 6 and not m.busy and m.other_cores is None


def test_one_slow_round_moves_the_spread_not_the_median(monkeypatch):
    m = _timed_in_rounds(monkeypatch, [0.001] * 2 + [0.005] * 2 + [0.0011] * 2)  # a disturbance in round 2
    assert m.median_ms == pytest.approx(1.1) and m.spread_ms == pytest.approx(4.0)
    assert m.mean_ms > 2.0  # the mean of all runs would have moved


def test_rounds_interleave_items_and_share_the_run_budget(monkeypatch):
    monkeypatch.setattr(edge_profile, "_proc_stat", lambda: None)
    order = []

    class Recorder:
        def __init__(self, name):
            self.name = name

        def invoke(self):
            order.append(self.name)

    monkeypatch.setattr(edge_profile, "REWARM", 0)
    edge_profile.measure_interleaved([Recorder("a"), Recorder("b")], rounds=3, warmup=0, runs=9, budget_s=5)
    assert order.count("a") == order.count("b") == 9  # all rounds together: runs, not runs per round
    # a, then b, then a again: the rounds alternate between items
    blocks = [order[0]]
    for name in order[1:]:
        if name != blocks[-1]:
            blocks.append(name)
    assert blocks == ["a", "b", "a", "b", "a", "b"]


class _NoOwnTime:
    """os.times() stand-in: this process used no CPU (its real 10 ms ticks would swamp 1 ms rounds)."""

    user = system = 0.0


def _fake_stat(other_cores_busy: float, monkeypatch):
    """A /proc/stat reader whose whole-machine busy time grows by `other_cores_busy` per wall second."""
    monkeypatch.setattr(edge_profile.os, "times", lambda: _NoOwnTime())
    monkeypatch.setattr(edge_profile, "BUSY_WAIT_S", 0.001)
    t0 = time.perf_counter()

    def read():
        wall = time.perf_counter() - t0
        return other_cores_busy * wall, 0.0, 2 * wall + 1.0

    return read


def test_a_busy_machine_is_retimed_then_marked_busy(monkeypatch):
    monkeypatch.setattr(edge_profile, "_proc_stat", _fake_stat(1.0, monkeypatch))  # another process holds a whole core
    it = FakeInterpreter(lambda call: 0.0002)
    (m,) = edge_profile.measure_interleaved([it], rounds=3, warmup=0, runs=6, budget_s=1.0, retries=2)
    assert m.busy and m.other_cores is not None and m.other_cores > edge_profile.BUSY_CORES


def test_an_idle_machine_is_not_busy_and_not_retimed(monkeypatch):
    monkeypatch.setattr(edge_profile, "_proc_stat", _fake_stat(0.0, monkeypatch))
    it = FakeInterpreter(lambda call: 0.0002)
    (m,) = edge_profile.measure_interleaved([it], rounds=3, warmup=0, runs=6, budget_s=1.0, retries=2)
    assert not m.busy and m.other_cores is not None and m.other_cores < edge_profile.BUSY_CORES
    assert it.calls == 6 + 2 * edge_profile.REWARM  # no round timed twice


def test_busy_retries_count_exactly(monkeypatch):
    monkeypatch.setattr(edge_profile, "_proc_stat", _fake_stat(1.0, monkeypatch))
    it = FakeInterpreter(lambda call: 0.0002)
    edge_profile.measure_interleaved([it], rounds=3, warmup=0, runs=6, budget_s=1.0, retries=2)
    # each of 3 rounds: 3 attempts of 2 runs; re-warm invokes before every attempt except the very first
    assert it.calls == 3 * 3 * 2 + (3 * 3 - 1) * edge_profile.REWARM


def test_steal_time_makes_a_round_busy():
    assert edge_profile.is_busy(0.0, 0.2) and edge_profile.is_busy(1.0, 0.0)
    assert not edge_profile.is_busy(0.0, 0.0) and not edge_profile.is_busy(None, None)


def test_proc_stat_reads_this_machine():
    got = edge_profile._proc_stat()
    if not os.path.exists("/proc/stat"):
        assert got is None
        return
    busy, steal, total = got
    assert 0 <= steal <= total and 0 < busy <= total


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this OS")
def test_pinned_sets_and_restores_affinity():
    before = os.sched_getaffinity(0)
    with edge_profile.pinned("auto", 1) as cpus:
        assert cpus is not None and len(cpus) == 1 and os.sched_getaffinity(0) == set(cpus) <= before
    assert os.sched_getaffinity(0) == before
    first = min(before)
    with edge_profile.pinned(first) as cpus:
        assert cpus == [first] and os.sched_getaffinity(0) == {first}
    assert os.sched_getaffinity(0) == before
    with edge_profile.pinned(None) as cpus:
        assert cpus is None and os.sched_getaffinity(0) == before
    with pytest.raises(edge_profile.EdgeError, match="not available"):
        with edge_profile.pinned(max(before) + 1000):
            pass
    assert os.sched_getaffinity(0) == before


def test_least_busy_cpu_avoids_a_busy_one(monkeypatch):
    lines = iter([
        "cpu  1 0 0 1 0 0 0 0 0 0\ncpu0 100 0 0 100 0 0 0 0 0 0\ncpu1 100 0 0 100 0 0 0 0 0 0\n",
        "cpu  1 0 0 1 0 0 0 0 0 0\ncpu0 200 0 0 100 0 0 0 0 0 0\ncpu1 100 0 0 200 0 0 0 0 0 0\n",
    ])
    import builtins
    import io

    real_open = builtins.open

    def fake_open(path, *a, **k):
        if path == "/proc/stat":
            return io.StringIO(next(lines))
        return real_open(path, *a, **k)

    monkeypatch.setattr(builtins, "open", fake_open)
    assert edge_profile._least_busy_cpus([0, 1], 1, sample_s=0.0) == [1]  # cpu0 was 100% busy, cpu1 idle


def test_edge_script_rejects_bad_protocol_options(tmp_path):
    script = edge_profile.__file__
    for args in (["--rounds", "0"], ["--cpu", "fast"]):
        proc = subprocess.run([sys.executable, script, str(tmp_path), *args], capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert "--rounds" in proc.stderr or "--cpu" in proc.stderr


@pytest.fixture(scope="module")
def small_tflite() -> bytes:
    from tfcompress.export.converter import convert_int8_random
    from tfcompress.keras_compat import tf_keras

    L = tf_keras.layers
    x = tf_keras.Input((16, 16, 3), batch_size=1)
    y = L.Conv2D(8, 3, padding="same", activation="relu")(x)
    return convert_int8_random(tf_keras.Model(x, L.Dense(4)(L.Flatten()(y))))


def test_bundle_results_record_rounds_spread_and_the_protocol(tmp_path, small_tflite):
    from tfcompress.hardware.bundle import export_bundle, read_edge_result

    bundle = tmp_path / "bundle"
    export_bundle([small_tflite], bundle, command="test")
    result = edge_profile.run_bundle(bundle, tmp_path / "r.json", warmup=1, runs=9, rounds=3)
    assert result["protocol"]["rounds"] == 3 and result["busy_items"] >= 0
    if hasattr(os, "sched_setaffinity"):
        assert len(result["protocol"]["cpus"]) == 1
    for rec in result["kernels"] + result["models"]:
        assert len(rec["rounds_ms"]) == 3 and rec["runs"] <= 9
        assert rec["spread_ms"] == pytest.approx(max(rec["rounds_ms"]) - min(rec["rounds_ms"]), abs=1e-5)
        assert isinstance(rec["busy"], bool)
    profile = read_edge_result(tmp_path / "r.json")  # the import schema accepts the new fields
    assert "3 interleaved round(s)" in profile.provenance.method
    assert [e.spread_ms for e in profile.entries] == pytest.approx([k["spread_ms"] for k in result["kernels"]])


def test_importing_a_busy_result_warns(tmp_path, small_tflite):
    from tfcompress.hardware.bundle import export_bundle
    from tfcompress.hardware.importers import import_measurements

    bundle = tmp_path / "bundle"
    export_bundle([small_tflite], bundle, command="test")
    edge_profile.run_bundle(bundle, tmp_path / "r.json", warmup=1, runs=6)
    doc = json.loads((tmp_path / "r.json").read_text())
    doc["busy_items"] = 2
    doc["kernels"][0]["busy"] = True
    (tmp_path / "busy.json").write_text(json.dumps(doc))
    imported = import_measurements(tmp_path / "busy.json")
    assert imported.busy_items == 2
    assert any("busy" in w and "idle" in w for w in imported.warnings)


def test_time_tflite_reports_rounds_and_verify_latency_uses_the_protocol(small_tflite):
    from tfcompress.hardware.measure import time_tflite

    t = time_tflite(small_tflite, runs=9, budget_s=0.3)
    assert len(t.rounds_ms) == 3 and t.median_ms == pytest.approx(float(np.median(t.rounds_ms)), abs=1e-5)
    assert t.spread_ms == pytest.approx(max(t.rounds_ms) - min(t.rounds_ms), abs=1e-5) and t.runs <= 9

    from tfcompress.export.verify import TfliteRunner

    calls = []
    real = edge_profile.measure_interleaved

    def spy(interps, **kw):
        calls.append(kw)
        return real(interps, **kw)

    import unittest.mock

    with unittest.mock.patch.object(edge_profile, "measure_interleaved", spy):
        lat = TfliteRunner(small_tflite).latency((np.zeros((1, 16, 16, 3), np.float32),), runs=9, budget_s=0.3)
    assert len(calls) == 1 and lat.runs <= 9 and lat.median_ms > 0 and lat.spread_ms >= 0 and lat.busy in (False, True)


def test_build_profile_records_protocol_in_provenance(tmp_path, small_tflite):
    from tfcompress.hardware.lut import build_profile
    from tfcompress.hardware.profile import load_profile, save_profile

    prof = build_profile([small_tflite], cache_dir=tmp_path / "cache")
    assert "3 rounds" in prof.provenance.method and prof.provenance.busy_items >= 0
    if hasattr(os, "sched_setaffinity"):
        assert prof.provenance.cpus is not None and len(prof.provenance.cpus) == 1
    save_profile(prof, tmp_path / "p.json")
    again = load_profile(tmp_path / "p.json")
    assert again.provenance == prof.provenance


def _profile_with(ms_values):
    from tfcompress.hardware.kernels import KernelKey
    from tfcompress.hardware.profile import DeviceProfile, LutEntry

    entries = tuple(LutEntry(KernelKey(op="ADD", dtype="int8", in_shape=(1, 8, 8, c), out_shape=(1, 8, 8, c),
                                       extra=(1, 8, 8, c)), ms) for c, ms in enumerate(ms_values, 1))
    return DeviceProfile(device="elsewhere", runtime="ai-edge-litert 2.3.0", overhead_ms=0.001, entries=entries)


def _fake_one_op_models(monkeypatch, prof):
    """check's one-op models stand-in: a kernel's "model" is its profile value as text (read by `_fake_timing`)."""
    from tfcompress.hardware import check

    by_key = {e.key: e.ms for e in prof.entries}
    monkeypatch.setattr(check, "kernel_tflite", lambda key: str(by_key[key]).encode())
    monkeypatch.setattr(check, "overhead_model_bytes", lambda: b"overhead")


def _fake_timing(ratio, busy=False):
    """time_tflites stand-in: the overhead model takes 1 us, each kernel `ratio` x its profile value (+ overhead)."""
    from tfcompress.hardware.measure import Timing

    def fake(contents, **kw):
        out = [Timing(0.001, 0.0, 9, 0.0, (0.001,) * 3, busy)]
        for c in contents[1:]:
            ms = float(c.decode()) * ratio(float(c.decode())) + 0.001
            out.append(Timing(ms, 0.0, 9, 0.0, (ms,) * 3, False))
        return out

    return fake


@pytest.mark.parametrize("ratio,fits", [(lambda ms: 1.02, True), (lambda ms: 1.3, False),
                                        (lambda ms: 1.0 if ms < 0.1 else 2.0, False)])
def test_check_profile_verdict(monkeypatch, ratio, fits):
    from tfcompress.hardware import check

    prof = _profile_with([0.001, 0.005] + [0.01 * i for i in range(1, 40)])
    _fake_one_op_models(monkeypatch, prof)
    monkeypatch.setattr(check, "time_tflites", _fake_timing(ratio))
    c = check.check_profile(prof, n=20)
    assert len(c.kernels) == 20 and all(k.profile_ms >= check.MIN_MS for k in c.kernels)  # tiny ones left out
    assert min(k.profile_ms for k in c.kernels) == 0.01 and max(k.profile_ms for k in c.kernels) == 0.39  # spread
    assert c.fits is fits


def test_check_profile_gives_no_verdict_when_busy(monkeypatch):
    from tfcompress.hardware import check

    prof = _profile_with([0.01 * i for i in range(1, 30)])
    _fake_one_op_models(monkeypatch, prof)
    monkeypatch.setattr(check, "time_tflites", _fake_timing(lambda ms: 1.0, busy=True))
    c = check.check_profile(prof)
    assert c.busy and not c.fits


def test_check_profile_without_timeable_kernels_is_a_user_error():
    from tfcompress.errors import TfcompressError
    from tfcompress.hardware.check import check_profile

    with pytest.raises(TfcompressError, match="no kernel"):
        check_profile(_profile_with([0.001, 0.002]))


def test_cli_check_exit_codes(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from tfcompress.cli import main
    from tfcompress.hardware import check
    from tfcompress.hardware.profile import save_profile

    prof = _profile_with([0.01 * i for i in range(1, 30)])
    save_profile(prof, tmp_path / "p.json")
    _fake_one_op_models(monkeypatch, prof)
    for ratio, busy, code, word in ((1.0, False, 0, "fits"), (1.5, False, 1, "does not fit"),
                                    (1.0, True, 3, "busy")):
        monkeypatch.setattr(check, "time_tflites", _fake_timing(lambda ms, r=ratio: r, busy=busy))
        res = CliRunner().invoke(main, ["profile", "--check", "--profile", str(tmp_path / "p.json")])
        assert res.exit_code == code, res.output
        assert word in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(main, ["profile", "--check", "--validate", "3"])
    assert res.exit_code == 2 and "cannot be combined" in res.output


def test_validation_scores_against_the_median_and_the_spread():
    from tfcompress.hardware.validate import Validation, ValidationRow

    rows = (ValidationRow("a", 1.0, 1.05, 1.0, 0.0, (0.98, 1.0, 1.06)),   # +5%, inside its own spread
            ValidationRow("b", 2.0, 2.5, 1.0, 0.0, (1.9, 2.0, 2.1)),      # +25%, outside
            ValidationRow("c", 4.0, 3.9, 1.0, 0.0, (4.0, 4.0, 4.0), busy=True))
    v = Validation(rows)
    assert [r.within_spread for r in rows] == [True, False, False]
    assert rows[0].spread == pytest.approx(0.08) and rows[1].spread == pytest.approx(0.1)
    s = v.summary()
    assert s["within_spread"] == pytest.approx(1 / 3) and s["noise_floor"] == pytest.approx(0.08)
    assert s["busy"] == 1 and v.busy == 1
    assert s["within_10pct"] == pytest.approx(2 / 3)


def test_validate_times_models_under_the_protocol(monkeypatch, small_tflite):
    from tfcompress.hardware import validate as val
    from tfcompress.hardware.lut import build_profile

    seen = {}
    real = val.time_interpreters

    def spy(interpreters, **kw):
        seen.update(kw)
        return real(interpreters, **kw)

    monkeypatch.setattr(val, "time_interpreters", spy)
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        prof = build_profile([small_tflite], cache_dir=d)
    v = val.validate(prof, models=[("tiny", small_tflite), ("broken", b"not a model")], rounds=3)
    assert seen["rounds"] == 3
    assert [r.arch for r in v.rows] == ["tiny"] and len(v.rows[0].rounds_ms) == 3
    assert [a for a, _ in v.failed] == ["broken"]  # not counted, named
    assert v.rows[0].lut_hit_rate == 1.0


@pytest.mark.slow
def test_space_includes_the_convolution_families_and_stems_get_their_own_group():
    from tfcompress.hardware.kernels import KernelKey, kernels_of
    from tfcompress.hardware.ops import spec_of
    from tfcompress.hardware.spaces import family_models, space_models

    fams = family_models(1, seed=5)
    assert [n.split()[0] for n, _ in fams] == ["resnet-style", "plain-conv"]
    again = family_models(1, seed=5)  # seeded: the same models again (layer names aside)
    assert [[u.key for u in kernels_of(c)] for _, c in again] == [[u.key for u in kernels_of(c)] for _, c in fams]
    convs = [u.key for _, c in fams for u in kernels_of(c) if u.key.op == "CONV_2D" and u.key.kernel == (3, 3)]
    assert any(k.cin >= 8 for k in convs)  # full 3x3 convolutions, not only stems
    assert len(space_models(4)) == 4 + 2 + 1 + 1 + 1  # MBConv, ResNet-style + plain, heavy, coverage, FMNIST-CNN
    stem = KernelKey(op="CONV_2D", dtype="int8", in_shape=(1, 32, 32, 3), out_shape=(1, 32, 32, 16), cin=3, cout=16,
                     kernel=(3, 3), stride=(1, 1), padding="SAME")
    body = KernelKey(op="CONV_2D", dtype="int8", in_shape=(1, 32, 32, 16), out_shape=(1, 32, 32, 16), cin=16,
                     cout=16, kernel=(3, 3), stride=(1, 1), padding="SAME")
    assert spec_of(stem).groups(stem)[0] == "CONV_2D/k3/stem" and spec_of(body).groups(body)[0] == "CONV_2D/k3"


@pytest.mark.slow
def test_heavy_models_spread_their_weights_over_the_cache_sizes_the_calibration_chooses_from():
    from tfcompress.hardware.kernels import kernels_of
    from tfcompress.hardware.predict import weight_mb
    from tfcompress.hardware.spaces import heavy_models

    sizes = [weight_mb([u.key for u in kernels_of(c)]) for _, c in heavy_models(8, seed=100)]
    assert min(sizes) < 4.0 and max(sizes) > 32.0  # both sides of this host's 32 MB L3
    assert sum(8.0 < s < 32.0 for s in sizes) >= 3


def test_check_output_writes_the_profile_rescaled_by_the_measured_ratio(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from tfcompress.cli import main
    from tfcompress.hardware import check
    from tfcompress.hardware.kernels import KernelUse
    from tfcompress.hardware.predict import LatencyModel
    from tfcompress.hardware.profile import load_profile, save_profile

    prof = _profile_with([0.01 * i for i in range(1, 30)])
    save_profile(prof, tmp_path / "p.json")
    _fake_one_op_models(monkeypatch, prof)
    monkeypatch.setattr(check, "time_tflites", _fake_timing(lambda ms: 0.8))  # this machine: 20% faster
    res = CliRunner().invoke(main, ["profile", "--check", "--profile", str(tmp_path / "p.json"),
                                    "-o", str(tmp_path / "r.json")])
    assert res.exit_code == 1 and "rescaled x0.800" in res.output, res.output
    again = load_profile(tmp_path / "r.json")
    assert [e.ms for e in again.entries] == pytest.approx([0.8 * e.ms for e in prof.entries])
    assert "rescaled x0.8000" in again.provenance.method
    uses = [KernelUse(i, e.key, ()) for i, e in enumerate(prof.entries[:5])]
    before, after = LatencyModel(prof).predict(uses), LatencyModel(again).predict(uses)
    assert after.total_ms - after.overhead_ms == pytest.approx(0.8 * (before.total_ms - before.overhead_ms))
    monkeypatch.setattr(check, "time_tflites", _fake_timing(lambda ms: 1.0, busy=True))
    res = CliRunner().invoke(main, ["profile", "--check", "--profile", str(tmp_path / "p.json"),
                                    "-o", str(tmp_path / "busy.json")])
    assert res.exit_code == 3 and not (tmp_path / "busy.json").exists()


@pytest.mark.slow
def test_coverage_models_reach_kernels_the_other_families_do_not():
    """Wide convolutions, 5x5 / 7x7 depthwise, standalone ReLU, average pooling, padding (stems too), products with
    constants: seeded and convertible."""
    from tfcompress.hardware.kernels import kernels_of
    from tfcompress.hardware.spaces import coverage_models

    models = coverage_models(10)
    keys = [u.key for _, c in models for u in kernels_of(c)]
    assert [[u.key for u in kernels_of(c)] for _, c in coverage_models(10)] == [[u.key for u in kernels_of(c)]
                                                                               for _, c in models]
    ops = {k.op for k in keys}
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "RELU", "AVERAGE_POOL_2D", "PAD", "LOGISTIC", "MUL"} <= ops, ops
    assert max(k.cout for k in keys if k.op == "CONV_2D") >= 512
    assert {k.kernel for k in keys if k.op == "DEPTHWISE_CONV_2D"} & {(5, 5), (7, 7)}
    assert any(k.op == "PAD" and k.in_shape[-1] == 3 for k in keys)  # an image stem's padding
    assert any(k.op == "MUL" and not k.extra for k in keys)  # a product with constants (normalization)


@pytest.mark.slow
def test_application_models_can_be_asked_for_by_name():
    """A subset comes back in APPLICATIONS' order, seeded by each entry's index (the same files as the whole)."""
    from tfcompress.hardware.kernels import kernels_of
    from tfcompress.hardware.spaces import application_models

    wanted = {"MobileNetV2 a0.35 96px", "MobileNet a0.25 96px"}
    got = application_models(names=wanted)
    assert [n for n, _ in got] == ["MobileNet a0.25 96px", "MobileNetV2 a0.35 96px"]
    again = application_models(names={"MobileNetV2 a0.35 96px"})
    assert [u.key for u in kernels_of(again[0][1])] == [u.key for u in kernels_of(got[1][1])]
    assert application_models(names=set()) == []
