"""Writing outputs so that nothing half-written is ever left on disk.

The rules every writer here keeps:

- A target that exists must be a regular file or a symbolic link to one. A directory, named pipe, device
  node, socket or broken link is refused before any work (`check_writable`, `check_target`) and again right
  before each rename, so tfcompress never renames over one (as root, `-o /dev/null` would otherwise replace
  the device node with a file). A link to a regular file is replaced by the new file; its target is left alone.
- Data goes to a temp file in the target's own folder, named `.NAME.PID.RANDOM.tmp[SUFFIX]`, fsynced, then
  renamed onto the target: a reader sees the old file or the new one, never a part.
- Several files (`write_files_atomically`) are all written, and every target validated, before the first
  rename; then they are renamed in the order given, so the caller puts last the file that readers key on
  (`tfcompress.export.outputs` explains the order for OUT.tflite and its sidecars).
- A writer killed outright (SIGKILL, power loss) can leave only its temp files; the next write to the same
  target removes those whose process is gone (`remove_stale_temps`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from pathlib import Path
from typing import Iterator

from tfcompress.errors import OutputError

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def check_target(path: str | os.PathLike) -> None:
    """Refuse a `path` that exists and is not a regular file (following links).

    Raises:
        OutputError: naming what the path is (a directory, a named pipe, a device, a broken link, ...).
    """
    p = Path(path)
    try:
        mode = os.stat(p).st_mode
    except (FileNotFoundError, NotADirectoryError):  # absent (a parent that is no folder fails the write itself)
        if os.path.islink(p):
            raise OutputError(
                f"output path {p} is a broken symbolic link", "remove the link or choose another output path"
            ) from None
        return
    except OSError as e:
        raise OutputError(f"output path {p} cannot be checked ({e.strerror})", "choose another output path") from None
    if stat.S_ISREG(mode):
        return
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    via = " (through a symbolic link)" if os.path.islink(p) else ""
    hint = (
        "give a file name, e.g. -o model.tflite"
        if stat.S_ISDIR(mode)
        else "tfcompress only replaces regular files: choose another output path"
    )
    raise OutputError(f"output path {p} is {kind}{via}", hint)


def check_writable(path: str | os.PathLike) -> Path:
    """Fail early (before any long work) if `path` cannot be created or replaced; missing parent folders are made.

    Raises:
        OutputError: the directory cannot be made, is not a directory, or is not writable; or `path` exists and
            is not a regular file (`check_target`).
    """
    p = Path(path).expanduser()
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.exists():  # like most tools: -o out/m.tflite makes out/
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(
                f"cannot create the output directory {parent} ({e.strerror or e})", "choose another output path"
            ) from None
    if not parent.is_dir():
        raise OutputError(f"output directory {parent} is not a directory", "choose another output path")
    check_target(p)
    try:
        with tempfile.TemporaryFile(dir=parent, prefix=".tfcompress-probe-"):  # nameless where the OS allows
            pass
    except OSError as e:
        raise OutputError(
            f"output directory {parent} is not writable ({e.strerror})", "choose a writable directory with -o"
        ) from None
    return p


def _temp_for(path: Path, suffix: str = "") -> tuple[int, str]:
    """A new temp file beside `path` (fd, name) that `remove_stale_temps` can attribute to this process."""
    return tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=f".tmp{suffix}")


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove temp files of `path` left by writers that were killed (their process is gone).

    Returns:
        The files removed.
    """
    p = Path(path)
    head = f".{p.name}."
    removed = []
    try:
        entries = list(os.scandir(p.parent if str(p.parent) else "."))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(head) or ".tmp" not in entry.name:
            continue
        pid = entry.name[len(head):].split(".", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        with contextlib.suppress(OSError):
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temp path beside `path` (same suffix) for writers that want a name (e.g. `model.save`).

    The file written there is fsynced and renamed onto `path` when the block ends without error; on
    error it is removed.
    """
    p = Path(path)
    check_target(p)
    remove_stale_temps(p)
    fd, tmp = _temp_for(p, p.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        check_target(p)
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, mode: str = "wb") -> Iterator:
    """Open a temp file beside `path`; rename it onto `path` only on success (`atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, mode) as f:
        yield f


def write_files_atomically(files: dict[Path, bytes]) -> None:
    """Write several files; if a write fails before the renames, none of them is touched.

    Every target is checked (`check_target`) before anything is written and again before the first
    rename; all data goes to fsynced temp files; then the temps are renamed in the order of `files`,
    so the file readers key on goes last.

    Raises:
        OutputError: a target that is not a regular file, or a failed write (with no file renamed), or a
            failed rename (files before it in `files` are already new).
    """
    for path in files:
        check_target(path)
        remove_stale_temps(path)
    tmps: list[tuple[str, Path]] = []
    path = next(iter(files), Path("."))
    try:
        for path, data in files.items():
            fd, tmp = _temp_for(path)
            tmps.append((tmp, path))
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        mode = 0o666 & ~_umask()
        for tmp, path in tmps:
            os.chmod(tmp, mode)  # mkstemp makes 0600; outputs get normal permissions
        for path in files:  # again, just before publishing: the target may have changed during the work
            check_target(path)
        while tmps:
            tmp, path = tmps[0]
            os.replace(tmp, path)
            tmps.pop(0)
    except OSError as e:
        raise OutputError(f"could not write {path}: {e.strerror or e}", "check free space and permissions") from None
    finally:
        for tmp, _ in tmps:  # those not renamed: all of them after a failed write
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    for parent in {p.parent for p in files}:
        _fsync_dir(parent)


def _fsync_dir(path: Path) -> None:
    """Make the renames durable (best effort: not every file system allows opening a directory)."""
    with contextlib.suppress(OSError):
        fd = os.open(path if str(path) else ".", os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha256_of_path(path: str | os.PathLike) -> str:
    """sha256 of a file, or of a directory's files (sorted relative paths + contents)."""
    p = Path(path)
    h = hashlib.sha256()
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    for f in files:
        if p.is_dir():
            h.update(str(f.relative_to(p)).encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()
