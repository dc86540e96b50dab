"""`Samples`, the validated data, and what is done with it: split, representative batches."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from tfcompress.errors import DataError

__all__ = ["Samples", "representative_dataset", "split"]


@dataclass(frozen=True, eq=False)
class Samples:
    """Validated model inputs, ready for calibration or verification.

    Attributes:
        x: One array per model input, first axis = samples, model dtypes.
        y: Class ids (int64, shape (N,)) or None.
        source: Human description of where the data came from.
        preprocessing: JSON-able record of everything done to the data.
        labels: Class names when known, indexed by class id.
    """

    x: tuple[np.ndarray, ...]
    y: np.ndarray | None
    source: str
    preprocessing: dict[str, Any] = field(default_factory=dict)
    labels: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return int(self.x[0].shape[0]) if self.x else 0

    def take(self, start: int, stop: int) -> Samples:
        """Samples `start:stop`, every array sliced the same way."""
        return replace(
            self,
            x=tuple(a[start:stop] for a in self.x),
            y=None if self.y is None else self.y[start:stop],
        )


def split(samples: Samples, calib: int, verify: int | None) -> tuple[Samples, Samples, dict[str, Any]]:
    """Split into calibration (first `calib`) and verification (next `verify`).

    Args:
        samples: Loaded data.
        calib: Calibration sample count (all samples if fewer exist).
        verify: Verification sample count, or None for all the rest.

    Returns:
        (calibration, verification, info) where info is
        `{"calibration": n, "verification": m, "verification_held_out": bool}`
        (plus "note" when something was not as asked). With no samples left
        after calibration, verification reuses the calibration samples.

    Raises:
        DataError: `calib` < 1 or `verify` < 1.
    """
    if calib < 1:
        raise DataError(f"calibration sample count must be >= 1, got {calib}", "pass a positive number")
    if verify is not None and verify < 1:
        raise DataError(f"verification sample count must be >= 1 or None, got {verify}", "pass a positive number or None")
    total = len(samples)
    n_cal = min(calib, total)
    calibration = samples.take(0, n_cal)
    rest = total - n_cal
    n_ver = rest if verify is None else min(verify, rest)
    notes = [f"only {total} samples, all used for calibration (asked {calib})"] if calib > total else []
    if n_ver >= 1:
        verification = samples.take(n_cal, n_cal + n_ver)
    else:
        verification = calibration if verify is None else calibration.take(0, verify)
        notes.append(f"no samples left after calibration: verification reuses {len(verification)} calibration samples")
    info: dict[str, Any] = {
        "calibration": n_cal,
        "verification": len(verification),
        "verification_held_out": n_ver >= 1,
    }
    if notes:
        info["note"] = "; ".join(notes)
    return calibration, verification, info


def representative_dataset(samples: Samples, batch: int = 1) -> Iterator[list[np.ndarray]]:
    """Yield `[input_1, .., input_n]` batches for `TFLiteConverter.representative_dataset`.

    Use as `converter.representative_dataset = lambda: representative_dataset(calib)`.

    Args:
        samples: Calibration samples (already in the model's dtypes).
        batch: Samples per yielded batch (1 is what the converter expects).

    Yields:
        One list per batch: one array per input with a leading batch axis.
    """
    if batch < 1:
        raise DataError(f"representative batch size must be >= 1, got {batch}", "pass batch=1")
    for start in range(0, len(samples), batch):
        yield [np.ascontiguousarray(a[start : start + batch]) for a in samples.x]
