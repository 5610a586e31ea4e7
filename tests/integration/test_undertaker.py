"""The undertaker (infra/undertaker.py) on real processes: after their parent (the supervisor) is killed,
it SIGKILLs its descendants that outstay their grace, gives the keeper's tree longer, and touches nothing
else -- not even a process of a new platform on the same data dir (infra/proctree.py)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.proctree import PlatformProcess, descendants, platform_processes, still_running
from infra.undertaker import bury, split_keeper, survivors
from tests.waiting import eventually

pytestmark = pytest.mark.integration

STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
# A "supervisor" that starts a keeper-like and a service-like child, both deaf to SIGTERM.
SUPERVISOR = f"""
import subprocess, sys, time
for role in (["infra.embedded.keeper"], ["run", "processors"]):
    subprocess.Popen([sys.executable, "-c", {STUBBORN!r}, *role])
time.sleep(60)
"""


@pytest.fixture
def started() -> Iterator[list[int]]:
    pids: list[int] = []
    yield pids
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_the_dead_supervisors_stubborn_children_are_killed_and_nothing_else(tmp_path: Path,
                                                                            started: list[int]) -> None:
    data = tmp_path / "data"
    data.mkdir()
    supervisor = subprocess.Popen([sys.executable, "-c", SUPERVISOR, "--data-dir", str(data)], cwd=data)
    started.append(supervisor.pid)

    def both_children() -> list[PlatformProcess] | None:
        found = descendants(supervisor.pid)
        return found if len(found) == 2 else None

    known = eventually(both_children, 30, "the two children")
    started += [p.pid for p in known]
    others, keeper = split_keeper(known)
    assert [p.command.split()[-1] for p in keeper] == ["infra.embedded.keeper"]
    assert [p.command.split()[-1] for p in others] == ["processors"]

    supervisor.kill()
    supervisor.wait()
    newcomer = subprocess.Popen([sys.executable, "-c", STUBBORN, "--data-dir", str(data)], cwd=data)
    started.append(newcomer.pid)
    assert {p.pid for p in platform_processes(data)} == {p.pid for p in known} | {newcomer.pid}
    left = survivors(known)
    assert left == known  # the newcomer, though on the same data dir, did not descend from the dead one

    killed: list[PlatformProcess] = bury(left, grace_s=0.2, keeper_grace_s=0.6, log=logging.getLogger("test"))
    assert [p.pid for p in killed] == [others[0].pid, keeper[0].pid]  # the keeper last
    eventually(lambda: not any(still_running(p) for p in known), 10, "the children to be gone")
    assert newcomer.poll() is None
    newcomer.kill()
    newcomer.wait()
