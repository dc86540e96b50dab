"""Adversarial documents (issue 12): everything tfcompress reads that is not a recipe or a Keras model.

Two halves:

- **Defects a prober found**, one test each (they failed before the fix): a device name from an imported file
  that writes outside the folder, `inspect` on a FIFO / a link to /dev/zero / a file over the size cap,
  tracebacks on numbers (1e400, NaN, negative times, `threads: -4`), kernel keys of the wrong type, a .tflite
  where a profile goes, 100k-deep JSON, NUL bytes in names, a profile accepted on import that crashed when used,
  and a crafted flatbuffer whose tables all share one long vector. The ones that hang or exhaust memory on the
  old code run in a child process with a timeout and an address-space limit.
- **Fuzzing**, seeded (reproducible, same cases in CI every run): byte-level mutations of three real int8
  .tflite files (flips, extreme 32-bit words where lengths and offsets live, truncation, insertion, deletion,
  duplication) fed to `read_tflite`, `kernels_of`, `inspect_tflite` and the predictor; JSON-tree mutations
  (hypothesis, derandomized) and text mutations of profile documents (the shipped host.json and a small built
  one) and of the three import formats (tests/fixtures). The contract checked on every case: only a
  `TfcompressError` escapes, no case takes 5 s of CPU or 30 s of wall clock (timers interrupt it), and
  whatever is accepted works: a loaded or imported profile predicts a finite, non-negative latency and
  round-trips through its JSON. Peak memory growth (ru_maxrss) over the fuzzing is asserted under
  `RSS_GROWTH_LIMIT_MB`. The fuzz tests are marked slow (CI runs them; the fast loop skips them).

Cases: 5,100 mutated .tflite + 513 length-word cases, 4,400 small-profile and 8 host.json documents
(10,021 .tflite / profile documents), plus 900 import documents. Measured on 2 shared cores:
about 75 s for the fuzzing, slowest case 0.3 s of CPU, ru_maxrss growth under 15 MB; the whole file
about 100 s. `pytest tests/adversarial/test_adv_documents.py -s` prints the `fuzz:` lines with these figures.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import os
import random
import resource
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tfcompress.errors import TfcompressError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TINY = FIXTURES / "tiny_int8.tflite"
CSV = FIXTURES / "benchmark_model_op_profile.csv"
EDGE = FIXTURES / "edge_result.json"
ANDROID = FIXTURES / "android_benchmark.json"
HOST = Path(__file__).resolve().parents[2] / "tfcompress" / "hardware" / "profiles" / "host.json"

CASE_DEADLINE_S = 5.0
"""Most CPU seconds one case may take (a profiling timer interrupts it); wall clock is allowed
`CASE_WALL_LIMIT_S` because the machine is shared, and a case blocked on I/O uses no CPU."""
CASE_WALL_LIMIT_S = 30.0
RSS_GROWTH_LIMIT_MB = 400
"""Bound on ru_maxrss growth during one fuzz test (measured growth is printed; it stays far below)."""

TFLITE_CASES_PER_MODEL = 1700  # x 3 models, + one case per 32-bit word of the MLP model
SMALL_PROFILE_TREE_CASES = 1800  # hypothesis
SMALL_PROFILE_TEXT_CASES = 2600
HOST_CASES = 8
IMPORT_CASES_PER_FORMAT = 300  # x 3 formats, on top of the >= 10,000 .tflite / profile documents


# ------------------------------------------------------------------ harness


class _Hang(BaseException):
    """Raised by the per-case timer; a BaseException so no `except Exception` in the code under test eats it."""


@contextlib.contextmanager
def _deadline(cpu_s: float = CASE_DEADLINE_S, wall_s: float = CASE_WALL_LIMIT_S):
    def cpu(signum, frame):
        raise _Hang(f"case used over {cpu_s} s of CPU")

    def wall(signum, frame):
        raise _Hang(f"case took over {wall_s} s (blocked?)")

    old = signal.signal(signal.SIGPROF, cpu), signal.signal(signal.SIGALRM, wall)
    signal.setitimer(signal.ITIMER_PROF, cpu_s)
    signal.setitimer(signal.ITIMER_REAL, wall_s)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGPROF, old[0])
        signal.signal(signal.SIGALRM, old[1])


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@dataclasses.dataclass
class _Fuzz:
    """Runs cases under the contract and keeps the figures."""

    name: str
    cases: int = 0
    rejected: int = 0
    slowest_s: float = 0.0  # wall
    slowest_cpu_s: float = 0.0
    slowest: str = ""
    failures: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        self.started = time.perf_counter()
        self.rss0 = _rss_mb()
        self.current0 = _current_rss_mb()

    def case(self, label: str, fn: Callable[[], Any]) -> Any:
        """Run one case: TfcompressError counts as rejected, anything else (or a hang) is a failure."""
        self.cases += 1
        t, c = time.perf_counter(), time.process_time()
        try:
            with _deadline():
                return fn()
        except TfcompressError as exc:
            self.rejected += 1
            assert str(exc).strip() and "\n" not in exc.message, f"{label}: not a one-line error: {exc.message!r}"
            return None
        except _Hang as exc:
            self.failures.append(f"{label}: {exc}")
        except Exception as exc:  # noqa: BLE001 - the point: nothing else may escape
            self.failures.append(f"{label}: {type(exc).__name__}: {str(exc)[:200]}")
        finally:
            took, cpu = time.perf_counter() - t, time.process_time() - c
            self.slowest_cpu_s = max(self.slowest_cpu_s, cpu)
            if took > self.slowest_s:
                self.slowest_s, self.slowest = took, label
        return None

    def check(self, minimum: int) -> None:
        took = time.perf_counter() - self.started
        growth = _rss_mb() - self.rss0
        print(f"\nfuzz: {self.name}: {self.cases} cases ({self.rejected} rejected with TfcompressError), "
              f"{took:.1f} s, slowest case {self.slowest_s:.2f} s wall ({self.slowest[:60]}), "
              f"{self.slowest_cpu_s:.2f} s CPU, ru_maxrss {_rss_mb():.0f} MB "
              f"(+{growth:.0f} MB), RSS now {_current_rss_mb() - self.current0:+.0f} MB")
        assert not self.failures, f"{len(self.failures)} case(s) broke the contract:\n" + "\n".join(self.failures[:15])
        assert self.cases >= minimum
        assert self.slowest_cpu_s < CASE_DEADLINE_S and self.slowest_s < CASE_WALL_LIMIT_S
        assert growth < RSS_GROWTH_LIMIT_MB, f"ru_maxrss grew {growth:.0f} MB"


_TINY_USES: list[Any] = []


def _usable(profile: Any, tflite: bytes | None = None, *, round_trip: bool = True) -> None:
    """What 'accepted' promises: the profile round-trips through its JSON and predicts a finite latency >= 0.

    Without `tflite`, predicts the kernels of tests/fixtures/tiny_int8.tflite (read once).
    """
    from tfcompress.hardware.kernels import kernels_of
    from tfcompress.hardware.predict import LatencyModel, predict_latency_ms
    from tfcompress.hardware.profile import DeviceProfile

    if round_trip:
        again = DeviceProfile.from_json(json.loads(json.dumps(profile.to_json(), allow_nan=False)))
        assert again == profile
    if tflite is not None:
        pred = predict_latency_ms(tflite, profile)
    else:
        if not _TINY_USES:
            _TINY_USES.extend(kernels_of(TINY))
        pred = LatencyModel(profile).predict(_TINY_USES)
    assert math.isfinite(pred.total_ms) and pred.total_ms >= 0, pred.total_ms
    assert all(math.isfinite(r.ms) and r.ms >= 0 for r in pred.rows)


def _isolated(code: str, *, timeout: float = 30, mem_gib: float = 1.5) -> subprocess.CompletedProcess:
    """Run `code` in a child Python with an address-space limit and a timeout (for what hangs or eats memory)."""
    limit = int(mem_gib * (1 << 30))

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, preexec_fn=cap, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


# ------------------------------------------------------------------ models and documents


@pytest.fixture(scope="module")
def tflites() -> dict[str, bytes]:
    """Three real int8 models: the committed fixture, and two built here with tfcompress.convert."""
    import tfcompress
    from tfcompress.keras_compat import tf_keras

    tf_keras.utils.set_random_seed(1)
    L = tf_keras.layers
    x = tf_keras.Input((8,), name="features")
    mlp = tf_keras.Model(x, L.Dense(4, activation="softmax")(L.Dense(16, activation="relu")(x)), name="mlp")
    x = tf_keras.Input((16, 16, 3), name="image")
    y = L.Conv2D(8, 3, padding="same", activation="relu")(x)
    y = L.MaxPooling2D(2)(y)
    se = L.Dense(8, activation="sigmoid")(L.GlobalAveragePooling2D()(y))
    y = L.Multiply()([y, L.Reshape((1, 1, 8))(se)])
    y = L.DepthwiseConv2D(3, strides=2, padding="same")(y)
    cnn = tf_keras.Model(x, L.Dense(3)(L.Flatten()(y)), name="se_cnn")
    rng = np.random.default_rng(0)
    out = {"tiny": TINY.read_bytes()}
    for model, shape in ((mlp, (64, 8)), (cnn, (64, 16, 16, 3))):
        result = tfcompress.convert(model, rng.random(shape, dtype=np.float32), verify=False, device=None,
                                    calib_samples=32)
        out[model.name] = result.tflite
    return out


@pytest.fixture(scope="module")
def small_profile_doc() -> dict[str, Any]:
    """A small profile built from host.json: 30 LUT entries, 4 observations of 6 kernels (calibrated)."""
    from tfcompress.hardware.predict import calibrated
    from tfcompress.hardware.profile import Observation, load_profile

    host = load_profile(HOST)
    entries = host.entries[::28][:30]
    keys = tuple(e.key for e in entries)
    obs = tuple(Observation(f"m{i}", 0.05 + 0.01 * i, keys[i:i + 6]) for i in range(4))
    prof = calibrated(dataclasses.replace(host, entries=entries, observations=obs))
    return prof.to_json()


# ------------------------------------------------------------------ defect 1: names from data


def _edge_doc(**changes: Any) -> dict[str, Any]:
    doc = json.loads(EDGE.read_text())
    doc.update(changes)
    return doc


def test_profile_file_name_is_one_safe_component():
    from tfcompress.hardware.profile import profile_file_name

    for name, expected in (("../../x", "x.json"), ("pi4", "pi4.json"), ("/etc/passwd", "etc_passwd.json"),
                           ("..", "device.json"), ("Google Pixel 7", "Google_Pixel_7.json"),
                           ("a\\b:c", "a_b_c.json"), (".hidden", "hidden.json"), ("x" * 300, "x" * 64 + ".json")):
        got = profile_file_name(name)
        assert got == expected, (name, got)
        assert "/" not in got and not got.startswith(".") and len(got) <= 69


def test_import_device_name_cannot_write_outside_the_folder(tmp_path, monkeypatch):
    from tfcompress.cli import main

    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    (work / "r.json").write_text(json.dumps(_edge_doc(device="../../x")))
    monkeypatch.chdir(work)
    res = CliRunner().invoke(main, ["profile", "--import", "r.json"])
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "x.json").exists(), "wrote outside the working folder"
    assert (work / "x.json").exists()
    assert sorted(p.name for p in tmp_path.rglob("*.json")) == ["r.json", "x.json"]


@pytest.mark.parametrize("device", ["a\x00b", "pi\n4", ""])
def test_nul_and_control_characters_in_names_are_refused(tmp_path, device):
    from tfcompress.hardware.importers import import_measurements

    path = tmp_path / "r.json"
    path.write_text(json.dumps(_edge_doc(device=device)))
    with pytest.raises(TfcompressError, match=r"r\.json: 'device' is not a name"):
        import_measurements(path)
    with pytest.raises(TfcompressError, match="is not a name"):
        import_measurements(EDGE, device=device)


def test_nul_in_a_profile_device_is_a_user_error_on_the_cli(tmp_path):
    from tfcompress.cli import main

    doc = json.loads(HOST.read_text())
    doc["device"] = "host\x00"
    (tmp_path / "p.json").write_text(json.dumps(doc))
    res = CliRunner().invoke(main, ["profile", "--validate", "1", "--profile", str(tmp_path / "p.json")])
    assert res.exit_code == 2 and "is not a name" in res.output and "Traceback" not in res.output


# ------------------------------------------------------------------ defect 2: special files and size caps


def test_inspect_refuses_a_fifo_instead_of_blocking(tmp_path):
    for name in ("pipe.tflite", "pipe"):
        fifo = tmp_path / name
        os.mkfifo(fifo)
        res = _isolated(f"""
            import sys
            from tfcompress.cli import main
            sys.argv = ["tfcompress", "inspect", {str(fifo)!r}]
            main()
        """, timeout=60)
        assert res.returncode == 2, res.stderr[-2000:]
        assert "FIFO" in res.stderr and "hint:" in res.stderr and "Traceback" not in res.stderr


def _refusals_in_a_child(tflite: Path, document: Path, mem_gib: float = 1.5) -> subprocess.CompletedProcess:
    """read_tflite(tflite), load_profile(document), import_measurements(document) in a capped child: what they say."""
    return _isolated(f"""
        from tfcompress.errors import TfcompressError
        from tfcompress.export.tflite_file import read_tflite
        from tfcompress.hardware.profile import load_profile
        from tfcompress.hardware.importers import import_measurements
        for fn, path in ((read_tflite, {str(tflite)!r}), (load_profile, {str(document)!r}),
                         (import_measurements, {str(document)!r})):
            try:
                fn(path)
            except TfcompressError as e:
                print("refused:", e.message)
    """, mem_gib=mem_gib)


def test_reads_through_a_link_to_dev_zero_are_refused(tmp_path):
    zero = tmp_path / "zero.tflite"
    zero.symlink_to("/dev/zero")
    (tmp_path / "zero.json").symlink_to("/dev/zero")
    res = _refusals_in_a_child(zero, tmp_path / "zero.json")
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.count("is a character device") == 3, res.stdout


def test_inspect_cli_on_dev_zero_link_is_a_one_line_error(tmp_path):
    link = tmp_path / "z.tflite"
    link.symlink_to("/dev/zero")
    res = _isolated(f"""
        import sys
        from tfcompress.cli import main
        sys.argv = ["tfcompress", "inspect", {str(link)!r}]
        main()
    """, timeout=60)
    assert res.returncode == 2 and "character device" in res.stderr, res.stderr[-2000:]


def test_files_over_the_cap_are_refused_without_reading_them(tmp_path):
    from tfcompress.export.input_files import MAX_DOCUMENT_BYTES, MAX_TFLITE_BYTES

    big = tmp_path / "big.tflite"
    with open(big, "wb") as f:
        f.truncate(MAX_TFLITE_BYTES + 1)  # sparse: no disk used
    doc = tmp_path / "big.json"
    with open(doc, "wb") as f:
        f.truncate(MAX_DOCUMENT_BYTES + 1)
    res = _refusals_in_a_child(big, doc, mem_gib=1.0)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.count("is larger than") == 3, res.stdout
    assert "2 GiB" in res.stdout and "64 MiB" in res.stdout


def test_reading_stops_at_the_cap_plus_one_byte(tmp_path, monkeypatch):
    """A file that reports a small size but keeps going (a growing file, /proc) is still read only to cap + 1."""
    from tfcompress.export import input_files

    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 1000)
    reads: list[int] = []
    real_read = os.read

    def counting_read(fd, n):
        reads.append(n)
        return real_read(fd, n)

    monkeypatch.setattr(input_files.os, "read", counting_read)
    assert input_files.read_input(path, what="file", cap=1000) == b"x" * 1000
    with pytest.raises(TfcompressError, match="larger than 999 B"):
        input_files.read_input(path, what="file", cap=999)
    assert sum(reads[-1:]) <= 1000


# ------------------------------------------------------------------ defect 3: tracebacks instead of errors


def _csv_with(old: str, new: str, tmp_path: Path) -> Path:
    text = CSV.read_text()
    assert old in text, old
    path = tmp_path / "ops.csv"
    path.write_text(text.replace(old, new))
    return path


_CONV_ROW = "CONV_2D, 0.021, 0.017213, 13.8675%, 13.8675%, 0, 1, [tiny/stem_relu/Relu6;tiny/stem/Conv2D]:0"


@pytest.mark.parametrize("old,new", [
    ("count=7412", "count=1e400"),
    ("avg=124.125", "avg=1e400"),
    ("avg=124.125", "avg=-5"),
    ("avg=124.125", "avg=-e"),
    (_CONV_ROW, _CONV_ROW.replace(" 0, 1, [", " 0, 1e400, [")),
    (_CONV_ROW, _CONV_ROW.replace("0.017213", "1e300")),
    (_CONV_ROW, _CONV_ROW.replace("0.017213", "nan")),
    ("count=7412", "count=7412\nNum threads: [-4]"),
    ("count=7412", "count=7412\nNum threads: [0]"),
    ("count=7412", "count=7412\nNum threads: [" + "9" * 5000 + "]"),
    ("count=7412", "count=7412\nInference timings in us: Init: 1, First inference: 2, Inference (avg): 1e400"),
], ids=["count-1e400", "avg-1e400", "avg-negative", "avg-not-a-number", "times-called-1e400", "row-avg-1e300",
        "row-avg-nan", "threads-minus-4", "threads-0", "threads-5000-digits", "inference-avg-1e400"])
def test_absurd_numbers_in_a_benchmark_model_csv_are_errors_at_import(tmp_path, old, new):
    from tfcompress.hardware.importers import import_measurements

    with pytest.raises(TfcompressError, match=r"ops\.csv:\d+: ") as err:
        import_measurements(_csv_with(old, new, tmp_path), models=[TINY])
    assert "corrupt" in err.value.hint or "corrupt" in err.value.message


def _mutated(doc: dict[str, Any], path: tuple, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    node = doc
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return doc


@pytest.mark.parametrize("path,value", [
    (("kernels", 0, "key"), "CONV_2D"),
    (("kernels", 0, "key", "in_shape"), "abc"),
    (("kernels", 0, "key", "in_shape"), [1.5, 2]),
    (("kernels", 0, "key", "in_shape"), [[1]]),
    (("kernels", 0, "key", "in_shape"), [10**18] * 20),
    (("kernels", 0, "key", "cin"), -(2**40)),
    (("kernels", 0, "key", "kernel"), [3, 3, 3]),
    (("kernels", 0, "key", "op"), 7),
    (("kernels", 0, "ms"), 1e308),
    (("kernels", 0, "runs"), -1),
    (("threads",), -4),
    (("threads",), 10**30),
    (("overhead_ms",), -0.1),
    (("load_average",), -1.0),
])
def test_bad_kernel_keys_and_numbers_in_an_import_are_refused_at_import(tmp_path, path, value):
    """Before: accepted on import, then an OverflowError when predicting, or a profile that no longer loaded."""
    from tfcompress.hardware.importers import import_measurements

    p = tmp_path / "r.json"
    p.write_text(json.dumps(_mutated(json.loads(EDGE.read_text()), path, value)))
    with pytest.raises(TfcompressError, match=r"r\.json: '"):
        import_measurements(p)


@pytest.mark.parametrize("path,value", [
    (("kernels", 0, "key", "kernel"), [-3, 5]),
    (("kernels", 0, "key", "cin"), -1),
    (("kernels", 0, "key", "in_shape"), [2**31 - 1] * 12),
    (("kernels", 0, "key", "in_shape"), []),
    (("kernels", 0, "ms"), 0.0),
    (("overhead_ms",), 1e7),
])
def test_odd_but_valid_imports_are_usable(tmp_path, path, value):
    """What import accepts can be saved, loaded back and predicted with (finite, >= 0)."""
    from tfcompress.hardware.importers import import_measurements, to_profile
    from tfcompress.hardware.profile import load_profile, save_profile

    p = tmp_path / "r.json"
    p.write_text(json.dumps(_mutated(json.loads(EDGE.read_text()), path, value)))
    prof = to_profile(import_measurements(p))
    save_profile(prof, tmp_path / "out.json")
    _usable(load_profile(tmp_path / "out.json"), TINY.read_bytes())


def test_observations_that_contradict_their_kernels_keep_the_profile_usable(tmp_path):
    """0 ms whole models (or kernels that cannot explain them) fall back to the identity calibration, not NaN."""
    from tfcompress.hardware.importers import import_measurements, to_profile

    doc = json.loads(EDGE.read_text())
    key = doc["kernels"][0]["key"]
    doc["models"] = [{"name": f"m{i}", "sha256": "ab" * 32, "ms": 0.0 if i == 0 else 1e7, "kernels": [key]}
                     for i in range(4)]
    for k in doc["kernels"]:
        k["ms"] = 5e-324
    p = tmp_path / "r.json"
    p.write_text(json.dumps(doc))
    prof = to_profile(import_measurements(p))
    assert all(math.isfinite(v) for v in (prof.calibration.scale, prof.calibration.per_op_ms))
    _usable(prof, TINY.read_bytes())


def test_a_tflite_where_a_profile_goes_is_a_user_error(tmp_path):
    from tfcompress.cli import main
    from tfcompress.hardware.predict import predict_latency_ms
    from tfcompress.hardware.profile import load_profile

    with pytest.raises(TfcompressError, match="is a TFLite model, not a device profile"):
        load_profile(TINY)
    with pytest.raises(TfcompressError, match="is a TFLite model, not a device profile"):
        predict_latency_ms(TINY, str(TINY))
    res = CliRunner().invoke(main, ["profile", "--validate", "1", "--profile", str(TINY)])
    assert res.exit_code == 2 and "TFLite model" in res.output


@pytest.mark.parametrize("text", [
    "[" * 100_000,
    '{"schema": "tfcompress.device_profile/1", "entries": ' + "[" * 100_000 + "]" * 100_000 + "}",
    '{"schema": ' + "9" * 5000 + "}",
    '{"schema": "tfcompress.device_profile/1", "overhead_ms": NaN}',
    '{"schema": "tfcompress.edge_result/1", "overhead_ms": -Infinity}',
], ids=["100k-deep-array", "100k-deep-in-a-profile", "5000-digit-integer", "NaN", "-Infinity"])
def test_deep_huge_and_nan_json_documents_are_errors(tmp_path, text):
    from tfcompress.hardware.importers import import_measurements
    from tfcompress.hardware.profile import load_profile

    p = tmp_path / "d.json"
    p.write_text(text)
    for fn in (load_profile, import_measurements):
        with pytest.raises(TfcompressError, match=r"d\.json"):
            fn(p)


def test_a_profile_with_bad_numbers_is_refused_when_loaded(tmp_path, small_profile_doc):
    from tfcompress.hardware.profile import load_profile

    for path, value, match in ((("threads",), -4, "threads"), (("threads",), 0, "threads"),
                               (("calibration", "scale"), -1.0, "calibration.scale"),
                               (("calibration", "per_op_ms"), -1.0, "calibration.per_op_ms"),
                               (("entries", 0, "key", "in_shape"), [10**18] * 20, r"entries\[0\].key.in_shape"),
                               (("observations", 0, "name"), "m\x00", r"observations\[0\].name")):
        p = tmp_path / "p.json"
        p.write_text(json.dumps(_mutated(small_profile_doc, path, value)))
        with pytest.raises(TfcompressError, match=match):
            load_profile(p)


def test_error_messages_quote_a_bad_value_not_the_document(tmp_path, small_profile_doc):
    from tfcompress.hardware.profile import load_profile

    p = tmp_path / "p.json"
    p.write_text(json.dumps(_mutated(small_profile_doc, ("entries", 0, "ms"), "x" * 1_000_000)))
    with pytest.raises(TfcompressError) as err:
        load_profile(p)
    assert len(err.value.message) < 300


def test_saving_a_profile_that_would_not_load_writes_nothing(tmp_path, small_profile_doc):
    from tfcompress.hardware.profile import DeviceProfile, save_profile

    prof = dataclasses.replace(DeviceProfile.from_json(small_profile_doc), overhead_ms=float("nan"))
    with pytest.raises(TfcompressError, match="overhead_ms"):
        save_profile(prof, tmp_path / "p.json")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ the flatbuffer reader's bounds


def _shared_vector_model(n: int) -> bytes:
    """A valid-looking .tflite whose n tensors are one table with an n-element shape: n * n elements to read."""
    import flatbuffers

    from tfcompress.export.tflite_file import schema as s

    b = flatbuffers.Builder(1024)
    s.TensorStartShapeVector(b, n)
    for _ in range(n):
        b.PrependInt32(1)
    shape = b.EndVector()
    s.TensorStart(b)
    s.TensorAddShape(b, shape)
    tensor = b.EndObject()
    s.SubGraphStartTensorsVector(b, n)
    for _ in range(n):
        b.PrependUOffsetTRelative(tensor)
    tensors = b.EndVector()
    s.SubGraphStart(b)
    s.SubGraphAddTensors(b, tensors)
    sg = b.EndObject()
    s.ModelStartSubgraphsVector(b, 1)
    b.PrependUOffsetTRelative(sg)
    sgs = b.EndVector()
    s.BufferStart(b)
    buf = b.EndObject()
    s.ModelStartBuffersVector(b, 1)
    b.PrependUOffsetTRelative(buf)
    bufs = b.EndVector()
    s.ModelStart(b)
    s.ModelAddVersion(b, 3)
    s.ModelAddSubgraphs(b, sgs)
    s.ModelAddBuffers(b, bufs)
    b.Finish(b.EndObject(), file_identifier=b"TFL3")
    return bytes(b.Output())


def test_a_shared_vector_cannot_make_parsing_quadratic(tmp_path):
    small = _shared_vector_model(50)
    from tfcompress.export.tflite_file import read_tflite

    assert len(read_tflite(small).tensors) == 50  # small enough: a (strange) model that reads
    path = tmp_path / "bomb.tflite"
    path.write_bytes(_shared_vector_model(40_000))  # 320 KB; 1.6e9 shape elements if read naively
    t = time.perf_counter()
    res = _isolated(f"""
        from tfcompress.errors import ModelLoadError
        from tfcompress.export.tflite_file import read_tflite
        try:
            read_tflite({str(path)!r})
        except ModelLoadError as e:
            print("refused:", e.message)
    """, timeout=60, mem_gib=1.5)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "more than a file of this size can hold" in res.stdout, res.stdout
    assert time.perf_counter() - t < 30


def test_a_mutated_length_field_does_not_allocate(tflites):
    """Every 32-bit word set to 0x7fffffff in turn: each read is an error or a model, fast, without a big allocation."""
    from tfcompress.export.tflite_file import read_tflite

    data = tflites["mlp"]
    fuzz = _Fuzz("length words of mlp.tflite")
    for off in range(0, len(data) - 4, 4):
        b = bytearray(data)
        b[off:off + 4] = (0x7FFFFFFF).to_bytes(4, "little")
        fuzz.case(f"word {off}", lambda b=bytes(b): read_tflite(b))
    fuzz.check(minimum=len(data) // 4 - 1)


# ------------------------------------------------------------------ fuzz: .tflite bytes


_EXTREME_WORDS = (0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFF, 0x10000, 0x7FFFFFF0)


def _mutate_bytes(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    b = bytearray(data)
    kind = rng.choice(("flip", "word", "word", "truncate", "insert", "delete", "duplicate", "splice", "multi"))
    n = len(b)
    if kind == "flip":
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(n)] ^= 1 << rng.randrange(8)
    elif kind == "word":
        off = rng.randrange(0, n - 4) & ~3
        word = rng.choice(_EXTREME_WORDS + (rng.getrandbits(32), n, n - off, rng.randrange(64)))
        b[off:off + 4] = word.to_bytes(4, "little")
    elif kind == "truncate":
        b = b[:rng.randrange(n)]
    elif kind == "insert":
        off = rng.randrange(n)
        b[off:off] = bytes(rng.getrandbits(8) for _ in range(rng.choice((1, 4, 7, 64))))
    elif kind == "delete":
        off = rng.randrange(n)
        del b[off:off + rng.choice((1, 4, 16, 256))]
    elif kind == "duplicate":
        off = rng.randrange(n)
        b[off:off] = b[off:off + rng.choice((4, 32, 512))]
    elif kind == "splice":
        src, dst = rng.randrange(n), rng.randrange(n)
        chunk = b[src:src + rng.choice((4, 8, 64))]
        b[dst:dst + len(chunk)] = chunk
    else:
        for _ in range(rng.randint(2, 12)):
            off = rng.randrange(0, n - 4) & ~3
            b[off:off + 4] = rng.choice(_EXTREME_WORDS).to_bytes(4, "little")
    return bytes(b), kind


@pytest.mark.slow
def test_fuzz_mutated_tflite_files(tflites):
    from tfcompress.export.tflite_file import read_tflite
    from tfcompress.hardware.kernels import kernels_of
    from tfcompress.hardware.predict import LatencyModel
    from tfcompress.hardware.profile import load_profile
    from tfcompress.inspect import inspect_tflite

    host = LatencyModel(load_profile(HOST))
    fuzz = _Fuzz("mutated .tflite (read_tflite, kernels_of + predict, inspect_tflite)")
    for name, data in tflites.items():
        assert inspect_tflite(data).totals.ops > 0 and kernels_of(data)  # the originals read
        rng = random.Random(f"tflite-{name}")
        for i in range(TFLITE_CASES_PER_MODEL):
            mutated, kind = _mutate_bytes(data, rng)
            label = f"{name} #{i} {kind}"

            def one(b: bytes = mutated) -> None:
                read_tflite(b)
                uses = kernels_of(b)
                pred = host.predict(uses)
                assert math.isfinite(pred.total_ms) and pred.total_ms >= 0, pred.total_ms
                ins = inspect_tflite(b)
                json.dumps(ins.to_dict())

            fuzz.case(label, one)
    fuzz.check(minimum=3 * TFLITE_CASES_PER_MODEL)


# ------------------------------------------------------------------ fuzz: profile documents


_DEEP = "__tfcompress_deep__"


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, prefix + (i,))
    return out


_NASTY = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, -4, 2**31, 2**31 - 1, -(2**31) - 1, 2**63, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e308, -1e308, 5e-324, -0.0, 1e7, 1e7 + 1]),
    st.text(alphabet=st.sampled_from("a.\x00\n/\\\u202e\udcff é"), max_size=12),
    st.sampled_from(["", "../../x", "CONV_2D", "x" * 10_000]),
    st.none(), st.booleans(),
    st.lists(st.integers(min_value=-3, max_value=2**31), max_size=6),
    st.dictionaries(st.sampled_from(["op", "ms", "key", "x"]), st.integers(), max_size=3),
    st.just(_DEEP),
)

_OPS = st.sampled_from(["replace", "replace", "replace", "delete", "extra_key", "wrap", "duplicate"])


def _tree_mutation(doc: Any, path: tuple, op: str, value: Any) -> str:
    """Apply one structural mutation and serialise (NaN/Infinity literals and deep nesting spliced into the text)."""
    doc = copy.deepcopy(doc)
    parent = doc
    for p in path[:-1]:
        parent = parent[p]
    last = path[-1]
    if op == "replace":
        parent[last] = value
    elif op == "delete":
        del parent[last]
    elif op == "extra_key":
        target = parent[last] if isinstance(parent[last], dict) else parent
        if isinstance(target, dict):
            target["unexpected"] = value
        else:
            parent[last] = value
    elif op == "wrap":
        parent[last] = [parent[last]]
    elif op == "duplicate" and isinstance(parent, list):
        parent.insert(last, copy.deepcopy(parent[last]))
    text = json.dumps(doc, allow_nan=True, ensure_ascii=False)
    depth = 100_000 if len(text) % 3 == 0 else 900
    return text.replace(f'"{_DEEP}"', "[" * depth + "]" * depth)


def _write(tmp: Path, name: str, text: str) -> Path:
    p = tmp / name
    p.write_text(text, encoding="utf-8", errors="surrogatepass")
    return p


def _load_and_use(path: Path, round_trip: bool = True) -> None:
    from tfcompress.hardware.profile import load_profile

    _usable(load_profile(path), round_trip=round_trip)


@pytest.mark.slow
def test_fuzz_profile_tree_mutations(tmp_path, small_profile_doc):
    paths = _paths(small_profile_doc)
    fuzz = _Fuzz("profile JSON tree mutations (hypothesis, small profile)")

    @settings(max_examples=SMALL_PROFILE_TREE_CASES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(path=st.sampled_from(paths), op=_OPS, value=_NASTY)
    def run(path, op, value):
        text = _tree_mutation(small_profile_doc, path, op, value)
        fuzz.case(f"{op} {path} = {value!r:.60}", lambda: _load_and_use(_write(tmp_path, "p.json", text)))

    run()
    fuzz.check(minimum=SMALL_PROFILE_TREE_CASES)


def _mutate_text(text: str, rng: random.Random) -> str:
    kind = rng.choice(("cut", "char", "number", "number", "token", "dup", "bytes"))
    n = len(text)
    if kind == "cut":
        return text[:rng.randrange(n)]
    if kind == "char":
        i = rng.randrange(n)
        return text[:i] + rng.choice('{}[]",:0-.eE \x00\\') + text[i + 1:]
    if kind == "number":
        spots = [i for i in range(n) if text[i].isdigit()]
        i = rng.choice(spots)
        return text[:i] + rng.choice(["1e400", "-1", "NaN", "-Infinity", "9" * 5000, "1e-400", "0"]) + text[i + 1:]
    if kind == "token":
        i = rng.randrange(n)
        return text[:i] + rng.choice(["null", "true", "[]", "{}", '"x"', "[" * 5000, "\ud800"]) + text[i:]
    if kind == "dup":
        i, j = sorted(rng.randrange(n) for _ in range(2))
        return text[:j] + text[i:j] + text[j:]
    raw = bytearray(text.encode())
    for _ in range(rng.randint(1, 4)):
        raw[rng.randrange(len(raw))] = rng.randrange(256)
    return raw.decode("utf-8", errors="surrogateescape")


@pytest.mark.slow
def test_fuzz_profile_text_mutations(tmp_path, small_profile_doc):
    base = json.dumps(small_profile_doc, indent=1)
    rng = random.Random("profile-text")
    fuzz = _Fuzz("profile JSON text mutations (seeded, small profile)")
    for i in range(SMALL_PROFILE_TEXT_CASES):
        text = _mutate_text(base, rng)
        p = tmp_path / "p.json"
        p.write_bytes(text.encode("utf-8", errors="surrogatepass"))
        fuzz.case(f"text #{i}", lambda: _load_and_use(p))
    fuzz.check(minimum=SMALL_PROFILE_TEXT_CASES)


@pytest.mark.slow
def test_fuzz_shipped_host_profile(tmp_path):
    doc = json.loads(HOST.read_text())
    base = HOST.read_text()
    paths = _paths(doc)
    rng = random.Random("host")
    fuzz = _Fuzz("host.json tree + text mutations")
    for i in range(HOST_CASES):
        if i % 2:
            text = _mutate_text(base, rng)
        else:
            value = rng.choice([-1, 1e308, "x", None, [], {"a": 1}, 2**40, _DEEP])
            text = _tree_mutation(doc, rng.choice(paths), rng.choice(["replace", "delete", "wrap"]), value)
        p = tmp_path / "host.json"
        p.write_bytes(text.encode("utf-8", errors="surrogatepass"))
        fuzz.case(f"host #{i}", lambda: _load_and_use(p, round_trip=False))
    fuzz.check(minimum=HOST_CASES)


# ------------------------------------------------------------------ fuzz: import documents


def _import_and_use(path: Path, models: list[Any]) -> None:
    from tfcompress.hardware.importers import import_measurements, to_profile

    _usable(to_profile(import_measurements(path, models=models)))


@pytest.mark.slow
@pytest.mark.parametrize("fixture", [EDGE, ANDROID, CSV], ids=["edge_result", "android", "benchmark_model_csv"])
def test_fuzz_import_documents(tmp_path, fixture):
    models = [TINY.read_bytes()] if fixture != EDGE else []
    text = fixture.read_text()
    rng = random.Random(f"import-{fixture.name}")
    fuzz = _Fuzz(f"import {fixture.name}: tree + text mutations")
    doc = json.loads(text) if fixture.suffix == ".json" else None
    paths = _paths(doc) if doc is not None else []
    values = [-4, 0, 1e400, 1e308, -1e-9, 2**40, "x", "\x00", None, [], {"z": 1}, [1.5], _DEEP, "../../x", True]
    for i in range(IMPORT_CASES_PER_FORMAT):
        if doc is not None and i % 2:
            mutated = _tree_mutation(doc, rng.choice(paths), rng.choice(["replace", "replace", "delete", "wrap",
                                                                         "extra_key", "duplicate"]),
                                     rng.choice(values))
        else:
            mutated = _mutate_text(text, rng)
        p = tmp_path / f"{fixture.stem}{fixture.suffix}"
        p.write_bytes(mutated.encode("utf-8", errors="surrogatepass"))
        fuzz.case(f"{fixture.name} #{i}", lambda: _import_and_use(p, models))
    fuzz.check(minimum=IMPORT_CASES_PER_FORMAT)
