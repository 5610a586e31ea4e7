"""The keeper's gate (infra/embedded/gate.py) over real sockets: closed, it forwards only this process's own
connections and disconnects anyone else's; open, it forwards everyone's, both ways, until stopped."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from infra.embedded.gate import Gate, connection_is_ours
from infra.embedded.process import free_port

pytestmark = pytest.mark.integration

# Another process connects through the gate, sends a line and prints what comes back ("" when cut off).
OTHER = """
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
try:
    s.sendall(b"ping from another process\\n")
    print(s.recv(100).decode(), end="")
except OSError:
    pass
"""


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A backend that upper-cases what it receives."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(4096):
                conn.sendall(data.upper())

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield port
    server.close()


def other_process_says(port: int) -> str:
    return subprocess.run([sys.executable, "-c", OTHER, str(port)], capture_output=True, text=True,
                          timeout=30).stdout


def test_closed_lets_only_this_process_through_then_open_lets_everyone(echo_port: int) -> None:
    gate = Gate("127.0.0.1", free_port(), echo_port, logging.getLogger("test"))
    gate.start()
    try:
        assert other_process_says(gate.port) == ""  # cut off while closed
        assert gate.refused == 1
        with socket.create_connection(("127.0.0.1", gate.port), timeout=5) as ours:
            ours.sendall(b"ping from the keeper")
            assert ours.recv(100) == b"PING FROM THE KEEPER"  # our own connection is forwarded
            gate.open()
            assert other_process_says(gate.port) == "PING FROM ANOTHER PROCESS\n"
            big = bytes(range(256)) * 4096  # 1 MiB each way, through the 256 KiB buffer
            threading.Thread(target=ours.sendall, args=(big,), daemon=True).start()
            got = b""
            while len(got) < len(big):
                got += ours.recv(1 << 20)
            assert got == big.upper()
        gate.stop()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", gate.port), timeout=2).recv(1)  # stopped: nobody listens
    finally:
        gate.stop()


def test_ownership_is_read_from_the_socket_tables() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    with server, socket.create_connection(("127.0.0.1", port)) as client:
        assert connection_is_ours(client.getsockname()[1], port)
        assert not connection_is_ours(client.getsockname()[1], port + 1 if port < 65535 else port - 1)
