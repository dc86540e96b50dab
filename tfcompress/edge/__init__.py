"""What runs on the device: `edge_profile.py`, the standalone timing script copied into every edge bundle.

It imports nothing from tfcompress (only the standard library, numpy and LiteRT), so it is
the bottom layer: `tfcompress.runtime` and `tfcompress.hardware` build on it, never the reverse.
It lives in its own folder so that running it as a script (`python3 tfcompress/edge/edge_profile.py`)
puts no tfcompress module (`inspect.py`, `types.py`) ahead of the standard library on sys.path.
"""
