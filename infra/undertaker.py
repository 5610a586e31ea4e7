"""After `glasscast up` is killed, make sure that nothing it started outlives it.

Run as ``python -m infra.undertaker --data-dir DIR --parent-pid PID``, with
settings from ``GLASSCAST_*`` variables.  When the supervisor dies without
stopping its children (SIGKILL, a crash), they get SIGTERM from the kernel
(PR_SET_PDEATHSIG) and the keeper notices and drains; but nobody is left to
escalate, so a child whose shutdown hangs -- on a broker the keeper has
stopped meanwhile, say -- would run for ever.  The supervisor starts this
process first, in its own session (so the supervisor's death does not signal
it), and stops it last.  While the supervisor runs, it notes the
supervisor's children every ``SNAPSHOT_S`` and all its descendants when those
change and at least every ``FULL_SNAPSHOT_S`` (``infra/proctree.py``).  When
the supervisor dies first, it gives those still there (and what they started
since) ``GLASSCAST_SUPERVISOR_STOP_TIMEOUT_S`` to exit, the keeper and its
broker the archive drain timeout on top, SIGKILLs whatever is left, and
exits.

It costs nothing while it waits: the kernel tells it when the supervisor dies
(its own ``PR_SET_PDEATHSIG``, as SIGUSR1, taken with ``sigtimedwait``), so
it wakes only for the snapshots, not to poll its parent.

Only processes that descend from the dead supervisor are touched, each
identified by pid and start time: a new `glasscast up` on the same data
directory, started while this one waits, is left alone (so the processes are
never found by their data directory here).  SIGTERM (the supervisor stopped
everything itself) ends it at once.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from infra.embedded.keeper import broker_dir
from infra.embedded.tansu_record import read_record
from infra.proctree import PlatformProcess, descendants, kill, still_running, subtree
from infra.settings import load_settings

POLL_S = 0.2  # while burying: how often it looks whether the processes have exited
SNAPSHOT_S = 1.0  # a child started less than this before the supervisor died is left to its SIGTERM
# What a child started since the last full snapshot is found through it when the supervisor dies; only what
# such a grandchild left orphaned (its parent died too) in the last this many seconds can be missed.
FULL_SNAPSHOT_S = 10.0
PARENT_DIED = signal.SIGUSR1
_PR_SET_PDEATHSIG = 1
KEEPER_MODULE = "infra.embedded.keeper"


def undertaker_argv(data_dir: Path, parent_pid: int) -> list[str]:
    return [sys.executable, "-m", "infra.undertaker", "--data-dir", str(data_dir), "--parent-pid", str(parent_pid)]


def split_keeper(processes: list[PlatformProcess]) -> tuple[list[PlatformProcess], list[PlatformProcess]]:
    """(everything else, the keeper and what it started): the keeper drains first, so it may take longer."""
    keepers = {p.pid for p in processes if KEEPER_MODULE in p.command.split()}
    tree = subtree(processes, keepers)
    return [p for p in processes if p not in tree], tree


def bury(processes: list[PlatformProcess], grace_s: float, keeper_grace_s: float,
         log: logging.Logger) -> list[PlatformProcess]:
    """Wait for these processes to exit; SIGKILL those over their grace.  Returns the ones that had to be killed."""
    others, keeper = split_keeper(processes)
    start = time.monotonic()
    killed: list[PlatformProcess] = []
    for group, grace in ((others, grace_s), (keeper, keeper_grace_s)):
        while any(still_running(p) for p in group) and time.monotonic() - start < grace:
            time.sleep(POLL_S)
        left = [p for p in group if still_running(p)]
        if left:
            log.warning("undertaker: SIGKILL for %s, still running %.0f s after the supervisor died",
                        ", ".join(f"{p.pid} ({p.command[:80]})" for p in left), time.monotonic() - start)
            kill(left)
            killed += left
    return killed


def survivors(known: list[PlatformProcess]) -> list[PlatformProcess]:
    """Those of ``known`` still running, and whatever they have started since."""
    alive = [p for p in known if still_running(p)]
    found = {p.pid: p for p in alive}
    for proc in alive:
        found.update({d.pid: d for d in descendants(proc.pid)})
    return sorted(found.values(), key=lambda p: p.pid)


def _parent_alive(pid: int) -> bool:
    return os.getppid() == pid  # reparented: our parent, the supervisor, is gone


def _signal_parent_death() -> None:
    """Have the kernel send PARENT_DIED when the supervisor dies (its main thread started us), held for
    ``sigtimedwait``; without prctl the waits below simply time out and the parent is checked then."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {PARENT_DIED})
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(PARENT_DIED))


def _watch(parent_pid: int) -> list[PlatformProcess]:
    """Wait for the supervisor to die, noting its processes; the last note."""
    _signal_parent_death()
    me = os.getpid()
    known: list[PlatformProcess] = []
    children: set[int] = set()
    full_at = 0.0
    while _parent_alive(parent_pid):  # checked after arming: a death before it is seen here
        now = time.monotonic()
        current = child_pids(parent_pid)
        if current != children or now >= full_at:
            known = [p for p in descendants(parent_pid) if p.pid != me]
            children, full_at = current, now + FULL_SNAPSHOT_S
        signal.sigtimedwait({PARENT_DIED}, SNAPSHOT_S)
    return known


def child_pids(pid: int) -> set[int]:
    """The pids of ``pid``'s children (cheap: one /proc read per thread of it)."""
    found: set[int] = set()
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found.update(int(c) for c in f.read().split())
        except (OSError, ValueError):
            continue
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.undertaker", description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--parent-pid", type=int, required=True)
    args = parser.parse_args(argv)
    settings = load_settings(os.environ, data_dir=args.data_dir)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a closing terminal is not a reason to stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the supervisor, which stops us
    (args.data_dir / "logs").mkdir(parents=True, exist_ok=True)
    logging.basicConfig(filename=args.data_dir / "logs" / "undertaker.log", level=logging.INFO,
                        format="%(asctime)s %(process)d %(levelname)s %(message)s")
    log = logging.getLogger("glasscast.undertaker")
    processes = survivors(_watch(args.parent_pid))
    tansu = read_record(broker_dir(args.data_dir))  # outlives its keeper by design: maybe no longer below us
    if tansu is not None and tansu.running() and tansu.pid not in {p.pid for p in processes}:
        processes.append(PlatformProcess(tansu.pid, 1, f"tansu {KEEPER_MODULE}", tansu.start_ticks))
    log.warning("undertaker: supervisor %d gone; waiting for %d processes", args.parent_pid, len(processes))
    grace = settings.supervisor.stop_timeout_s
    killed = bury(processes, grace, grace + settings.archive.drain_timeout_s, log)
    log.info("undertaker: done (%d killed)", len(killed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
