"""`tfcompress` command line: a thin layer over the library, one module per family of commands.

Problems with the user's input are `TfcompressError`s: printed as one
`error:` line plus a `hint:` line on stderr, exit code 2, no traceback.
"""

from tfcompress.cli import android, convert, models, profile, search  # noqa: F401  (each registers its commands on `main`)
from tfcompress.cli.app import main

__all__ = ["main"]
