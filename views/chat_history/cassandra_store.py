"""Chat history in Cassandra, for the distributed deployment (``infra/docker-compose.yml``).

Tables (created with ``IF NOT EXISTS`` when the store opens):

* ``chat_messages``: partitioned by ``(channel_id, bucket)``, the hour a message
  was sent in, so no partition grows without bound however long a channel
  lives; clustered by ``(sent_at_ms, message_id)``, the history's order.
* ``chat_buckets``: the hours each channel has messages in, newest first, so a
  replay window walks only hours that hold something.
* ``chat_messages_by_id``: per ``(channel_id, message_id)``, where the message
  is (bucket, time) and whether it was deleted.  A deletion marks it and removes
  the message's row; an append reads it first and leaves a deleted (or already
  archived) message alone.  The read before the write is safe because one
  channel's events arrive in order on one partition of ``chat.messages``.
* ``chat_messages_by_user``: per ``(channel_id, user_id)``, the keys of the
  user's messages there, so a clear (a ban or timeout) finds the rows it hides.
* ``chat_clears``: per ``(channel_id, user_id)``, the latest moment up to which
  the user's messages are hidden; an append reads it and leaves a hidden message
  out.  Clears come from ``chat.moderation``, one partition per channel too.

Windows are slices on the clustering key, ``(sent_at_ms, message_id) < (?, ?)``.

An append writes the message's by-id entry last, so an entry means its row is
there; a batch cut short is written again by the processors, whose offsets are
committed only after the whole batch.  Every statement is prepared once; the
driver's futures are bridged to asyncio, so nothing blocks the event loop
(connecting and preparing run in a thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any

from cassandra import DriverException, RequestValidationException, UnresolvableContactPoints
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable, ResponseFuture, Session
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
from cassandra.query import PreparedStatement

from infra.errors import SettingsError
from infra.settings import ChatSettings
from views.chat_history.errors import HistoryError, HistoryUnavailable
from views.chat_history.store import ArchivedMessage, Emote, Key, Window, check_window, hour_bucket, pivot

CQL_PORT = 9042  # the native protocol's default port
KEYSPACE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,47}$")  # CQL: unquoted names, at most 48 characters
CONNECT_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 10.0
SCHEMA_TIMEOUT_S = 60.0
MAX_IN_FLIGHT = 32  # messages one append writes at once (each a few statements)
BUCKET_PAGE = 24  # hours read from chat_buckets at a time while filling a window


@dataclass(frozen=True)
class CassandraTarget:
    """Where the store connects: contact points, keyspace, replication."""

    contact_points: tuple[tuple[str, int], ...]
    keyspace: str
    replication_factor: int


def cassandra_target(chat: ChatSettings) -> CassandraTarget:
    """The chat settings' Cassandra target, checked (errors name the variable)."""
    if not chat.cassandra_hosts:
        raise SettingsError("GLASSCAST_CHAT_CASSANDRA_HOSTS is empty; the cassandra history backend needs "
                            "at least one contact point (host or host:port)")
    points = tuple(contact_point(h) for h in chat.cassandra_hosts)
    if not KEYSPACE_RE.match(chat.cassandra_keyspace):
        raise SettingsError(f"GLASSCAST_CHAT_CASSANDRA_KEYSPACE={chat.cassandra_keyspace!r}: expected a letter, "
                            "then letters, digits or _ (48 characters at most)")
    if chat.cassandra_replication_factor < 1:
        raise SettingsError("GLASSCAST_CHAT_CASSANDRA_REPLICATION_FACTOR: value out of range (must be at least 1)")
    return CassandraTarget(points, chat.cassandra_keyspace, chat.cassandra_replication_factor)


