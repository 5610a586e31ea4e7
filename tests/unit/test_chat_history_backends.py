"""The chat history backends' own parts: Cassandra settings, schema and rows
(views/chat_history/cassandra_store.py), SQLite rows and the closed store (sqlite_store.py),
and where backends.py opens them."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from infra.embedded.process import free_port
from infra.errors import SettingsError
from infra.settings import ChatSettings, Settings
from views.chat_history import sqlite_store
from views.chat_history.backends import open_history, sqlite_path
from views.chat_history.cassandra_store import (
    CQL_PORT,
    cassandra_target,
    contact_point,
    message_from_row,
    message_values,
    schema,
    statements,
)
from views.chat_history.errors import HistoryError, HistoryUnavailable
from views.chat_history.sqlite_store import SqliteHistory
from views.chat_history.store import ArchivedMessage, Emote, hour_bucket

CHANNEL = str(uuid.uuid4())


def _message(sent_at_ms: int = 1_790_000_000_000, **changes: Any) -> ArchivedMessage:
    fields: dict[str, Any] = {"channel_id": CHANNEL, "message_id": str(uuid.uuid4()), "user_id": str(uuid.uuid4()),
                              "username": "viewer", "text": "hi", "sent_at_ms": sent_at_ms}
    return ArchivedMessage(**{**fields, **changes})



@pytest.mark.parametrize("raw, expected", [
    ("cassandra", ("cassandra", CQL_PORT)), ("cassandra:9043", ("cassandra", 9043)),
    (" 10.0.0.5:19042 ", ("10.0.0.5", 19042)), ("[::1]", ("::1", CQL_PORT)), ("[fd00::5]:9142", ("fd00::5", 9142)),
    ("::1", ("::1", CQL_PORT)),
])
def test_contact_points(raw: str, expected: tuple[str, int]) -> None:
    assert contact_point(raw) == expected


@pytest.mark.parametrize("raw", ["", ":9042", "host:", "host:0", "host:65536", "host:port", "[::1", "[::1]x", "[::1]:"])
def test_bad_contact_points_name_the_variable(raw: str) -> None:
    with pytest.raises(SettingsError, match="GLASSCAST_CHAT_CASSANDRA_HOSTS"):
        contact_point(raw)


def test_cassandra_settings_are_checked() -> None:
    target = cassandra_target(ChatSettings(cassandra_hosts=("a", "b:9043"), cassandra_keyspace="chat_1",
                                           cassandra_replication_factor=3))
    assert target.contact_points == (("a", CQL_PORT), ("b", 9043))
    assert (target.keyspace, target.replication_factor) == ("chat_1", 3)
    for chat, var in [(ChatSettings(), "GLASSCAST_CHAT_CASSANDRA_HOSTS"),
                      (ChatSettings(cassandra_hosts=("a",), cassandra_keyspace="1bad"), "KEYSPACE"),
                      (ChatSettings(cassandra_hosts=("a",), cassandra_keyspace="a-b"), "KEYSPACE"),
                      (ChatSettings(cassandra_hosts=("a",), cassandra_keyspace="k" * 49), "KEYSPACE"),
                      (ChatSettings(cassandra_hosts=("a",), cassandra_replication_factor=0), "REPLICATION_FACTOR")]:
        with pytest.raises(SettingsError, match=var):
            cassandra_target(chat)


def test_cassandra_schema_and_statements_name_the_keyspace_and_may_run_again() -> None:
    ddl = schema("chat_ks", 2)
    assert all(" IF NOT EXISTS chat_ks" in cql for cql in ddl) and "'replication_factor': 2" in ddl[0]
    assert "PRIMARY KEY ((channel_id, bucket), sent_at_ms, message_id)" in ddl[1]
    assert all(" chat_ks." in cql for cql in statements("chat_ks").values())


def test_cassandra_rows_round_trip_and_empty_collections_read_back_as_null() -> None:
    m = _message(emotes=(Emote("25", 0, 5), Emote("1", 6, 8)), badges=("vip",))
    values = message_values(m)
    assert values[1] == hour_bucket(m.sent_at_ms)
    assert message_from_row(values) == m
    bare = _message()
    assert message_from_row((*message_values(bare)[:7], None, None)) == bare


def test_sqlite_rows_round_trip() -> None:
    m = _message(text="héllo 👋", emotes=(Emote("25", 0, 5),), badges=("subscriber/12", "ëxtra"))
    row = sqlite_store.sqlite_row(m)
    columns = [c.strip() for c in sqlite_store.COLUMNS.split(",")]
    assert sqlite_store.message_from_row([row[c] for c in columns]) == m


def test_the_sqlite_history_lives_in_the_data_dir(tmp_path: Path) -> None:
    assert sqlite_path(Settings(data_dir=tmp_path)) == tmp_path / "chat" / "history.sqlite3"


async def test_an_unreachable_cassandra_is_unavailable_not_a_crash() -> None:
    s = Settings().with_section("chat", history_backend="cassandra", cassandra_hosts=(f"127.0.0.1:{free_port()}",))
    with pytest.raises(HistoryUnavailable, match="127.0.0.1"):
        await open_history(s)


async def test_a_closed_sqlite_store_says_so(tmp_path: Path) -> None:
    store = await SqliteHistory.open(tmp_path / "h.sqlite3")
    await store.close()
    with pytest.raises(HistoryError, match="closed"):
        await store.around(CHANNEL, 0, 1, 1)
