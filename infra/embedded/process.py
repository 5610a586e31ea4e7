"""Child processes for the embedded services: start, wait until ready, stop.

Children get ``PR_SET_PDEATHSIG`` so a supervisor killed with SIGKILL does not
leave brokers or caches holding ports.
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from infra.errors import ServiceError, ServiceTimeout
from media import lifeline


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout_s: float = 0.2) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        socket.create_connection((host, port), timeout_s).close()
        return True
    except OSError:
        return False


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A preexec_fn asking the kernel to signal the child when its parent dies (media/lifeline.py)."""
    return functools.partial(lifeline.die_with_parent, sig)


class ManagedProcess:
    """One child process with a log file and a readiness check."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        new_session: bool = False,
        parent_death_signal: int | None = signal.SIGTERM,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.new_session = new_session
        self.parent_death_signal = parent_death_signal
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        preexec = die_with_parent(self.parent_death_signal) if self.parent_death_signal else None
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=self.new_session,
                preexec_fn=preexec,
            )
        except OSError as exc:
            raise ServiceError(f"{self.name}: cannot start {self.argv[0]}: {exc}") from exc
        finally:
            log.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, ready: Callable[[], bool], timeout_s: float = 30.0) -> None:
        """Poll ``ready`` until it answers True; fail if the child exits first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise ServiceError(f"{self.name} exited with {self.returncode()}; see {self.log_path}")
            if ready():
                return
            time.sleep(0.02)
        raise ServiceTimeout(f"{self.name} not ready after {timeout_s:.0f} s; see {self.log_path}")

    def returncode(self) -> int | None:
        return self.proc.poll() if self.proc else None

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout_s``."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists and has not exited (a zombie nobody reaped yet has)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return not Path("/proc/self/stat").exists()  # gone since kill(); or no /proc here, and kill() said yes
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")