def contact_point(host: str) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port`` as ``(host, port)``."""
    raw = host.strip()
    name, sep, port = raw, "", ""
    if raw.startswith("["):
        name, bracket, rest = raw[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            name = ""
        sep, port = rest[:1], rest[1:]
    elif raw.count(":") == 1:
        name, sep, port = raw.partition(":")
    if not name or (sep and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536)):
        raise SettingsError(f"GLASSCAST_CHAT_CASSANDRA_HOSTS: {host!r} is not host, host:port or [v6]:port")
    return name, int(port) if port else CQL_PORT


def schema(keyspace: str, replication_factor: int) -> list[str]:
    """The keyspace and tables, as CQL statements that may run any number of times."""
    ks = keyspace
    return [
        f"CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = "
        f"{{'class': 'SimpleStrategy', 'replication_factor': {replication_factor}}}",
        f"CREATE TABLE IF NOT EXISTS {ks}.chat_messages ("
        " channel_id text, bucket int, sent_at_ms bigint, message_id text,"
        " user_id text, username text, message_text text,"
        " emotes frozen<list<frozen<tuple<text, int, int>>>>, badges frozen<list<text>>,"
        " PRIMARY KEY ((channel_id, bucket), sent_at_ms, message_id)"
        ") WITH CLUSTERING ORDER BY (sent_at_ms ASC, message_id ASC)",
        f"CREATE TABLE IF NOT EXISTS {ks}.chat_buckets ("
        " channel_id text, bucket int, PRIMARY KEY (channel_id, bucket)"
        ") WITH CLUSTERING ORDER BY (bucket DESC)",
        f"CREATE TABLE IF NOT EXISTS {ks}.chat_messages_by_id ("
        " channel_id text, message_id text, bucket int, sent_at_ms bigint, deleted boolean,"
        " PRIMARY KEY ((channel_id, message_id)))",
        f"CREATE TABLE IF NOT EXISTS {ks}.chat_messages_by_user ("
        " channel_id text, user_id text, sent_at_ms bigint, message_id text,"
        " PRIMARY KEY ((channel_id, user_id), sent_at_ms, message_id))",
        f"CREATE TABLE IF NOT EXISTS {ks}.chat_clears ("
        " channel_id text, user_id text, through_ms bigint, PRIMARY KEY ((channel_id, user_id)))",
    ]


COLUMNS = "channel_id, bucket, sent_at_ms, message_id, user_id, username, message_text, emotes, badges"


def statements(keyspace: str) -> dict[str, str]:
    """Every statement the store prepares, by name."""
    ks = keyspace
    return {
        "insert": f"INSERT INTO {ks}.chat_messages ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        "remove": f"DELETE FROM {ks}.chat_messages WHERE channel_id = ? AND bucket = ? AND sent_at_ms = ? "
                  "AND message_id = ?",
        "add_bucket": f"INSERT INTO {ks}.chat_buckets (channel_id, bucket) VALUES (?, ?)",
        "entry": f"SELECT bucket, sent_at_ms, deleted FROM {ks}.chat_messages_by_id "
                 "WHERE channel_id = ? AND message_id = ?",
        "locate": f"UPDATE {ks}.chat_messages_by_id SET bucket = ?, sent_at_ms = ? "
                  "WHERE channel_id = ? AND message_id = ?",
        "mark_deleted": f"UPDATE {ks}.chat_messages_by_id SET deleted = true WHERE channel_id = ? AND message_id = ?",
        "buckets_older": f"SELECT bucket FROM {ks}.chat_buckets WHERE channel_id = ? AND bucket <= ? "
                         "ORDER BY bucket DESC LIMIT ?",
        "buckets_newer": f"SELECT bucket FROM {ks}.chat_buckets WHERE channel_id = ? AND bucket >= ? "
                         "ORDER BY bucket ASC LIMIT ?",
        "older": f"SELECT {COLUMNS} FROM {ks}.chat_messages WHERE channel_id = ? AND bucket = ? "
                 "AND (sent_at_ms, message_id) < (?, ?) ORDER BY sent_at_ms DESC, message_id DESC LIMIT ?",
        "newer": f"SELECT {COLUMNS} FROM {ks}.chat_messages WHERE channel_id = ? AND bucket = ? "
                 "AND (sent_at_ms, message_id) > (?, ?) ORDER BY sent_at_ms ASC, message_id ASC LIMIT ?",
        "add_by_user": f"INSERT INTO {ks}.chat_messages_by_user (channel_id, user_id, sent_at_ms, message_id) "
                       "VALUES (?, ?, ?, ?)",
        "by_user": f"SELECT sent_at_ms, message_id FROM {ks}.chat_messages_by_user "
                   "WHERE channel_id = ? AND user_id = ? AND sent_at_ms <= ?",
        "cleared": f"SELECT through_ms FROM {ks}.chat_clears WHERE channel_id = ? AND user_id = ?",
        "set_cleared": f"UPDATE {ks}.chat_clears SET through_ms = ? WHERE channel_id = ? AND user_id = ?",
    }


def message_values(m: ArchivedMessage) -> tuple[Any, ...]:
    """The ``insert`` statement's values for a message."""
    return (m.channel_id, hour_bucket(m.sent_at_ms), m.sent_at_ms, m.message_id, m.user_id, m.username, m.text,
            [(e.emote_id, e.start, e.end) for e in m.emotes], list(m.badges))


