from __future__ import annotations

import os
from pathlib import Path

import pytest

from infra.errors import ServiceError
from infra.runstate import RunState, resolve, write_state
from infra.settings import Settings


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
    write_state(tmp_path, _state(2**22 + 12345))  # no such process
    with pytest.raises(ServiceError, match="no running platform"):
        resolve(Settings(data_dir=tmp_path))
