"""`glasscast up` as a child process, the way a newcomer runs it, with chosen settings in its environment.

Used by the integration and browser tests and the benchmarks to run the whole
platform on free ports, wait until its supervisor says it is up, run the
``glasscast`` tools against it, signal it (SIGTERM, or SIGKILL to play a
crash) and make sure that no process of it outlives the test
(``infra/proctree.py``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from infra.embedded.process import free_port
from infra.proctree import kill_platform

UP_LINE = "Glasscast is up"  # what `glasscast up` prints once every service runs
ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 180
STOP_TIMEOUT_S = 60


class GlasscastUp:
    """The whole platform; ``settings`` are GLASSCAST_* variables for it (and its children).

    Ports are free ones unless given (a restart on the same data dir passes the
    previous ones).  ``with GlasscastUp(...) as up`` starts it and, on the way
    out, stops it with SIGTERM and kills whatever of it is left.
    """

    def __init__(self, data_dir: Path, settings: dict[str, str] | None = None,
                 http_port: int = 0, rtmp_port: int = 0) -> None:
        self.data_dir = data_dir
        self.http_port, self.rtmp_port = http_port or free_port(), rtmp_port or free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.rtmp_url = f"rtmp://127.0.0.1:{self.rtmp_port}/live"
        self.log = data_dir.parent / f"glasscast-up-{time.monotonic_ns()}.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("GLASSCAST_")} | (settings or {})
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> GlasscastUp:
        """Run `glasscast up` and wait until it says it is up and the gateway is ready."""
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "infra.cli", "up", "--data-dir", str(self.data_dir),
                 "--http-port", str(self.http_port), "--rtmp-port", str(self.rtmp_port)],
                cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        try:
            self._wait_ready()
        except BaseException:
            self.stop(signal.SIGKILL)
            self.cleanup()
            raise
        return self

    def __enter__(self) -> GlasscastUp:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
        self.cleanup()

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"glasscast up exited {self.proc.returncode}:\n{self.log.read_text()[-4000:]}")
            try:
                # Up once the supervisor says so: the gateway is ready before the ingest has started.
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200 and UP_LINE in self.log.read_text():
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"glasscast up not ready after {READY_TIMEOUT_S} s:\n{self.log.read_text()[-4000:]}")

    def cli(self, *args: str, timeout_s: float = 120) -> str:
        """Run a `glasscast` tool against this platform; its standard output (it must succeed)."""
        done = subprocess.run([sys.executable, "-m", "infra.cli", "--data-dir", str(self.data_dir), *args],
                              cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout_s)
        if done.returncode != 0:
            raise RuntimeError(f"glasscast {' '.join(args)} exited {done.returncode}: {done.stderr}")
        return done.stdout

    def status(self) -> dict[str, Any]:
        """`glasscast status`, parsed (``running`` is False once the platform has stopped)."""
        done = subprocess.run([sys.executable, "-m", "infra.cli", "--data-dir", str(self.data_dir), "status"],
                              cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=60)
        if done.returncode not in (0, 3):
            raise RuntimeError(f"glasscast status exited {done.returncode}: {done.stderr}")
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        """Send ``sig`` to `glasscast up` (if it still runs) and wait for it; its exit status.

        After SIGKILL the keeper is still archiving: it stops by itself (``cleanup`` would cut that short).
        """
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def cleanup(self) -> list[str]:
        """SIGKILL every process of this platform still running; the command lines of those there were."""
        return [p.command for p in kill_platform(self.data_dir)]
