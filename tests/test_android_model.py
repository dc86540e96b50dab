"""FMNIST-CNN through the app's path: Python and the Kotlin core agree byte for byte, its benchmark JSON imports
into a device profile, and `tfcompress android-export` writes (or refuses) the app's assets.

The golden checks run tfcompress's own calibration-time code on one side (`tfcompress.data` scaling,
`tfcompress.export.verify` quantization, via `tfcompress.android.golden`) and the core's CheckTool on the
other (android_demo/core/src/test/.../CheckTool.kt), on 100 Fashion-MNIST test images and the model's real
int8 outputs.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tfcompress.android import golden, toolchain
from tfcompress.android.fit import check_sidecar
from tfcompress.android.project import ASSET_LABELS, ASSET_MODEL, ASSET_SIDECAR, read_app_project
from tfcompress.cli import main
from tfcompress.errors import TfcompressError

from test_android_core import APP, core_jar  # noqa: F401  (core_jar: the shared, digest-cached build)

CHECK_TOOL = "org.tfcompress.demo.core.CheckTool"


@pytest.fixture(scope="module")
def fmnist_test(fmnist):
    """Fashion-MNIST as stored: uint8 pixels (conftest's `fmnist` skips when it is not installed)."""
    from tfcompress.datasets import load_fashion_mnist

    return load_fashion_mnist()


@pytest.fixture(scope="module")
def fmnist_model(trained_cnn, fmnist_test, tmp_path_factory) -> Path:
    """FMNIST-CNN (conftest's, 1 epoch), converted as `tfcompress demo` converts it (uint8 pixels, 0,1, labels)."""
    from tfcompress.conversion import convert
    from tfcompress.data import ImageSpec
    from tfcompress.datasets import FASHION_MNIST_CLASSES

    (xtr, ytr), (xte, yte) = fmnist_test
    out = tmp_path_factory.mktemp("fmnist") / "fmnist_cnn_int8.tflite"
    convert(trained_cnn, (xtr[:100], ytr[:100]), verify_data=(xte[100:300], yte[100:300]), output=out, mode="int8",
            calib_samples=100, verify_samples=None, image=ImageSpec(scale="0,1"), labels=FASHION_MNIST_CLASSES)
    return out


@pytest.fixture(scope="module")
def meta(fmnist_model) -> dict:
    return json.loads(fmnist_model.with_name("fmnist_cnn_int8.meta.json").read_text())


def tool(core_jar: Path, *args) -> toolchain.ToolRun:  # noqa: F811
    return toolchain.run_main(toolchain.find_toolchain(), [core_jar], CHECK_TOOL, [str(a) for a in args])


def kotlin_encode(core_jar, meta: dict, images: np.ndarray, work: Path) -> bytes:  # noqa: F811
    work.mkdir(parents=True, exist_ok=True)
    (work / "meta.json").write_text(json.dumps(meta))
    images.astype(np.uint8).tofile(work / "images.u8")
    tool(core_jar, "encode", work / "meta.json", work / "images.u8", work / "encoded.bin").check("CheckTool encode")
    return (work / "encoded.bin").read_bytes()


def test_golden_preprocessing_is_the_calibration_path(fmnist_test, meta):
    """golden.preprocess is exactly what convert did to the calibration images (tfcompress.data.load_samples)."""
    from tfcompress.data import ImageSpec, InputSpec, load_samples

    images = fmnist_test[1][0][:100]
    samples = load_samples(images, [InputSpec("image", (None, 28, 28, 1), "float32")], image=ImageSpec(scale="0,1"))
    assert samples.preprocessing["inputs"]["image"]["scaling"] == meta["preprocessing"]["inputs"]["image"]["scaling"]
    np.testing.assert_array_equal(samples.x[0], golden.preprocess(images, meta))


def test_kotlin_quantizes_100_images_to_the_same_int8_bytes(core_jar, fmnist_test, meta, tmp_path):  # noqa: F811
    images = fmnist_test[1][0][:100]
    python = golden.quantize_input(golden.preprocess(images, meta), meta)
    assert python.dtype == np.int8 and python.shape == (100, 28, 28, 1)
    assert kotlin_encode(core_jar, meta, images, tmp_path) == python.tobytes()


@pytest.mark.parametrize("dtype, spec, scale, zero_point", [
    ("int8", "mean=0.485,0.456,0.406;std=0.229,0.224,0.225", 0.0187, 3),
    ("uint8", "-1,1", 2 / 255, 127),
    ("float32", "mean=0.5;std=0.25", 0.0, 0),
])
def test_kotlin_matches_python_for_rgb_and_other_scalings(core_jar, meta, tmp_path, dtype, spec, scale, zero_point):  # noqa: F811
    """Per-channel mean/std, ranges with offsets, uint8 and float32 inputs: the same bytes on both sides."""
    from tfcompress.data import parse_scaling

    other = json.loads(json.dumps(meta))
    other["inputs"][0].update(shape=[1, 8, 8, 3], dtype=dtype, scale=scale, zero_point=zero_point)
    other["preprocessing"]["inputs"]["image"]["scaling"] = parse_scaling(spec).record()
    images = np.random.default_rng(7).integers(0, 256, (100, 8, 8, 3), dtype=np.uint8)
    python = golden.quantize_input(golden.preprocess(images, other), other)
    assert python.dtype == np.dtype(dtype)
    assert kotlin_encode(core_jar, other, images, tmp_path) == python.astype(f"<{python.dtype.str[1:]}").tobytes()


def test_gray_is_pillows_conversion(core_jar, tmp_path):  # noqa: F811
    from PIL import Image

    rgb = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    rgb[0, :8] = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [0, 0, 0], [1, 2, 3], [128, 128, 128], [254, 1, 127]]
    rgb.tofile(tmp_path / "rgb.u8")
    tool(core_jar, "gray", tmp_path / "rgb.u8", tmp_path / "gray.u8").check("CheckTool gray")
    assert (tmp_path / "gray.u8").read_bytes() == np.asarray(Image.fromarray(rgb).convert("L")).tobytes()


