"""The package version, importable by inner modules without the `tfcompress` facade."""

__version__ = "0.1.0"
