"""Outputs a careless user or an attacker points at: pipes, directories, links, foreign backups (issue 12).

Every target here is made in a tmp dir (never a real device node: as root, the old code replaced it).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tfcompress.cli import main
from tfcompress.errors import OutputError, TfcompressError
from tfcompress.export.outputs import sidecar_paths, write_outputs


@pytest.fixture(scope="module")
def tiny(tiny_files):
    """The tiny saved model's folder (tiny_files) and one in-memory conversion of it."""
    import tfcompress

    d = tiny_files
    converted = tfcompress.convert(d / "m.keras", d / "d.npz", verify=False, device=None)
    return d, converted


@pytest.fixture()
def odd_dir(tmp_path_factory):
    """A tmp dir outside `tmp_path`: conftest reads every *.report.json under `tmp_path`, and one here is a pipe."""
    return tmp_path_factory.mktemp("odd")


def _convert_cli(tiny, out) -> object:
    d, _ = tiny
    return CliRunner().invoke(main, ["convert", str(d / "m.keras"), "--data", str(d / "d.npz"), "-o", str(out),
                                     "--no-verify", "--device", "none"])


def _refused(result, words: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "error:" in result.output and words in result.output, result.output
    assert "Traceback" not in result.output


def test_fifo_output_is_refused_and_left_alone(tiny, tmp_path):
    fifo = tmp_path / "out.tflite"
    os.mkfifo(fifo)
    _refused(_convert_cli(tiny, fifo), "is a named pipe")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode), "the pipe was replaced"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tflite"]


def test_symlink_to_fifo_is_refused_and_left_alone(tiny, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    link = tmp_path / "out.tflite"
    link.symlink_to(fifo)
    _refused(_convert_cli(tiny, link), "named pipe (through a symbolic link)")
    assert link.is_symlink() and stat.S_ISFIFO(os.stat(link).st_mode)


def test_directory_output_is_refused(tiny, tmp_path):
    (tmp_path / "out.tflite").mkdir()
    _refused(_convert_cli(tiny, tmp_path / "out.tflite"), "is a directory")


@pytest.mark.parametrize("sidecar, make", [("report", "dir"), ("meta", "dir"), ("report", "fifo"), ("meta", "fifo")])
def test_sidecar_that_is_not_a_file_refuses_the_whole_set_before_work(tiny, odd_dir, sidecar, make):
    """OUT.report.json as a directory used to leave an orphan OUT.tflite; a pipe there was renamed over."""
    tmp_path = odd_dir
    out = tmp_path / "out.tflite"
    target = dict(zip(("report", "meta"), sidecar_paths(out)))[sidecar]
    target.mkdir() if make == "dir" else os.mkfifo(target)
    _refused(_convert_cli(tiny, out), target.name)
    assert not out.exists(), "orphan .tflite written"
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]
    assert stat.S_ISDIR(os.lstat(target).st_mode) if make == "dir" else stat.S_ISFIFO(os.lstat(target).st_mode)


