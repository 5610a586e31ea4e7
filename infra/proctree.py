"""The processes of one platform, found by walking /proc: to prove that nothing is left behind.

A run state lists only the processes the supervisor started, and only while
it runs; what they forked (Tansu under the keeper, a transcode pool under a
media worker) or what outlived a killed supervisor is not in it.  Every
process of a platform is tied to its data directory, though: the supervisor
and the keeper name it on their command line, Valkey runs in it (it rewrites
its command line, so its working directory tells), and every service and
whatever it forks inherit ``GLASSCAST_DATA_DIR``; and any descendant of such a
process belongs to the platform too.  So the tests and ``infra/launcher.py``
look for that, and see orphans reparented to init as well.  Linux only (it
reads /proc).
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class PlatformProcess:
    pid: int
    ppid: int
    command: str  # the command line, arguments joined by spaces
    start_ticks: int = 0  # when it started (clock ticks after boot): with the pid, names one process for good


def _under(value: bytes, directory: bytes) -> bool:
    return value == directory or value.startswith(directory + b"/")


def _mentions(directory: bytes, cmdline: bytes, environ: bytes, cwd: bytes) -> bool:
    if _under(cwd, directory) or any(_under(arg, directory) for arg in cmdline.split(b"\0")):
        return True
    return any(_under(var.partition(b"=")[2], directory) for var in environ.split(b"\0"))


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, start time in ticks) of a process, or None if it is gone."""
    try:
        fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
        return fields[0], int(fields[1]), int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def process(pid: int) -> PlatformProcess | None:
    """The live process with this pid now (None if there is none, or only a zombie)."""
    stat = _stat(pid)
    if stat is None or stat[0] in ("Z", "X"):
        return None
    try:
        command = (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None
    return PlatformProcess(pid, stat[1], command.strip(), stat[2])


def still_running(proc: PlatformProcess) -> bool:
    """Whether this very process (not a later one with its pid) is still there and not a zombie."""
    stat = _stat(proc.pid)
    return stat is not None and stat[0] not in ("Z", "X") and stat[2] == proc.start_ticks


def subtree(processes: list[PlatformProcess], roots: set[int]) -> list[PlatformProcess]:
    """The processes among ``processes`` that are one of ``roots`` or descend from one."""
    members = set(roots)
    grown = True
    while grown:
        more = {p.pid for p in processes if p.ppid in members and p.pid not in members}
        members |= more
        grown = bool(more)
    return [p for p in processes if p.pid in members]


def _marked(entry: Path, directories: set[bytes]) -> bool:
    try:
        cmdline = (entry / "cmdline").read_bytes()
        environ = (entry / "environ").read_bytes()
        cwd = os.fsencode(os.readlink(entry / "cwd"))
    except OSError:  # gone, or not ours to read
        return False
    return any(_mentions(d, cmdline, environ, cwd) for d in directories)


def platform_processes(data_dir: Path) -> list[PlatformProcess]:
    """Every live process (not zombies, not this one) tied to ``data_dir``, and their descendants."""
    directories = {str(data_dir).encode(), str(data_dir.resolve()).encode()}
    live: dict[int, tuple[int, int]] = {}  # pid -> (ppid, start ticks)
    members: set[int] = set()
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        stat = _stat(int(entry.name))
        if stat is None or stat[0] in ("Z", "X"):
            continue
        live[int(entry.name)] = stat[1], stat[2]
        if _marked(entry, directories):
            members.add(int(entry.name))
    grown = True
    while grown:  # descendants, however they were started
        more = {pid for pid, (ppid, _) in live.items() if ppid in members and pid not in members}
        members |= more
        grown = bool(more)
    found = []
    for pid in sorted(members):
        try:
            command = (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone meanwhile
        found.append(PlatformProcess(pid, live[pid][0], command.strip(), live[pid][1]))
    return found


def _children(pid: int) -> list[int]:
    """The pids of a process's children (each thread lists those it started)."""
    found: list[int] = []
    try:
        tasks = list((PROC / str(pid) / "task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return found


def descendants(root: int) -> list[PlatformProcess]:
    """Every live process below ``root`` (children, their children...), cheaply: no walk over all of /proc."""
    found: list[PlatformProcess] = []
    todo = _children(root)
    seen: set[int] = set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        stat = _stat(pid)
        if stat is None or stat[0] in ("Z", "X"):
            continue
        try:
            command = (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        found.append(PlatformProcess(pid, stat[1], command.strip(), stat[2]))
        todo += _children(pid)
    return sorted(found, key=lambda p: p.pid)


def kill(processes: list[PlatformProcess]) -> None:
    """SIGKILL each of these processes that is still the one it was."""
    for proc in processes:
        if still_running(proc):
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def kill_platform(data_dir: Path) -> list[PlatformProcess]:
    """SIGKILL every process of the platform on ``data_dir`` that is still there; returns those it found."""
    left = platform_processes(data_dir)
    kill(left)
    return left
