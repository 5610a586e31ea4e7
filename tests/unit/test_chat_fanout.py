"""The fan-out's flush: one frame per flush for every socket, sampling in mega rooms, slow sockets skip.

Sockets here are stand-ins holding a transport-like buffer (what a real socket's asyncio transport
reports); tests/integration/test_chat.py runs the same code over real WebSockets.
"""

from __future__ import annotations

from typing import Any

from gateways.chat.fanout import CONTROL, MESSAGE, ChatHub, Room, Socket
from gateways.chat.frames import text_frame
from infra.settings import ChatSettings


class BufferTransport:
    """What Socket.deliver uses of an asyncio transport, with a buffer the test fills."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.buffered = 0
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def is_closing(self) -> bool:
        return self.aborted

    def abort(self) -> None:
        self.aborted = True


def _socket(privileged: bool = False) -> tuple[Any, BufferTransport]:
    sock = Socket.__new__(Socket)
    transport = BufferTransport()
    sock.ws, sock.proto, sock.transport, sock.privileged = None, None, transport, privileged
    sock.behind_since, sock.skipped, sock.closed, sock.writer = None, 0, False, None
    return sock, transport


def _hub(**chat: Any) -> tuple[ChatHub, Room, list[float]]:
    now = [100.0]
    hub = ChatHub(None, "p:", ChatSettings(**chat), clock=lambda: now[0])  # type: ignore[arg-type]
    room = hub.rooms["c1"] = Room("c1")
    return hub, room, now


def test_one_frame_per_flush_carries_every_message() -> None:
    hub, room, _ = _hub()
    socks = [_socket() for _ in range(3)]
    room.sockets.update(s for s, _ in socks)
    room.pending = [(MESSAGE, '{"n":1}'), (MESSAGE, '{"n":2}'), (CONTROL, '{"c":1}')]
    hub.flush(room)
    expected = text_frame(b'{"n":1}\n{"n":2}\n{"c":1}')
    assert all(t.written == [expected] for _, t in socks)
    assert hub.delivered == 3 and room.pending == []


def test_a_slow_socket_skips_and_is_dropped_when_it_stays_behind() -> None:
    hub, room, now = _hub(send_buffer_bytes=1024, slow_client_drop_s=5.0)
    (fast, ft), (slow, st) = _socket(), _socket()
    room.sockets.update((fast, slow))
    st.buffered = 10_000
    for i in range(3):
        room.pending = [(MESSAGE, f'{{"n":{i}}}')]
        now[0] += 3.0
        hub.flush(room)
    assert len(ft.written) == 3 and st.written == [] and slow.skipped >= 2
    assert st.aborted and slow.closed  # behind for more than 5 s
    st2_sock, st2 = _socket()
    room.sockets.add(st2_sock)
    st2.buffered = 10_000
    room.pending = [(MESSAGE, "{}")]
    hub.flush(room)
    st2.buffered = 0  # it caught up: it gets the next frame
    room.pending = [(MESSAGE, "{}")]
    hub.flush(room)
    assert len(st2.written) == 1 and not st2.aborted


def test_mega_rooms_sample_for_viewers_but_not_for_moderators() -> None:
    hub, room, now = _hub(sample_max_per_s=10)
    (viewer, vt), (mod, mt) = _socket(), _socket(privileged=True)
    room.sockets.update((viewer, mod))
    got_viewer = got_mod = 0
    for tick in range(300):  # 3 s at 100 messages a second, flushed every 10 ms
        now[0] += 0.01
        room.count(now[0])
        room.pending = [(MESSAGE, f'{{"n":{tick}}}')] + ([(CONTROL, '{"c":1}')] if tick % 100 == 0 else [])
        hub.flush(room)
    for frame in vt.written:
        got_viewer += frame.count(b'"n"')
    for frame in mt.written:
        got_mod += frame.count(b'"n"')
    assert got_mod == 300
    assert 25 <= got_viewer <= 55  # 10 a second from the first second on, plus one full bucket
    controls = sum(f.count(b'"c"') for f in vt.written)
    assert controls == 3  # control frames always reach everyone
