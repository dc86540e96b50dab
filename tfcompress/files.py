"""Writing outputs so that nothing half-written is ever left on disk."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from tfcompress.errors import OutputError


def check_writable(path: str | os.PathLike) -> Path:
    """Fail early (before any long work) if `path` cannot be created.

    Raises:
        OutputError: the directory is missing, not a directory, or not writable.
    """
    p = Path(path).expanduser()
    parent = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise OutputError(f"output path {p} is a directory", "give a file name, e.g. -o model.tflite")
    if not parent.exists():
        raise OutputError(f"output directory {parent} does not exist", f"create it first: mkdir -p {parent}")
    if not parent.is_dir():
        raise OutputError(f"output directory {parent} is not a directory", "choose another output path")
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".tfcompress-probe-"):
            pass
    except OSError as e:
        raise OutputError(
            f"output directory {parent} is not writable ({e.strerror})", "choose a writable directory with -o"
        ) from None
    return p


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, mode: str = "wb") -> Iterator:
    """Open a temp file beside `path`; rename it onto `path` only on success."""
    p = Path(path)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get normal permissions
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_files_atomically(files: dict[Path, bytes]) -> None:
    """Write several files; if any write fails, none of them is left behind.

    Each goes to a temp file first; all are renamed at the end.
    """
    tmps: list[tuple[str, Path]] = []
    try:
        for path, data in files.items():
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            tmps.append((tmp, path))
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        mode = 0o666 & ~_umask()
        for tmp, path in tmps:
            os.chmod(tmp, mode)  # mkstemp makes 0600; outputs get normal permissions
            os.replace(tmp, path)
    except OSError as e:
        for tmp, _ in tmps:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise OutputError(f"could not write {path}: {e.strerror or e}", "check free space and permissions") from None


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
