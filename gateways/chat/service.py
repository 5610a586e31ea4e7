"""What the chat routes share (``Services.chat``), opened and closed by the gateway's lifespan."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from gateways.chat.classifier import Classifier
from gateways.chat.fanout import ChatHub
from gateways.chat.ratelimit import RateLimiter
from infra.settings import Settings
from topics.producer import EventProducer
from views.chat_rooms import ChatRooms
from views.scripts import Coalescing


@dataclass
class ChatContext:
    """The fan-out, the room views, the rate limiter, the optional classifier, the chat's log producer and
    its bound, and the chat's Valkey keys."""

    hub: ChatHub
    rooms: ChatRooms
    limiter: RateLimiter
    classifier: Classifier | None
    prefix: str
    log: EventProducer  # chat.messages; acknowledges or refuses within log_timeout_s (gateways/services.py)
    log_timeout_s: float
    trips: Coalescing  # the send path's Valkey round trips, concurrent sends' sent together (views/scripts.py)

    def k_recent(self, channel_id: str) -> str:
        return f"{self.prefix}chat:recent:{channel_id}"

    def k_nonce(self, channel_id: str, user_id: str, nonce: str) -> str:
        return f"{self.prefix}chat:nonce:{channel_id}:{user_id}:{nonce}"

    def k_last(self, channel_id: str, user_id: str) -> str:
        return f"{self.prefix}chat:last:{channel_id}:{user_id}"

    async def recent(self, r: aioredis.Redis, channel_id: str, count: int) -> list[Any]:
        """The room's last ``count`` messages, oldest first, as the JSON the clients got."""
        raw = await r.lrange(self.k_recent(channel_id), 0, count - 1) if count else []
        return [json.loads(x) for x in reversed(raw)]


async def open_chat(settings: Settings, client: aioredis.Redis, log: EventProducer,
                    log_timeout_s: float) -> ChatContext:
    prefix = settings.valkey.key_prefix
    hub = ChatHub(client, prefix, settings.chat)
    await hub.start()
    classifier = Classifier() if settings.chat.ml_filter else None
    if classifier is not None:
        classifier.start()  # the model loads in a thread; the gateway is ready before it is
    return ChatContext(hub=hub, rooms=ChatRooms(client, prefix), limiter=RateLimiter(client, prefix),
                       classifier=classifier, prefix=prefix, log=log, log_timeout_s=log_timeout_s,
                       trips=Coalescing(client))


async def close_chat(chat: ChatContext) -> None:
    await chat.hub.stop()
    await chat.trips.close()
    if chat.classifier is not None:
        await chat.classifier.stop()