def message_from_row(row: Sequence[Any]) -> ArchivedMessage:
    """A message from a row selected as ``COLUMNS`` (Cassandra reads an empty list back as null)."""
    channel_id, _bucket, sent_at_ms, message_id, user_id, username, text, emotes, badges = row
    return ArchivedMessage(channel_id=channel_id, message_id=message_id, user_id=user_id, username=username,
                           text=text, sent_at_ms=sent_at_ms,
                           emotes=tuple(Emote(e[0], e[1], e[2]) for e in emotes or ()),
                           badges=tuple(badges or ()))


def _settle(done: asyncio.Future[list[Any]], rows: Any, exc: BaseException | None) -> None:
    if done.done():
        return
    if exc is not None:
        done.set_exception(exc)
    else:
        done.set_result(list(rows or ()))


async def _all(calls: Sequence[Awaitable[Any]]) -> None:
    """Await every call, all of them even when one fails; then raise the first failure."""
    for result in await asyncio.gather(*calls, return_exceptions=True):
        if isinstance(result, BaseException):
            raise result


def _translate(exc: BaseException, what: str) -> BaseException:
    if isinstance(exc, RequestValidationException):  # a bad statement is a bug, not an outage
        return HistoryError(f"chat history {what}: {exc}")
    return HistoryUnavailable(f"chat history {what}: {exc}")