def test_the_model_outputs_dequantize_to_the_same_top3(core_jar, fmnist_model, fmnist_test, meta, tmp_path):  # noqa: F811
    from tfcompress.runtime import make_interpreter

    interpreter = make_interpreter(fmnist_model.read_bytes())
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    images = fmnist_test[1][0][:100]
    outputs = []
    for q in golden.quantize_input(golden.preprocess(images, meta), meta):
        interpreter.set_tensor(inp["index"], q[None])
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(out["index"])[0].copy())
    rng = np.random.default_rng(5)  # and rows full of ties, where the ranking rule decides
    ties = rng.integers(-3, 3, (28, 10)).astype(np.int8)
    ties[0] = 127
    q = np.concatenate([np.stack(outputs), ties]).astype(np.int8)
    q.tofile(tmp_path / "outputs.i8")
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    tool(core_jar, "decode", tmp_path / "meta.json", tmp_path / "outputs.i8", tmp_path / "scores.f32",
         tmp_path / "top.i32", 3).check("CheckTool decode")
    python_scores = golden.dequantize_output(q, meta)
    kotlin_scores = np.fromfile(tmp_path / "scores.f32", dtype="<f4").reshape(q.shape)
    assert kotlin_scores.view(np.uint32).tolist() == python_scores.astype("<f4").view(np.uint32).tolist()
    kotlin_top = np.fromfile(tmp_path / "top.i32", dtype="<i4").reshape(-1, 3)
    np.testing.assert_array_equal(kotlin_top, golden.top_k(python_scores, 3))
    accuracy = float(np.mean(golden.top_k(python_scores[:100], 1)[:, 0] == fmnist_test[1][1][:100]))
    assert accuracy > 0.6, f"the model barely classifies ({accuracy:.0%}): the outputs compared are not meaningful"


def test_a_one_off_in_the_kotlin_quantizer_fails_the_checks(core_jar, fmnist_test, meta, tmp_path_factory, tmp_path):  # noqa: F811
    """Zero point + 1 in a copy of the quantizer: the core's tests fail and the golden bytes differ."""
    tools = toolchain.find_toolchain()
    project = read_app_project(APP)
    copy = tmp_path_factory.getbasetemp() / "android-build" / "core-one-off"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(project.root / "core", copy)
    quantizer = copy / "src" / "main" / "kotlin" / "org" / "tfcompress" / "demo" / "core" / "Quantize.kt"
    line = "val q = Math.rint((values[i] / s).toDouble()).toFloat() + zp\n"
    text = quantizer.read_text()
    assert text.count(line) == 1
    quantizer.write_text(text.replace(line, line.replace("+ zp", "+ zp + 1f")))
    jar = copy.with_suffix(".jar")
    toolchain.compile_kotlin(tools, toolchain.sources(copy / "src"), jar).check("compiling the broken core")

    run = toolchain.run_main(tools, [jar], "org.tfcompress.demo.core.CoreTests")
    summary = re.search(r"^(\d+) passed, (\d+) failed$", run.output, re.MULTILINE)
    assert run.returncode == 1 and summary and int(summary.group(2)) >= 1, run.output
    assert "FAIL quantize rounds half to even" in run.output

    images = fmnist_test[1][0][:100]
    python = golden.quantize_input(golden.preprocess(images, meta), meta).tobytes()
    assert kotlin_encode(jar, meta, images, tmp_path) != python


