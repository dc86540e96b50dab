"""Reading the files a user hands us, bounded: regular files only, never more than a size cap.

    data = read_input("model.tflite", what="TFLite model", cap=MAX_TFLITE_BYTES)

A FIFO would block a plain `open()` forever and a link to /dev/zero would be read
until memory runs out, so a path is opened without blocking (links resolved),
refused unless the opened file is a regular file, and read up to `cap` + 1 bytes
(a file growing while it is read, or a /proc file that reports size 0, is still
bounded). Each problem is one `ModelLoadError` line with a hint, like every
other input error.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tfcompress.errors import ModelLoadError

__all__ = ["MAX_TFLITE_BYTES", "MAX_DOCUMENT_BYTES", "read_input", "check_not_special", "size_text"]

MAX_TFLITE_BYTES = 2 << 30
"""Largest .tflite read (2 GiB: the flatbuffer limit; larger models keep weights outside it)."""

MAX_DOCUMENT_BYTES = 64 << 20
"""Largest JSON / CSV document read (profiles, measurement files): 64 MiB, far above any real one."""

_CHUNK = 1 << 20


def size_text(n: int) -> str:
    """'64 MiB', '2 GiB', '812 B'."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.4g} {unit}"
    return f"{n} B"


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def check_not_special(path: str | os.PathLike[str], what: str = "file") -> None:
    """Refuse a path that exists and is a FIFO, device or socket (links resolved); directories pass.

    For readers that take folders too (a SavedModel) before they open anything.
    """
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return  # missing or unreadable: the reader reports it
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise ModelLoadError(f"{path} is {_kind(mode)}, not a {what}", f"pass a regular {what} file")


def read_input(path: str | os.PathLike[str], *, what: str, cap: int, hint: str = "") -> bytes:
    """The bytes of the regular file at `path` (links resolved), at most `cap` of them.

    Raises:
        ModelLoadError: missing, a directory / FIFO / device / socket, unreadable, or larger than `cap`.
    """
    p = Path(path)
    if "\x00" in str(p):
        raise ModelLoadError(f"the {what} path {str(p)!r} contains a NUL byte", "check the path")
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ModelLoadError(f"{what} not found: {p}", "check the path") from None
    except IsADirectoryError:
        raise ModelLoadError(f"{p} is a directory, not a {what}", hint or f"pass the {what} file") from None
    except OSError as exc:
        raise ModelLoadError(f"cannot read {p}: {exc.strerror or exc}", "check the file's permissions") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ModelLoadError(f"{p} is {_kind(info.st_mode)}, not a {what}", hint or f"pass a regular {what} file")
        too_big = ModelLoadError(
            f"{p} is larger than {size_text(cap)}, the limit for a {what}",
            hint or f"pass the {what} itself; nothing this large is one",
        )
        if info.st_size > cap:
            raise too_big
        chunks: list[bytes] = []
        left = cap + 1
        while left > 0:
            try:
                chunk = os.read(fd, min(_CHUNK, left))
            except OSError as exc:
                raise ModelLoadError(f"cannot read {p}: {exc.strerror or exc}", "check the file") from None
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        if left <= 0:
            raise too_big
        return b"".join(chunks)
    finally:
        os.close(fd)