class CassandraHistory:
    """``HistoryStore`` on Cassandra; open with ``await CassandraHistory.open(settings.chat)``."""

    def __init__(self, cluster: Cluster, session: Session, prepared: dict[str, PreparedStatement]) -> None:
        self._cluster = cluster
        self._session = session
        self._q = prepared

    @classmethod
    async def open(cls, chat: ChatSettings) -> CassandraHistory:
        """Connect, create the keyspace and tables if missing, prepare the statements."""
        return await asyncio.to_thread(cls._connect, cassandra_target(chat))

    @classmethod
    def _connect(cls, target: CassandraTarget) -> CassandraHistory:
        profile = ExecutionProfile(load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()),
                                   request_timeout=REQUEST_TIMEOUT_S)
        where = ", ".join(f"{h}:{p}" for h, p in target.contact_points)
        try:
            cluster = Cluster(contact_points=list(target.contact_points),
                              execution_profiles={EXEC_PROFILE_DEFAULT: profile},
                              connect_timeout=CONNECT_TIMEOUT_S)
        except UnresolvableContactPoints as exc:
            raise HistoryUnavailable(f"chat history Cassandra at {where}: no contact point resolves") from exc
        try:
            session = cluster.connect()
            for cql in schema(target.keyspace, target.replication_factor):
                session.execute(cql, timeout=SCHEMA_TIMEOUT_S)
            prepared = {name: session.prepare(cql) for name, cql in statements(target.keyspace).items()}
        except (NoHostAvailable, DriverException) as exc:
            cluster.shutdown()
            raise _translate(exc, f"Cassandra at {where}") from exc
        except BaseException:
            cluster.shutdown()
            raise
        return cls(cluster, session, prepared)

    async def _execute(self, name: str, values: Sequence[Any]) -> list[Any]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[list[Any]] = loop.create_future()

        def settle(rows: Any, exc: BaseException | None) -> None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting
                loop.call_soon_threadsafe(_settle, done, rows, exc)

        # Binding happens here: a value of the wrong type is a bug and raises as it is.
        future: ResponseFuture = self._session.execute_async(self._q[name], values)
        future.add_callbacks(lambda rows: settle(rows, None), lambda exc: settle(None, exc))
        try:
            # Windows are LIMITed far below the driver's page size, so the first page is all of it.
            return await done
        except Exception as exc:  # what the errback reports: the cluster or the network
            raise _translate(exc, name) from exc

    async def _cleared_through(self, channel_id: str, user_id: str) -> int | None:
        rows = await self._execute("cleared", (channel_id, user_id))
        return rows[0].through_ms if rows else None

    async def _append_one(self, m: ArchivedMessage) -> None:
        entry = await self._execute("entry", (m.channel_id, m.message_id))
        bucket = hour_bucket(m.sent_at_ms)
        cleared = await self._cleared_through(m.channel_id, m.user_id)
        if (entry and entry[0].deleted) or (cleared is not None and cleared >= m.sent_at_ms):
            # Deleted before it arrived; removing the row too covers a row written before the deletion was.
            await self._execute("remove", (m.channel_id, bucket, m.sent_at_ms, m.message_id))
            return
        if entry and entry[0].sent_at_ms is not None:
            return  # archived already: a replay changes nothing
        await _all([self._execute("insert", message_values(m)), self._execute("add_bucket", (m.channel_id, bucket)),
                    self._execute("add_by_user", (m.channel_id, m.user_id, m.sent_at_ms, m.message_id))])
        await self._execute("locate", (bucket, m.sent_at_ms, m.channel_id, m.message_id))

    async def append(self, messages: Sequence[ArchivedMessage]) -> None:
        limit = asyncio.Semaphore(MAX_IN_FLIGHT)

        async def one(m: ArchivedMessage) -> None:
            async with limit:
                await self._append_one(m)

        await _all([one(m) for m in messages])

    async def delete(self, channel_id: str, message_id: str) -> None:
        entry = await self._execute("entry", (channel_id, message_id))
        await self._execute("mark_deleted", (channel_id, message_id))
        if entry and entry[0].sent_at_ms is not None:
            await self._execute("remove", (channel_id, entry[0].bucket, entry[0].sent_at_ms, message_id))

    async def clear_user(self, channel_id: str, user_id: str, through_ms: int) -> None:
        cleared = await self._cleared_through(channel_id, user_id)
        if cleared is None or cleared < through_ms:
            await self._execute("set_cleared", (through_ms, channel_id, user_id))
        rows = await self._execute("by_user", (channel_id, user_id, through_ms))
        await _all([self._execute("remove", (channel_id, hour_bucket(r.sent_at_ms), r.sent_at_ms, r.message_id))
                    for r in rows])

    async def _side(self, channel_id: str, key: Key, limit: int, older: bool) -> list[ArchivedMessage]:
        """Up to ``limit`` messages nearest ``key`` on one side, nearest first.

        Walks the channel's non-empty hours away from ``key``, a page of hours at a time.
        """
        found: list[ArchivedMessage] = []
        if limit == 0:
            return found
        start = hour_bucket(key[0])
        while len(found) < limit:
            hours = await self._execute("buckets_older" if older else "buckets_newer",
                                        (channel_id, start, BUCKET_PAGE))
            for row in hours:
                rows = await self._execute("older" if older else "newer",
                                           (channel_id, row.bucket, key[0], key[1], limit - len(found)))
                found.extend(message_from_row(r) for r in rows)
                if len(found) >= limit:
                    break
            if len(hours) < BUCKET_PAGE:
                break
            start = hours[-1].bucket - 1 if older else hours[-1].bucket + 1
        return found

    async def window(self, channel_id: str, key: Key, before: int, after: int) -> Window:
        check_window(before, after)
        older, newer = await asyncio.gather(self._side(channel_id, key, before, older=True),
                                            self._side(channel_id, key, after, older=False))
        return Window(tuple(reversed(older)), tuple(newer))

    async def around(self, channel_id: str, ts_ms: int, before: int, after: int) -> list[ArchivedMessage]:
        w = await self.window(channel_id, pivot(ts_ms), before, after)
        return [*w.older, *w.newer]

    async def close(self) -> None:
        await asyncio.to_thread(self._cluster.shutdown)
