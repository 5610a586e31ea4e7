"""Fan-out: every gateway subscribes once per room it has viewers in and writes each message to its sockets.

A message is published once to Valkey (``{prefix}chat:room:{channel}``,
already encoded by the gateway that accepted it); each gateway's single
pub/sub connection receives it and the room queues it.  Within
``coalesce_ms`` the room joins what is queued into one payload, builds the
WebSocket frame bytes once and writes the same bytes to every socket: one
encode and one ``transport.write`` per socket per flush, however many
messages it carries.

Slow consumers never grow memory: a socket whose transport holds more than
``send_buffer_bytes`` unsent skips what comes until it drains, and one that
stays behind for ``slow_client_drop_s`` is disconnected.  Mega rooms: when a
room carries more than ``sample_max_per_s`` messages a second, ordinary
viewers get a sample of at most that many a second (one shared sample, so it
is still encoded once); the broadcaster and moderators get everything, and
control frames (deletions, bans, room state) always reach everyone.

Frames go straight to the socket's transport when the server is uvicorn's
websockets-sansio protocol without compression (the bytes are then exactly
what the protocol would have written); any other ASGI server gets them
through ``websocket.send_text`` from a small bounded per-socket queue.

Valkey going away never takes the fan-out down: the reader logs and retries,
and redis-py's pub/sub reconnects on the next read and subscribes again to
every room it had (its connect callback), so rooms hear messages again as
soon as Valkey is back.  Pub/sub keeps nothing for a subscriber that is
away: a message accepted in the moment between Valkey's return and that
read (``RECONNECT_PAUSE_S`` at most) is in the log, replays and the recent
list, but not shown live on this gateway.  A join that cannot subscribe fails (the socket is
told to reconnect later) and leaves no half-made room; a leave that cannot
unsubscribe is done later by the reader, once Valkey answers.

A gateway with no room subscribed (idle) does not poll: the reader waits for
the first join (``IDLE_WAIT_S`` at most between looks).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from starlette.websockets import WebSocket

from gateways.chat.frames import text_frame
from infra.settings import ChatSettings

log = logging.getLogger("glasscast.chat")

MESSAGE, CONTROL = "m", "c"  # the first character of a published payload: sampled or always delivered
FALLBACK_QUEUE = 256  # frames queued per socket when frames cannot go straight to the transport
# Between reads of a failing pub/sub connection: messages published after Valkey is back but before the
# next read subscribes again are not seen here (pub/sub keeps nothing), so this bounds that gap.
RECONNECT_PAUSE_S = 0.2
IDLE_WAIT_S = 1.0  # with no room subscribed, the reader waits this long for a join (a join wakes it at once)


def _sansio_protocol(websocket: WebSocket) -> Any:
    """The uvicorn protocol object behind ``websocket``, found through its bound ``receive`` or ``send``.

    Starlette's exception handling wraps ``send`` in a closure, so ``receive``
    (which no middleware here wraps) is the one that usually still names it.
    """
    for endpoint in (getattr(websocket, "_receive", None), getattr(websocket, "_send", None)):
        proto = getattr(endpoint, "__self__", None)
        if type(proto).__name__ == "WebSocketsSansIOProtocol":
            return proto
    return None


def raw_transport(websocket: WebSocket) -> asyncio.Transport | None:
    """The socket's transport, if frame bytes written to it are exactly what the protocol would write."""
    proto = _sansio_protocol(websocket)
    transport = getattr(proto, "transport", None)
    conn = getattr(proto, "conn", None)
    if transport is None or conn is None:
        return None
    return None if getattr(conn, "extensions", None) else transport  # permessage-deflate: frames differ


