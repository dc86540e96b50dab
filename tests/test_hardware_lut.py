"""Profiles, LUT cache / resume and the predictor (structure only, no timing assertions)."""

from __future__ import annotations

import pytest

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
    timed = []  # the progress callback sees each key timed now, not the cached ones
    second = lut.build_profile(keys, cache_dir=tmp_path, on_progress=lambda i, n, k: timed.append((i, n, k)))
    (cached,) = first.table()
    new = next(k for k in keys if k != cached)
    assert timed == [(1, 2, new), (2, 2, new)]  # only the unmeasured key is timed, once a sweep (PASSES)
    assert len(second.entries) == 2
    assert second.overhead_ms == first.overhead_ms  # timed once per cache
    assert second.provenance.method and second.runtime
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # the temporary bundles are gone
    import json

    record = json.loads(next(p for p in tmp_path.glob(f"{new.digest()}-*.json")).read_text())
    assert record["passes"] == 2 and len(record["sweeps_ms"]) == 2 and record["ms"] == min(record["sweeps_ms"])


def test_each_sweep_keeps_the_fastest_figure_and_a_busy_one_only_when_all_were_busy():
    from tfcompress.hardware.measure import _fastest_sweep, _sweeps

    one = _fastest_sweep(None, {"ms": 0.0145, "spread_ms": 0.0003})
    assert _sweeps(one) == 1 and one["sweeps_ms"] == [0.0145]
    two = _fastest_sweep(one, {"ms": 0.0090, "spread_ms": 0.0002})  # a slow phase in the first sweep
    assert _sweeps(two) == 2 and two["ms"] == 0.0090 and two["spread_ms"] == 0.0002
    assert two["sweeps_ms"] == [0.0145, 0.0090]
    busy = _fastest_sweep(one, {"ms": 0.0050, "spread_ms": 0.0, "busy": True})
    assert busy["ms"] == 0.0145 and not busy.get("busy")  # faster, but timed beside another process
    assert _sweeps({"ms": 1.0}) == 1 and _sweeps(None) == 0  # a record cached before sweeps counts as one



def test_builtin_kernels_make_another_profile_cached_apart(tmp_path):
    """`--kernels builtin`: LiteRT's own kernels, no XNNPACK. The profile records delegate "none", its kernels are
    cached apart from XNNPACK's, an XNNPACK profile cannot be extended with them, and timing follows the profile."""
    from dataclasses import replace

    from tfcompress.errors import TfcompressError
    from tfcompress.hardware import lut
    from tfcompress.hardware.measure import resolver_of

    keys = [_conv(8, 4, 8)]
    xnn = lut.build_profile(keys, cache_dir=tmp_path, observe=False)
    builtin = lut.build_profile(keys, cache_dir=tmp_path, resolver="builtin", observe=False)
    assert (xnn.delegate, builtin.delegate) == ("XNNPACK", "none")
    assert resolver_of(xnn) == "default" and resolver_of(builtin) == "builtin"
    kernel_files = sorted(p.name for p in tmp_path.glob("*.json") if not p.name.startswith("overhead"))
    assert len(kernel_files) == 2 and sum(n.endswith("-t1-builtin.json") for n in kernel_files) == 1
    more = lut.build_profile([_conv(8, 8, 8)], cache_dir=tmp_path, base=builtin, observe=False)
    assert more.delegate == "none" and len(more.entries) == 2, "extending keeps the base's kernels"
    with pytest.raises(TfcompressError, match="do not mix"):
        lut.build_profile(keys, cache_dir=tmp_path, base=xnn, resolver="builtin")
    with pytest.raises(TfcompressError, match="unknown resolver"):
        lut.build_profile(keys, cache_dir=tmp_path, resolver="gpu")
    assert resolver_of(replace(xnn, delegate="GPU")) == "default"

@pytest.mark.slow
def test_predict_latency_of_tiny_model_covers_every_op(tmp_path):
    from tfcompress.export.converter import convert_int8_random as convert_int8
    from tfcompress.hardware.lut import build_profile
    from tfcompress.hardware.predict import predict_latency_ms
    from tfcompress.hardware.validate import Arch, Block, build_arch

    content = convert_int8(build_arch(Arch(32, 8, (Block(8, 3, 1, 2, True),), "relu6")))
    prof = build_profile([content], cache_dir=tmp_path)
    pred = predict_latency_ms(content, prof)
    from tfcompress.export.tflite_file import read_tflite

    assert len(pred.rows) == len(read_tflite(content).operators)
    assert pred.lut_hit_rate == 1.0
    assert pred.total_ms >= pred.overhead_ms


def test_bad_profile_field_is_one_line_naming_file_and_key_path(tmp_path):
    import json

    import pytest

    from tfcompress.errors import TfcompressError
    from tfcompress.hardware.profile import load_profile, save_profile

    path = save_profile(_profile([(_conv(8, 4, 8), 0.1)]), tmp_path / "p.json")
    doc = json.loads(path.read_text())
    doc["entries"][0]["ms"] = "fast"
    path.write_text(json.dumps(doc))
    with pytest.raises(TfcompressError, match=r"p\.json: 'entries\[0\]\.ms' is not a time in ms: 'fast'") as err:
        load_profile(path)
    assert "\n" not in str(err.value) and "tfcompress profile" in err.value.hint
    doc["entries"][0]["ms"] = 0.1
    doc["calibration"]["scael"] = 1.0
    path.write_text(json.dumps(doc))
    with pytest.raises(TfcompressError, match=r"unknown key 'calibration\.scael'"):
        load_profile(path)


def test_time_budget_stops_before_timing_kernels(tmp_path):
    from tfcompress.hardware import lut

    prof = lut.build_profile([_conv(8, 4, 8)], cache_dir=tmp_path, time_budget_s=0.0)
    assert prof.entries == () and prof.overhead_ms > 0  # the overhead is still timed, once
