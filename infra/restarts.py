"""When `glasscast up` restarts a child that exited: a budget that is a rate, back-off that is a schedule.

Why a rate: a child that crashes once an hour should be restarted for ever,
while one that crash-loops should stop the platform with a clear message
instead of burning the machine.  So the budget counts restarts in a sliding
window (``max_restarts`` in ``window_s``), not over the platform's life.

Why a schedule: the supervisor watches every child from one loop.  Sleeping
out one child's back-off would stop it from noticing that another died, so a
restart is a due time that the loop checks (``RestartSchedule.due``), never a
sleep.  The back-off doubles with each restart still in the window, so a
child that stays up for a window starts again from the shortest delay.

Pure: every time is passed in (monotonic seconds); nothing here reads a clock
or touches a process.
"""

from __future__ import annotations

import signal
from collections import deque
from dataclasses import dataclass

from infra.settings import SupervisorSettings

_MAX_DOUBLINGS = 32  # 2**32 times any initial delay is past every cap


@dataclass(frozen=True)
class RestartPolicy:
    """At most ``max_restarts`` restarts per child in any ``window_s``; back-off doubles from ``backoff_initial_s``."""

    max_restarts: int = 5
    window_s: float = 60.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 10.0

    @classmethod
    def from_settings(cls, settings: SupervisorSettings) -> RestartPolicy:
        return cls(settings.max_restarts, settings.restart_window_s, settings.backoff_initial_s,
                   settings.backoff_max_s)

    def delay_s(self, attempt: int) -> float:
        """The back-off before the ``attempt``-th restart (from 1) within one window."""
        return min(self.backoff_max_s, self.backoff_initial_s * 2.0 ** min(max(attempt - 1, 0), _MAX_DOUBLINGS))


@dataclass(frozen=True)
class Restart:
    """Start the child again at ``at``: its ``attempt``-th restart in the window."""

    at: float
    attempt: int
    delay_s: float


@dataclass(frozen=True)
class GiveUp:
    """The child exited again with its budget spent: ``restarts`` restarts in the last ``window_s``."""

    restarts: int
    window_s: float


class RestartBudget:
    """One child's restarts within the sliding window."""

    def __init__(self, policy: RestartPolicy) -> None:
        self.policy = policy
        self._times: deque[float] = deque()
        self.total = 0  # restarts over the platform's life, for `glasscast status`

    def in_window(self, now: float) -> int:
        while self._times and self._times[0] <= now - self.policy.window_s:
            self._times.popleft()
        return len(self._times)

    def on_exit(self, now: float) -> Restart | GiveUp:
        """The child exited at ``now``: when to start it again, or that it is over budget."""
        recent = self.in_window(now)
        if recent >= self.policy.max_restarts:
            return GiveUp(recent, self.policy.window_s)
        self._times.append(now)
        self.total += 1
        delay = self.policy.delay_s(recent + 1)
        return Restart(at=now + delay, attempt=recent + 1, delay_s=delay)


class RestartSchedule:
    """Every child's budget and pending restart; ``due`` says whom to start now, without waiting."""

    def __init__(self, policy: RestartPolicy) -> None:
        self.policy = policy
        self.budgets: dict[str, RestartBudget] = {}
        self.pending: dict[str, float] = {}  # name -> when to start it

    def budget(self, name: str) -> RestartBudget:
        return self.budgets.setdefault(name, RestartBudget(self.policy))

    def exited(self, name: str, now: float) -> Restart | GiveUp:
        """Record an exit; a ``Restart`` is also scheduled."""
        decision = self.budget(name).on_exit(now)
        if isinstance(decision, Restart):
            self.pending[name] = decision.at
        return decision

    def due(self, now: float) -> list[str]:
        """The children whose restart time has come (earliest first); they are no longer pending."""
        ready = sorted((at, name) for name, at in self.pending.items() if at <= now)
        for _, name in ready:
            del self.pending[name]
        return [name for _, name in ready]

    def next_due(self) -> float | None:
        return min(self.pending.values(), default=None)

    def restarts(self, name: str) -> int:
        return self.budget(name).total


def exit_reason(returncode: int | None) -> str:
    """How a child ended, as `glasscast status` shows it: ``exit code 1`` or ``signal SIGKILL``."""
    if returncode is None:
        return "running"
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit code {returncode}"
