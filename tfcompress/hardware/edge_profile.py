"""`python -m tfcompress.hardware.edge_profile DIR`: the device-side profiler's command line.

The script itself is `tfcompress/edge/edge_profile.py`, the bottom layer (it imports
nothing from tfcompress and is copied into every bundle); this module only keeps
the documented `-m` entry point. Nothing in tfcompress imports it.
"""

from tfcompress.edge.edge_profile import main

if __name__ == "__main__":
    raise SystemExit(main())