def _refusal_cases(meta: dict) -> dict[str, dict]:
    def edited(change) -> dict:
        copy = json.loads(json.dumps(meta))
        change(copy)
        return copy

    return {
        "int16 input": edited(lambda m: m["inputs"][0].update(dtype="int16")),
        "two inputs": edited(lambda m: m["inputs"].append(dict(m["inputs"][0], name="second"))),
        "not an image": edited(lambda m: m["inputs"][0].update(shape=[1, 784])),
        "four channels": edited(lambda m: m["inputs"][0].update(shape=[1, 28, 28, 4])),
        "no pixel scaling": edited(lambda m: m["preprocessing"]["inputs"]["image"].pop("scaling")),
        "labels of another model": edited(lambda m: m.update(labels=m["labels"][:5])),
        "a per-channel input": edited(lambda m: m["inputs"][0].update(scale=0.0)),
        "another schema": edited(lambda m: m.update(schema="tfcompress.meta/2")),
    }


def test_kotlin_and_python_refuse_the_same_sidecars(core_jar, meta, tmp_path):  # noqa: F811
    check_sidecar(meta, where="good")
    good = tmp_path / "good.json"
    good.write_text(json.dumps(meta))
    assert tool(core_jar, "check-sidecar", good).output.strip() == "ok"
    for name, bad in _refusal_cases(meta).items():
        with pytest.raises(TfcompressError):
            check_sidecar(bad, where=name)
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(bad))
        run = tool(core_jar, "check-sidecar", path)
        assert run.returncode == 3 and run.output.startswith("refused: "), (name, run.output)


def test_the_core_benchmark_json_imports_into_a_device_profile(core_jar, fmnist_model, meta, tmp_path):  # noqa: F811
    """A JSON written by the core (latencies, battery readings, a bundle's kernels) becomes the phone's LUT."""
    from tfcompress.hardware.kernels import kernels_of
    from tfcompress.hardware.predict import predict_latency_ms
    from tfcompress.hardware.profile import load_profile

    keys = list(dict.fromkeys(u.key for u in kernels_of(fmnist_model.read_bytes())))
    bundle = {"schema": "tfcompress.edge_bundle/1", "threads": 1, "overhead_model": "models/overhead.tflite",
              "kernels": [{"digest": k.digest(), "file": f"models/{k.digest()}.tflite", "key": k.to_json()} for k in keys],
              "models": []}
    (tmp_path / "bundle.json").write_text(json.dumps(bundle))
    kernel_ms = {k.digest(): 0.01 * (i + 1) for i, k in enumerate(keys)}
    (tmp_path / "kernels.txt").write_text("overhead 0.002\n" + "".join(f"{d} {ms + 0.002}\n" for d, ms in kernel_ms.items()))
    (tmp_path / "times.txt").write_text("\n".join(str(v) for v in (1.0, 1.2, 1.1, 0.9, 5.0)))
    (tmp_path / "battery.txt").write_text("".join(f"{i * 20} -450000 3900\n" for i in range(10)))
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    out = tmp_path / "benchmark.json"
    tool(core_jar, "bench-json", fmnist_model, tmp_path / "meta.json", tmp_path / "times.txt", out,
         tmp_path / "battery.txt", tmp_path / "bundle.json", tmp_path / "kernels.txt").check("CheckTool bench-json")
    written = json.loads(out.read_text())
    latency = written["models"][0]["latency_ms"]
    assert latency["median"] == pytest.approx(float(np.median([1.0, 1.2, 1.1, 0.9, 5.0])))
    assert latency["p90"] == pytest.approx(float(np.percentile([1.0, 1.2, 1.1, 0.9, 5.0], 90)))
    assert latency["energy"]["power_mw_mean"] == pytest.approx(450 * 3.9)

    profile = tmp_path / "phone.json"
    result = CliRunner().invoke(main, ["profile", "--import", str(out), "--model", str(fmnist_model), "-o", str(profile)])
    assert result.exit_code == 0, result.output
    assert f"{len(keys)} kernel(s) and 1 model(s) imported from android_benchmark" in result.output
    prof = load_profile(profile)
    assert (prof.device, prof.delegate, prof.threads) == ("tfcompress JVM check", "XNNPACK", 1)
    assert prof.overhead_ms == pytest.approx(0.002)
    assert prof.observations[0].measured_ms == pytest.approx(latency["median"])
    prediction = predict_latency_ms(str(fmnist_model), str(profile))
    expected = 0.002 + sum(kernel_ms[row.key.digest()] for row in prediction.rows)
    assert all(row.source == "lut" for row in prediction.rows)
    assert prediction.total_ms == pytest.approx(expected, rel=1e-6)