class Socket:
    """One connected client, as the fan-out sees it."""

    __slots__ = ("ws", "proto", "transport", "privileged", "behind_since", "skipped", "queue", "wake", "writer",
                 "closed")

    def __init__(self, ws: WebSocket, privileged: bool) -> None:
        self.ws = ws
        self.proto = _sansio_protocol(ws)
        self.transport = raw_transport(ws)
        self.privileged = privileged
        self.behind_since: float | None = None
        self.skipped = 0
        self.closed = False
        self.queue: collections.deque[str] = collections.deque(maxlen=FALLBACK_QUEUE)
        self.wake = asyncio.Event()
        self.writer: asyncio.Task[None] | None = None
        if self.transport is None:
            self.writer = asyncio.create_task(self._write_loop())

    def deliver(self, frame: bytes, payload: str, now: float, limit: int, drop_after_s: float) -> None:
        """Write one coalesced frame, or skip it if this socket is too far behind."""
        if self.closed:
            return
        if self.transport is None:
            if len(self.queue) == self.queue.maxlen:
                self.skipped += 1  # the oldest queued frame falls out
            self.queue.append(payload)
            self.wake.set()
            return
        if self.transport.is_closing() or getattr(self.proto, "close_sent", False):
            self.closed = True  # nothing may follow a close frame (RFC 6455 section 5.5.1)
            return
        if self.transport.get_write_buffer_size() > limit:
            self.skipped += 1
            if self.behind_since is None:
                self.behind_since = now
            elif now - self.behind_since > drop_after_s:
                log.info("chat: dropping a client %.0f s behind (%d frames skipped)", now - self.behind_since,
                         self.skipped)
                self.closed = True
                self.transport.abort()
            return
        self.behind_since = None
        self.transport.write(frame)

    async def send_now(self, payload: str) -> None:
        """A frame for this socket only (CONNECTED, ACK, NOTICE, ERROR)."""
        if self.transport is not None:
            if not self.transport.is_closing() and not getattr(self.proto, "close_sent", False):
                self.transport.write(text_frame(payload.encode()))
            return
        if not self.closed:
            await self.ws.send_text(payload)

    async def restart(self, payload: str, code: int, reason: str) -> None:
        """Say ``payload`` (RECONNECT) last, then close with ``code``; the session's handler then ends."""
        if self.closed:
            return
        with contextlib.suppress(Exception):  # the client may be gone already; its handler cleans up
            await self.send_now(payload)
        self.close()  # nothing from the fan-out after the close frame
        with contextlib.suppress(Exception):
            await self.ws.close(code, reason)

    async def _write_loop(self) -> None:
        while not self.closed:
            await self.wake.wait()
            self.wake.clear()
            while self.queue:
                batch = "\n".join(self.queue)
                self.queue.clear()
                try:
                    await self.ws.send_text(batch)
                except Exception:  # the socket went away; its handler ends the session
                    self.closed = True
                    return

    def close(self) -> None:
        self.closed = True
        if self.writer is not None:
            self.writer.cancel()


class Room:
    """A room's local sockets and the messages waiting for the next flush."""

    __slots__ = ("channel_id", "sockets", "pending", "flush_at", "window_start", "window_count", "rate", "tokens",
                 "tokens_at")

    def __init__(self, channel_id: str) -> None:
        self.channel_id = channel_id
        self.sockets: set[Socket] = set()
        self.pending: list[tuple[str, str]] = []  # (kind, JSON)
        self.flush_at: asyncio.TimerHandle | None = None
        self.window_start = 0.0
        self.window_count = 0
        self.rate = 0.0  # messages per second over the last full second (the current one counts too)
        self.tokens = 0.0
        self.tokens_at = 0.0

    def count(self, now: float) -> None:
        if now - self.window_start >= 1.0:
            self.rate = self.window_count / max(1.0, now - self.window_start) if self.window_start else 0.0
            self.window_start, self.window_count = now, 0
        self.window_count += 1

    def sample(self, messages: list[tuple[str, str]], max_per_s: int, now: float) -> list[str]:
        """What ordinary viewers get this flush: every control frame, and messages within the budget."""
        self.tokens = min(float(max_per_s), self.tokens + (now - self.tokens_at) * max_per_s)
        self.tokens_at = now
        chosen = []
        for kind, payload in messages:
            if kind == CONTROL:
                chosen.append(payload)
            elif self.tokens >= 1.0:
                self.tokens -= 1.0
                chosen.append(payload)
        return chosen


