"""Kill tfcompress (SIGKILL) at chosen and at random points; what is on disk must stay sane (issue 12).

The invariant after every kill (`tfcompress.export.outputs` documents it): OUT.tflite is the old one or a
new one, whole; a new .tflite only ever sits beside its own two sidecars (the hashes in OUT.meta.json agree,
so `output_set_problems` is empty); a kill between two renames leaves the old .tflite with new sidecar(s),
which `output_set_problems` reports; the only other files are temp files of the killed process, and a rerun
removes them and publishes a complete set. No `tfcompress-*.log` is ever left in the temp dir.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tfcompress.cli import main
from tfcompress.export.outputs import sidecar_paths

# The child: runs the CLI (or write_outputs alone) and SIGKILLs itself right before the rename number
# ADV_KILL_AT_RENAME into ADV_OUT_DIR (0 = before the first) or at fsync number ADV_KILL_AT_FSYNC there.
RUNNER = r'''
import json, os, signal, sys
out_dir = os.path.realpath(os.environ["ADV_OUT_DIR"])
kill_rename = int(os.environ.get("ADV_KILL_AT_RENAME", "-1"))
kill_fsync = int(os.environ.get("ADV_KILL_AT_FSYNC", "-1"))
count = {"rename": 0, "fsync": 0}
real_replace, real_fsync = os.replace, os.fsync

def in_out_dir(path):
    return os.path.dirname(os.path.realpath(path)) == out_dir

def replace(src, dst, *a, **k):
    if in_out_dir(dst):
        if count["rename"] == kill_rename:
            os.kill(os.getpid(), signal.SIGKILL)
        count["rename"] += 1
    return real_replace(src, dst, *a, **k)

def fsync(fd):
    if in_out_dir(os.readlink(f"/proc/self/fd/{fd}")):
        if count["fsync"] == kill_fsync:
            os.kill(os.getpid(), signal.SIGKILL)
        count["fsync"] += 1
    return real_fsync(fd)

os.replace, os.fsync = replace, fsync
if sys.argv[1] == "write":  # write_outputs alone: ARGS = write SRC_DIR OUT (SRC_DIR holds a published set)
    from pathlib import Path
    from tfcompress.export.outputs import sidecar_paths, write_outputs
    src, out = Path(sys.argv[2]), Path(sys.argv[3])
    report, meta = (json.loads(p.read_text()) for p in sidecar_paths(src / out.name))
    class Report:
        def to_dict(self):
            return report
    write_outputs(out, (src / out.name).read_bytes(), Report(), meta)
else:
    from tfcompress.cli import main
    main(sys.argv[1:], prog_name="tfcompress")
'''


def _names(out: Path) -> list[str]:
    return [out.name, *(p.name for p in sidecar_paths(out))]


def _snapshot(out: Path) -> dict[str, bytes]:
    return {n: (out.parent / n).read_bytes() for n in _names(out)}


def pairing_problems(out: Path) -> list[str]:
    """The test's own reading of the pairing rule: OUT.meta.json's hashes are those of the files beside it."""
    report_path, meta_path = sidecar_paths(out)
    meta = json.loads(meta_path.read_text())
    problems = []
    for key, path in (("model_sha256", out), ("report_sha256", report_path)):
        if meta.get(key) != hashlib.sha256(path.read_bytes()).hexdigest():
            problems.append(f"{key} of {meta_path.name} is not that of {path.name}")
    return problems


def check_invariant(out: Path, old: dict[str, bytes], killed_pid: int | None) -> str:
    """'old', 'new' or 'partial' (old .tflite, new sidecar(s)); fails on anything else."""
    names = _names(out)
    for p in out.parent.iterdir():
        if p.name in names:
            continue
        owner = next((n for n in names if p.name.startswith(f".{n}.{killed_pid}.") and p.name.endswith(".tmp")), None)
        assert killed_pid is not None and owner, f"stray file {p.name} in the output dir"
    missing = [n for n in names if not (out.parent / n).is_file()]
    assert not missing, f"missing {missing} (the old set was complete)"
    now = _snapshot(out)
    if now == old:
        return "old"
    problems = pairing_problems(out)
    if not problems:
        assert now[out.name] != old[out.name]
        return "new"
    assert now[out.name] == old[out.name], f"a new .tflite beside an old sidecar: {problems}"
    assert now[names[2]] != old[names[2]] or now[names[1]] != old[names[1]]
    return "partial"


def _assert_rerun_heals(out: Path, rerun) -> None:
    rerun()
    assert pairing_problems(out) == []
    assert sorted(p.name for p in out.parent.iterdir()) == sorted(_names(out)), "temp files left after a rerun"


def _child(args: list[str], out_dir: Path, tmpdir: Path, **kill: int) -> subprocess.Popen:
    env = {**os.environ, "ADV_OUT_DIR": str(out_dir), "TMPDIR": str(tmpdir), "TF_CPP_MIN_LOG_LEVEL": "3",
           **{f"ADV_KILL_AT_{k.upper()}": str(v) for k, v in kill.items()}}
    return subprocess.Popen([sys.executable, "-c", RUNNER, *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _killed_after(delay: float, args: list[str], out: Path, old: dict[str, bytes], tmpdir: Path) -> str:
    """Run the CLI in a child, SIGKILL it after `delay` s (if still running); the invariant's verdict."""
    proc = _child(args, out.parent, tmpdir)
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=600)
    state = check_invariant(out, old, proc.pid)
    _no_logs_left(tmpdir)
    return state


