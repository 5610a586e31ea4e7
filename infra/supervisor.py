"""``glasscast up``: one supervisor for the whole platform on one machine.

Start order: broker keeper (Tansu + archive; rehydrated before it reports
ready), Valkey, topics, Schema Registry, gateway, processors.  Each piece can be
external instead: a non-empty ``kafka.bootstrap_servers``, ``registry.url`` or
``valkey.url`` is used as given and nothing is started for it.

The keeper runs in its own session without a parent-death signal, so a
SIGKILLed supervisor still leaves it time to archive everything the broker
acknowledged before it stops the broker.  Every other child dies with the
supervisor (PR_SET_PDEATHSIG).  A child that exits on its own is restarted
with back-off.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import IO

import httpx

from infra.embedded.keeper import keeper_argv, read_ready
from infra.embedded.process import ManagedProcess, free_port, pid_alive, port_open
from infra.embedded.valkey import ValkeyProcess
from infra.errors import ServiceError
from infra.runstate import RunState, clear_state, write_state
from infra.settings import Secret, Settings, child_env
from topics.admin import ensure_topics

log = logging.getLogger("glasscast.supervisor")

MAX_RESTARTS = 5


def _http_ok(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return httpx.get(url, timeout=0.5).status_code < 500
        except httpx.HTTPError:
            return False
    return check


def _processors_assigned(settings: Settings, forget: bool = False) -> bool:
    """Whether a processors worker has reported its partition assignment (``forget``: clear the report)."""
    import redis

    from views.readiness import ready_key

    client = redis.Redis.from_url(settings.valkey.url, socket_timeout=1)
    try:
        if forget:
            client.delete(ready_key(settings))
            return False
        return bool(client.exists(ready_key(settings)))
    except redis.RedisError:
        return False
    finally:
        client.close()


def jwt_secret(settings: Settings) -> Settings:
    """Use the configured JWT secret, or one generated once into the data dir."""
    if settings.auth.jwt_secret:
        return settings
    path = settings.data_dir / "secrets" / "jwt.secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(48))
    return settings.with_section("auth", jwt_secret=Secret(path.read_text().strip()))


class Supervisor:
    """Starts, watches and stops the platform's processes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = replace(settings, data_dir=settings.data_dir.resolve())
        self.data_dir = self.settings.data_dir
        self.children: dict[str, ManagedProcess] = {}
        self.restarts: dict[str, int] = {}
        self.keeper: ManagedProcess | None = None
        self.valkey: ValkeyProcess | None = None
        self._stop = threading.Event()
        self._lock_file: IO[str] | None = None

    # -- start --------------------------------------------------------------
    def _lock(self) -> None:
        path = self.data_dir / "run" / "supervisor.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(path, "w")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ServiceError(f"another `glasscast up` is running on {self.data_dir}") from None

    def _start_keeper(self) -> str:
        argv = keeper_argv(self.data_dir, port=self.settings.kafka.broker_port, parent_pid=os.getpid())
        self.keeper = ManagedProcess("broker-keeper", argv, self.data_dir / "logs" / "keeper.out",
                                     env=self._env(self.settings), new_session=True, parent_death_signal=None)
        self.keeper.start()
        pid = self.keeper.pid
        # Rehydration from the archive happens before the keeper reports ready.
        self.keeper.wait_ready(lambda: read_ready(self.data_dir, pid) is not None, timeout_s=600)
        ready = read_ready(self.data_dir, pid)
        assert ready is not None
        log.info("broker rehydrated: %s", ready.get("rehydrated"))
        return str(ready["bootstrap_servers"])

    def _env(self, settings: Settings) -> dict[str, str]:
        return child_env(settings, os.environ)

    def _spawn(self, name: str, settings: Settings) -> ManagedProcess:
        child = ManagedProcess(name, [sys.executable, "-m", "infra.cli", "run", name],
                               self.data_dir / "logs" / f"{name}.log", env=self._env(settings))
        child.start()
        self.children[name] = child
        return child

    def start(self) -> RunState:
        s = jwt_secret(self.settings)
        self._lock()
        clear_state(self.data_dir)  # left behind by a supervisor that was killed
        (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
        if not s.kafka.bootstrap_servers:
            s = s.with_section("kafka", bootstrap_servers=self._start_keeper())
            log.info("broker ready at %s", s.kafka.bootstrap_servers)
        if not s.valkey.url:
            self.valkey = ValkeyProcess(self.data_dir / "valkey", port=s.valkey.port)
            self.valkey.start()
            s = s.with_section("valkey", url=self.valkey.url)
        ensure_topics(s.kafka)
        if not s.registry.url:
            port = s.registry.port or free_port()
            s = s.with_section("registry", port=port, url=f"http://127.0.0.1:{port}")
            self._spawn("registry", s).wait_ready(_http_ok(f"{s.registry.url}/subjects"), 60)
        self.settings = s
        # The tools can reach the log and the views from here on.
        self._write_state()
        self._spawn("gateway", s).wait_ready(_http_ok(f"http://127.0.0.1:{s.gateway.port}/healthz"), 60)
        _processors_assigned(s, forget=True)  # a report from an earlier run does not count
        processors = self._spawn("processors", s)
        processors.wait_ready(lambda: _processors_assigned(s), 120)
        host = "127.0.0.1" if s.ingest.host in ("0.0.0.0", "") else s.ingest.host
        self._spawn("ingest", s).wait_ready(lambda: port_open(host, s.ingest.rtmp_port), 60)
        self._spawn("media-worker", s)
        return self._write_state()

    def _write_state(self) -> RunState:
        s = self.settings
        state = RunState(
            supervisor_pid=os.getpid(), bootstrap_servers=s.kafka.bootstrap_servers,
            registry_url=s.registry.url, valkey_url=s.valkey.url, gateway_url=s.gateway_url,
            rtmp_url=s.rtmp_url, started_at_ms=int(time.time() * 1000),
            processes={n: c.pid or 0 for n, c in self._all().items()})
        write_state(self.data_dir, state)
        return state

    def _all(self) -> dict[str, ManagedProcess]:
        procs = dict(self.children)
        if self.keeper:
            procs["broker-keeper"] = self.keeper
        if self.valkey:
            procs["valkey"] = self.valkey.process
        return procs

    # -- run ----------------------------------------------------------------
    def request_stop(self, *_: object) -> None:
        self._stop.set()

    def watch(self) -> None:
        """Restart children that exit, until asked to stop."""
        while not self._stop.wait(0.5):
            for name, child in list(self.children.items()):
                if child.alive():
                    continue
                count = self.restarts.get(name, 0) + 1
                self.restarts[name] = count
                if count > MAX_RESTARTS:
                    log.error("%s exited %s times; stopping the platform (see %s)", name, count, child.log_path)
                    self._stop.set()
                    break
                log.warning("%s exited with %s; restarting (%d/%d)", name, child.returncode(), count, MAX_RESTARTS)
                time.sleep(min(5.0, 0.5 * 2 ** count))
                self._spawn(name, self.settings)
            if self.keeper is not None and not self.keeper.alive():
                log.error("the broker keeper exited (%s); stopping", self.keeper.returncode())
                self._stop.set()

    # -- stop ---------------------------------------------------------------
    def stop(self) -> None:
        """Stop in reverse order; the keeper archives everything before it stops the broker."""
        for name in ("ingest", "media-worker", "processors", "gateway", "registry"):
            child = self.children.pop(name, None)
            if child is not None:
                child.stop(timeout_s=15)
        if self.valkey is not None:
            self.valkey.stop()
        if self.keeper is not None:
            self.keeper.stop(timeout_s=self.settings.archive.drain_timeout_s + 15)
        clear_state(self.data_dir)
        if self._lock_file is not None:
            self._lock_file.close()


def status(data_dir: Path) -> dict[str, object]:
    """What runs for a data dir: each recorded process and whether it is alive."""
    from infra.runstate import read_state

    state = read_state(data_dir.resolve())
    if state is None or not pid_alive(state.supervisor_pid):
        return {"running": False, "data_dir": str(data_dir.resolve())}
    return {
        "running": True, "data_dir": str(data_dir.resolve()), "gateway": state.gateway_url,
        "rtmp": state.rtmp_url, "kafka": state.bootstrap_servers, "registry": state.registry_url,
        "valkey": state.valkey_url,
        "processes": {name: {"pid": pid, "alive": pid_alive(pid)} for name, pid in state.processes.items()},
    }


def run_up(settings: Settings) -> int:
    """Start everything, print the URLs, block until Ctrl-C/SIGTERM, stop cleanly."""
    supervisor = Supervisor(settings)
    signal.signal(signal.SIGTERM, supervisor.request_stop)
    signal.signal(signal.SIGINT, supervisor.request_stop)
    try:
        state = supervisor.start()
    except BaseException:
        supervisor.stop()
        raise
    print(f"Glasscast is up (data in {supervisor.data_dir})", flush=True)
    print(f"  web + API   {state.gateway_url}", flush=True)
    print(f"  health      {state.gateway_url}/readyz  metrics {state.gateway_url}/metrics", flush=True)
    print(f"  RTMP ingest {state.rtmp_url}", flush=True)
    print(f"  Kafka       {state.bootstrap_servers}", flush=True)
    print(f"  registry    {state.registry_url}", flush=True)
    print(f"  Valkey      {state.valkey_url}", flush=True)
    print("Ctrl-C stops everything.", flush=True)
    try:
        supervisor.watch()
    finally:
        print("stopping...", flush=True)
        supervisor.stop()
        print("stopped.", flush=True)
    return 0
