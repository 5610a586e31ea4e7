"""Which Tansu serves a data directory now: ``<data_dir>/broker/tansu.json``.

Tansu runs in its own session without a parent-death signal, so it outlives a
keeper that is killed, and the keeper that replaces it adopts it with all its
records instead of rebuilding a broker from the archive (``keeper.py``).  The
record names the process by pid and start time (a recycled pid is not it),
the port it listens on, the port it advertises, and whether its rehydration
finished: a Tansu whose keeper died while rehydrating it is half full, and is
killed rather than adopted.  The keeper that stops Tansu removes the record.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from infra.proctree import PlatformProcess, process, still_running

RECORD_FILE = "tansu.json"


@dataclass(frozen=True)
class TansuRecord:
    pid: int
    start_ticks: int
    port: int  # where it listens
    advertised_port: int  # what it tells clients (the gate's port when they differ)
    rehydrated: bool

    @property
    def process(self) -> PlatformProcess:
        return PlatformProcess(self.pid, 0, "tansu", self.start_ticks)

    def running(self) -> bool:
        return still_running(self.process)


def record_for(pid: int, port: int, advertised_port: int, rehydrated: bool) -> TansuRecord:
    found = process(pid)
    return TansuRecord(pid, found.start_ticks if found else 0, port, advertised_port, rehydrated)


def read_record(directory: Path) -> TansuRecord | None:
    try:
        doc = json.loads((directory / RECORD_FILE).read_text())
        return TansuRecord(int(doc["pid"]), int(doc["start_ticks"]), int(doc["port"]),
                           int(doc["advertised_port"]), bool(doc["rehydrated"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_record(directory: Path, record: TansuRecord) -> None:
    tmp = directory / f".{RECORD_FILE}.tmp"
    tmp.write_text(json.dumps(asdict(record)))
    os.replace(tmp, directory / RECORD_FILE)


def clear_record(directory: Path) -> None:
    (directory / RECORD_FILE).unlink(missing_ok=True)


def kill_recorded(directory: Path, timeout_s: float = 10.0) -> bool:
    """SIGKILL the recorded Tansu if it still runs, wait for it to go, drop the record; True if one was killed."""
    record = read_record(directory)
    killed = False
    if record is not None and record.running():
        try:
            os.kill(record.pid, signal.SIGKILL)
            killed = True
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout_s
        while record.running() and time.monotonic() < deadline:
            time.sleep(0.01)
    clear_record(directory)
    return killed


def forget_dead_broker(directory: Path) -> None:
    """Drop the record of a Tansu that no longer runs (a running one is left to be adopted)."""
    record = read_record(directory)
    if record is not None and not record.running():
        clear_record(directory)
