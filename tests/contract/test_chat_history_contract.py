"""Contract suite for the chat history store: the same checks against every reachable backend.

SQLite always runs.  Cassandra runs too when ``CONTRACT_CASSANDRA_HOSTS`` names
it (``host`` or ``host:port``, comma-separated; for example the ``cassandra``
service of infra/docker-compose.yml), each test in a keyspace of its own that
is dropped afterwards; otherwise those cases are skipped with the reason printed.
"""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from infra.settings import Settings
from views.chat_history.backends import open_history
from views.chat_history.cassandra_store import contact_point
from views.chat_history.errors import HistoryUnavailable
from views.chat_history.store import HOUR_MS, ArchivedMessage, Emote, HistoryStore

pytestmark = pytest.mark.integration

T0 = 1_790_000_000_000 // HOUR_MS * HOUR_MS  # an hour boundary in 2026
WIDE = 200


def _cassandra_hosts() -> tuple[str, ...]:
    return tuple(h.strip() for h in os.environ.get("CONTRACT_CASSANDRA_HOSTS", "").split(",") if h.strip())


def _drop_keyspace(hosts: tuple[str, ...], keyspace: str) -> None:
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import DCAwareRoundRobinPolicy

    profile = ExecutionProfile(load_balancing_policy=DCAwareRoundRobinPolicy())
    cluster = Cluster(contact_points=[contact_point(h) for h in hosts],
                      execution_profiles={EXEC_PROFILE_DEFAULT: profile})
    try:
        cluster.connect().execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=60)
    finally:
        cluster.shutdown()


