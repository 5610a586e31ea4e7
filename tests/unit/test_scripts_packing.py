"""``views/scripts.exchange`` packs commands with hiredis: the bytes are those redis-py's own packing writes."""

from __future__ import annotations

import hiredis
from redis.asyncio.connection import Connection
from redis.connection import PythonRespSerializer


def test_hiredis_packs_the_bytes_redis_py_would() -> None:
    commands = [("EVALSHA", "a" * 40, 2, "gc:chat:k", "ключ", b"\x00raw", 7, -3),
                ("SET", "n", "1", "NX", "EX", 12, "GET"), ("MULTI",), ("EXEC",), ("ECHO", "é" * 10_000)]
    python = PythonRespSerializer(Connection()._buffer_cutoff, Connection().encoder.encode)
    for command in commands:
        assert hiredis.pack_command(command) == b"".join(python.pack(*command))  # type: ignore[arg-type]
