"""Run Glasscast services for tests as child processes; ``serve_app`` runs an ASGI app in a thread."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from infra.embedded.threaded import serve_app  # noqa: F401  (re-exported for tests)
from infra.settings import Settings, child_env
from tests.waiting import eventually


def service_env(settings: Settings) -> dict[str, str]:
    return child_env(settings, os.environ)


@contextlib.contextmanager
def run_service(settings: Settings, service: str, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``glasscast run SERVICE`` as a child process with these settings."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "infra.cli", "run", service],
                                env=service_env(settings), stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_healthy(url: str, proc: Any, log: Path, timeout_s: float = 60) -> None:
    """Wait until a child gateway at ``url`` answers /healthz; fail with its log if it exits or never does."""
    def healthy() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200

    eventually(healthy, timeout_s, f"{url}/healthz (log: {log})", ignore=(httpx.TransportError,))
