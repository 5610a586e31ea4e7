"""A chat WebSocket client for the degradation tests: it keeps what it reads and answers by predicate."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from tests.waiting import eventually_async


class Client:
    """A chat socket that keeps what it reads."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.inbox: list[dict[str, Any]] = []

    @classmethod
    async def open(cls, url: str, token: str | None = None) -> Client:
        """A socket to ``url``, signed in with ``token`` (the first frame, never the URL) when given."""
        client = cls(await connect(url))
        if token:
            await client.ws.send(json.dumps({"type": "auth", "token": token}))
        await client.next(lambda m: m["type"] == "CONNECTED")
        if token:
            await client.next(lambda m: m["type"] == "AUTHENTICATED")
        return client

    async def next(self, wanted: Callable[[dict[str, Any]], bool], timeout_s: float = 10) -> dict[str, Any]:
        async def found() -> dict[str, Any] | None:
            for i, m in enumerate(self.inbox):
                if wanted(m):
                    return self.inbox.pop(i)
            try:
                raw = await asyncio.wait_for(self.ws.recv(), 0.25)
            except TimeoutError:
                return None
            self.inbox.extend(json.loads(line) for line in str(raw).split("\n"))
            return None

        return await eventually_async(found, timeout_s, "a chat frame", every_s=0)

    async def say(self, text: str, nonce: str | None = None) -> dict[str, Any]:
        """Send a message; the server's ACK or NOTICE for it."""
        nonce = nonce or uuid.uuid4().hex
        await self.ws.send(json.dumps({"type": "send", "text": text, "nonce": nonce}))
        return await self.next(lambda m: m["type"] in ("ACK", "NOTICE") and m.get("nonce") == nonce)

    async def ping(self) -> None:
        await self.ws.send(json.dumps({"type": "ping"}))
        await self.next(lambda m: m["type"] == "PONG")

    async def messages(self, seconds: float = 0.5) -> list[dict[str, Any]]:
        try:
            while True:
                raw = await asyncio.wait_for(self.ws.recv(), seconds)
                self.inbox.extend(json.loads(line) for line in str(raw).split("\n"))
        except TimeoutError:
            pass
        return [m for m in self.inbox if m["type"] == "MESSAGE"]
