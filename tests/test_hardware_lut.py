"""Profiles, LUT cache / resume and the predictor (structure only, no timing assertions)."""

from __future__ import annotations

from tfcompress.hardware.kernels import KernelKey


def _conv(h: int, cin: int, cout: int) -> KernelKey:
    return KernelKey("CONV_2D", "int8", (1, h, h, cin), (1, h, h, cout), cin, cout, (1, 1), (1, 1), "VALID", "")


def _profile(entries):
    from tfcompress.hardware.profile import DeviceProfile, LutEntry

    return DeviceProfile("test", "ai-edge-litert x", overhead_ms=0.01,
                         entries=tuple(LutEntry(k, ms) for k, ms in entries))


def test_profile_json_round_trip(tmp_path):
    from tfcompress.hardware.profile import Provenance, load_profile, save_profile

    p = _profile([(_conv(8, 4, 8), 0.1), (_conv(16, 4, 8), 0.4)])
    p = p.__class__(**{**vars(p), "provenance": Provenance(command="x", load_average=1.5)})
    path = save_profile(p, tmp_path / "p.json")
    assert load_profile(path) == p
    assert not list(tmp_path.glob(".*tmp"))


def test_predictor_monotone_in_macs():
    from tfcompress.hardware.predict import LatencyModel

    lm = LatencyModel(_profile([(_conv(h, c, c), h * h * c * c * 1e-6) for h in (8, 16, 32) for c in (8, 16)]))
    unseen = [lm.kernel_ms(_conv(h, 24, 24)) for h in (10, 20, 40)]
    assert all(src.startswith("fit") for _, src in unseen)
    ms = [m for m, _ in unseen]
    assert ms[0] <= ms[1] <= ms[2]
    assert lm.kernel_ms(_conv(8, 8, 8)) == (8 * 8 * 64 * 1e-6, "lut")


def test_build_profile_caches_and_resumes(tmp_path):
    from tfcompress.hardware import lut

    keys = [_conv(8, 4, 8), _conv(8, 8, 8)]
    first = lut.build_profile(keys, cache_dir=tmp_path, max_keys=1)
    assert len(first.entries) == 1
    assert len([p for p in tmp_path.glob("*-t1.json") if not p.name.startswith("overhead")]) == 1
    calls = []
    real = lut.measure_kernel
    lut.measure_kernel = lambda k, o, t=1: calls.append(k) or real(k, o, t)
    try:
        second = lut.build_profile(keys, cache_dir=tmp_path)
    finally:
        lut.measure_kernel = real
    assert len(calls) == 1  # only the unmeasured key is timed
    assert len(second.entries) == 2
    assert second.provenance.method and second.runtime


def test_predict_latency_of_tiny_model_covers_every_op(tmp_path):
    from tfcompress.hardware.lut import build_profile, convert_int8
    from tfcompress.hardware.predict import predict_latency_ms
    from tfcompress.hardware.validate import Arch, Block, build_arch

    content = convert_int8(build_arch(Arch(32, 8, (Block(8, 3, 1, 2, True),), "relu6")))
    prof = build_profile([content], cache_dir=tmp_path)
    pred = predict_latency_ms(content, prof)
    from tfcompress.export.tflite_file import read_tflite

    assert len(pred.rows) == len(read_tflite(content).operators)
    assert pred.lut_hit_rate == 1.0
    assert pred.total_ms >= pred.overhead_ms