@pytest.fixture
def app_copy(tmp_path) -> Path:
    """The parts of android_demo/ that android-export reads, without its assets."""
    root = tmp_path / "android_demo"
    shutil.copytree(APP / "app", root / "app", ignore=shutil.ignore_patterns("assets"))
    return root


def export(model: Path, app: Path, *extra: str):
    return CliRunner().invoke(main, ["android-export", str(model), "--app", str(app), *extra])


def test_android_export_writes_assets_that_match_the_sidecar(fmnist_model, meta, app_copy):
    result = export(fmnist_model, app_copy, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assets = read_app_project(app_copy).assets
    assert sorted(p.name for p in assets.iterdir()) == sorted([ASSET_LABELS, ASSET_MODEL, ASSET_SIDECAR])
    assert (assets / ASSET_MODEL).read_bytes() == fmnist_model.read_bytes()
    assert json.loads((assets / ASSET_SIDECAR).read_text()) == meta
    assert (assets / ASSET_LABELS).read_text().splitlines() == meta["labels"]
    assert hashlib.sha256((assets / ASSET_MODEL).read_bytes()).hexdigest() == meta["model_sha256"] == report["sha256"]
    assert report["input"].startswith("int8 [1, 28, 28, 1]") and report["labels"] == 10
    again = export(fmnist_model, app_copy)
    assert again.exit_code == 0 and "wrote labels.txt, model.meta.json, model.tflite" in again.output


def _patched(model: Path, out: Path, change) -> Path:
    """`model` with its flatbuffer edited by `change(ModelT, schema)`."""
    import flatbuffers

    from tfcompress.export.tflite_file import schema

    tree = schema.ModelT.InitFromPackedBuf(model.read_bytes(), 0)
    change(tree, schema)
    builder = flatbuffers.Builder(0)
    builder.Finish(tree.Pack(builder), file_identifier=b"TFL3")
    out.write_bytes(bytes(builder.Output()))
    return out


def _flex_op(tree, schema):
    code = tree.operatorCodes[tree.subgraphs[0].operators[0].opcodeIndex]
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    code.customCode = "FlexErf"


def _int16_input(tree, schema):
    tree.subgraphs[0].tensors[tree.subgraphs[0].inputs[0]].type = schema.TensorType.INT16


@pytest.mark.parametrize("case, needles", [
    ("flex op", ["outside LiteRT's builtin kernels", "FlexErf (op 0)"]),
    ("int16 input", ["the input is int16", "int8, uint8, float32"]),
    ("no sidecar", ["has no sidecar"]),
    ("sidecar of another model", ["describes another model"]),
    ("no pixel scaling", ["records no pixel scaling"]),
    ("not the app", ["is not the Android demo app"]),
])
def test_android_export_refuses_with_one_line(fmnist_model, meta, app_copy, tmp_path, case, needles):
    model, app = tmp_path / "m.tflite", app_copy
    shutil.copyfile(fmnist_model, model)
    sidecar = tmp_path / "m.meta.json"
    sidecar.write_text(json.dumps(meta))
    if case == "flex op":
        _patched(fmnist_model, model, _flex_op)
    elif case == "int16 input":
        _patched(fmnist_model, model, _int16_input)
    elif case == "no sidecar":
        sidecar.unlink()
    elif case == "sidecar of another model":
        sidecar.write_text(json.dumps(dict(meta, model_sha256="0" * 64)))
    elif case == "no pixel scaling":
        edited = json.loads(json.dumps(meta))
        del edited["preprocessing"]["inputs"]["image"]["scaling"]
        sidecar.write_text(json.dumps(edited))
    elif case == "not the app":
        app = tmp_path / "elsewhere"
        app.mkdir()
    result = export(model, app)
    out = result.output  # click's runner mixes stderr in
    assert result.exit_code == 2 and "Traceback" not in out, out
    lines = out.strip().splitlines()
    assert lines[0].startswith("error: ") and lines[1].startswith("hint: "), out  # one line each (wide terminal)
    for needle in needles:
        assert needle in " ".join(out.split()), out
    assert not (app_copy / "app" / "src" / "main" / "assets").exists(), "nothing may be written"
