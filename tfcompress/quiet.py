"""Capture what native code prints, so the terminal shows tfcompress output only.

TensorFlow, the converter and LiteRT write to file descriptors 1 and 2 from
C++; Python's `redirect_stdout` cannot catch that. `captured_output` moves
both descriptors to a nameless temp file for the duration and hands back its text, so
a failure can still quote the converter's own error line. Set
TFCOMPRESS_VERBOSE=1 to see everything.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from typing import Iterator


class CapturedLog:
    """Text captured by `captured_output` (readable during and after the block)."""

    def __init__(self) -> None:
        self.text = ""


@contextlib.contextmanager
def captured_output() -> Iterator[CapturedLog]:
    """Send fd 1 and 2 (Python prints and native logging) to a temp file."""
    log = CapturedLog()
    if os.environ.get("TFCOMPRESS_VERBOSE"):
        yield log
        return
    sys.stdout.flush()
    sys.stderr.flush()
    # Nameless (O_TMPFILE, or unlinked at once where the OS lacks it): no exit path, SIGKILL included,
    # can leave a tfcompress-*.log behind. The text is read back through the descriptor.
    capture = tempfile.TemporaryFile(prefix="tfcompress-", suffix=".log")
    fd = capture.fileno()
    saved = (os.dup(1), os.dup(2))
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield log
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in saved:
            os.close(f)
        with contextlib.suppress(OSError), capture:
            capture.seek(0)
            log.text = capture.read().decode(errors="replace")
