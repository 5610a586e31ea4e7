"""The chat archiver: ``chat.messages`` (and ``chat.moderation``'s bans and timeouts) into the history store.

Each batch becomes its appends, deletions and clears (``events.py``) and is written
before any of its records is acknowledged, so the consumer group commits an
offset only once what it covers is stored: a message the gateway accepted
while the processors were down is archived when they come back.

A store that does not answer is retried with backoff, holding the partition
rather than skipping what it could not write; a worker stopped meanwhile waits
for the batch, as Faust waits for every record in flight, until it is killed,
and the batch is read again at the next start.  Faust's ``take_events``
acknowledges a batch when the agent moves on, also when the agent crashes or
is cancelled half-way (Faust restarts a crashed agent, and every agent on a
rebalance, while the worker goes on committing); so the agent holds one more
reference on each record (``Message.incref``) and drops it only once the batch
is stored, and a batch cut short is never committed.

Undecodable records go to the dead-letter topic, as in every agent.
``add_chat_history_agent`` is called by ``build_processors``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import faust

from infra.settings import Settings
from processors import retrying
from processors.chat_history.events import HistoryBatch, plan_batch
from processors.retrying import hold, release
from processors.viewers_agent import decoded
from topics.producer import EventProducer
from views.chat_history.backends import open_history
from views.chat_history.cassandra_store import cassandra_target
from views.chat_history.errors import HistoryError
from views.chat_history.store import HistoryStore

log = logging.getLogger("glasscast.processors.chat_history")

T = TypeVar("T")

TOPICS = ("chat.messages", "chat.moderation")
BATCH_SIZE = 500  # records per store write
BATCH_WITHIN_S = 0.1  # a partial batch is written after this long
RETRY_FIRST_S, RETRY_MAX_S = 0.5, 10.0


async def until_done(attempt: Callable[[], Awaitable[T]], what: str, first_delay_s: float = RETRY_FIRST_S) -> T:
    """``attempt()`` until it succeeds; a ``HistoryError`` is logged and tried again, backing off."""
    return await retrying.until_done(attempt, f"chat history {what}", (HistoryError,), log,
                                     first_delay_s=first_delay_s, max_delay_s=RETRY_MAX_S)


async def store_batch(store: HistoryStore, batch: HistoryBatch) -> None:
    """Write a batch: its appends, then its deletions and clears (they commute; ``store.py``)."""
    await store.append(batch.messages)
    for d in batch.deletions:
        await store.delete(d.channel_id, d.message_id)
    for c in batch.clears:
        await store.clear_user(c.channel_id, c.user_id, c.through_ms)


def add_chat_history_agent(app: faust.App, settings: Settings, dead_letters: EventProducer, codec: str) -> None:
    """Add the agent that archives ``chat.messages`` (and the clears of ``chat.moderation``) to ``app``."""
    if settings.chat.history_backend == "cassandra":
        cassandra_target(settings.chat)  # bad settings stop the worker at start, naming the variable
    group = settings.processors.app_id
    topic = app.topic(*TOPICS, key_serializer="raw", value_serializer=codec)

    @app.agent(topic)
    async def archive_chat(stream: faust.StreamT[Any]) -> None:
        store = await until_done(lambda: open_history(settings), "open")
        try:
            batches = cast("faust.Stream[Any]", stream).take_events(BATCH_SIZE, within=BATCH_WITHIN_S)
            async for events in batches:
                values = (decoded(event, dead_letters, group) for event in events)
                batch = plan_batch(v.value for v in values if v is not None)
                if not batch:
                    continue
                hold(events)
                await until_done(functools.partial(store_batch, store, batch), "write")
                release(events)
                log.debug("archived %d chat messages, %d deletions", len(batch.messages), len(batch.deletions))
        finally:
            await store.close()