class ChatHub:
    """This gateway process's rooms, its one pub/sub subscription, and the flushes."""

    def __init__(self, client: aioredis.Redis, prefix: str, settings: ChatSettings,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.r = client
        self.channel_prefix = f"{prefix}chat:room:"
        self.settings = settings
        self.clock = clock
        self.rooms: dict[str, Room] = {}
        self.pubsub: Any = None
        self.reader: asyncio.Task[None] | None = None
        self.delivered = 0  # socket writes (each may carry several messages)
        self.messages = 0  # messages received from pub/sub
        self.orphans: set[str] = set()  # rooms left while Valkey was away, still to unsubscribe
        self.healthy = True  # False while the pub/sub connection is failing
        self._joined: asyncio.Event | None = None  # set by join(): the reader waits on it while there is no room

    async def start(self) -> None:
        self.pubsub = self.r.pubsub(ignore_subscribe_messages=True)
        self._joined = asyncio.Event()
        self.reader = asyncio.create_task(self._read(), name="chat-fanout")

    async def stop(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader
        for room in self.rooms.values():
            for sock in room.sockets:
                sock.close()
        if self.pubsub is not None:
            await self.pubsub.aclose()

    def sockets(self) -> list[Socket]:
        """Every socket connected to this gateway, in any room."""
        return [sock for room in self.rooms.values() for sock in room.sockets]

    def topic(self, channel_id: str) -> str:
        return f"{self.channel_prefix}{channel_id}"

    async def join(self, channel_id: str, sock: Socket) -> None:
        """Add a socket to its room, subscribing first if the room is new here (a Valkey error propagates)."""
        room = self.rooms.get(channel_id)
        if room is None:
            self.orphans.discard(channel_id)
            await self.pubsub.subscribe(self.topic(channel_id))
            if self._joined is not None:
                self._joined.set()  # wake the reader if it was waiting for a first room
            room = self.rooms.get(channel_id)  # another socket may have made it meanwhile
            if room is None:
                room = self.rooms[channel_id] = Room(channel_id)
        room.sockets.add(sock)

    async def leave(self, channel_id: str, sock: Socket) -> None:
        """Remove a socket; the last one out unsubscribes the room (later, if Valkey does not answer now)."""
        sock.close()
        room = self.rooms.get(channel_id)
        if room is None:
            return
        room.sockets.discard(sock)
        if not room.sockets:
            del self.rooms[channel_id]
            if room.flush_at is not None:
                room.flush_at.cancel()
            try:
                await self.pubsub.unsubscribe(self.topic(channel_id))
            except (aioredis.ConnectionError, aioredis.TimeoutError):
                self.orphans.add(channel_id)  # the reader unsubscribes once Valkey answers

    async def _unsubscribe_orphans(self) -> None:
        for channel_id in list(self.orphans):
            if channel_id not in self.rooms:
                await self.pubsub.unsubscribe(self.topic(channel_id))
            self.orphans.discard(channel_id)

    async def publish(self, channel_id: str, kind: str, payload: str) -> None:
        """Send an encoded frame to every gateway with viewers in the room (this one included)."""
        await self.r.publish(self.topic(channel_id), kind + payload)

    async def _read(self) -> None:
        prefix_len = len(self.channel_prefix)
        while True:
            if not self.pubsub.subscribed:
                # No room here (an idle gateway): wait for a join rather than polling.
                joined = self._joined
                if joined is None:
                    await asyncio.sleep(IDLE_WAIT_S)
                    continue
                joined.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(joined.wait(), IDLE_WAIT_S)
                continue
            try:
                if self.orphans:
                    await self._unsubscribe_orphans()
                msg = await self.pubsub.get_message(timeout=1.0)
            except Exception as exc:  # never let the room's only reader die: log, wait, read again
                if self.healthy:
                    log.warning("chat: pub/sub read failed (%s: %s); retrying until Valkey answers",
                                type(exc).__name__, exc, exc_info=not isinstance(exc, aioredis.ConnectionError))
                self.healthy = False
                await asyncio.sleep(RECONNECT_PAUSE_S)
                continue
            if not self.healthy:
                log.info("chat: pub/sub connection back; %d rooms subscribed again", len(self.rooms))
                self.healthy = True
            if msg is None or msg.get("type") != "message":
                continue
            channel = msg["channel"]
            channel_id = (channel.decode() if isinstance(channel, bytes) else channel)[prefix_len:]
            data = msg["data"]
            text = data.decode() if isinstance(data, bytes) else data
            self.receive(channel_id, text[:1], text[1:])

    def receive(self, channel_id: str, kind: str, payload: str) -> None:
        """Queue one message for the room's next flush."""
        room = self.rooms.get(channel_id)
        if room is None:
            return
        self.messages += 1
        if kind == MESSAGE:
            room.count(self.clock())
        room.pending.append((kind, payload))
        if room.flush_at is None:
            loop = asyncio.get_running_loop()
            room.flush_at = loop.call_later(self.settings.coalesce_ms / 1000, self.flush, room)

    def flush(self, room: Room) -> None:
        """Write the room's queued messages to each of its sockets as one frame."""
        room.flush_at = None
        pending, room.pending = room.pending, []
        if not pending or not room.sockets:
            return
        now = self.clock()
        payload = "\n".join(p for _, p in pending)
        frame = text_frame(payload.encode())
        max_per_s = self.settings.sample_max_per_s
        sampled: tuple[bytes, str] | None = None
        if max_per_s and max(room.rate, room.window_count) > max_per_s:
            chosen = room.sample(pending, max_per_s, now)
            text = "\n".join(chosen)
            sampled = (text_frame(text.encode()), text) if chosen else (b"", "")
        limit, drop_s = self.settings.send_buffer_bytes, self.settings.slow_client_drop_s
        for sock in room.sockets:
            if sampled is not None and not sock.privileged:
                if sampled[0]:
                    sock.deliver(sampled[0], sampled[1], now, limit, drop_s)
            else:
                sock.deliver(frame, payload, now, limit, drop_s)
        self.delivered += len(room.sockets)
