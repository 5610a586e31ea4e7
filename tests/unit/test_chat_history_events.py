"""Chat history from the log: records to messages and batches (processors/chat_history/events.py,
store.py) and the archiver's retry and batch writing (agent.py, on a SQLite file)."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.chat_history import agent
from processors.chat_history.events import Clear, Deletion, HistoryBatch, archived_message, plan_batch
from schemas.record import Record
from schemas.records.chat import ChatMessageDeleted, ChatMessageSent, UserBanned, UserTimedOut, UserUnbanned
from schemas.records.chat import Emote as EmoteRecord
from views.chat_history.errors import HistoryUnavailable
from views.chat_history.sqlite_store import SqliteHistory
from views.chat_history.store import HOUR_MS, ArchivedMessage, Emote, check_window, hour_bucket

CHANNEL = str(uuid.uuid4())


def _sent(message_id: str, occurred_at: int = 1_790_000_000_123, **extra: Any) -> ChatMessageSent:
    """A ChatMessageSent as the log carries it."""
    fields: dict[str, Any] = {
        "occurred_at": occurred_at, "message_id": message_id, "channel_id": CHANNEL,
        "user_id": "0b8e9a52-55a4-4be4-9f2a-3a2fe1b1d6a1", "username": "speedy", "text": "Kappa gg", "nonce": "n1",
        "emotes": (EmoteRecord(emote_id="25", start=0, end=5),), "badges": ("subscriber/3",)}
    return ChatMessageSent(**{**fields, **extra})


def _deleted(message_id: str) -> ChatMessageDeleted:
    return ChatMessageDeleted(occurred_at=1_790_000_000_500, message_id=message_id, channel_id=CHANNEL,
                              deleted_by_user_id=str(uuid.uuid4()), user_id=None, reason=None)


SPEEDY = "0b8e9a52-55a4-4be4-9f2a-3a2fe1b1d6a1"  # the user of _sent's messages


def _banned(user_id: str | None = None, occurred_at: int = 1_790_000_000_600) -> UserBanned:
    return UserBanned(occurred_at=occurred_at, channel_id=CHANNEL, user_id=user_id or str(uuid.uuid4()),
                      moderator_user_id=str(uuid.uuid4()))


def _unbanned(user_id: str) -> UserUnbanned:
    return UserUnbanned(occurred_at=1_790_000_000_700, channel_id=CHANNEL, user_id=user_id,
                        moderator_user_id=str(uuid.uuid4()))


def _message(sent_at_ms: int = 1_790_000_000_000, **changes: Any) -> ArchivedMessage:
    fields: dict[str, Any] = {"channel_id": CHANNEL, "message_id": str(uuid.uuid4()), "user_id": str(uuid.uuid4()),
                              "username": "viewer", "text": "hi", "sent_at_ms": sent_at_ms}
    return ArchivedMessage(**{**fields, **changes})



def test_a_sent_event_becomes_the_message_it_announces() -> None:
    mid = str(uuid.uuid4())
    when = dt.datetime(2026, 9, 21, 12, 0, 0, 123000, tzinfo=dt.UTC)
    m = archived_message(_sent(mid, occurred_at=int(when.timestamp() * 1000)))
    assert m == ArchivedMessage(channel_id=CHANNEL, message_id=mid, user_id="0b8e9a52-55a4-4be4-9f2a-3a2fe1b1d6a1",
                                username="speedy", text="Kappa gg", sent_at_ms=int(when.timestamp() * 1000),
                                emotes=(Emote("25", 0, 5),), badges=("subscriber/3",))
    assert archived_message(_sent(mid, emotes=(), badges=())).emotes == ()


def test_a_batch_keeps_each_message_and_deletion_once_and_ignores_other_records() -> None:
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    user = str(uuid.uuid4())
    batch = plan_batch([_sent(a), _deleted(b), _sent(a, text="redelivered"), _sent(b), _deleted(b), _unbanned(user)])
    assert [m.message_id for m in batch.messages] == [a, b]
    assert batch.messages[0].text == "Kappa gg"  # the first copy wins
    assert batch.deletions == (Deletion(CHANNEL, b),) and batch.clears == ()
    assert batch and not plan_batch([_unbanned(user)]) and not HistoryBatch()


def test_bans_and_timeouts_clear_the_user_up_to_their_moment_and_the_latest_wins() -> None:
    timed_out = UserTimedOut(occurred_at=1_790_000_000_900, channel_id=CHANNEL, user_id=SPEEDY,
                             moderator_user_id=str(uuid.uuid4()), duration_s=600)
    other = str(uuid.uuid4())
    batch = plan_batch([_banned(SPEEDY, 1_790_000_000_600), timed_out, _banned(SPEEDY, 1_790_000_000_100),
                        _banned(other), _banned(other)])
    assert batch.clears == (Clear(CHANNEL, SPEEDY, 1_790_000_000_900), Clear(CHANNEL, other, 1_790_000_000_600))


def test_hour_buckets_split_at_the_hour() -> None:
    t = 1_790_000_000_000 // HOUR_MS * HOUR_MS
    assert hour_bucket(t) == hour_bucket(t + HOUR_MS - 1) == hour_bucket(t - 1) + 1 == t // HOUR_MS
    check_window(0, 0)
    with pytest.raises(ValueError, match="negative"):
        check_window(1, -1)


async def test_until_done_retries_what_the_store_refused() -> None:
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise HistoryUnavailable("database is locked")
        return "stored"

    assert await agent.until_done(flaky, "write", first_delay_s=0.01) == "stored" and len(calls) == 3

    async def broken() -> None:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError):  # only store failures are retried
        await agent.until_done(broken, "write", first_delay_s=0.01)


async def test_store_batch_appends_then_deletes_and_clears(tmp_path: Path) -> None:
    store = await SqliteHistory.open(tmp_path / "h.sqlite3")
    try:
        kept, gone, banned = _message(1000), _message(2000), _message(1500, user_id=SPEEDY)
        # The deletion and the ban arrive in the same batch as their messages, even ahead of them.
        await agent.store_batch(store, HistoryBatch((kept, gone, banned), (Deletion(CHANNEL, gone.message_id),),
                                                    (Clear(CHANNEL, SPEEDY, 1500),)))
        assert await store.around(CHANNEL, 1500, 10, 10) == [kept]
    finally:
        await store.close()


IDS = [str(uuid.UUID(int=i + 1)) for i in range(6)]
OPS = st.lists(st.tuples(st.sampled_from([ChatMessageSent, ChatMessageDeleted]), st.sampled_from(IDS)), max_size=24)


async def _replay(path: Path, records: list[Record], batch_sizes: list[int]) -> list[str]:
    """Archive records in batches of the given sizes (the rest in one batch); the history's ids."""
    store = await SqliteHistory.open(path)
    try:
        at = 0
        for size in [*batch_sizes, len(records)]:
            await agent.store_batch(store, plan_batch(records[at:at + size]))
            at += size
        return [m.message_id for m in await store.around(CHANNEL, 10_000, 200, 200)]
    finally:
        await store.close()