def _no_logs_left(tmpdir: Path) -> None:
    assert not list(tmpdir.glob("tfcompress-*.log")), "captured-output logs left behind"


# --- captured_output: nothing left on any exit path -------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_captured_output_leaves_no_log_when_killed(tmp_path, sig):
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    code = (
        "import os, signal\n"
        "from tfcompress.quiet import captured_output\n"
        "with captured_output():\n"
        "    print('inside', flush=True); os.write(2, b'native\\n')\n"
        f"    os.kill(os.getpid(), {int(sig)})\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "TMPDIR": str(tmpdir)}, timeout=60)
    assert proc.returncode == -sig
    assert list(tmpdir.iterdir()) == []


def test_captured_output_still_returns_the_text(tmp_path, monkeypatch):
    from tfcompress.quiet import captured_output

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.delenv("TFCOMPRESS_VERBOSE", raising=False)
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    with captured_output() as log:
        os.write(1, b"from native code\n")
        os.write(2, b"and its errors\n")
    assert log.text == "from native code\nand its errors\n"
    assert list(tmp_path.iterdir()) == []


# --- write_outputs alone: a kill at every publication step (fast: no TensorFlow in the child) --------------


@pytest.fixture(scope="module")
def two_sets(tiny_files, tmp_path_factory):
    """Two complete, different published sets of the same tiny model (int8 and dynamic), and the inputs."""
    d = tmp_path_factory.mktemp("crash")
    for name in ("m.keras", "d.npz"):
        shutil.copy2(tiny_files / name, d / name)
    for mode in ("dynamic", "int8"):
        (d / mode).mkdir()
        r = CliRunner().invoke(main, _convert_args(d, d / mode / "m.tflite") + ["--mode", mode])
        assert r.exit_code == 0, r.output
    return d


def _convert_args(d: Path, out: Path) -> list[str]:
    return ["convert", str(d / "m.keras"), "--data", str(d / "d.npz"), "-o", str(out), "--no-verify", "--device", "none"]


def _old_set(two_sets: Path, dest: Path) -> tuple[Path, dict[str, bytes]]:
    dest.mkdir()
    out = dest / "m.tflite"
    for n in _names(out):
        shutil.copy2(two_sets / "dynamic" / n, dest / n)
    return out, _snapshot(out)


@pytest.mark.parametrize("kill", [{"fsync": 0}, {"fsync": 2}, {"rename": 0}, {"rename": 1}, {"rename": 2}, {}],
                         ids=["mid-write", "all-written", "before-renames", "after-report", "after-meta", "no-kill"])
def test_write_outputs_killed_at_each_step(two_sets, tmp_path, kill):
    out, old = _old_set(two_sets, tmp_path / "out")
    proc = _child(["write", str(two_sets / "int8"), str(out)], out.parent, tmp_path, **kill)
    log = proc.communicate(timeout=120)[0].decode(errors="replace")
    assert proc.returncode == (-signal.SIGKILL if kill else 0), log
    expected = {"fsync": "old", "rename": ["old", "partial", "partial"][kill.get("rename", 0)]}
    state = check_invariant(out, old, proc.pid)
    assert state == (expected[next(iter(kill))] if kill else "new")
    if state == "partial":
        from tfcompress.export.outputs import output_set_problems

        assert output_set_problems(out), "the library reports the partial state too"

    def rerun():
        r = _child(["write", str(two_sets / "int8"), str(out)], out.parent, tmp_path)
        assert r.wait(timeout=120) == 0

    _assert_rerun_heals(out, rerun)
    assert _snapshot(out) == _snapshot(two_sets / "int8" / "m.tflite")


# --- `tfcompress convert` killed between publications (deterministic) and at random points (slow) --------


@pytest.mark.slow
def test_convert_killed_between_publications(two_sets, tmp_path):
    """Three CLI runs at once, each SIGKILLed right before its 1st, 2nd and 3rd rename."""
    runs = []
    for n in range(3):
        out, old = _old_set(two_sets, tmp_path / f"k{n}")
        tmpdir = tmp_path / f"tmp{n}"
        tmpdir.mkdir()
        runs.append((out, old, tmpdir, _child(_convert_args(two_sets, out), out.parent, tmpdir, rename=n)))
    for n, (out, old, tmpdir, proc) in enumerate(runs):
        log = proc.communicate(timeout=300)[0].decode(errors="replace")
        assert proc.returncode == -signal.SIGKILL, log
        assert check_invariant(out, old, proc.pid) == ["old", "partial", "partial"][n]
        _no_logs_left(tmpdir)
        _assert_rerun_heals(out, lambda: _cli_ok(two_sets, out))


def _cli_ok(two_sets: Path, out: Path) -> None:
    r = CliRunner().invoke(main, _convert_args(two_sets, out))
    assert r.exit_code == 0, r.output
    assert json.loads(sidecar_paths(out)[1].read_text())["mode"] == "int8"


@pytest.mark.slow
def test_convert_killed_at_random_points(two_sets, tmp_path):
    """10 seeded delays spread over a run's duration; the invariant holds after each, a rerun heals."""
    out, old = _old_set(two_sets, tmp_path / "timing")
    t0 = time.perf_counter()
    proc = _child(_convert_args(two_sets, out), out.parent, tmp_path)
    assert proc.wait(timeout=300) == 0
    duration = time.perf_counter() - t0
    assert check_invariant(out, old, None) == "new"
    rng = random.Random(12)
    states = []
    for i, delay in enumerate(sorted(rng.uniform(0.1, 1.05) * duration for _ in range(10))):
        out, old = _old_set(two_sets, tmp_path / f"r{i}")
        tmpdir = tmp_path / f"tmp{i}"
        tmpdir.mkdir()
        states.append(_killed_after(delay, _convert_args(two_sets, out), out, old, tmpdir))
        _assert_rerun_heals(out, lambda: _cli_ok(two_sets, out))
    print(f"run {duration:.1f} s; states after kills: {states}")
    assert "old" in states


# --- `tfcompress compress --backup-dir` killed at random points (slow): outputs sane, the rerun resumes ------


@pytest.mark.slow
def test_compress_killed_between_publications_and_at_random_points_then_resumes(two_sets, tmp_path):
    """Kills right before each publication rename, then six seeded kills at random points (training, checkpoint
    saves, conversion, publication); every rerun with the same --backup-dir must finish (resuming or redoing a
    stage, never a traceback) and publish a complete set."""
    rng = np.random.default_rng(1)
    data = tmp_path / "train.npz"
    np.savez(data, x=rng.random((64, 8), dtype=np.float32), y=rng.integers(0, 4, 64))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "name: crash\nstages:\n"
        "  - {technique: prune, epochs: 2, batch_size: 16}\n"
        "  - {technique: cluster, epochs: 1, batch_size: 16,\n"
        "     params: {clusters: 4, min_weights: 8, preserve_sparsity: true}}\n"
    )

    def args(out: Path, backup: Path) -> list[str]:
        return ["compress", str(two_sets / "m.keras"), "--recipe", str(recipe), "--data", str(data), "-o", str(out),
                "--backup-dir", str(backup), "--device", "none", "--no-stage-metrics"]

    for n in range(3):  # SIGKILLed right before its 1st, 2nd and 3rd publication rename; the rerun resumes
        out, old = _old_set(two_sets, tmp_path / f"p{n}")
        tmpdir = tmp_path / f"ptmp{n}"
        tmpdir.mkdir()
        proc = _child(args(out, tmp_path / f"pbackup{n}"), out.parent, tmpdir, rename=n)
        assert proc.wait(timeout=600) == -signal.SIGKILL, proc.communicate()[0][-2000:]
        assert check_invariant(out, old, proc.pid) == ["old", "partial", "partial"][n]
        _no_logs_left(tmpdir)
        rerun = CliRunner().invoke(main, args(out, tmp_path / f"pbackup{n}"))
        assert rerun.exit_code == 0, rerun.output
        assert pairing_problems(out) == []

    out, old = _old_set(two_sets, tmp_path / "timing")
    t0 = time.perf_counter()
    proc = _child(args(out, tmp_path / "timing-backup"), out.parent, tmp_path)
    assert proc.wait(timeout=600) == 0, proc.communicate()[0][-2000:]
    duration = time.perf_counter() - t0
    assert check_invariant(out, old, None) == "new"
    states = []
    for i, delay in enumerate(sorted(random.Random(7).uniform(0.5, 1.02) * duration for _ in range(6))):
        out, old = _old_set(two_sets, tmp_path / f"c{i}")
        backup, tmpdir = tmp_path / f"backup{i}", tmp_path / f"ctmp{i}"
        tmpdir.mkdir()
        states.append(_killed_after(delay, args(out, backup), out, old, tmpdir))
        rerun = CliRunner().invoke(main, args(out, backup))
        assert rerun.exit_code == 0, rerun.output
        assert pairing_problems(out) == [] and "Traceback" not in rerun.output
        assert sorted(p.name for p in out.parent.iterdir()) == sorted(_names(out)), "temp files left after a rerun"
    print(f"compress run {duration:.1f} s; states after kills: {states}")
