"""Chat history in one SQLite file, for ``glasscast up`` on one machine.

The processors write and the gateway reads the same file from different
processes, so the database runs in WAL mode (readers never block the writer;
https://www.sqlite.org/wal.html) with a busy timeout for the moments two
writers meet.  Each store owns one connection, used only by its own worker
thread, so no call blocks the event loop.

A message's primary key is ``(channel_id, sent_at_ms, message_id)``, so a
replay window is one range scan; a unique index on ``(channel_id, message_id)``
makes a second append of the same message an ignored insert.  Deletions are
remembered in their own table, and so are clears (a user's messages up to a
moment, by ban or timeout; the latest moment per user and channel): an append
skips a message either hides, so a deletion or a ban read before its message
still wins.  Windows compare row values, ``(sent_at_ms, message_id) < (?, ?)``,
which SQLite answers from the primary key as a range scan.  ``synchronous=FULL`` because
the processors commit their Kafka offsets once a batch is stored.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from views.chat_history.errors import HistoryError, HistoryUnavailable
from views.chat_history.store import ArchivedMessage, Emote, Key, Window, check_window, pivot

T = TypeVar("T")

BUSY_TIMEOUT_S = 10.0

SCHEMA = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS chat_messages (
    channel_id TEXT NOT NULL,
    sent_at_ms INTEGER NOT NULL,
    message_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    username TEXT NOT NULL,
    text TEXT NOT NULL,
    emotes TEXT NOT NULL,
    badges TEXT NOT NULL,
    PRIMARY KEY (channel_id, sent_at_ms, message_id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS chat_messages_by_id ON chat_messages (channel_id, message_id);
CREATE TABLE IF NOT EXISTS chat_deletions (
    channel_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    PRIMARY KEY (channel_id, message_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS chat_messages_by_user ON chat_messages (channel_id, user_id, sent_at_ms);
CREATE TABLE IF NOT EXISTS chat_clears (
    channel_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    through_ms INTEGER NOT NULL,
    PRIMARY KEY (channel_id, user_id)
) WITHOUT ROWID;
COMMIT;
"""

APPEND = """
INSERT OR IGNORE INTO chat_messages (channel_id, sent_at_ms, message_id, user_id, username, text, emotes, badges)
SELECT :channel_id, :sent_at_ms, :message_id, :user_id, :username, :text, :emotes, :badges
WHERE NOT EXISTS (SELECT 1 FROM chat_deletions WHERE channel_id = :channel_id AND message_id = :message_id)
  AND NOT EXISTS (SELECT 1 FROM chat_clears
                  WHERE channel_id = :channel_id AND user_id = :user_id AND through_ms >= :sent_at_ms)
"""

CLEAR = """
INSERT INTO chat_clears (channel_id, user_id, through_ms) VALUES (?, ?, ?)
ON CONFLICT (channel_id, user_id) DO UPDATE SET through_ms = max(through_ms, excluded.through_ms)
"""

COLUMNS = "channel_id, sent_at_ms, message_id, user_id, username, text, emotes, badges"
OLDER = (f"SELECT {COLUMNS} FROM chat_messages WHERE channel_id = ? AND (sent_at_ms, message_id) < (?, ?) "
         "ORDER BY sent_at_ms DESC, message_id DESC LIMIT ?")
NEWER = (f"SELECT {COLUMNS} FROM chat_messages WHERE channel_id = ? AND (sent_at_ms, message_id) > (?, ?) "
         "ORDER BY sent_at_ms ASC, message_id ASC LIMIT ?")


def sqlite_row(m: ArchivedMessage) -> dict[str, Any]:
    """The row for a message; emotes and badges as compact JSON arrays."""
    return {"channel_id": m.channel_id, "sent_at_ms": m.sent_at_ms, "message_id": m.message_id,
            "user_id": m.user_id, "username": m.username, "text": m.text,
            "emotes": json.dumps([[e.emote_id, e.start, e.end] for e in m.emotes], ensure_ascii=False,
                                 separators=(",", ":")),
            "badges": json.dumps(list(m.badges), ensure_ascii=False, separators=(",", ":"))}


