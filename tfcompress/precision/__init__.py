"""Per-op precision: which ops int8 hurts (`sensitivity`), and per-op choices of precision."""

from tfcompress.precision.sensitivity import OpSensitivity, Quality, SensitivityReport, analyze

__all__ = ["OpSensitivity", "Quality", "SensitivityReport", "analyze"]
