"""``glasscast up``: one supervisor for the whole platform on one machine.

Start order: broker keeper (Tansu + archive; rehydrated before it reports
ready), Valkey, topics, Schema Registry, the analytics process, gateway,
processors.  Each piece can be
external instead: a non-empty ``kafka.bootstrap_servers``, ``registry.url`` or
``valkey.url`` is used as given and nothing is started for it.

The keeper runs in its own session without a parent-death signal, so a
SIGKILLed supervisor still leaves it time to archive everything the broker
acknowledged before it stops the broker.  Every other child dies with the
supervisor (PR_SET_PDEATHSIG, which fires when the *thread* that forked the
child ends: so every start and restart happens on the main thread).

The undertaker (``infra/undertaker.py``, also in its own session) is started
first and stopped last: if the supervisor dies first, it SIGKILLs whatever of
the platform has not exited within the stop timeout (the keeper: plus the
archive drain timeout), so a child whose shutdown hangs is not left behind.

Every process started here is watched, Valkey and the keeper included, and
one that exits is started again, with the same command line, port and data
directory, after a back-off (``infra/restarts.py``: a budget per child that
is a rate, and restarts that are due times checked by the one watch loop,
never sleeps).  A restarted keeper rehydrates a fresh broker from the archive
on the same port, and a restarted Valkey reloads its append-only file on the
same port, so the other processes reconnect by themselves and nothing else is
restarted on their account.  A child over its budget stops the platform.
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
from confluent_kafka import KafkaException

from infra.embedded.credentials import REGISTRY_USER, embedded_secret, with_password, without_password
from infra.embedded.keeper import broker_dir, keeper_argv, read_ready
from infra.embedded.process import ManagedProcess, free_port, pid_alive, port_open
from infra.embedded.tansu_record import forget_dead_broker, kill_recorded
from infra.embedded.valkey import ValkeyProcess
from infra.errors import ServiceError
from infra.restarts import GiveUp, RestartPolicy, RestartSchedule, exit_reason
from infra.runstate import ProcessState, RunState, clear_state, write_state
from infra.settings import Secret, Settings, child_env
from infra.undertaker import undertaker_argv
from topics.admin import ensure_topics
from topics.errors import TopicsError

log = logging.getLogger("glasscast.supervisor")

WATCH_INTERVAL_S = 0.2  # how soon an exit is noticed; a due restart wakes the loop sooner
# Then the keeper and the undertaker.
STOP_ORDER = ("ingest", "media-worker", "processors", "gateway", "analytics", "registry", "valkey")


class StartInterrupted(ServiceError):
    """Asked to stop (SIGTERM, Ctrl-C) before the platform was up."""


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
    """Starts, watches, restarts and stops the platform's processes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = replace(settings, data_dir=settings.data_dir.resolve())
        self.data_dir = self.settings.data_dir
        self.children: dict[str, ManagedProcess] = {}  # every process started here, in start order
        self.schedule = RestartSchedule(RestartPolicy.from_settings(self.settings.supervisor))
        self.started_ms: dict[str, int] = {}  # when each current incarnation started (wall clock)
        self.last_exit: dict[str, str] = {}
        self.keeper: ManagedProcess | None = None
        self.valkey: ValkeyProcess | None = None
        self.failure = ""  # why the platform stopped on its own ("" when asked to stop)
        self._broker_back: tuple[int, float] | None = None  # (pid, next check) of a restarted keeper not yet ready
        self.started_at_ms = int(time.time() * 1000)
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

    def _unless_stopping(self, check: Callable[[], bool]) -> Callable[[], bool]:
        """A readiness check that gives up at once when a stop was requested."""
        def ready() -> bool:
            if self._stop.is_set():
                raise StartInterrupted("asked to stop while starting")
            return check()
        return ready

    def _launch(self, name: str, child: ManagedProcess) -> ManagedProcess:
        child.start()
        self.children[name] = child
        self.started_ms[name] = int(time.time() * 1000)
        return child

    def _start_keeper(self, port: int) -> str:
        # A fixed port, so that a restarted keeper's broker has the address every client already knows.
        argv = keeper_argv(self.data_dir, port=port, parent_pid=os.getpid())
        keeper = ManagedProcess("broker-keeper", argv, self.data_dir / "logs" / "keeper.out",
                                env=self._env(self.settings), new_session=True, parent_death_signal=None)
        self.keeper = self._launch("broker-keeper", keeper)
        pid = keeper.pid
        # Rehydration from the archive happens before the keeper reports ready.
        keeper.wait_ready(self._unless_stopping(lambda: read_ready(self.data_dir, pid) is not None), timeout_s=600)
        ready = read_ready(self.data_dir, pid)
        assert ready is not None
        log.info("broker rehydrated: %s", ready.get("rehydrated"))
        return str(ready["bootstrap_servers"])

    def _env(self, settings: Settings) -> dict[str, str]:
        return child_env(settings, os.environ)

    def _spawn(self, name: str, settings: Settings) -> ManagedProcess:
        child = ManagedProcess(name, [sys.executable, "-m", "infra.cli", "run", name],
                               self.data_dir / "logs" / f"{name}.log", env=self._env(settings))
        return self._launch(name, child)

    def start(self) -> RunState:
        s = jwt_secret(self.settings)
        self._lock()
        clear_state(self.data_dir)  # left behind by a supervisor that was killed
        (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
        # First, so that whatever starts after it cannot outlive a SIGKILL of this process.
        self._launch("undertaker", ManagedProcess(
            "undertaker", undertaker_argv(self.data_dir, os.getpid()), self.data_dir / "logs" / "undertaker.out",
            env=self._env(self.settings), new_session=True, parent_death_signal=None))
        if not s.kafka.bootstrap_servers:
            forget_dead_broker(broker_dir(self.data_dir))  # no client yet: the first keeper needs no gate
            port = s.kafka.broker_port or free_port()
            s = s.with_section("kafka", broker_port=port, bootstrap_servers=self._start_keeper(port))
            log.info("broker ready at %s", s.kafka.bootstrap_servers)
        if not s.valkey.url:
            # It refuses clients without the password generated into the data dir; they get it in the URL.
            self.valkey = ValkeyProcess(self.data_dir / "valkey", port=s.valkey.port,
                                        password=embedded_secret(self.data_dir, "valkey"))
            self._launch("valkey", self.valkey.process)
            self.valkey.process.wait_ready(self._unless_stopping(self.valkey.ready), 30)
            s = s.with_section("valkey", port=self.valkey.port, url=self.valkey.url)
        ensure_topics(s.kafka)
        if not s.registry.url:
            port = s.registry.port or free_port()
            url = with_password(f"http://127.0.0.1:{port}", embedded_secret(self.data_dir, "registry"), REGISTRY_USER)
            s = s.with_section("registry", port=port, url=url)  # the registry requires what its URL carries
            self._spawn("registry", s).wait_ready(self._unless_stopping(_http_ok(f"{s.registry.url}/subjects")), 60)
        s = self._start_analytics(s)
        self.settings = s
        # The tools can reach the log and the views from here on.
        self._write_state()
        self._spawn("gateway", s).wait_ready(
            self._unless_stopping(_http_ok(f"http://127.0.0.1:{s.gateway.port}/healthz")), 60)
        _processors_assigned(s, forget=True)  # a report from an earlier run does not count
        processors = self._spawn("processors", s)
        processors.wait_ready(self._unless_stopping(lambda: _processors_assigned(s)), 120)
        host = "127.0.0.1" if s.ingest.host in ("0.0.0.0", "") else s.ingest.host
        self._spawn("ingest", s).wait_ready(self._unless_stopping(lambda: port_open(host, s.ingest.rtmp_port)), 60)
        self._spawn("media-worker", s)
        return self._write_state()

    def _start_analytics(self, s: Settings) -> Settings:
        """The analytics process (processors/analytics/service.py): the sink, and chDB's one owner.

        With the embedded engine every other process reaches it at the URL set here, whose password is
        the embedded secret ``analytics``; with a ClickHouse server it runs only the sink.
        """
        port = s.analytics.port or free_port()
        if s.analytics.backend == "chdb" and not s.analytics.url:
            url = with_password(f"http://127.0.0.1:{port}", embedded_secret(self.data_dir, "analytics"),
                                REGISTRY_USER)
            s = s.with_section("analytics", port=port, url=url)
        else:
            s = s.with_section("analytics", port=port)
        self._spawn("analytics", s).wait_ready(
            self._unless_stopping(_http_ok(f"http://127.0.0.1:{port}/healthz")), 120)
        return s

    def _write_state(self) -> RunState:
        s = self.settings
        processes = {
            name: ProcessState(pid=child.pid or 0, restarts=self.schedule.restarts(name),
                               started_at_ms=self.started_ms.get(name, 0), last_exit=self.last_exit.get(name, ""))
            for name, child in self.children.items()}
        state = RunState(
            supervisor_pid=os.getpid(), bootstrap_servers=s.kafka.bootstrap_servers,
            registry_url=s.registry.url, valkey_url=s.valkey.url, gateway_url=s.gateway_url,
            rtmp_url=s.rtmp_url, started_at_ms=self.started_at_ms, processes=processes,
            analytics_url=s.analytics.url if s.analytics.backend == "chdb" else "")
        write_state(self.data_dir, state)
        return state

    # -- run ----------------------------------------------------------------
    def request_stop(self, *_: object) -> None:
        self._stop.set()

    def watch(self) -> None:
        """Restart children that exit, until asked to stop or one is over its budget."""
        while not self._stop.is_set():
            self.check(time.monotonic())
            due = self.schedule.next_due()
            wait = WATCH_INTERVAL_S if due is None else min(WATCH_INTERVAL_S, due - time.monotonic())
            self._stop.wait(max(wait, 0.0))

    def check(self, now: float) -> None:
        """One pass of the watch loop, which never waits: note exits, schedule restarts, start what is due."""
        changed = False
        for name, child in self.children.items():
            if name in self.schedule.pending or child.pid is None or child.alive():
                continue
            reason = exit_reason(child.returncode())
            self.last_exit[name] = reason
            changed = True
            decision = self.schedule.exited(name, now)
            if isinstance(decision, GiveUp):
                self.failure = (f"{name} exited ({reason}) after {decision.restarts} restarts in "
                                f"{decision.window_s:.0f} s")
                log.error("%s; stopping the platform (see %s)", self.failure, child.log_path)
                self._stop.set()
                break
            log.warning("%s (pid %s) exited with %s; restarting in %.1f s (restart %d of at most %d in %.0f s)",
                        name, child.pid, reason, decision.delay_s, decision.attempt,
                        self.schedule.policy.max_restarts, self.schedule.policy.window_s)
        if not self._stop.is_set():
            for name in self.schedule.due(now):
                self._restart(name)
                changed = True
            self._check_broker_back(now)
        if changed:
            self._write_state()

    def _check_broker_back(self, now: float) -> None:
        """Once a restarted keeper reports ready (rehydrated), create the topics the archive did not have.

        Only then: creating them earlier would race the rehydration.  Topics the
        archive knows come back from it; these are the ones no record and no
        topic snapshot reached yet (or every one, with the archive switched off).
        """
        if self._broker_back is None or now < self._broker_back[1]:
            return
        pid = self._broker_back[0]
        if self.keeper is None or self.keeper.pid != pid or read_ready(self.data_dir, pid) is None:
            self._broker_back = (pid, now + WATCH_INTERVAL_S) if self.keeper and self.keeper.pid == pid else None
            return
        try:
            created = ensure_topics(self.settings.kafka, timeout_s=5.0)
        except (TopicsError, KafkaException) as exc:
            log.warning("broker back, but the topics could not be checked (%s); trying again", exc)
            self._broker_back = (pid, now + 1.0)
            return
        self._broker_back = None
        log.info("broker back at %s%s", self.settings.kafka.bootstrap_servers,
                 f"; created missing topics {', '.join(created)}" if created else "")

    def _restart(self, name: str) -> None:
        child = self.children[name]
        try:
            self._launch(name, child)
        except ServiceError as exc:  # the dead incarnation stays, so the next pass counts this as an exit
            log.error("%s: restart failed: %s", name, exc)
            return
        log.info("%s restarted as pid %s (%d restarts so far)", name, child.pid, self.schedule.restarts(name))
        if child is self.keeper and child.pid is not None:
            self._broker_back = (child.pid, 0.0)

    # -- stop ---------------------------------------------------------------
    def stop(self) -> None:
        """Stop in reverse order; the keeper archives everything before it stops the broker."""
        grace = self.settings.supervisor.stop_timeout_s
        for name in STOP_ORDER:
            child = self.children.get(name)
            if child is not None:
                child.stop(timeout_s=grace)
        if self.keeper is not None:
            self.keeper.stop(timeout_s=self.settings.archive.drain_timeout_s + grace)
            if kill_recorded(broker_dir(self.data_dir)):  # its keeper did not get to stop it
                log.warning("broker: tansu outlived its keeper; killed")
        undertaker = self.children.get("undertaker")
        if undertaker is not None:  # everything stopped: nothing left for it to do
            undertaker.stop(timeout_s=grace)
        clear_state(self.data_dir)
        if self._lock_file is not None:
            self._lock_file.close()


def status(data_dir: Path, now_ms: int | None = None) -> dict[str, object]:
    """What runs for a data dir: each process's pid, whether it is alive, its restarts, uptime and last exit."""
    from infra.runstate import read_state

    state = read_state(data_dir.resolve())
    if state is None or not pid_alive(state.supervisor_pid):
        return {"running": False, "data_dir": str(data_dir.resolve())}
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms

    def uptime_s(started_at_ms: int) -> float:
        return round(max(now_ms - started_at_ms, 0) / 1000, 1)

    processes: dict[str, object] = {}
    for name, proc in state.processes.items():
        alive = pid_alive(proc.pid)
        processes[name] = {
            "pid": proc.pid, "alive": alive, "restarts": proc.restarts,
            "uptime_s": uptime_s(proc.started_at_ms) if alive and proc.started_at_ms else None,
            "last_exit": proc.last_exit or None}
    return {
        "running": True, "data_dir": str(data_dir.resolve()), "supervisor_pid": state.supervisor_pid,
        "uptime_s": uptime_s(state.started_at_ms), "gateway": state.gateway_url,
        "rtmp": state.rtmp_url, "kafka": state.bootstrap_servers, "registry": without_password(state.registry_url),
        "valkey": without_password(state.valkey_url), "processes": processes,
    }


def run_up(settings: Settings) -> int:
    """Start everything, print the URLs, block until Ctrl-C/SIGTERM, stop cleanly (1: stopped on a failure)."""
    supervisor = Supervisor(settings)
    signal.signal(signal.SIGTERM, supervisor.request_stop)
    signal.signal(signal.SIGINT, supervisor.request_stop)
    try:
        state = supervisor.start()
    except StartInterrupted:
        supervisor.stop()
        print("stopped.", flush=True)
        return 0
    except BaseException:
        supervisor.stop()
        raise
    print(f"Glasscast is up (data in {supervisor.data_dir})", flush=True)
    print(f"  web + API   {state.gateway_url}", flush=True)
    print(f"  health      {state.gateway_url}/readyz  metrics {state.gateway_url}/metrics", flush=True)
    print(f"  RTMP ingest {state.rtmp_url}", flush=True)
    print(f"  Kafka       {state.bootstrap_servers}", flush=True)
    # Passwords are never printed: the embedded services' are in their files.
    secrets_dir = supervisor.data_dir / "secrets"
    for label, url, name in (("registry", state.registry_url, "registry"), ("Valkey", state.valkey_url, "valkey")):
        hint = f"  (password in {secrets_dir / f'{name}.secret'})" if name in supervisor.children else ""
        print(f"  {label:11} {without_password(url)}{hint}", flush=True)
    print("Ctrl-C stops everything.", flush=True)
    try:
        supervisor.watch()
    finally:
        print("stopping..." if not supervisor.failure else f"stopping: {supervisor.failure}", flush=True)
        supervisor.stop()
        print("stopped.", flush=True)
    return 1 if supervisor.failure else 0
