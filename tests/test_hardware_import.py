"""Importing device measurements into a profile: benchmark_model CSV, edge result, Android app JSON.

tests/fixtures/benchmark_model_op_profile.csv is what
`benchmark_model --graph=tiny_int8.tflite --num_threads=1 --use_xnnpack=false --enable_op_profiling=true
 --op_profiling_output_mode=csv --op_profiling_output_file=benchmark_model_op_profile.csv` writes. Format sources:
- file layout: https://github.com/google-ai-edge/LiteRT/blob/main/tflite/profiling/profile_summary_formatter.cc
  (HandleOutput / GenerateReport: "Profiling Info for Benchmark Initialization:", "Operator-wise Profiling Info
  for Regular Benchmark Runs:", "Primary graph ... profile:", "Delegate internal:"; ProfileSummaryCSVFormatter
  only sets StatSummarizerOptions.format_as_csv);
- tables: https://github.com/tensorflow/tensorflow/blob/master/tensorflow/core/util/stats_calculator.cc (now
  xla/tsl/util/stats_calculator.cc): HeaderString / ColumnString / GetStatsByNodeType / GetShortSummary and
  Stat::OutputToStream. CSV header "node type, first, avg_ms, %, cdf%, mem KB, times called, name" (older
  versions: "node type, start, first, ..."), default ostream number format, commas in the name (not in the node
  type) replaced by tabs; tables "Run Order", "Top by Computation Time", "Summary by node type", then
  "Timings (microseconds): count=... avg=...";
- row names: https://github.com/google-ai-edge/LiteRT/blob/main/tflite/profiling/profile_summarizer.cc:
  "[output tensor names]:node index" for an op; "Delegate/<operator>:<n>" with the operator as node type for
  XNNPACK's per-operator rows (DELEGATE_PROFILED_OPERATOR_INVOKE_EVENT). tflite/core/subgraph.cc then skips the
  delegate's own node (kTfLiteDelegateFlagsPerOperatorProfiling); before TF 2.9.1 one "TfLiteXNNPackDelegate"
  row covered each delegated partition (https://blog.tensorflow.org/2022/06/Profiling-XNNPACK-with-TFLite.html);
- pasted real outputs: a CSV "node type, start, first, avg_ms, ... CONV_2D, 0, 0.11, 0.0930388, 44.8994%, ...,
  [sequential_11/conv2d_33/Conv2D]:0", and stdout tables with "Delegate/Convolution (NHWC, QC8) IGEMM:0" rows.
Its times come from timing this model's ops with LiteRT's builtin kernels on a 2-core x86-64 host, written at
the profiler's 1 us resolution (sums, percentages and the run summary are consistent).

tests/fixtures/tiny_int8.tflite is `build_tiny_model()` converted by `convert_int8_random` (TF 2.21). It is committed
(`git add -f`: *.tflite is git-ignored) because the CSV names its tensors and the Android JSON its sha256.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tfcompress.errors import TfcompressError

FIXTURES = Path(__file__).parent / "fixtures"
TINY = FIXTURES / "tiny_int8.tflite"
CSV = FIXTURES / "benchmark_model_op_profile.csv"
ANDROID = FIXTURES / "android_benchmark.json"
EDGE = FIXTURES / "edge_result.json"

# avg_ms of each op (by index) in the CSV fixture
CSV_MS = [0.017213, 0.0251083, 0.00674191, 0.0132651, 0.0607012, 0.000412035, 0.000683216]


@pytest.fixture(autouse=True, scope="module")
def _fixture_model_present():
    if not TINY.exists():
        pytest.fail(f"{TINY} is missing: *.tflite is git-ignored, commit it with `git add -f`", pytrace=False)


def build_tiny_model(residual: bool = True):
    """The model of tests/fixtures/tiny_int8.tflite: conv / depthwise / pointwise (+ residual ADD), MEAN, FC, softmax."""
    from tfcompress.keras_compat import tf_keras

    tf_keras.utils.set_random_seed(0)
    layers = tf_keras.layers
    x = tf_keras.Input((48, 48, 3), batch_size=1, name="image")
    y = layers.ReLU(6.0, name="stem_relu")(layers.Conv2D(16, 3, strides=2, padding="same", name="stem")(x))
    z = layers.ReLU(6.0, name="dw_relu")(layers.DepthwiseConv2D(3, padding="same", name="dw")(y))
    z = layers.Conv2D(16, 1, name="pw")(z)
    y = layers.Add(name="residual")([y, z]) if residual else z
    y = layers.Dense(10, name="logits")(layers.GlobalAveragePooling2D(name="pool")(y))
    return tf_keras.Model(x, layers.Softmax(name="probs")(y), name="tiny")


@pytest.fixture(scope="module")
def other_model() -> bytes:
    """A converted model that is not the fixture (no residual ADD): the wrong model to pass."""
    from tfcompress.export.converter import convert_int8_random as convert_int8

    return convert_int8(build_tiny_model(residual=False))


def _keys(model):
    from tfcompress.hardware.kernels import kernels_of

    return [u.key for u in kernels_of(model)]


def _import(path, **kw):
    from tfcompress.hardware.importers import import_measurements

    return import_measurements(path, **kw)


def _csv_with_run_order(tmp_path, rows: list[str], name: str = "profile.csv") -> Path:
    """The CSV fixture with its regular-run Run Order rows replaced by `rows`."""
    lines = CSV.read_text().splitlines()
    start = lines.index("Operator-wise Profiling Info for Regular Benchmark Runs:") + 3
    end = lines.index("", start)
    path = tmp_path / name
    path.write_text("\n".join(lines[:start] + rows + lines[end:]) + "\n")
    return path


# ------------------------------------------------------------------ fixtures themselves


def test_fixture_model_matches_its_builder_and_the_android_sha():
    from tfcompress.export.converter import convert_int8_random as convert_int8

    assert _keys(TINY) == _keys(convert_int8(build_tiny_model()))
    sha = hashlib.sha256(TINY.read_bytes()).hexdigest()
    assert json.loads(ANDROID.read_text())["models"][0]["sha256"] == sha
    assert TINY.stat().st_size < 50_000


# ------------------------------------------------------------------ benchmark_model


def test_benchmark_model_csv_becomes_a_profile_that_predicts_from_the_lut():
    from tfcompress.hardware.importers import to_profile
    from tfcompress.hardware.predict import predict_latency_ms

    imp = _import(CSV, models=[TINY], device="x86-host")
    keys = _keys(TINY)
    assert imp.source_format == "benchmark_model_csv"
    assert (imp.device, imp.delegate, imp.threads, imp.overhead_ms) == ("x86-host", "none", None, None)
    assert {e.key: e.ms for e in imp.entries} == dict(zip(keys, CSV_MS))
    assert {e.runs for e in imp.entries} == {7412}  # "Timings (microseconds): count=7412"
    (obs,) = imp.observations
    assert obs.name == "tiny_int8.tflite" and obs.measured_ms == pytest.approx(0.124125) and obs.kernels == tuple(keys)
    assert len(imp.warnings) == 1 and "thread count" in imp.warnings[0]

    profile = to_profile(imp, command="tfcompress profile import")
    assert profile.threads == 1 and profile.provenance.command == "tfcompress profile import"
    pred = predict_latency_ms(TINY, profile)
    assert [r.source for r in pred.rows] == ["lut"] * len(keys)
    assert [r.kernel_ms for r in pred.rows] == CSV_MS


def _text_row(node_type: str, start: float, first: float, avg: float, pct: float, cdf: float, name: str) -> str:
    """A row of the stdout table of TF <= 2.11 (tab-separated, right-aligned, fixed 3 decimals)."""
    return (f"\t{node_type:>24}\t{start:>17.3f}\t{first:>9.3f}\t{avg:>9.3f}\t{pct:>7.3f}%\t{cdf:>7.3f}%"
            f"\t{0:>10.3f}\t{1:>9}\t{name}")


def test_benchmark_model_stdout_table_with_start_column(tmp_path):
    """The default (text) output as captured from stdout of an older benchmark_model, INFO: prefixes included."""
    from tfcompress.export.tflite_file import read_tflite

    tflite = read_tflite(TINY)
    names = [f"[{', '.join(tflite.tensors[i].name for i in op.outputs)}]:{op.index}" for op in tflite.operators]
    header = ("\t" + "\t".join(f"{h:>{w}}" for h, w in (("[node type]", 24), ("[start]", 17), ("[first]", 9),
                                                         ("[avg ms]", 9), ("[%]", 8), ("[cdf%]", 8),
                                                         ("[mem KB]", 10), ("[times called]", 9))) + "\t[Name]")
    avg = [0.017, 0.025, 0.007, 0.013, 0.061, 0.0, 0.001]
    rows = [_text_row(op.op_type, sum(avg[:i]), avg[i], avg[i], 10.0, 10.0, names[i])
            for i, op in enumerate(tflite.operators)]
    text = "\n".join([
        "INFO: Num threads: [4]",
        "INFO: Inference timings in us: Init: 1730, First inference: 412, Warmup (avg): 131.2, Inference (avg): 127.9",
        "INFO: Operator-wise Profiling Info for Regular Benchmark Runs:",
        "============================== Run Order ==============================",
        header, *rows, "",
        "Timings (microseconds): count=7412 first=146 curr=121 min=118 max=412 avg=124.125 std=9",
        "Memory (bytes): count=0", "7 nodes observed", "", "",
    ])
    path = tmp_path / "stdout.txt"
    path.write_text(text)
    imp = _import(path, models=[TINY])
    assert {e.key: e.ms for e in imp.entries} == dict(zip(_keys(TINY), avg))
    assert imp.threads == 4 and imp.warnings == ()
    assert imp.observations[0].measured_ms == pytest.approx(0.1279)  # the whole invoke, not the op sum


def test_older_csv_with_a_start_column(tmp_path):
    lines = CSV.read_text().replace("node type, first,", "node type, start, first,").splitlines()
    start = lines.index("Operator-wise Profiling Info for Regular Benchmark Runs:") + 3
    end = lines.index("", start)
    for i in range(start, end):
        t, rest = lines[i].split(", ", 1)
        lines[i] = f"{t}, 0.1, {rest}"
    path = tmp_path / "old.csv"
    path.write_text("\n".join(lines) + "\n")
    assert [e.ms for e in _import(path, models=[TINY]).entries] == [e.ms for e in _import(CSV, models=[TINY]).entries]


def test_xnnpack_rows_only_is_an_error_naming_the_rerun_flag(tmp_path):
    old = _csv_with_run_order(tmp_path, [
        "TfLiteXNNPackDelegate, 0.038, 0.0312, 100%, 100%, 0, 1, [StatefulPartitionedCall:0]:7"], "old.csv")
    new = _csv_with_run_order(tmp_path, [  # XNNPACK's own operators (TF >= 2.9.1): commas inside the node type
        "Convolution (NHWC, QC8) IGEMM, 0.009, 0.0071, 22.7564%, 22.7564%, 0, 1, Delegate/Convolution (NHWC\t QC8) IGEMM:0",
        "Convolution (NHWC, QC8) DWConv, 0.008, 0.0063, 20.1923%, 42.9487%, 0, 1, Delegate/Convolution (NHWC\t QC8) DWConv:1",
        "Convolution (NHWC, QC8) GEMM, 0.004, 0.0031, 9.9359%, 52.8846%, 0, 1, Delegate/Convolution (NHWC\t QC8) GEMM:2",
        "Add (ND, QS8), 0.003, 0.0025, 8.01282%, 60.8974%, 0, 1, Delegate/Add (ND\t QS8):3",
        "Mean (ND) Mean, 0.012, 0.0111, 35.5769%, 96.4744%, 0, 1, Delegate/Mean (ND) Mean:4",
        "Fully Connected (NC, QS8) GEMM, 0.001, 0.0007, 2.24359%, 98.7179%, 0, 1, Delegate/Fully Connected (NC\t QS8) GEMM:5",
        "Softmax (NC, QS8), 0.001, 0.0004, 1.28205%, 100%, 0, 1, Delegate/Softmax (NC\t QS8):6",
    ], "new.csv")
    for path in (old, new):
        with pytest.raises(TfcompressError) as err:
            _import(path, models=[TINY])
        assert path.name in str(err.value) and "--use_xnnpack=false" in err.value.hint


def test_mixed_delegate_and_op_rows_warn_and_keep_the_ops(tmp_path):
    path = _csv_with_run_order(tmp_path, [
        "TfLiteXNNPackDelegate, 0.021, 0.0187, 74.8%, 74.8%, 0, 1, [tiny/residual/add]:7",
        "MEAN, 0.006, 0.0052, 20.8%, 95.6%, 0, 1, [tiny/pool/Mean]:4",
        "FULLY_CONNECTED, 0.001, 0.0006, 2.4%, 98%, 0, 1, [tiny/logits/MatMul2]:5",
        "SOFTMAX, 0.001, 0.0005, 2%, 100%, 0, 1, [StatefulPartitionedCall:0]:6",
    ])
    imp = _import(path, models=[TINY])
    assert imp.delegate == "XNNPACK"
    assert [e.key.op for e in imp.entries] == ["FULLY_CONNECTED", "MEAN", "SOFTMAX"]
    assert any("4 of 7 ops ran inside XNNPACK" in w for w in imp.warnings)


@pytest.mark.parametrize("cut", ["mid_row", "after_row", "init_only"])
def test_truncated_csv_is_an_error_naming_file_and_line(tmp_path, cut):
    text = CSV.read_text()
    at = text.index("ADD, 0.016")
    text = {"mid_row": text[: at + 20], "after_row": text[: text.index("\n", at) + 1],
            "init_only": text[: text.index("Operator-wise")]}[cut]
    path = tmp_path / "cut.csv"
    path.write_text(text)
    with pytest.raises(TfcompressError, match="cut.csv") as err:
        _import(path, models=[TINY])
    if cut == "mid_row":
        assert f"cut.csv:{text.count(chr(10)) + 1}:" in str(err.value)  # the line number of the broken row


def test_csv_needs_the_profiled_model(tmp_path, other_model):
    with pytest.raises(TfcompressError, match="benchmark_model_op_profile.csv.*needs the one .tflite"):
        _import(CSV, models=[])
    with pytest.raises(TfcompressError, match=r"benchmark_model_op_profile.csv:\d+: node \d+ ") as err:
        _import(CSV, models=[other_model])
    assert "profiled" in err.value.hint


# ------------------------------------------------------------------ JSON formats


def test_edge_result_becomes_a_profile_that_predicts_from_the_lut():
    from tfcompress.hardware.importers import to_profile
    from tfcompress.hardware.predict import predict_latency_ms

    imp = _import(EDGE)
    doc = json.loads(EDGE.read_text())
    assert (imp.source_format, imp.device, imp.runtime, imp.delegate, imp.threads) == (
        "edge_result", "rpi4", "ai-edge-litert 1.4.0", "XNNPACK", 1)
    assert imp.overhead_ms == 0.0029 and imp.load_average == 0.21
    assert {e.key: (e.ms, e.runs, e.spread_ms) for e in imp.entries} == {
        tuple(_keys(TINY))[i]: (k["ms"], k["runs"], k["spread_ms"]) for i, k in enumerate(doc["kernels"])}
    assert len(imp.warnings) == 1 and "failed on the device" in imp.warnings[0]
    profile = to_profile(imp)
    assert profile.overhead_ms == 0.0029 and profile.provenance.measured_at == doc["measured_at"]
    pred = predict_latency_ms(TINY, profile)
    assert pred.lut_hit_rate == 1.0
    assert pred.total_ms == pytest.approx(0.0029 + sum(k["ms"] for k in doc["kernels"]))


def test_android_benchmark_matches_models_by_sha256():
    from tfcompress.hardware.importers import to_profile
    from tfcompress.hardware.predict import predict_latency_ms

    doc = json.loads(ANDROID.read_text())
    imp = _import(ANDROID, models=[TINY])
    assert (imp.device, imp.runtime, imp.delegate, imp.threads, imp.overhead_ms) == (
        "Google Pixel 7", "LiteRT 1.4.0", "XNNPACK", 4, 0.004)
    assert "Tensor G2" in imp.host
    table = {e.key: e.ms for e in imp.entries}
    ops = doc["models"][0]["ops"]
    assert all(table[k] == op["ms"] for k, op in zip(_keys(TINY), ops))  # per-op profile -> LUT
    assert len(table) == len(ops) + 1  # + the bundle kernel
    (obs,) = imp.observations
    assert (obs.name, obs.measured_ms, obs.kernels) == ("tiny_int8.tflite", 0.0262, tuple(_keys(TINY)))
    (warning,) = imp.warnings
    assert "mobilenet_v2_int8.tflite" in warning and "android_benchmark.json" in warning
    assert predict_latency_ms(TINY, to_profile(imp)).lut_hit_rate == 1.0


def test_android_energy_is_kept_on_the_models_observation(tmp_path):
    """`latency_ms.energy` from the app's battery readings becomes the observation's energy per inference, saved
    and loaded with the profile; an `unavailable` reason is a warning, not an error."""
    from tfcompress.hardware.importers import to_profile
    from tfcompress.hardware.profile import load_profile, save_profile

    doc = json.loads(ANDROID.read_text())
    doc["models"][0]["latency_ms"]["energy"] = {"samples": 40, "power_mw_mean": 1755.0, "mj_per_inference": 0.046,
                                                "mj_per_inference_above_baseline": 0.012}
    path = tmp_path / "energy.json"
    path.write_text(json.dumps(doc))
    (obs,) = _import(path, models=[TINY]).observations
    assert (obs.energy_mj, obs.energy_above_idle_mj) == (0.046, 0.012)
    saved = save_profile(to_profile(_import(path, models=[TINY])), tmp_path / "phone.json")
    (again,) = load_profile(saved).observations
    assert (again.energy_mj, again.energy_above_idle_mj) == (0.046, 0.012)

    doc["models"][0]["latency_ms"]["energy"] = {"unavailable": "the phone was charging"}
    path.write_text(json.dumps(doc))
    imp = _import(path, models=[TINY])
    assert imp.observations[0].energy_mj is None
    assert any("has no energy: the phone was charging" in w for w in imp.warnings)
    doc["models"][0]["latency_ms"]["energy"] = {"mj_per_inference": -1.0}
    path.write_text(json.dumps(doc))
    with pytest.raises(TfcompressError, match="mj_per_inference"):
        _import(path, models=[TINY])

def test_android_sha_mismatch_warns_naming_both_sides(other_model):
    imp = _import(ANDROID, models=[other_model])
    assert imp.observations == () and len(imp.entries) == 1  # only the bundle kernel
    text = "\n".join(imp.warnings)
    assert "tiny_int8.tflite" in text and "mobilenet_v2_int8.tflite" in text
    assert "model bytes #0" in text and "matches no models[] entry" in text


def test_duplicate_keys_keep_the_median(tmp_path):
    doc = json.loads(EDGE.read_text())
    kernel = doc["kernels"][0]
    doc["kernels"] = [dict(kernel, ms=ms, runs=10) for ms in (0.1, 0.9, 0.2)]
    path = tmp_path / "dup.json"
    path.write_text(json.dumps(doc))
    (entry,) = _import(path).entries
    assert (entry.ms, entry.runs) == (0.2, 30)


@pytest.mark.parametrize("text, match", [
    ('{"schema": "tfcompress.edge_result/2", "kernels": []}', "schema 'tfcompress.edge_result/2'"),
    ('{"schema": "tfcompress.edge_result/1", "kernels": [{"digest": "ab", "ke', "not valid JSON"),
    ("hello, world\n", "unknown format"),
])
def test_unknown_or_broken_files_are_errors_naming_the_file(tmp_path, text, match):
    path = tmp_path / "measured.json"
    path.write_text(text)
    with pytest.raises(TfcompressError, match=match) as err:
        _import(path)
    assert "measured.json" in str(err.value)
    if "unknown" in match or "schema" in match:
        assert "edge_result" in err.value.hint and "benchmark_model_csv" in err.value.hint


def test_malformed_json_field_names_file_and_path(tmp_path):
    doc = json.loads(EDGE.read_text())
    doc["kernels"][2]["ms"] = "fast"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(TfcompressError, match=r"bad.json: 'kernels\[2\].ms' is not a time"):
        _import(path)


# ------------------------------------------------------------------ merging


def test_merge_refuses_another_runtime_and_merges_the_same():
    from tfcompress.hardware.importers import to_profile
    from tfcompress.hardware.profile import DeviceProfile

    edge = _import(EDGE)
    host = DeviceProfile("host", "ai-edge-litert 2.3.0", "XNNPACK", 1)
    with pytest.raises(TfcompressError, match="runtime 'ai-edge-litert 1.4.0' vs 'ai-edge-litert 2.3.0'"):
        to_profile(edge, base=host)
    android = _import(ANDROID, models=[TINY])
    pixel = to_profile(android)
    with pytest.raises(TfcompressError, match="threads 1 vs 4"):
        to_profile(_import(EDGE), base=pixel.__class__(**{**vars(pixel), "runtime": "ai-edge-litert 1.4.0"}))

    bundle_kernel = [e for e in android.entries if e.key.in_shape == (1, 112, 112, 16)]
    rpi = DeviceProfile("rpi4", "ai-edge-litert 1.4.0", "xnnpack", 1, overhead_ms=0.01, entries=tuple(bundle_kernel))
    merged = to_profile(edge, base=rpi)
    assert len(merged.entries) == 1 + len(edge.entries) and merged.overhead_ms == 0.0029
    assert "edge_result" in merged.provenance.method


def test_unknown_keys_are_errors_except_where_the_app_describes_the_phone(tmp_path):
    doc = json.loads(ANDROID.read_text())
    doc["device"]["ram_gb"] = 8  # free-form: what the app knows about the phone
    doc["models"][0]["latency_ms"]["p99"] = 1.5
    path = tmp_path / "android.json"
    path.write_text(json.dumps(doc))
    assert _import(path, models=[TINY]).observations
    doc["models"][0]["latancy"] = 1.0
    path.write_text(json.dumps(doc))
    with pytest.raises(TfcompressError, match=r"android.json: unknown key 'models\[0\].latancy'"):
        _import(path, models=[TINY])
    edge = json.loads(EDGE.read_text())
    edge["kernels"][0]["key"]["kernal"] = [3, 3]
    path = tmp_path / "edge.json"
    path.write_text(json.dumps(edge))
    with pytest.raises(TfcompressError, match=r"edge.json: unknown key 'kernels\[0\].key.kernal'"):
        _import(path)