@settings(max_examples=40, deadline=None)
@given(ops=OPS, batch_sizes=st.lists(st.integers(1, 5), max_size=6), order=st.randoms(use_true_random=False))
def test_any_order_and_batching_of_the_same_events_archives_the_same_history(
        ops: list[tuple[type[Record], str]], batch_sizes: list[int], order: random.Random) -> None:
    # The processors may read a deletion before its message, and replay either after a restart.
    records: list[Record] = [_sent(mid, occurred_at=1000 + IDS.index(mid)) if r is ChatMessageSent else _deleted(mid)
                             for r, mid in ops]
    expected = [mid for mid in IDS if (ChatMessageSent, mid) in ops and (ChatMessageDeleted, mid) not in ops]
    shuffled = order.sample(records, len(records))
    with tempfile.TemporaryDirectory() as tmp:
        assert asyncio.run(_replay(Path(tmp) / "a.sqlite3", records, batch_sizes)) == expected
        assert asyncio.run(_replay(Path(tmp) / "b.sqlite3", shuffled + records, [])) == expected


CLEAR_OPS = st.lists(st.tuples(st.sampled_from([ChatMessageSent, UserBanned]), st.integers(0, 5)), max_size=20)


@settings(max_examples=40, deadline=None)
@given(ops=CLEAR_OPS, batch_sizes=st.lists(st.integers(1, 5), max_size=6), order=st.randoms(use_true_random=False))
def test_a_ban_hides_what_was_said_before_it_in_any_order_and_batching(
        ops: list[tuple[type[Record], int]], batch_sizes: list[int], order: random.Random) -> None:
    # Bans come on chat.moderation, so the archiver may read one before or after the messages it hides.
    records: list[Record] = [_sent(IDS[i], occurred_at=1000 + i) if r is ChatMessageSent
                             else _banned(SPEEDY, occurred_at=1000 + i) for r, i in ops]
    banned_through = max((1000 + i for r, i in ops if r is UserBanned), default=0)
    expected = [IDS[i] for i in range(6) if (ChatMessageSent, i) in ops and 1000 + i > banned_through]
    shuffled = order.sample(records, len(records))
    with tempfile.TemporaryDirectory() as tmp:
        assert asyncio.run(_replay(Path(tmp) / "a.sqlite3", records, batch_sizes)) == expected
        assert asyncio.run(_replay(Path(tmp) / "b.sqlite3", shuffled + records, [])) == expected