@pytest.fixture(params=["sqlite", "cassandra"])
def backend_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings for a fresh history on one backend."""
    s = Settings(data_dir=tmp_path / "data")
    if request.param == "sqlite":
        return s
    hosts = _cassandra_hosts()
    if not hosts:
        pytest.skip("no Cassandra is reachable: set CONTRACT_CASSANDRA_HOSTS to host or host:port "
                    "(comma-separated) to run the chat history contract against it")
    return s.with_section("chat", history_backend="cassandra", cassandra_hosts=hosts,
                          cassandra_keyspace=f"contract_{uuid.uuid4().hex[:16]}")


@pytest.fixture
async def history(backend_settings: Settings) -> AsyncIterator[HistoryStore]:
    try:
        store = await open_history(backend_settings)
    except HistoryUnavailable as exc:
        pytest.skip(f"Cassandra at {', '.join(backend_settings.chat.cassandra_hosts)} unreachable: {exc}")
    try:
        yield store
    finally:
        await store.close()
        if backend_settings.chat.history_backend == "cassandra":
            await asyncio.to_thread(_drop_keyspace, backend_settings.chat.cassandra_hosts,
                                    backend_settings.chat.cassandra_keyspace)


@pytest.fixture
def make() -> Callable[..., ArchivedMessage]:
    """Messages in one channel unless told otherwise, with fresh ids."""
    channel_id = str(uuid.uuid4())

    def message(sent_at_ms: int, text: str = "hi", channel: str | None = None, message_id: str | None = None,
                emotes: tuple[Emote, ...] = (), badges: tuple[str, ...] = ()) -> ArchivedMessage:
        return ArchivedMessage(channel_id=channel or channel_id, message_id=message_id or str(uuid.uuid4()),
                               user_id=str(uuid.uuid4()), username="viewer_1", text=text, sent_at_ms=sent_at_ms,
                               emotes=emotes, badges=badges)

    return message


def _ids(messages: list[ArchivedMessage]) -> list[str]:
    return [m.message_id for m in messages]


def _ordered(messages: list[ArchivedMessage]) -> list[str]:
    return _ids(sorted(messages, key=ArchivedMessage.sort_key))


async def test_messages_come_back_in_time_order_with_ties_broken_by_id(
        history: HistoryStore, make: Callable[..., ArchivedMessage]) -> None:
    messages = [make(T0 + 1000 * (i // 3), text=f"m{i}") for i in range(30)]  # three per millisecond
    shuffled = random.Random(7).sample(messages, len(messages))
    await history.append(shuffled[:10])
    await history.append(shuffled[10:])
    got = await history.around(messages[0].channel_id, T0 + 5_000, WIDE, WIDE)
    assert _ids(got) == _ordered(messages)
    assert got == sorted(messages, key=ArchivedMessage.sort_key)  # every field round-trips


async def test_window_takes_the_nearest_messages_on_each_side(
        history: HistoryStore, make: Callable[..., ArchivedMessage]) -> None:
    messages = [make(T0 + 10 * i) for i in range(20)]  # T0, T0+10, ..., T0+190
    await history.append(messages)
    channel = messages[0].channel_id
    at = messages[10].sent_at_ms  # a message sent exactly at T counts as before
    assert _ids(await history.around(channel, at, 3, 2)) == _ids(messages[8:13])
    assert _ids(await history.around(channel, at - 1, 3, 2)) == _ids(messages[7:12])
    assert _ids(await history.around(channel, at, 0, 2)) == _ids(messages[11:13])
    assert _ids(await history.around(channel, at, 2, 0)) == _ids(messages[9:11])
    assert await history.around(channel, at, 0, 0) == []
    assert _ids(await history.around(channel, T0 - 1, 5, 5)) == _ids(messages[:5])  # before the first
    assert _ids(await history.around(channel, T0 + 10_000, 5, 5)) == _ids(messages[-5:])  # after the last
    assert _ids(await history.around(channel, at, WIDE, WIDE)) == _ids(messages)


async def test_window_spans_hours_and_skips_empty_ones(
        history: HistoryStore, make: Callable[..., ArchivedMessage]) -> None:
    # Messages either side of hour boundaries, with empty hours between (and a day away).
    times = [T0 - 1, T0, T0 + 1, T0 + HOUR_MS - 1, T0 + HOUR_MS, T0 + 5 * HOUR_MS + 7,
             T0 + 30 * HOUR_MS, T0 - 26 * HOUR_MS, T0 - 3 * HOUR_MS]
    messages = [make(t) for t in times]
    await history.append(messages)
    ordered = sorted(messages, key=ArchivedMessage.sort_key)
    channel = messages[0].channel_id
    at = T0 + 3 * HOUR_MS  # an empty hour
    got = await history.around(channel, at, 4, 2)
    assert [m.sent_at_ms for m in got] == [T0, T0 + 1, T0 + HOUR_MS - 1, T0 + HOUR_MS,
                                           T0 + 5 * HOUR_MS + 7, T0 + 30 * HOUR_MS]
    assert _ids(await history.around(channel, at, WIDE, WIDE)) == _ids(ordered)
    assert [m.sent_at_ms for m in await history.around(channel, T0, 2, 2)] == [T0 - 1, T0, T0 + 1, T0 + HOUR_MS - 1]
    assert [m.sent_at_ms for m in await history.around(channel, T0 - 1, 3, 1)] == [
        T0 - 26 * HOUR_MS, T0 - 3 * HOUR_MS, T0 - 1, T0]


async def test_a_second_append_of_a_message_changes_nothing(
        history: HistoryStore, make: Callable[..., ArchivedMessage]) -> None:
    first = make(T0, text="original")
    others = [make(T0 + i) for i in range(1, 4)]
    await history.append([first, *others])
    await history.append([first, *others])  # the log replayed after a restart
    await history.append([make(T0 + 50, text="edited", message_id=first.message_id)])  # same id, other content
    await history.append([])
    got = await history.around(first.channel_id, T0, WIDE, WIDE)
    assert got == [first, *others]


async def test_a_deleted_message_is_never_returned(history: HistoryStore, make: Callable[..., ArchivedMessage]) -> None:
    kept, gone = make(T0, text="kept"), make(T0 + 1, text="gone")
    await history.append([kept, gone])
    await history.delete(gone.channel_id, gone.message_id)
    await history.delete(gone.channel_id, gone.message_id)  # replayed
    assert await history.around(kept.channel_id, T0, WIDE, WIDE) == [kept]
    await history.append([gone])  # the log replayed from before the deletion
    assert await history.around(kept.channel_id, T0, WIDE, WIDE) == [kept]
    await history.delete(kept.channel_id, str(uuid.uuid4()))  # a message never archived
    assert await history.around(kept.channel_id, T0, WIDE, WIDE) == [kept]


async def test_a_deletion_before_its_message_still_hides_it(
        history: HistoryStore, make: Callable[..., ArchivedMessage]) -> None:
    early, kept = make(T0 + HOUR_MS, text="deleted first"), make(T0, text="kept")
    await history.delete(early.channel_id, early.message_id)
    await history.append([kept, early])
    await history.append([early])
    assert await history.around(kept.channel_id, T0 + HOUR_MS, WIDE, WIDE) == [kept]


async def test_channels_are_isolated(history: HistoryStore, make: Callable[..., ArchivedMessage]) -> None:
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    shared_id = str(uuid.uuid4())  # even an id that appears in both channels stays apart
    in_a = [make(T0 + i, channel=a, text=f"a{i}") for i in range(3)] + [make(T0 + 9, channel=a, message_id=shared_id)]
    in_b = [make(T0 + i, channel=b, text=f"b{i}") for i in range(3)] + [make(T0 + 9, channel=b, message_id=shared_id)]
    await history.append([*in_a, *in_b])
    assert _ids(await history.around(a, T0, WIDE, WIDE)) == _ordered(in_a)
    assert _ids(await history.around(b, T0, WIDE, WIDE)) == _ordered(in_b)
    await history.delete(a, shared_id)
    await history.delete(a, in_b[0].message_id)  # a deletion names its channel
    assert _ids(await history.around(a, T0, WIDE, WIDE)) == _ordered(in_a[:3])
    assert _ids(await history.around(b, T0, WIDE, WIDE)) == _ordered(in_b)
    assert await history.around(str(uuid.uuid4()), T0, WIDE, WIDE) == []


async def test_unicode_text_round_trips(history: HistoryStore, make: Callable[..., ArchivedMessage]) -> None:
    texts = ["héllo wörld", "日本語のチャット", "مرحبا بالعالم", "👋🏽 family: 👨‍👩‍👧‍👦", "e\u0301 combining",
             "quotes ' \" \\ ; -- DROP TABLE", "[1, {\"json\": true}]", "nul \x00 inside", "\U0001f600" * 250]
    messages = [make(T0 + i, text=t) for i, t in enumerate(texts)]
    await history.append(messages)
    assert [m.text for m in await history.around(messages[0].channel_id, T0, WIDE, WIDE)] == texts


async def test_emotes_and_badges_round_trip(history: HistoryStore, make: Callable[..., ArchivedMessage]) -> None:
    rich = make(T0, text="Kappa hi PogChamp 🎉", emotes=(Emote("25", 0, 5), Emote("88", 9, 17)),
                badges=("broadcaster", "subscriber/12", "vip"))
    plain = make(T0 + 1, text="no emotes")
    only_badge = make(T0 + 2, text="x", badges=("moderator",))
    await history.append([rich, plain, only_badge])
    got = await history.around(rich.channel_id, T0, WIDE, WIDE)
    assert got == [rich, plain, only_badge]
    assert got[0].emotes == (Emote("25", 0, 5), Emote("88", 9, 17)) and got[1].emotes == () and got[1].badges == ()


async def test_another_store_on_the_same_backend_sees_the_history(
        history: HistoryStore, backend_settings: Settings, make: Callable[..., ArchivedMessage]) -> None:
    # The processors write and each gateway reads through a store of its own.
    reader = await open_history(backend_settings)
    try:
        messages = [make(T0 + i) for i in range(5)]
        await history.append(messages)
        await history.delete(messages[2].channel_id, messages[2].message_id)
        got = await reader.around(messages[0].channel_id, T0 + 2, 10, 10)
        assert _ids(got) == _ids(messages[:2] + messages[3:])
    finally:
        await reader.close()


async def test_a_negative_window_is_refused(history: HistoryStore) -> None:
    with pytest.raises(ValueError):
        await history.around(str(uuid.uuid4()), T0, -1, 5)


async def test_a_window_around_a_key_pages_without_repeats_or_gaps(
        history: HistoryStore, make: Callable[..., ArchivedMessage]) -> None:
    messages = [make(T0 + 1000 * (i // 4) + HOUR_MS * (i // 10)) for i in range(40)]  # ties, and several hours
    await history.append(messages)
    ordered = sorted(messages, key=ArchivedMessage.sort_key)
    channel = messages[0].channel_id
    # Forward from before the first, three at a time, each page starting after the last key seen.
    seen: list[ArchivedMessage] = []
    key = (T0 - 1, "")
    while True:
        window = await history.window(channel, key, 0, 3)
        assert window.older == ()
        if not window.newer:
            break
        seen.extend(window.newer)
        key = window.newer[-1].sort_key()
    assert seen == ordered
    # Backward from after the last.
    seen = []
    key = (T0 + 10 * HOUR_MS, "")
    while True:
        window = await history.window(channel, key, 7, 0)
        if not window.older:
            break
        seen[:0] = window.older
        key = window.older[0].sort_key()
    assert seen == ordered
    # A message's own key is on neither side.
    middle = ordered[17]
    window = await history.window(channel, middle.sort_key(), 2, 2)
    assert window.older == tuple(ordered[15:17]) and window.newer == tuple(ordered[18:20])


async def test_a_cleared_user_disappears_up_to_the_moment_of_the_clear(
        history: HistoryStore, make: Callable[..., ArchivedMessage]) -> None:
    bystander = make(T0, text="bystander")
    channel = bystander.channel_id
    troll = str(uuid.uuid4())

    def by_troll(at: int) -> ArchivedMessage:
        return ArchivedMessage(channel_id=channel, message_id=str(uuid.uuid4()), user_id=troll, username="troll",
                               text=f"at {at}", sent_at_ms=at)

    early, at_the_ban, after_unban = by_troll(T0 - 2 * HOUR_MS), by_troll(T0 + 10), by_troll(T0 + 20)
    late_arrival = by_troll(T0 + 5)  # archived only after the clear (another topic, another pace)
    elsewhere = ArchivedMessage(channel_id=str(uuid.uuid4()), message_id=str(uuid.uuid4()), user_id=troll,
                                username="troll", text="in another channel", sent_at_ms=T0)
    await history.append([bystander, early, at_the_ban, after_unban, elsewhere])
    await history.clear_user(channel, troll, T0 + 10)
    await history.clear_user(channel, troll, T0 + 3)  # an older clear replayed: changes nothing
    await history.append([late_arrival, early])  # the log replayed from before the clear
    assert await history.around(channel, T0, WIDE, WIDE) == [bystander, after_unban]
    assert await history.around(elsewhere.channel_id, T0, WIDE, WIDE) == [elsewhere]
    await history.clear_user(channel, str(uuid.uuid4()), T0 + 99)  # someone who never chatted
    assert await history.around(channel, T0, WIDE, WIDE) == [bystander, after_unban]
