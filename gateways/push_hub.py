"""One Valkey pub/sub connection per gateway process for every open notification socket.

A socket of its own pub/sub connection per open tab would tie up a Valkey
connection per viewer.  The hub instead subscribes to a user's push channel
when that user's first socket opens here and unsubscribes when their last one
closes; one reader task takes every message off the connection and hands it to
the queues of that user's sockets.  Subscribing while the reader waits is the
pattern redis-py's pub/sub supports (commands are sent, their confirmations
come back through the reader, which drops them).

Bounds: at most ``sockets_per_user`` sockets of one user on one gateway
(``TooManySockets``: the caller closes the newest with 1013), and at most
``QUEUE_MAX`` pushes waiting for one socket (a socket that falls further behind
is ended with ``None``, as when the hub loses Valkey: the client reconnects and
reads its feed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis

from views.errors import VALKEY_UNAVAILABLE

log = logging.getLogger("glasscast.notifications.hub")

QUEUE_MAX = 64  # pushes waiting for one socket
READ_WAIT_S = 1.0  # the reader's longest wait for a message
RETRY_PAUSE_S = 1.0  # after losing Valkey


class TooManySockets(Exception):
    """The user already has ``sockets_per_user`` notification sockets on this gateway."""


Inbox = asyncio.Queue[str | None]  # a socket's pushes; None: the hub cannot serve it any longer


class PushHub:
    """Per-user push channels, shared by all of this process's notification sockets."""

    def __init__(self, client: aioredis.Redis, sockets_per_user: int) -> None:
        self.client = client
        self.sockets_per_user = sockets_per_user
        self._pubsub: Any = None
        self._inboxes: dict[str, set[Inbox]] = {}  # channel -> its sockets' queues
        self._subscribed = asyncio.Event()
        self._lock = asyncio.Lock()  # subscribe / unsubscribe in order
        self._reader: asyncio.Task[None] | None = None

    def sockets(self, channel: str) -> int:
        return len(self._inboxes.get(channel, ()))

    @contextlib.asynccontextmanager
    async def attach(self, channel: str) -> AsyncIterator[Inbox]:
        """A queue of ``channel``'s pushes while the context lasts; TooManySockets past the bound."""
        inbox = await self._add(channel)
        try:
            yield inbox
        finally:
            await self._remove(channel, inbox)

    async def _add(self, channel: str) -> Inbox:
        async with self._lock:
            inboxes = self._inboxes.get(channel, set())
            if len(inboxes) >= self.sockets_per_user:
                raise TooManySockets(channel)
            if self._pubsub is None:
                self._pubsub = self.client.pubsub()
            if not inboxes:
                await self._pubsub.subscribe(channel)  # VALKEY_UNAVAILABLE: nothing was added
            inbox: Inbox = asyncio.Queue(QUEUE_MAX)
            self._inboxes[channel] = inboxes | {inbox}
            self._subscribed.set()
            if self._reader is None or self._reader.done():
                self._reader = asyncio.create_task(self._read(), name="notification push hub")
            return inbox

    async def _remove(self, channel: str, inbox: Inbox) -> None:
        async with self._lock:
            inboxes = self._inboxes.get(channel, set()) - {inbox}
            if inboxes:
                self._inboxes[channel] = inboxes
                return
            if self._inboxes.pop(channel, None) is not None and self._pubsub is not None:
                with contextlib.suppress(*VALKEY_UNAVAILABLE):
                    await self._pubsub.unsubscribe(channel)
            if not self._inboxes:
                self._subscribed.clear()

    async def _read(self) -> None:
        while True:
            await self._subscribed.wait()
            try:
                message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=READ_WAIT_S)
            except VALKEY_UNAVAILABLE as exc:
                log.warning("notification pushes lost Valkey (%s); open sockets are asked to reconnect", exc)
                await self._drop_all()
                await asyncio.sleep(RETRY_PAUSE_S)
                continue
            if message is None or message.get("type") != "message":
                continue
            channel = message["channel"].decode() if isinstance(message["channel"], bytes) else message["channel"]
            data = message["data"].decode() if isinstance(message["data"], bytes) else message["data"]
            for inbox in list(self._inboxes.get(channel, ())):
                try:
                    inbox.put_nowait(data)
                except asyncio.QueueFull:  # a socket this far behind is ended; its client re-reads the feed
                    self._end(inbox)

    @staticmethod
    def _end(inbox: Inbox) -> None:
        while not inbox.empty():
            inbox.get_nowait()
        inbox.put_nowait(None)

    async def _drop_all(self) -> None:
        async with self._lock:
            for inboxes in self._inboxes.values():
                for inbox in inboxes:
                    self._end(inbox)
            self._inboxes.clear()
            self._subscribed.clear()
            pubsub, self._pubsub = self._pubsub, None
            if pubsub is not None:
                with contextlib.suppress(*VALKEY_UNAVAILABLE):
                    await pubsub.aclose()

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._pubsub is not None:
            with contextlib.suppress(*VALKEY_UNAVAILABLE):
                await self._pubsub.aclose()
