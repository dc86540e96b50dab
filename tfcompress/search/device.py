"""Finalists timed on the device itself (`search(..., measure="device")`), through edge bundles.

A search for a device that is not this machine stops where it would time its finalists here. It writes them, and
the original beside them, as an edge bundle (`hardware.bundle.export_bundle`: the whole int8 models plus their
one-op kernels) into OUT/device/round-N/ and returns with `awaiting_device` set. On the device:

    python3 round-N/edge_profile.py round-N          # writes round-N/result.json (needs no TensorFlow)

With result.json back in that folder, the same search command resumes from its saved trials, reads every round's
result and decides as if it had timed the finalists here (`timing.time_and_keep`: the original is in every
round, later rounds are scaled to the first one's original). A round whose finalists miss the budget on the
device tightens the budget and may need another round.

Each round folder holds finalists.json (model name in the bundle -> genome key and sha256), written into the
bundle before the folder is renamed into place: a round folder is complete or absent.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

from tfcompress.errors import TfcompressError
from tfcompress.search.space import Genome

__all__ = ["AwaitDevice", "DeviceTimer", "MAX_ROUNDS"]

MAX_ROUNDS = 50  # round folders read; a search needs a few (MAX_CORRECTIONS + 1 at most per budget)
MAPPING = "finalists.json"
RESULT = "result.json"


class AwaitDevice(Exception):
    """The finalists are written to `bundle`; their device timings are needed to go on."""

    def __init__(self, bundle: Path, n_models: int, fresh: bool) -> None:
        super().__init__(str(bundle))
        self.bundle = bundle
        self.n_models = n_models
        self.fresh = fresh  # written by this call (False: written by an earlier run, still waiting)


def _name(genome: Genome) -> str:
    if genome.key() == Genome().key():
        return "original"
    return "finalist-" + hashlib.sha256(genome.key().encode()).hexdigest()[:12]


class DeviceTimer:
    """Times genomes on the device of `profile` through the round folders under `folder`."""

    def __init__(self, folder: Path, profile: Any, say: Callable[[str], None]) -> None:
        self.folder = folder
        self.profile = profile
        self.say = say
        self._warned: set[str] = set()

    def rounds(self) -> list[tuple[Path, dict[str, str], dict[str, float] | None]]:
        """(folder, name -> genome key, genome key -> ms or None when its result is not back), in round order."""
        if not self.folder.is_dir():
            return []
        found = []
        for path in self.folder.iterdir():
            if path.is_dir() and path.name.startswith("round-") and path.name[6:].isdigit():
                found.append((int(path.name[6:]), path))
        out = []
        for _, path in sorted(found)[:MAX_ROUNDS]:
            try:
                mapping = json.loads((path / MAPPING).read_text(encoding="utf-8"))
                names = {str(n): str(v["key"]) for n, v in mapping.items()}
                shas = {str(n): str(v["sha256"]) for n, v in mapping.items()}
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                raise TfcompressError(f"{path / MAPPING} is unreadable ({exc})",
                                      f"delete {path} (a round written by hand or damaged) and run again") from None
            result = path / RESULT
            out.append((path, names, self._read(result, names, shas) if result.exists() else None))
        return out

    def _read(self, result: Path, names: dict[str, str], shas: dict[str, str]) -> dict[str, float]:
        from tfcompress.hardware.importers import import_measurements

        got = import_measurements(result, format="edge_result")
        say_once = self._say_once
        if got.busy_items:
            say_once(f"warning: {result}: the device was busy while {got.busy_items} item(s) were timed; the "
                     "finalists' figures are high (time the round again on an idle device: delete result.json)")
        if got.threads is not None and got.threads != self.profile.threads:
            say_once(f"warning: {result} was timed at {got.threads} thread(s), the profile "
                     f"'{self.profile.device}' at {self.profile.threads}: run edge_profile.py with --threads "
                     f"{self.profile.threads}")
        out: dict[str, float] = {}
        for obs in got.observations:
            name, _, sha8 = obs.name.rpartition("#")
            if name in names:
                if not shas[name].startswith(sha8):
                    raise TfcompressError(f"{result}: model '{name}' is not the one this round wrote",
                                          f"delete {result} and time {result.parent} on the device again")
                out[names[name]] = obs.measured_ms
        missing = sorted(n for n, k in names.items() if k not in out)
        if missing:
            raise TfcompressError(f"{result} has no timing of {', '.join(missing[:5])}",
                                  f"run edge_profile.py on {result.parent} to the end (it resumes)")
        return out

    def _say_once(self, msg: str) -> None:
        if msg not in self._warned:
            self._warned.add(msg)
            self.say(msg)

    def time(self, predictor: Any, genomes: Sequence[Genome], what: str) -> dict[str, float]:
        """The genomes' device timings from the latest round holding all of them; else a new round (AwaitDevice)."""
        keys = [g.key() for g in genomes]
        rounds = self.rounds()
        for path, names, timings in reversed(rounds):
            if timings is not None and all(k in timings for k in keys):
                self.say(f"{what}: timings from the device ({path / RESULT})")
                return {k: timings[k] for k in keys}
        if rounds and rounds[-1][2] is None and sorted(rounds[-1][1].values()) == sorted(keys):
            raise AwaitDevice(rounds[-1][0], len(keys), fresh=False)
        index = int(rounds[-1][0].name[6:]) + 1 if rounds else 1
        if index > MAX_ROUNDS:
            raise TfcompressError(f"{self.folder} already holds {MAX_ROUNDS} device rounds",
                                  "the budget is not being met on the device: raise --latency-ms")
        raise AwaitDevice(self._export(predictor, list(genomes), index), len(keys), fresh=True)

    def _export(self, predictor: Any, genomes: list[Genome], index: int) -> Path:
        from tfcompress.hardware.bundle import export_bundle
        from tfcompress.hardware.profile import write_json_atomic

        final = self.folder / f"round-{index}"
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.folder, prefix=f".round-{index}.", suffix=".tmp"))
        try:
            contents = [predictor.tflite(g) for g in genomes]
            names = [_name(g) for g in genomes]
            export_bundle(contents, tmp / final.name, threads=self.profile.threads, names=names,
                          command=f"tfcompress search: finalists for {self.profile.device}, round {index}")
            write_json_atomic(tmp / final.name / MAPPING, {
                n: {"key": g.key(), "sha256": hashlib.sha256(c).hexdigest(), "describe": g.describe()}
                for n, g, c in zip(names, genomes, contents)})
            os.replace(tmp / final.name, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return final
