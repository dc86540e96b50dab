"""Edge bundles: export on the desktop, edge_profile.py on a "device" without TensorFlow, import back."""

from __future__ import annotations

import ast
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tfcompress.edge import edge_profile
from tfcompress.hardware.kernels import kernels_of

FAST = ["--runs", "7", "--warmup", "1"]

# Runs a script with tensorflow / keras / tfcompress unimportable, as on a device that has only
# numpy and LiteRT; checks that inside the child, and that none of them got imported.
BLOCKED_RUN = r"""
import runpy, sys
BLOCKED = {"tensorflow", "tf_keras", "keras", "tfcompress"}
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError("blocked on the device: " + name)
        return None
sys.meta_path.insert(0, Blocker())
try:
    import tensorflow
except ImportError:
    pass
else:
    raise SystemExit("tensorflow is importable")
script = sys.argv[1]
sys.argv = sys.argv[1:]
try:
    runpy.run_path(script, run_name="__main__")
    code = 0
except SystemExit as e:
    code = e.code
leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
if leaked:
    raise SystemExit("imported: " + ", ".join(leaked))
sys.exit(code)
"""


def _run_blocked(script: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", BLOCKED_RUN, str(script), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def tiny_tflite() -> bytes:
    """Conv2D + DepthwiseConv2D + Dense at 16x16, full int8."""
    from tfcompress.export.converter import convert_int8_random as convert_int8
    from tfcompress.keras_compat import tf_keras

    L = tf_keras.layers
    x = tf_keras.Input((16, 16, 3), batch_size=1)
    y = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    y = L.DepthwiseConv2D(3, padding="same")(y)
    y = L.Dense(4)(L.Flatten()(y))
    return convert_int8(tf_keras.Model(x, y))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, tiny_tflite) -> Path:
    from tfcompress.hardware.bundle import export_bundle

    out = tmp_path_factory.mktemp("export") / "bundle"
    export_bundle([tiny_tflite], out, command="test export")
    return out


@pytest.fixture(scope="module")
def measured(tmp_path_factory, bundle) -> dict:
    """One in-process run of the bundle (fast settings)."""
    out = tmp_path_factory.mktemp("measured") / "result.json"
    return edge_profile.run_bundle(bundle, out, warmup=1, runs=7)


def _copy(bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundle, tmp_path / "bundle"))


def test_export_bundle_writes_the_spec_layout(bundle, tiny_tflite):
    from tfcompress.hardware.measure import select_kernels

    data = json.loads((bundle / "bundle.json").read_text())
    assert data["schema"] == "tfcompress.edge_bundle/1"
    assert data["created_by"].startswith("tfcompress ") and data["created_at"].endswith("+00:00")
    assert data["threads"] == 1 and data["command"] == "test export"
    assert data["overhead_model"] == "models/overhead.tflite" and (bundle / data["overhead_model"]).is_file()
    keys = select_kernels([tiny_tflite]).keys
    assert [k["digest"] for k in data["kernels"]] == [k.digest() for k in keys]
    ops = {k["key"]["op"] for k in data["kernels"]}
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"} <= ops
    for k in data["kernels"]:
        assert k["file"] == f"models/{k['digest']}.tflite"
        assert (bundle / k["file"]).read_bytes()[4:8] == b"TFL3"
    assert len(data["models"]) == 1 and data["models"][0]["sha256"] == hashlib.sha256(tiny_tflite).hexdigest()
    assert (bundle / data["models"][0]["file"]).read_bytes() == tiny_tflite, "the whole model, for calibration"
    assert len(data["models"][0]["kernels"]) == len(kernels_of(tiny_tflite))
    assert len(list((bundle / "models").iterdir())) == len(data["kernels"]) + 2
    source = Path(edge_profile.__file__).read_bytes()
    assert (bundle / "edge_profile.py").read_bytes() == source
    assert "edge_profile.py" in (bundle / "README.txt").read_text()
    assert not [p for p in bundle.parent.iterdir() if p.name != "bundle"]  # no temp folder left