def test_target_turned_into_a_pipe_during_the_work_is_not_renamed_over(tiny, tmp_path):
    """Checked before the work and again right before the first rename: nothing is published."""
    from tfcompress.files import check_writable

    _, conv = tiny
    out = check_writable(tmp_path / "out.tflite")
    meta = sidecar_paths(out)[1]
    os.mkfifo(meta)  # appears while converting
    with pytest.raises(OutputError, match="named pipe"):
        write_outputs(out, conv.tflite, conv.report, conv.meta)
    assert stat.S_ISFIFO(os.lstat(meta).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == [meta.name], "a file was published or a temp left"


def test_link_to_a_regular_file_is_replaced_and_its_target_kept(tiny, tmp_path):
    from tfcompress.files import check_writable

    _, conv = tiny
    target = tmp_path / "elsewhere.bin"
    target.write_bytes(b"keep me")
    out = tmp_path / "out.tflite"
    out.symlink_to(target)
    write_outputs(check_writable(out), conv.tflite, conv.report, conv.meta)
    assert not out.is_symlink() and out.read_bytes() == conv.tflite
    assert target.read_bytes() == b"keep me"


def test_publication_order_and_hashes(tiny, tmp_path, monkeypatch):
    """Sidecars first, .tflite last; the meta pairs the set by sha256."""
    from tfcompress.export.outputs import output_set_problems

    _, conv = tiny
    out = tmp_path / "out.tflite"
    renamed: list[str] = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (renamed.append(Path(dst).name), real(src, dst))[1])
    report_path, meta_path = write_outputs(out, conv.tflite, conv.report, conv.meta)
    assert renamed == ["out.report.json", "out.meta.json", "out.tflite"]
    meta = json.loads(meta_path.read_text())
    assert list(meta)[:4] == ["schema", "model_file", "model_sha256", "report_sha256"]
    assert output_set_problems(out) == []
    report_path.write_text(report_path.read_text() + " ")
    assert output_set_problems(out) == ["out.meta.json report_sha256 does not match out.report.json"]
    out.write_bytes(conv.tflite + b"\0")
    assert len(output_set_problems(out)) == 2


def test_stale_temps_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    from tfcompress.files import remove_stale_temps

    out = tmp_path / "out.tflite"
    dead = tmp_path / ".out.tflite.999999999.abc.tmp"  # pid beyond pid_max: no such process
    live = tmp_path / f".out.tflite.{os.getppid()}.abc.tmp"
    other = tmp_path / ".other.tflite.999999999.abc.tmp"
    for p in (dead, live, other):
        p.write_bytes(b"x")
    assert remove_stale_temps(out) == [dead]
    assert live.exists() and other.exists()


def test_probe_leaves_no_file(tmp_path):
    from tfcompress.export.outputs import check_outputs

    check_outputs(tmp_path / "out.tflite")
    assert list(tmp_path.iterdir()) == []


def test_demo_out_pointing_at_a_file_is_a_clear_error(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    _refused(CliRunner().invoke(main, ["demo", "--out", str(f), "--epochs", "1"]), "is not a folder")
    assert f.read_text() == "x"


def test_demo_checks_its_outputs_before_training(odd_dir, monkeypatch):
    import tfcompress.demo as demo

    tmp_path = odd_dir
    monkeypatch.setattr(demo, "train_fmnist_cnn", lambda *a, **k: pytest.fail("trained before checking outputs"))
    (tmp_path / "fmnist_cnn_int8.report.json").mkdir()
    _refused(CliRunner().invoke(main, ["demo", "--out", str(tmp_path)]), "fmnist_cnn_int8.report.json is a directory")


# --- compress --backup-dir: atomic checkpoints keyed by model + recipe + data -------------------------------


@pytest.fixture()
def identity_technique():
    """A technique that changes nothing (so a stage costs no training) registered for the test."""
    from tfcompress.techniques import Technique, register_technique, unregister_technique

    from pydantic import BaseModel, ConfigDict

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)
        tag: int = 0

    register_technique(Technique(name="adv_identity", summary="no-op (test)", params_type=Params,
                                 apply=lambda model, params, rules, ctx: model))
    yield "adv_identity"
    unregister_technique("adv_identity")


def _compress(tiny, backup, tag=0, data=None, **kwargs):
    from tfcompress.compression import compress
    from tfcompress.recipe import parse_recipe_dict

    d, _ = tiny
    recipe = parse_recipe_dict({"name": "adv", "stages": [{"technique": "adv_identity", "params": {"tag": tag}},
                                                          {"technique": "convert", "params": {"calib_samples": 8}}]})
    x = np.random.default_rng(1).random((20, 8), dtype=np.float32)
    data = data if data is not None else (x, np.arange(20) % 4)
    return compress(kwargs.pop("model", d / "m.keras"), recipe, data, backup_dir=backup, verify=False,
                    measure_stages=False, device=None, **kwargs)


