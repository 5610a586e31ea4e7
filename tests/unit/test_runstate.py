from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from infra.errors import ServiceError
from infra.runstate import ProcessState, RunState, read_state, resolve, state_path, write_state
from infra.settings import Settings
from infra.supervisor import status

GONE = 2**22 + 12345  # no such process


def _state(pid: int) -> RunState:
    return RunState(supervisor_pid=pid, bootstrap_servers="127.0.0.1:1", registry_url="http://r",
                    valkey_url="redis://v", gateway_url="http://g", rtmp_url="rtmp://x/live")


def test_resolve_fills_embedded_addresses(tmp_path: Path) -> None:
    write_state(tmp_path, _state(os.getpid()))
    s = resolve(Settings(data_dir=tmp_path).with_section("registry", url="http://mine"))
    assert s.kafka.bootstrap_servers == "127.0.0.1:1" and s.valkey.url == "redis://v"
    assert s.registry.url == "http://mine"  # explicit settings win


def test_resolve_refuses_missing_or_stale_state(tmp_path: Path) -> None:
    with pytest.raises(ServiceError, match="no running platform"):
        resolve(Settings(data_dir=tmp_path))
    write_state(tmp_path, _state(GONE))
    with pytest.raises(ServiceError, match="no running platform"):
        resolve(Settings(data_dir=tmp_path))


def test_processes_round_trip_and_an_older_state_still_reads(tmp_path: Path) -> None:
    procs = {"valkey": ProcessState(pid=42, restarts=2, started_at_ms=1_700_000_000_000, last_exit="signal SIGKILL")}
    write_state(tmp_path, replace(_state(os.getpid()), processes=procs))
    assert read_state(tmp_path) == replace(_state(os.getpid()), processes=procs)
    older = json.loads(state_path(tmp_path).read_text()) | {"processes": {"valkey": 42}}  # name -> pid, as before
    state_path(tmp_path).write_text(json.dumps(older))
    restored = read_state(tmp_path)
    assert restored is not None and restored.processes == {"valkey": ProcessState(pid=42)}


def test_status_shows_current_pids_restarts_uptime_and_last_exit(tmp_path: Path) -> None:
    now_ms = 1_800_000_000_000
    procs = {"valkey": ProcessState(pid=os.getpid(), restarts=1, started_at_ms=now_ms - 3000,
                                    last_exit="signal SIGKILL"),
             "gateway": ProcessState(pid=GONE, restarts=0, started_at_ms=now_ms - 9000, last_exit="")}
    write_state(tmp_path, replace(_state(os.getpid()), processes=procs, started_at_ms=now_ms - 9000))
    info = status(tmp_path, now_ms=now_ms)
    assert info["running"] is True and info["supervisor_pid"] == os.getpid() and info["uptime_s"] == 9.0
    assert info["processes"] == {
        "valkey": {"pid": os.getpid(), "alive": True, "restarts": 1, "uptime_s": 3.0, "last_exit": "signal SIGKILL"},
        "gateway": {"pid": GONE, "alive": False, "restarts": 0, "uptime_s": None, "last_exit": None}}
