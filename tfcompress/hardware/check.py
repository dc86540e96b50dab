"""Does a profile fit this machine? Re-time a sample of its kernels here and compare (`tfcompress profile --check`).

    check = check_profile("host")           # ~20 one-op models converted, then a few seconds of timing
    check.fits, check.median_ratio, check.within_10pct, check.busy

A profile measured on another machine predicts this one only if its kernels take here what they took there. The
check picks `n` of the profile's kernels spread over its latency range (evenly spaced in rank of ms, from 10 us
up: shorter ones are mostly timer noise), converts their one-op models, times them and the per-invoke overhead
under the timing protocol, and compares each with the profile's value. The profile fits when the median ratio
measured / profile is within `FIT_MEDIAN` of 1 and at least `FIT_SHARE` of the kernels are within ±10%.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tfcompress.hardware.kernels import KernelKey
from tfcompress.hardware.measure import kernel_tflite, overhead_model_bytes, time_tflites
from tfcompress.hardware.ops import MEASURABLE_OPS
from tfcompress.hardware.profile import DeviceProfile, LutEntry

__all__ = ["FIT_MEDIAN", "FIT_SHARE", "MIN_MS", "KernelCheck", "ProfileCheck", "pick_kernels", "check_profile",
           "rescaled"]

FIT_MEDIAN = 0.05
FIT_SHARE = 0.8
MIN_MS = 0.01


@dataclass(frozen=True)
class KernelCheck:
    key: KernelKey
    profile_ms: float
    measured_ms: float  # overhead (measured here) subtracted
    spread_ms: float

    @property
    def ratio(self) -> float:
        return self.measured_ms / self.profile_ms


@dataclass(frozen=True)
class ProfileCheck:
    device: str
    kernels: tuple[KernelCheck, ...]
    profile_overhead_ms: float
    measured_overhead_ms: float
    busy: bool  # other processes used the CPU while timing: no verdict

    @property
    def median_ratio(self) -> float:
        return float(np.median([k.ratio for k in self.kernels])) if self.kernels else float("nan")

    @property
    def within_10pct(self) -> float:
        return float(np.mean([abs(k.ratio - 1) <= 0.10 for k in self.kernels])) if self.kernels else 0.0

    @property
    def fits(self) -> bool:
        return (not self.busy and bool(self.kernels) and abs(self.median_ratio - 1) <= FIT_MEDIAN
                and self.within_10pct >= FIT_SHARE)


def pick_kernels(profile: DeviceProfile, n: int) -> list[LutEntry]:
    """`n` measurable entries of at least MIN_MS, evenly spaced in rank of their latency (deterministic)."""
    usable = sorted((e for e in profile.entries if e.key.op in MEASURABLE_OPS and e.ms >= MIN_MS),
                    key=lambda e: (e.ms, e.key.digest()))
    if len(usable) <= n:
        return usable
    return [usable[int(i)] for i in np.linspace(0, len(usable) - 1, n).round().astype(int)]


def check_profile(
    profile: DeviceProfile, n: int = 20, *, on_progress: Callable[[int, int, str], None] | None = None
) -> ProfileCheck:
    """Time `n` of the profile's kernels here (its thread count) and compare them with its values.

    Raises:
        TfcompressError: the profile has no kernel this machine can time (e.g. imported from another runtime).
    """
    from tfcompress.errors import TfcompressError

    picked = pick_kernels(profile, n)
    if not picked:
        raise TfcompressError(f"profile {profile.device!r} has no kernel of {MIN_MS} ms or more that can be timed here",
                              "check it with --validate instead, or rebuild it: tfcompress profile -o my.json")
    contents = [overhead_model_bytes()]
    for i, e in enumerate(picked, 1):
        contents.append(kernel_tflite(e.key))
        if on_progress is not None:
            on_progress(i, len(picked), f"converted {e.key.op.lower()}")
    timings = time_tflites(contents, threads=profile.threads, runs=60, budget_s=0.6, chunk=len(contents))
    overhead = timings[0].median_ms
    checks = tuple(KernelCheck(e.key, e.ms, max(t.median_ms - overhead, 0.0), t.spread_ms)
                   for e, t in zip(picked, timings[1:]))
    return ProfileCheck(profile.device, checks, profile.overhead_ms, overhead, any(t.busy for t in timings))


def rescaled(profile: DeviceProfile, check: ProfileCheck) -> DeviceProfile:
    """`profile` with every kernel, the overhead and the calibration's per-op / per-MB costs times the check's
    median ratio: for a machine that runs uniformly faster or slower (clock, a busier host) than the one measured.

    Raises:
        TfcompressError: the check was busy or timed no kernel (nothing to scale by).
    """
    from dataclasses import replace

    from tfcompress.errors import TfcompressError

    if check.busy or not check.kernels:
        raise TfcompressError("the check was timed on a busy machine: nothing to rescale by",
                              "run `tfcompress profile --check` again when the machine is idle")
    r = check.median_ratio
    cal = profile.calibration
    return replace(
        profile,
        entries=tuple(replace(e, ms=e.ms * r, spread_ms=e.spread_ms * r) for e in profile.entries),
        overhead_ms=check.measured_overhead_ms,
        calibration=replace(cal, per_op_ms=cal.per_op_ms * r, per_weight_mb_ms=cal.per_weight_mb_ms * r),
        observations=tuple(replace(o, measured_ms=o.measured_ms * r) for o in profile.observations),
        provenance=replace(profile.provenance, method=f"{profile.provenance.method}; rescaled x{r:.4f} by "
                                                      f"`tfcompress profile --check` on {len(check.kernels)} kernels"),
    )
