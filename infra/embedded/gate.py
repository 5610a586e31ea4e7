"""A TCP gate in front of a broker that is being rebuilt while clients wait.

When Tansu itself dies, its memory is gone and the keeper must rehydrate a new
one from the archive (``infra/embedded/rehydrate.py``) before any client
writes to it: a producer that reconnects first would take offsets the archive
already holds.  Every client knows the broker by one address, so the new
Tansu listens on a private port and advertises the public one, and this gate
holds the public port:

- closed: it accepts connections but forwards only those that come from this
  very process (the keeper's rehydration, offsets and archive clients, found
  by the socket's inode in ``/proc/net/tcp`` and ``/proc/self/fd``); anyone
  else is disconnected at once and retries with its own back-off;
- open: it forwards every connection, both ways, until it is stopped.

Forwarding is two blocking threads per connection (``recv``/``sendall``), so
an idle connection costs nothing, and only events travel through Kafka, never
video.  The gate lives and dies with the keeper; a restarted keeper adopts the
Tansu that is still running and opens a new gate at once (``keeper.py``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from pathlib import Path

BUFFER = 256 * 1024


def _inodes_of_own_sockets() -> set[str]:
    inodes: set[str] = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def connection_is_ours(client_port: int, server_port: int) -> bool:
    """Whether the client end of a loopback connection (client_port -> server_port) is a socket of this process."""
    wanted: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10:
                continue
            local, remote, inode = fields[1], fields[2], fields[9]
            if int(local.rsplit(":", 1)[1], 16) == client_port and int(remote.rsplit(":", 1)[1], 16) == server_port:
                wanted.add(inode)
    return bool(wanted & _inodes_of_own_sockets())


class Gate:
    """Forwards ``host:port`` to ``host:backend_port``; see the module docstring."""

    def __init__(self, host: str, port: int, backend_port: int, log: logging.Logger) -> None:
        self.host = host
        self.port = port
        self.backend_port = backend_port
        self.log = log
        self.is_open = False
        self.refused = 0
        self._stopping = False
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(128)
        self._listener = listener
        threading.Thread(target=self._accept, name="gate-accept", daemon=True).start()

    def open(self) -> None:
        self.is_open = True
        self.log.info("gate: %s:%d open to everyone (forwarding to port %d; %d refused while closed)",
                      self.host, self.port, self.backend_port, self.refused)

    def stop(self) -> None:
        self._stopping = True
        with self._lock:
            sockets = list(self._sockets)
            self._sockets.clear()
        if self._listener is not None:
            _close(self._listener)
        for sock in sockets:
            _close(sock)

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stopping:
            try:
                client, (_, client_port) = self._listener.accept()
            except OSError:
                return
            if not self.is_open and not connection_is_ours(client_port, self.port):
                self.refused += 1
                _close(client)
                continue
            try:
                backend = socket.create_connection((self.host, self.backend_port), timeout=5)
                backend.settimeout(None)
            except OSError as exc:
                self.log.warning("gate: backend port %d refused a connection: %s", self.backend_port, exc)
                _close(client)
                continue
            for sock in (client, backend):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if self._stopping:
                    _close(client)
                    _close(backend)
                    return
                self._sockets |= {client, backend}
            threading.Thread(target=self._pump, args=(client, backend), daemon=True).start()
            threading.Thread(target=self._pump, args=(backend, client), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(BUFFER):
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):  # either side gone: the connection is over both ways
            with self._lock:
                self._sockets.discard(sock)
            _close(sock)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
