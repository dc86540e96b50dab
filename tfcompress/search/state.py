"""A search's saved state: every finished trial and every predicted cost, appended as it happens.

    OUT/state/fingerprint.json   what was searched (model and data hashes, settings, device)
    OUT/state/trials.jsonl       one finished trial per line
    OUT/state/costs.jsonl        one predicted cost per line
    OUT/state/timings.jsonl      one finalist timed here per line (genome key, median ms)
    OUT/state/device-timings.jsonl   the same, timed on the device through edge bundles (`search.device`)
    OUT/state/sizes.jsonl        a chosen genome's written .tflite that missed the size budget (int4 fell short)

A search killed at any point and started again with the same fingerprint reads these back and
replays its decisions from them (a strategy is deterministic given its trial results), so it continues
where it stopped and ends with the same result. A line cut off by the kill is ignored. A different
fingerprint is refused rather than mixed in.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Mapping, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from tfcompress.errors import TfcompressError
from tfcompress.search.cost import Cost
from tfcompress.search.trial import TrialResult

__all__ = ["SearchState"]

MAX_STATE_BYTES = 256 * 1024 * 1024
M = TypeVar("M", bound=BaseModel)


class Timed(BaseModel):
    """A finalist timed (here or on the device): its genome key and median latency."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str
    ms: float


class Written(BaseModel):
    """A chosen genome's final model as written (bytes), when it missed the size budget."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str
    bytes: int


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    if path.stat().st_size > MAX_STATE_BYTES:
        raise TfcompressError(f"{path} is larger than {MAX_STATE_BYTES >> 20} MiB", "start the search in a new folder")
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # the line a kill cut off
    return out


def _end_last_line(path: Path) -> None:
    """End a last line a kill left without its newline, so the next append starts a line of its own
    (instead of running on into the cut-off one and being lost with it at the next resume)."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) != b"\n":
            f.write(b"\n")


def _records(path: Path, model: type[M]) -> list[M]:
    """The lines of `path` that validate as `model` (a cut-off or foreign line is skipped)."""
    out = []
    for row in _lines(path):
        try:
            out.append(model.model_validate(row))
        except ValidationError:
            continue
    return out


class SearchState:
    """Trials and costs of one search, on disk under `folder/state` (None: kept in memory only)."""

    def __init__(self, folder: Path | None, fingerprint: Mapping[str, Any], *, fresh: bool = False,
                 timings: str = "timings.jsonl") -> None:
        self.timings_file = timings  # where finalists were timed: here, or on the device ("device-timings.jsonl")
        self.trials: dict[str, TrialResult] = {}
        self.costs: dict[str, Cost] = {}
        self.timings: dict[str, float] = {}
        self.sizes: dict[str, int] = {}
        self.resumed = 0
        self.dir = folder / "state" if folder is not None else None
        if self.dir is None:
            return
        fp_path = self.dir / "fingerprint.json"
        want = json.loads(json.dumps(dict(fingerprint), sort_keys=True))
        if fresh and self.dir.exists():
            shutil.rmtree(self.dir)
        if fp_path.exists():
            try:
                have = json.loads(fp_path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise TfcompressError(f"{fp_path} is unreadable: {exc}", "start again with --fresh") from exc
            if have != want:
                diff = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
                raise TfcompressError(
                    f"{self.dir.parent} holds a search with other settings ({', '.join(diff)} differ)",
                    "use another output folder, or --fresh to discard the saved trials")
            self._read()
        else:
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp = fp_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(want, indent=1, sort_keys=True), encoding="utf-8")
            os.replace(tmp, fp_path)

    def _read(self) -> None:
        assert self.dir is not None
        for name in ("trials.jsonl", "costs.jsonl", self.timings_file, "sizes.jsonl"):
            _end_last_line(self.dir / name)
        self.trials = {r.key: r for r in _records(self.dir / "trials.jsonl", TrialResult)}
        self.costs = {c.key: c for c in _records(self.dir / "costs.jsonl", Cost)}
        self.timings = {t.key: t.ms for t in _records(self.dir / self.timings_file, Timed)}
        self.sizes = {w.key: w.bytes for w in _records(self.dir / "sizes.jsonl", Written)}
        self.resumed = len(self.trials)

    def _append(self, name: str, obj: Any) -> None:
        if self.dir is None:
            return
        with open(self.dir / name, "a", encoding="utf-8") as f:
            f.write(obj.model_dump_json() + "\n")
            f.flush()
            os.fsync(f.fileno())

    def add_trial(self, result: TrialResult) -> None:
        self.trials[result.key] = result
        self._append("trials.jsonl", result)

    def add_timing(self, key: str, ms: float) -> None:
        self.timings[key] = ms
        self._append(self.timings_file, Timed(key=key, ms=ms))

    def add_size(self, key: str, n_bytes: int) -> None:
        self.sizes[key] = n_bytes
        self._append("sizes.jsonl", Written(key=key, bytes=n_bytes))

    def add_cost(self, cost: Cost) -> None:
        self.costs[cost.key] = cost
        self._append("costs.jsonl", cost)
