"""Open and close what the chat routes share (called from the gateway's lifespan)."""

from __future__ import annotations

import redis.asyncio as aioredis

from gateways.chat.classifier import Classifier
from gateways.chat.fanout import ChatHub
from gateways.chat.ratelimit import RateLimiter
from gateways.chat.send import ChatContext
from infra.settings import Settings
from views.chat_rooms import ChatRooms


async def open_chat(settings: Settings, client: aioredis.Redis) -> ChatContext:
    prefix = settings.valkey.key_prefix
    hub = ChatHub(client, prefix, settings.chat)
    await hub.start()
    classifier = Classifier() if settings.chat.ml_filter else None
    if classifier is not None:
        classifier.start()  # the model loads in a thread; the gateway is ready before it is
    return ChatContext(hub=hub, rooms=ChatRooms(client, prefix), limiter=RateLimiter(client, prefix),
                       classifier=classifier, prefix=prefix)


async def close_chat(chat: ChatContext) -> None:
    await chat.hub.stop()
    if chat.classifier is not None:
        await chat.classifier.stop()