def message_from_row(row: Sequence[Any]) -> ArchivedMessage:
    """A message from a row selected as ``COLUMNS``."""
    channel_id, sent_at_ms, message_id, user_id, username, text, emotes, badges = row
    return ArchivedMessage(channel_id=channel_id, message_id=message_id, user_id=user_id, username=username,
                           text=text, sent_at_ms=sent_at_ms,
                           emotes=tuple(Emote(e[0], e[1], e[2]) for e in json.loads(emotes)),
                           badges=tuple(json.loads(badges)))


class SqliteHistory:
    """``HistoryStore`` on a SQLite file; open with ``await SqliteHistory.open(path)``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chat-history")
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    @classmethod
    async def open(cls, path: Path) -> SqliteHistory:
        """Open (creating if needed) the database at ``path``."""
        store = cls(path)
        try:
            await store._run(store._connect)
        except BaseException:
            store._executor.shutdown(wait=False)
            raise
        return store

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise HistoryError(f"chat history {self.path} is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except sqlite3.OperationalError as exc:  # locked past the busy timeout, disk full, I/O error
            raise HistoryUnavailable(f"chat history {self.path}: {exc}") from exc
        except sqlite3.Error as exc:
            raise HistoryError(f"chat history {self.path}: {exc}") from exc

    def _connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(SCHEMA)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise HistoryError(f"chat history {self.path} is not open")
        return self._conn

    @staticmethod
    def _write(conn: sqlite3.Connection, body: Callable[[], Any]) -> None:
        # BEGIN IMMEDIATE takes the write lock up front, so a busy database waits
        # (busy timeout) at the start rather than failing half-way through.
        conn.execute("BEGIN IMMEDIATE")
        try:
            body()
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _append(self, rows: list[dict[str, Any]]) -> None:
        conn = self.conn
        self._write(conn, lambda: conn.executemany(APPEND, rows))

    def _delete(self, channel_id: str, message_id: str) -> None:
        conn = self.conn

        def body() -> None:
            conn.execute("INSERT OR IGNORE INTO chat_deletions (channel_id, message_id) VALUES (?, ?)",
                         (channel_id, message_id))
            conn.execute("DELETE FROM chat_messages WHERE channel_id = ? AND message_id = ?",
                         (channel_id, message_id))

        self._write(conn, body)

    def _clear_user(self, channel_id: str, user_id: str, through_ms: int) -> None:
        conn = self.conn

        def body() -> None:
            conn.execute(CLEAR, (channel_id, user_id, through_ms))
            conn.execute("DELETE FROM chat_messages WHERE channel_id = ? AND user_id = ? AND sent_at_ms <= ?",
                         (channel_id, user_id, through_ms))

        self._write(conn, body)

    def _window(self, channel_id: str, key: Key, before: int, after: int) -> Window:
        conn = self.conn
        conn.execute("BEGIN")  # one snapshot for both halves of the window
        try:
            older = conn.execute(OLDER, (channel_id, *key, before)).fetchall()
            newer = conn.execute(NEWER, (channel_id, *key, after)).fetchall()
        finally:
            conn.execute("COMMIT")
        return Window(tuple(message_from_row(row) for row in reversed(older)),
                      tuple(message_from_row(row) for row in newer))

    async def append(self, messages: Sequence[ArchivedMessage]) -> None:
        if messages:
            await self._run(self._append, [sqlite_row(m) for m in messages])

    async def delete(self, channel_id: str, message_id: str) -> None:
        await self._run(self._delete, channel_id, message_id)

    async def clear_user(self, channel_id: str, user_id: str, through_ms: int) -> None:
        await self._run(self._clear_user, channel_id, user_id, through_ms)

    async def window(self, channel_id: str, key: Key, before: int, after: int) -> Window:
        check_window(before, after)
        return await self._run(self._window, channel_id, key, before, after)

    async def around(self, channel_id: str, ts_ms: int, before: int, after: int) -> list[ArchivedMessage]:
        w = await self.window(channel_id, pivot(ts_ms), before, after)
        return [*w.older, *w.newer]

    async def close(self) -> None:
        def close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        if self._closed:
            return
        try:
            await self._run(close)
        finally:
            self._closed = True
            self._executor.shutdown(wait=False)