def test_backup_made_by_another_recipe_model_or_data_is_refused(tiny, tmp_path, identity_technique):
    from tfcompress.keras_compat import tf_keras

    backup = tmp_path / "bk"
    _compress(tiny, backup)
    assert (backup / "stage0_adv_identity.done.keras").is_file()
    _compress(tiny, backup)  # the same run resumes
    with pytest.raises(TfcompressError, match="made by another recipe") as e:
        _compress(tiny, backup, tag=1)
    assert "fresh --backup-dir" in e.value.hint and "\n" not in str(e.value)
    other = tf_keras.Sequential([tf_keras.layers.Input((8,)), tf_keras.layers.Dense(4)])
    other.save(tmp_path / "other.keras")
    with pytest.raises(TfcompressError, match="made by another model"):
        _compress(tiny, backup, model=tmp_path / "other.keras")
    x = np.random.default_rng(1).random((30, 8), dtype=np.float32)
    with pytest.raises(TfcompressError, match="made by data of other shapes"):
        _compress(tiny, backup, data=(x, np.arange(30) % 4))
    key = json.loads((backup / "tfcompress-backup.json").read_text())
    assert key["schema"] == "tfcompress.backup/1" and len(key["fingerprint"]) == 64


def test_backup_with_checkpoints_of_unknown_origin_is_refused(tiny, tmp_path, identity_technique):
    backup = tmp_path / "bk"
    backup.mkdir()
    (backup / "stage0_adv_identity.done.keras").write_bytes(b"from somewhere else")
    with pytest.raises(TfcompressError, match="no tfcompress-backup.json"):
        _compress(tiny, backup)


def test_truncated_checkpoint_is_ignored_with_one_warning_and_the_stage_rerun(tiny, tmp_path, identity_technique):
    backup = tmp_path / "bk"
    _compress(tiny, backup)
    done = backup / "stage0_adv_identity.done.keras"
    done.write_bytes(done.read_bytes()[:100])
    warned: list[str] = []
    result = _compress(tiny, backup, on_warning=warned.append)
    assert len(warned) == 1 and "unreadable" in warned[0] and str(done) in warned[0]
    assert result.convert.tflite
    from tfcompress.keras_compat import tf_keras

    tf_keras.models.load_model(done, compile=False)  # re-made whole


def test_truncated_checkpoint_via_cli_is_a_warning_line_not_a_traceback(tiny, tmp_path, identity_technique):
    d, _ = tiny
    backup = tmp_path / "bk"
    x = np.random.default_rng(1).random((20, 8), dtype=np.float32)
    np.savez(tmp_path / "train.npz", x=x, y=np.arange(20) % 4)
    (tmp_path / "r.yaml").write_text("name: adv\nstages:\n  - technique: adv_identity\n")
    args = ["compress", str(d / "m.keras"), "--recipe", str(tmp_path / "r.yaml"), "--data", str(tmp_path / "train.npz"),
            "-o", str(tmp_path / "m.tflite"), "--backup-dir", str(backup), "--no-stage-metrics", "--device", "none"]
    assert CliRunner().invoke(main, args).exit_code == 0
    done = backup / "stage0_adv_identity.done.keras"
    done.write_bytes(b"PK\x03\x04 truncated")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, (result.output, result.exception)
    assert [ln for ln in result.output.splitlines() if "warning:" in ln] == [
        ln for ln in result.output.splitlines() if "unreadable" in ln
    ] and "warning:" in result.output
    from tfcompress.export.outputs import output_set_problems

    assert output_set_problems(tmp_path / "m.tflite") == []


def test_checkpoint_is_written_atomically(tiny, tmp_path, identity_technique, monkeypatch):
    """A save that dies half-way leaves no checkpoint under the final name (and no temp file)."""
    from tfcompress.keras_compat import tf_keras

    def dying_save(self, path, *a, **k):
        Path(path).write_bytes(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(tf_keras.Model, "save", dying_save)
    backup = tmp_path / "bk"
    with pytest.raises(KeyboardInterrupt):
        _compress(tiny, backup)
    assert sorted(p.name for p in backup.iterdir()) == ["tfcompress-backup.json"]
