"""`search(..., measure="device")`: finalists timed on the device through edge bundles, across reruns.

The "device" is this machine running the bundle's own edge_profile.py in a subprocess, as a phone or a Pi would;
the test then sets the models' figures in result.json to values that decide the outcome (fits / misses the
budget), so what is checked is that the search decides on the device's figures. Tiny CNN and settings of
test_search (inline trials, a few steps each).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tfcompress.errors import TfcompressError
from tfcompress.search import Genome, search

from test_search import settings, trained_files


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("search_device")
    base_ms = trained_files(d, seed=0)
    return {"dir": d, "model": d / "m.keras", "data": d / "d.npz", "base_ms": base_ms, "budget": 0.8 * base_ms}


def run(files, out, **over):
    said: list[str] = []
    kw = settings(files, measure="device", **over)
    return search(str(files["model"]), str(files["data"]), output=out, on_progress=said.append, **kw), said


def time_on_the_device(bundle):
    """What the user does on the device: run the bundle's script (here, on this machine, in a subprocess)."""
    done = subprocess.run([sys.executable, str(bundle / "edge_profile.py"), str(bundle), "--runs", "5",
                           "--warmup", "1", "--rounds", "1", "--device", "test-device"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads((bundle / "result.json").read_text())


def set_figures(bundle, result, original_ms, finalist_ms):
    for m in result["models"]:
        m["ms"] = original_ms if m["name"] == "original" else finalist_ms
    (bundle / "result.json").write_text(json.dumps(result))


def mapping(bundle):
    return json.loads((bundle / "finalists.json").read_text())


@pytest.mark.slow
def test_finalists_go_to_the_device_and_the_search_decides_on_its_figures(files):
    out = files["dir"] / "fits"
    first, said = run(files, out)
    bundle = out / "device" / "round-1"
    assert first.awaiting_device == str(bundle) and not (out / "best.tflite").exists()
    assert (bundle / "bundle.json").is_file() and (bundle / "edge_profile.py").is_file()
    names = mapping(bundle)
    assert "original" in names and len(names) >= 2, "the finalists and the original beside them"
    assert names["original"]["key"] == Genome().key()
    listed = {m["name"] for m in json.loads((bundle / "bundle.json").read_text())["models"]}
    assert listed == set(names)
    assert not list((out / "device").glob(".*tmp*")), "no half-written round"

    again, _ = run(files, out)  # no result yet: the same round, not a new one
    assert again.awaiting_device == str(bundle) and sorted(p.name for p in (out / "device").iterdir()) == ["round-1"]

    result = time_on_the_device(bundle)
    assert {m["name"] for m in result["models"]} == set(names)
    fit = 0.5 * files["budget"]
    set_figures(bundle, result, original_ms=files["base_ms"], finalist_ms=fit)
    done, said = run(files, out)
    assert done.awaiting_device is None and (out / "best.tflite").is_file()
    assert done.measured_ms == pytest.approx(fit) and done.original_measured_ms == pytest.approx(files["base_ms"])
    assert done.measured_on.startswith("host (edge bundle")
    assert done.budget_met["latency_measured"] is True
    assert done.genome.key() in {v["key"] for v in names.values()}, "the chosen one is a finalist the device timed"
    assert any("timings from the device" in m for m in said)
    timings = [json.loads(line) for line in (out / "state" / "device-timings.jsonl").read_text().splitlines()]
    assert {t["key"]: t["ms"] for t in timings}[Genome().key()] == pytest.approx(files["base_ms"])
    assert not (out / "state" / "timings.jsonl").exists(), "nothing was timed here"


@pytest.mark.slow
def test_finalists_over_budget_on_the_device_tighten_it_and_ask_for_another_round(files):
    out = files["dir"] / "misses"
    # a budget just under the original's, so that a tightened one is still above the LUT's floor for this tiny CNN
    budget = 0.95 * files["base_ms"]
    levels = {"keep_levels": (1.0, 0.75, 0.5, 0.25), "latency_ms": budget}
    run(files, out, **levels)
    bundle = out / "device" / "round-1"
    result = time_on_the_device(bundle)
    set_figures(bundle, result, original_ms=files["base_ms"], finalist_ms=1.05 * budget)
    second, said = run(files, out, **levels)
    assert any("continuing with a predicted budget" in m for m in said), said
    assert second.awaiting_device == str(out / "device" / "round-2"), "\n".join(said)
    assert "original" in mapping(out / "device" / "round-2") and len(mapping(out / "device" / "round-2")) >= 2

    result["models"][0]["sha256"] = "0" * 64  # a result that is not this round's models
    (bundle / "result.json").write_text(json.dumps(result))
    with pytest.raises(TfcompressError, match="not the one this round wrote|no timing of"):
        run(files, out, **levels)


def test_measuring_on_the_device_needs_an_output_folder(files):
    kw = settings(files, measure="device")
    with pytest.raises(TfcompressError, match="needs an output folder"):
        search(str(files["model"]), str(files["data"]), **kw)
    with pytest.raises(TfcompressError, match="measure 'phone'"):
        search(str(files["model"]), str(files["data"]), **settings(files, measure="phone"))
