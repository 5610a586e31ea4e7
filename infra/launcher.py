"""`glasscast up` as a child process, the way a newcomer runs it, with chosen settings in its environment.

Used by the browser tests and the benchmarks to run the whole platform on free
ports and wait until its supervisor says it is up.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

from infra.embedded.process import free_port, pid_alive
from infra.runstate import read_state

UP_LINE = "Glasscast is up"  # what `glasscast up` prints once every service runs
ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 180


class GlasscastUp:
    """The whole platform on free ports; ``settings`` are GLASSCAST_* variables for it (and its children)."""

    def __init__(self, data_dir: Path, settings: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.http_port, self.rtmp_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.rtmp_url = f"rtmp://127.0.0.1:{self.rtmp_port}/live"
        self.log = data_dir.parent / "glasscast-up.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("GLASSCAST_")} | (settings or {})
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> GlasscastUp:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "infra.cli", "up", "--data-dir", str(self.data_dir),
                 "--http-port", str(self.http_port), "--rtmp-port", str(self.rtmp_port)],
                cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

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

    def stop(self) -> None:
        """SIGTERM and wait; then make sure no process it started outlives the test."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        state = read_state(self.data_dir)  # removed by a clean stop; left behind by a killed supervisor
        if state is not None:
            for pid in [state.supervisor_pid, *state.processes.values()]:
                if pid_alive(pid):
                    os.kill(pid, signal.SIGKILL)
