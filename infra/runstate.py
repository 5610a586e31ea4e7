"""The running platform's addresses and processes, written by ``glasscast up`` into the data directory.

Tools (``glasscast tail``, ``status``, ``rebuild-views``) read it so that, on
one machine, they find the embedded broker, registry and Valkey without flags.
The supervisor rewrites it after every start, exit and restart of a child, so
``glasscast status`` shows each process's current pid, its restarts, when its
current incarnation started and how the previous one ended.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from infra.embedded.process import pid_alive
from infra.errors import ServiceError
from infra.settings import Settings


@dataclass(frozen=True)
class ProcessState:
    """One supervised process as the supervisor last saw it."""

    pid: int
    restarts: int = 0  # over the platform's life
    started_at_ms: int = 0  # wall clock, when the current incarnation started (its uptime)
    last_exit: str = ""  # how the previous incarnation ended ("exit code 1", "signal SIGKILL"); "" if none


@dataclass(frozen=True)
class RunState:
    supervisor_pid: int
    bootstrap_servers: str
    registry_url: str
    valkey_url: str
    gateway_url: str
    rtmp_url: str
    processes: dict[str, ProcessState] = field(default_factory=dict)  # by name, in start order
    started_at_ms: int = 0
    analytics_url: str = ""  # the analytics process's API (processors/analytics/service.py), with its password


def state_path(data_dir: Path) -> Path:
    return data_dir / "run" / "state.json"


def write_state(data_dir: Path, state: RunState) -> None:
    path = state_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    # 0600: the URLs of the embedded Valkey and registry carry their passwords (infra/embedded/credentials.py).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps(asdict(state), indent=2))
    os.replace(tmp, path)


def read_state(data_dir: Path) -> RunState | None:
    try:
        data: dict[str, Any] = json.loads(state_path(data_dir).read_text())
    except (FileNotFoundError, ValueError):
        return None
    raw = data.pop("processes", {})
    processes = {name: ProcessState(pid=p) if isinstance(p, int) else ProcessState(**p) for name, p in raw.items()}
    return RunState(**data, processes=processes)


def clear_state(data_dir: Path) -> None:
    state_path(data_dir).unlink(missing_ok=True)


def resolve(settings: Settings) -> Settings:
    """Fill embedded addresses from a running ``glasscast up``; explicit settings win."""
    needs = (not settings.kafka.bootstrap_servers or not settings.registry.url or not settings.valkey.url)
    if not needs:
        return settings
    found = read_state(settings.data_dir)
    if found is None or not pid_alive(found.supervisor_pid):  # none, or left by a killed supervisor
        raise ServiceError(
            f"no running platform found in {settings.data_dir} (start `glasscast up`, or set "
            "GLASSCAST_KAFKA_BOOTSTRAP_SERVERS, GLASSCAST_REGISTRY_URL and GLASSCAST_VALKEY_URL)")
    if not settings.kafka.bootstrap_servers:
        settings = settings.with_section("kafka", bootstrap_servers=found.bootstrap_servers)
    if not settings.registry.url:
        settings = settings.with_section("registry", url=found.registry_url)
    if not settings.valkey.url:
        settings = settings.with_section("valkey", url=found.valkey_url)
    return settings


def resolve_analytics(settings: Settings) -> Settings:
    """Fill the embedded analytics process's address from a running ``glasscast up``; explicit settings win."""
    if settings.analytics.backend != "chdb" or settings.analytics.url:
        return settings
    found = read_state(settings.data_dir)
    if found is None or not pid_alive(found.supervisor_pid) or not found.analytics_url:
        raise ServiceError(f"no running analytics process found in {settings.data_dir} (start `glasscast up`, or "
                           "set GLASSCAST_ANALYTICS_URL, or GLASSCAST_ANALYTICS_BACKEND=clickhouse)")
    return settings.with_section("analytics", url=found.analytics_url)
