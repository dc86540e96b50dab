"""`python -m tfcompress.cli`."""

from tfcompress.cli import main

main()