def test_export_into_non_empty_folder_is_refused(tmp_path, tiny_tflite):
    from tfcompress.errors import OutputError
    from tfcompress.hardware.bundle import export_bundle

    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "keep.txt").write_text("mine")
    with pytest.raises(OutputError, match="not empty") as err:
        export_bundle([tiny_tflite], tmp_path / "b")
    assert err.value.hint
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_edge_profile_runs_from_the_bundle_without_tensorflow(tmp_path, bundle, tiny_tflite):
    from tfcompress.hardware.bundle import read_edge_result
    from tfcompress.hardware.predict import predict_latency_ms

    copy = _copy(bundle, tmp_path)
    proc = _run_blocked(copy / "edge_profile.py", str(copy), "--device", "test-device", *FAST, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "[1/" in proc.stderr and " ms" in proc.stderr
    bundle_json = json.loads((copy / "bundle.json").read_text())
    result = json.loads((copy / "result.json").read_text())
    assert result["schema"] == "tfcompress.edge_result/1"
    assert result["bundle_sha256"] == hashlib.sha256((copy / "bundle.json").read_bytes()).hexdigest()
    assert result["device"] == "test-device" and result["delegate"] == "XNNPACK" and result["threads"] == 1
    assert result["runtime"].startswith(("ai-edge-litert ", "tflite-runtime "))
    assert result["failed"] == [] and result["overhead_ms"] > 0
    assert [k["digest"] for k in result["kernels"]] == [k["digest"] for k in bundle_json["kernels"]]
    for k, b in zip(result["kernels"], bundle_json["kernels"]):
        assert k["key"] == b["key"]
        assert k["ms"] >= 0 and k["raw_ms"] >= k["ms"] and 1 <= k["runs"] <= 7
        assert len(k["output_sha256"]) == 64
    assert [m["sha256"] for m in result["models"]] == [m["sha256"] for m in bundle_json["models"]]
    assert result["models"][0]["ms"] > 0 and result["models"][0]["kernels"] == bundle_json["models"][0]["kernels"]
    profile = read_edge_result(copy / "result.json")
    assert profile.device == "test-device" and profile.dtype == "int8"
    assert len(profile.entries) == len(result["kernels"])
    assert [o.measured_ms for o in profile.observations] == [result["models"][0]["ms"]]
    assert "edge_profile.py" in profile.provenance.method and profile.provenance.measured_at
    pred = predict_latency_ms(tiny_tflite, profile)
    assert pred.lut_hit_rate == 1.0
    assert pred.total_ms >= pred.overhead_ms > 0


def test_resume_keeps_measured_kernels(tmp_path, bundle, measured):
    out = tmp_path / "result.json"
    partial = dict(measured, kernels=[dict(measured["kernels"][0], ms=123.0, raw_ms=123.5)])
    out.write_text(json.dumps(partial))
    lines: list[str] = []
    result = edge_profile.run_bundle(bundle, out, warmup=1, runs=7, log=lines.append)
    n = len(measured["kernels"])
    assert [k["digest"] for k in result["kernels"]] == [k["digest"] for k in measured["kernels"]]
    assert result["kernels"][0]["ms"] == 123.0 and result["kernels"][0]["raw_ms"] == 123.5
    assert json.loads(out.read_text()) == result
    assert not any(line.startswith(f"[1/{n}]") for line in lines)
    assert sum(line.startswith("[") for line in lines) == n - 1
    assert result["overhead_ms"] == measured["overhead_ms"] and result["measured_at"] == measured["measured_at"]


def test_result_of_another_device_is_not_overwritten(tmp_path, bundle, measured):
    out = tmp_path / "result.json"
    out.write_text(json.dumps(measured))
    with pytest.raises(edge_profile.EdgeError, match="another run"):
        edge_profile.run_bundle(bundle, out, device="another-device", warmup=1, runs=7)
    assert json.loads(out.read_text()) == measured


def test_output_sha256_is_deterministic(tmp_path, bundle, measured):
    again = edge_profile.run_bundle(bundle, tmp_path / "again.json", warmup=1, runs=7)
    assert [k["output_sha256"] for k in again["kernels"]] == [k["output_sha256"] for k in measured["kernels"]]
    assert len({k["output_sha256"] for k in again["kernels"]}) == len(again["kernels"])


def test_bad_bundle_exits_2_with_one_line(tmp_path):
    proc = subprocess.run([sys.executable, edge_profile.__file__, str(tmp_path / "missing")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "does not exist" in proc.stderr
    (tmp_path / "bundle.json").write_text('{"schema": "something else"}')
    assert edge_profile.main([str(tmp_path)]) == 2
    (tmp_path / "bundle.json").write_text("{not json")
    assert edge_profile.main([str(tmp_path)]) == 2


def test_a_broken_kernel_is_recorded_and_the_run_goes_on(tmp_path, bundle):
    copy = _copy(bundle, tmp_path)
    first = json.loads((copy / "bundle.json").read_text())["kernels"][0]
    (copy / first["file"]).write_bytes(b"not a model")
    result = edge_profile.run_bundle(copy, warmup=1, runs=7)
    assert [f["digest"] for f in result["failed"]] == [first["digest"]]
    assert "\n" not in result["failed"][0]["error"]
    assert len(result["kernels"]) == len(json.loads((copy / "bundle.json").read_text())["kernels"]) - 1


def test_read_edge_result_rejects_foreign_and_malformed_json(tmp_path, measured):
    from tfcompress.errors import TfcompressError
    from tfcompress.hardware.bundle import read_edge_result

    path = tmp_path / "r.json"
    path.write_text(json.dumps({"schema": "tfcompress.device_profile/1"}))
    with pytest.raises(TfcompressError, match=r"r\.json is not a measurement file of format edge_result"):
        read_edge_result(path)
    path.write_text(json.dumps(dict(measured, kernels=[{"digest": "x", "ms": 1.0}])))
    with pytest.raises(TfcompressError, match=r"r\.json.*key"):
        read_edge_result(path)
    path.write_text(json.dumps(dict(measured, overhead_ms="fast")))
    with pytest.raises(TfcompressError, match=r"r\.json.*overhead_ms"):
        read_edge_result(path)
    with pytest.raises(TfcompressError, match="not found"):
        read_edge_result(tmp_path / "missing.json")


def test_edge_profile_is_python39_and_imports_only_numpy_and_litert():
    tree = ast.parse(Path(edge_profile.__file__).read_text(), feature_version=(3, 9))
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported - set(sys.stdlib_module_names) == {"numpy"}


def test_old_runtimes_without_resolver_types():
    class OldInterpreter:  # tflite-runtime before experimental_op_resolver_type
        def __init__(self, model_content=None, num_threads=None):
            self.kwargs = {"num_threads": num_threads}

        def allocate_tensors(self):
            pass

    class OldModule:
        Interpreter = OldInterpreter

    interp = edge_profile.create_interpreter(OldModule, b"", num_threads=2)
    assert interp.kwargs == {"num_threads": 2}
    with pytest.raises(edge_profile.EdgeError, match="builtin"):
        edge_profile.create_interpreter(OldModule, b"", resolver="builtin")
