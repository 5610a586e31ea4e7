"""The supervisor's restart policy (infra/restarts.py) and its watch loop (``Supervisor.check``), on fake
children and a fake clock: the budget is a rate, the back-off doubles and is capped, and a child waiting
out its back-off never keeps the loop from restarting another."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from infra.embedded.process import ManagedProcess
from infra.errors import SettingsError
from infra.restarts import GiveUp, Restart, RestartBudget, RestartPolicy, RestartSchedule, exit_reason
from infra.runstate import read_state
from infra.settings import Settings, load_settings
from infra.supervisor import Supervisor


def test_backoff_doubles_from_half_a_second_and_is_capped() -> None:
    policy = RestartPolicy(max_restarts=10, window_s=60, backoff_initial_s=0.5, backoff_max_s=5)
    assert [policy.delay_s(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert policy.delay_s(10_000) == 5.0  # no overflow, however many


def test_budget_is_a_rate_not_a_lifetime_count() -> None:
    budget = RestartBudget(RestartPolicy(max_restarts=5, window_s=60))
    decisions = [budget.on_exit(t) for t in (0.0, 1.0, 2.0, 3.0, 4.0)]
    assert all(isinstance(d, Restart) for d in decisions)
    assert [d.attempt for d in decisions if isinstance(d, Restart)] == [1, 2, 3, 4, 5]
    assert budget.on_exit(5.0) == GiveUp(restarts=5, window_s=60)  # a sixth within the minute: over budget
    # A child that crashes now and then is restarted for ever: the window forgets old restarts.
    budget = RestartBudget(RestartPolicy(max_restarts=5, window_s=60))
    for hour in range(24):
        decision = budget.on_exit(hour * 3600.0)
        assert isinstance(decision, Restart) and decision.attempt == 1 and decision.delay_s == 0.5
    assert budget.total == 24


def test_backoff_starts_again_after_a_quiet_window() -> None:
    budget = RestartBudget(RestartPolicy(max_restarts=5, window_s=60))
    delays = [d.delay_s for d in (budget.on_exit(t) for t in (0.0, 10.0, 20.0)) if isinstance(d, Restart)]
    assert delays == [0.5, 1.0, 2.0]
    again = budget.on_exit(79.0)  # the restarts at 0 and 10 are out of the window, the one at 20 is not
    assert isinstance(again, Restart) and again.attempt == 2 and again.delay_s == 1.0 and again.at == 80.0


def test_schedule_gives_each_child_its_own_due_time() -> None:
    schedule = RestartSchedule(RestartPolicy(max_restarts=5, window_s=60, backoff_initial_s=0.5, backoff_max_s=10))
    for t in (0.0, 0.1, 0.2, 0.3):  # four quick restarts
        schedule.exited("flappy", t)
        schedule.pending.clear()
    schedule.exited("flappy", 1.0)  # fifth restart in the window: 8 s of back-off
    schedule.exited("valkey", 1.0)  # first: 0.5 s
    assert schedule.next_due() == 1.5
    assert schedule.due(1.2) == []
    assert schedule.due(1.5) == ["valkey"]  # not held up by the other's back-off
    assert schedule.due(8.9) == [] and schedule.due(9.0) == ["flappy"] and schedule.next_due() is None
    assert schedule.restarts("flappy") == 5 and schedule.restarts("valkey") == 1


def test_exit_reasons() -> None:
    assert exit_reason(-signal.SIGKILL) == "signal SIGKILL"
    assert exit_reason(1) == "exit code 1" and exit_reason(0) == "exit code 0"
    assert exit_reason(None) == "running"


def test_settings_section() -> None:
    s = load_settings({"GLASSCAST_SUPERVISOR_MAX_RESTARTS": "3", "GLASSCAST_SUPERVISOR_RESTART_WINDOW_S": "30"})
    assert RestartPolicy.from_settings(s.supervisor) == RestartPolicy(3, 30.0, 0.5, 10.0)
    with pytest.raises(SettingsError, match="GLASSCAST_SUPERVISOR_BACKOFF_MAX_S"):
        load_settings({"GLASSCAST_SUPERVISOR_BACKOFF_MAX_S": "0.1"})


class FakeChild(ManagedProcess):
    """A child that starts instantly with a new pid and dies when told to."""

    pids = iter(range(10_000, 20_000))

    def __init__(self, name: str, tmp: Path) -> None:
        super().__init__(name, ["fake"], tmp / f"{name}.log")
        self.starts = 0
        self._pid: int | None = None
        self._code: int | None = None

    @property
    def pid(self) -> int | None:
        return self._pid

    def start(self) -> None:
        self.starts += 1
        self._pid, self._code = next(self.pids), None

    def alive(self) -> bool:
        return self._pid is not None and self._code is None

    def returncode(self) -> int | None:
        return self._code

    def die(self, code: int = -signal.SIGKILL) -> None:
        self._code = code


def _supervisor(tmp_path: Path, *names: str, **policy: float) -> tuple[Supervisor, dict[str, FakeChild]]:
    settings = Settings(data_dir=tmp_path).with_section("supervisor", **policy)
    supervisor = Supervisor(settings)
    children = {name: FakeChild(name, tmp_path) for name in names}
    for name, child in children.items():
        supervisor._launch(name, child)
    return supervisor, children


def test_watching_never_waits_on_one_childs_backoff(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_sleeping(_: float) -> None:
        raise AssertionError("the watch loop slept")

    monkeypatch.setattr(time, "sleep", no_sleeping)
    supervisor, kids = _supervisor(tmp_path, "broker-keeper", "valkey", "gateway",
                                   max_restarts=5, restart_window_s=60, backoff_initial_s=0.5, backoff_max_s=10)
    now = 100.0
    for _ in range(4):  # the gateway crash-loops: its back-off grows to 8 s
        kids["gateway"].die(1)
        supervisor.check(now)
        now = supervisor.schedule.pending["gateway"]
        supervisor.check(now)
    kids["gateway"].die(1)
    supervisor.check(now)
    assert supervisor.schedule.pending["gateway"] == now + 8.0
    kids["valkey"].die()
    supervisor.check(now + 0.1)
    supervisor.check(now + 0.6)  # Valkey's 0.5 s are up; the gateway still waits
    assert kids["valkey"].alive() and not kids["gateway"].alive() and kids["broker-keeper"].starts == 1
    supervisor.check(now + 8.0)
    assert kids["gateway"].alive() and kids["gateway"].starts == 6
    assert not supervisor._stop.is_set()


def test_restarts_are_written_to_the_run_state(tmp_path: Path) -> None:
    supervisor, kids = _supervisor(tmp_path, "broker-keeper", "valkey")
    first = kids["valkey"].pid
    before = read_state(tmp_path)
    kids["valkey"].die(-signal.SIGKILL)
    supervisor.check(0.0)
    state = read_state(tmp_path)  # the exit is recorded at once, before the restart
    assert state is not None and state.processes["valkey"].last_exit == "signal SIGKILL"
    assert state.processes["valkey"].pid == first and state.processes["valkey"].restarts == 1
    supervisor.check(0.5)
    state = read_state(tmp_path)
    assert state is not None and before is None
    valkey = state.processes["valkey"]
    assert valkey.pid == kids["valkey"].pid != first and valkey.restarts == 1 and valkey.last_exit == "signal SIGKILL"
    assert state.processes["broker-keeper"].restarts == 0 and state.processes["broker-keeper"].last_exit == ""
    raw = json.loads((tmp_path / "run" / "state.json").read_text())
    assert set(raw["processes"]["valkey"]) == {"pid", "restarts", "started_at_ms", "last_exit"}


def test_a_child_over_budget_stops_the_platform(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    supervisor, kids = _supervisor(tmp_path, "processors", max_restarts=2, restart_window_s=60,
                                   backoff_initial_s=0, backoff_max_s=0)
    for t in (0.0, 1.0):
        kids["processors"].die(1)
        supervisor.check(t)
        assert kids["processors"].alive() and not supervisor._stop.is_set()
    kids["processors"].die(3)
    supervisor.check(2.0)
    assert supervisor._stop.is_set() and not kids["processors"].alive()
    assert supervisor.failure == "processors exited (exit code 3) after 2 restarts in 60 s"
    assert "stopping the platform" in caplog.text
