"""Finalists timed: here under the timing protocol, or on the device through edge bundles (`device`).

The original is the anchor. `anchored` times it here (the fastest of several timings: a VM's speed changes from
one moment to the next) and prices the latency budget in the LUT's scale; `time_and_keep` times every later batch
beside the original and scales the figures to the anchor, so a machine whose speed changes mid-search cannot move
the budget under it. Every figure is kept in the search state: a resumed search decides on the same.
"""

from __future__ import annotations

from typing import Any, Callable

from tfcompress.search.cost import Cost, Predictor
from tfcompress.search.device import DeviceTimer
from tfcompress.search.space import Genome
from tfcompress.search.state import SearchState

__all__ = ["ANCHOR_TOLERANCE", "ANCHOR_TIMINGS", "FINALIST_TIMINGS", "TIGHTEN_MARGIN", "anchored", "anchor_ms",
           "tightened", "time_and_keep", "time_here"]

ANCHOR_TOLERANCE = 0.03  # the LUT may miss the original by this much before the budget is rescaled
FINALIST_TIMINGS = 5  # finalists (with the original) are timed together this many times; each keeps its fastest
ANCHOR_TIMINGS = 9  # the original's timings the anchor is the fastest of (5 in a row have all been slow here)


TIGHTEN_MARGIN = 0.98
"""A budget re-priced after a measured miss is aimed this far under the re-priced figure."""


def tightened(budget: float, measured: float, estimated: float) -> float:
    """`budget` in the estimate's scale after a result measured `measured` where `estimated` was expected (the
    latency loop: ms measured vs predicted; the int4 size rounds: bytes written vs estimated), TIGHTEN_MARGIN under."""
    return budget / (measured / estimated) * TIGHTEN_MARGIN


def anchored(predictor: Predictor, base: Cost, latency_ms: float, timed: dict[str, float], state: SearchState,
              say: Callable[[str], None], profile: Any) -> float:
    """The latency budget in the LUT's scale: the original is timed here (once; kept in the state) and, when the
    LUT misses it by more than ANCHOR_TOLERANCE, the budget is scaled by predicted / measured, so a LUT that is off
    by a constant factor on this model neither makes the budget unreachable nor too easy."""
    key = Genome().key()
    if key not in timed:
        timed[key] = anchor_ms(predictor, say, profile)
        state.add_timing(key, timed[key])
    ratio = timed[key] / base.predicted_ms
    if abs(ratio - 1.0) <= ANCHOR_TOLERANCE:
        return latency_ms
    budget = latency_ms / ratio
    say(f"the original measures {timed[key]:.3f} ms here, the LUT predicts {base.predicted_ms:.3f} ms (measured / "
        f"predicted {ratio:.3f}): the budget of {latency_ms:g} ms is priced as {budget:.3f} ms predicted")
    return budget


def anchor_ms(predictor: Predictor, say: Callable[[str], None], profile: Any) -> float:
    """The original timed here several times apart, the fastest kept (`measure.fastest_ms`: a VM's speed can change
    from one second to the next): the figure the budget is priced on and later timings are scaled to."""
    from tfcompress.hardware.measure import fastest_ms, resolver_of

    say(f"timing the original here ({profile.delegate}, {profile.threads} thread(s); the fastest of {ANCHOR_TIMINGS}, "
        "0.5 s apart)")
    ms, figures = fastest_ms(predictor.tflite(Genome()), times=ANCHOR_TIMINGS, threads=profile.threads,
                             resolver=resolver_of(profile))
    if max(figures) > ms * (1 + ANCHOR_TOLERANCE):
        say(f"the original took {', '.join(f'{f:.3f}' for f in figures)} ms: this machine's speed varies from one "
            f"moment to the next; {ms:.3f} ms is its speed, and finalists are judged by their ratio to the original "
            "timed beside them")
    return ms


def time_and_keep(predictor: Predictor, genomes: list[Genome], say: Callable[[str], None], profile: Any,
                   timed: dict[str, float], state: SearchState, what: str = "", device: DeviceTimer | None = None,
                   ) -> None:
    """Time the genomes (`time_here`, or `device`) and keep each figure in `timed` and the state: a resumed search
    decides on the same.

    Once the original has been timed (`anchored`), it is timed again beside every later batch and each figure is
    scaled by original-then / original-now: the figures stay at the machine speed the budget was priced at, so a
    VM that slows down mid-search (seen: 1.35x within ten minutes) cannot move the budget under the search."""
    anchor_key = Genome().key()
    genomes = [g for g in genomes if g.key() != anchor_key or anchor_key not in timed]
    if not genomes:
        return
    anchor = timed.get(anchor_key)
    batch = genomes + [Genome()] if all(g.key() != anchor_key for g in genomes) else genomes
    got = (device.time(predictor, batch, what or f"{len(genomes)} finalists") if device is not None
           else time_here(predictor, batch, say, profile, what=what))
    scale = 1.0
    if anchor is None:  # the first timing of the original (on a device: its first round) is the anchor
        anchor = timed[anchor_key] = got.pop(anchor_key)
        state.add_timing(anchor_key, anchor)
    else:
        now = got.pop(anchor_key)
        scale = anchor / now
        if abs(now / anchor - 1.0) > ANCHOR_TOLERANCE:
            say(f"the original measures {now:.3f} ms in this round, {anchor:.3f} ms when the search started: "
                f"this machine's speed changed, so these figures are scaled by {scale:.3f}")
    for key, ms in got.items():
        timed[key] = ms * scale
        state.add_timing(key, ms * scale)


def time_here(predictor: Predictor, genomes: list[Genome], say: Callable[[str], None], profile: Any,
              what: str = "") -> dict[str, float]:
    """Genomes timed here as the profile runs them (its threads and delegate): interleaved, FINALIST_TIMINGS times
    0.5 s apart, each one's fastest (`measure.fastest`)."""
    from tfcompress.hardware.measure import fastest, resolver_of

    if not genomes:
        return {}
    what = what or f"{len(genomes)} finalists"
    say(f"timing {what} here ({profile.delegate}, {profile.threads} thread(s); interleaved, the fastest of "
        f"{FINALIST_TIMINGS})")
    got = fastest([predictor.tflite(g) for g in genomes], times=FINALIST_TIMINGS, threads=profile.threads,
                  resolver=resolver_of(profile))
    if any(busy for _, _, busy in got):
        say(f"warning: other processes used the CPU while timing {what}; measured latencies may be high")
    return {g.key(): ms for g, (ms, _, _) in zip(genomes, got)}
