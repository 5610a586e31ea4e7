"""The analytics tables: one DDL that chDB and a ClickHouse server both run.

Raw tables hold one row per event, named after the Avro fields of their
records; a null string is stored as ``''``, a null ``latency_ms`` as ``-1``
and a null count as ``0``.  Every raw table carries the record's source
coordinates, ``src_partition`` and ``src_offset`` (and ``src_topic`` where
more than one topic feeds it), which the sink's exactly-once rests on
(processors/analytics/sink.py), and is ordered ``(channel_id, occurred_at)``:
every analytics question is about one channel over a time range.

Retention (``GLASSCAST_ANALYTICS_RETENTION_DAYS``): the raw heartbeats and
chat rows expire by a TTL; the aggregates fed from them by materialised views
at insert time stay:

* ``viewer_minutes``: per channel, stream and minute, the sessions that beat
  live (``uniqState``, so minutes merge into a range's unique viewers), the
  beats and the beats with a low buffer (rebuffering);
* ``rendition_minutes``: beats per rendition and minute (the rendition mix);
* ``watch_sessions``: per heartbeat session, its first and last beat and its
  beats (watch time; co-watching for recommendations);
* ``chat_minutes``: per channel and minute, messages and chatters.

``sink_offsets`` is the sink's watermark: per topic and partition, the offset
through which every table the topic feeds has been loaded.  It has no TTL, so
expired rows never make the sink read their records again.
"""

from __future__ import annotations

from dataclasses import dataclass

from views.analytics.store import AnalyticsStore

REBUFFER_BELOW_S = 0.5
"""A live beat whose buffer holds less than this many seconds counts as rebuffering."""

SRC = "src_partition UInt32,\nsrc_offset UInt64"


@dataclass(frozen=True)
class Table:
    """A raw table the sink loads: its name, the topic that feeds it and its columns (in insert order)."""

    name: str
    topic: str
    columns: tuple[str, ...]
    ddl: str  # CREATE TABLE, with {ttl} where the table expires rows


def _columns(ddl_columns: str) -> tuple[str, ...]:
    return tuple(part.strip().split()[0] for part in ddl_columns.split(",\n") if part.strip())


def _table(name: str, topic: str, columns: str, order_by: str, ttl: bool = False,
           partition_by: str = "toYYYYMM(occurred_at)") -> Table:
    body = f"{columns},\n{SRC}"
    ttl_clause = "\nTTL toDateTime(occurred_at) + INTERVAL {ttl} DAY" if ttl else ""
    ddl = (f"CREATE TABLE IF NOT EXISTS {name} (\n{body}\n) ENGINE = MergeTree\n"
           f"PARTITION BY {partition_by}\nORDER BY ({order_by}){ttl_clause}")
    return Table(name, topic, _columns(body), ddl)


HEARTBEATS = _table("heartbeats", "viewer.heartbeats", """\
occurred_at DateTime64(3, 'UTC'),
channel_id String,
stream_id String,
session_id String,
user_id String,
rendition LowCardinality(String),
buffer_health_s Float32,
bitrate_kbps UInt32,
latency_ms Int32,
dropped_frames UInt32,
playback LowCardinality(String),
clip_id String""", "channel_id, occurred_at", ttl=True)

CHAT_MESSAGES = _table("chat_messages", "chat.messages", """\
occurred_at DateTime64(3, 'UTC'),
channel_id String,
message_id String,
user_id String,
username String,
text String,
emotes UInt16,
badges Array(LowCardinality(String))""", "channel_id, occurred_at", ttl=True)

CHAT_DELETIONS = _table("chat_deletions", "chat.messages", """\
occurred_at DateTime64(3, 'UTC'),
channel_id String,
message_id String,
user_id String,
deleted_by_user_id String""", "channel_id, occurred_at", ttl=True)

MODERATION = _table("moderation", "chat.moderation", """\
occurred_at DateTime64(3, 'UTC'),
channel_id String,
action LowCardinality(String),
user_id String,
moderator_user_id String,
duration_s UInt32,
reason String""", "channel_id, occurred_at")

STREAM_EVENTS = _table("stream_events", "stream.lifecycle", """\
occurred_at DateTime64(3, 'UTC'),
channel_id String,
stream_id String,
event LowCardinality(String),
user_id String,
title String,
category String,
started_at DateTime64(3, 'UTC'),
duration_ms Int64,
reason LowCardinality(String)""", "channel_id, occurred_at")

STREAM_HEALTH = _table("stream_health", "stream.lifecycle", """\
occurred_at DateTime64(3, 'UTC'),
channel_id String,
stream_id String,
window_ms UInt32,
ingest_bitrate_kbps UInt32,
video_bitrate_kbps UInt32,
audio_bitrate_kbps UInt32,
fps Float32,
dropped_frames UInt32,
late_frames UInt32,
bytes_received UInt64,
status LowCardinality(String),
width UInt16,
height UInt16""", "channel_id, occurred_at")

VIEWER_COUNTS = _table("viewer_counts", "viewer.counts", """\
occurred_at DateTime64(3, 'UTC'),
channel_id String,
stream_id String,
viewers UInt32""", "channel_id, occurred_at")

FOLLOWS = _table("follows", "social.follows", """\
occurred_at DateTime64(3, 'UTC'),
channel_id String,
follower_id String,
followed Int8""", "channel_id, occurred_at")

SUBSCRIPTIONS = _table("subscriptions", "billing.subscriptions", """\
occurred_at DateTime64(3, 'UTC'),
channel_id String,
user_id String,
subscription_id String,
event LowCardinality(String),
tier LowCardinality(String),
is_gift UInt8,
gifted_by_user_id String,
months_total UInt16,
amount_minor Int64,
currency LowCardinality(String)""", "channel_id, occurred_at")

CLIPS = _table("clips", "clips", """\
occurred_at DateTime64(3, 'UTC'),
channel_id String,
clip_id String,
event LowCardinality(String),
stream_id String,
created_by_user_id String,
title String,
duration_ms UInt32,
views UInt64""", "channel_id, occurred_at")

TABLES: tuple[Table, ...] = (HEARTBEATS, CHAT_MESSAGES, CHAT_DELETIONS, MODERATION, STREAM_EVENTS, STREAM_HEALTH,
                             VIEWER_COUNTS, FOLLOWS, SUBSCRIPTIONS, CLIPS)
BY_NAME: dict[str, Table] = {t.name: t for t in TABLES}
TOPICS: tuple[str, ...] = tuple(dict.fromkeys(t.topic for t in TABLES))
"""The topics the sink reads."""

TTL_TABLES: tuple[str, ...] = ("heartbeats", "chat_messages", "chat_deletions")

@dataclass(frozen=True)
class Aggregate:
    """An aggregate table fed from a raw table by a materialised view, and how to compute its rows again.

    ``select`` is the view's query over ``{source}`` (the raw table, or a subquery of it); ``keys`` are the
    aggregate's key columns, and ``raw_keys`` the same values computed from a raw row.
    """

    name: str
    source: str
    keys: str
    raw_keys: str
    body: str  # the view's query, with {source} where it reads the raw table

    def select(self, source: str | None = None) -> str:
        return self.body.replace("{source}", source or self.source)

    def view(self) -> str:
        """The materialised view's DDL."""
        return f"CREATE MATERIALIZED VIEW IF NOT EXISTS {self.name}_mv TO {self.name} AS\n{self.select()}"


VIEWER_MINUTES = Aggregate("viewer_minutes", "heartbeats", "channel_id, stream_id, minute",
                           "channel_id, stream_id, toStartOfMinute(occurred_at)", f"""\
SELECT channel_id, stream_id, toStartOfMinute(occurred_at) AS minute, uniqState(session_id) AS sessions,
       toUInt64(count()) AS beats, toUInt64(countIf(buffer_health_s < {REBUFFER_BELOW_S})) AS rebuffer_beats
FROM {{source}} WHERE playback = 'LIVE'
GROUP BY channel_id, stream_id, minute""")
RENDITION_MINUTES = Aggregate("rendition_minutes", "heartbeats", "channel_id, stream_id, minute",
                              "channel_id, stream_id, toStartOfMinute(occurred_at)", """\
SELECT channel_id, stream_id, toStartOfMinute(occurred_at) AS minute, rendition, toUInt64(count()) AS beats
FROM {source} WHERE playback = 'LIVE'
GROUP BY channel_id, stream_id, minute, rendition""")
WATCH_SESSIONS = Aggregate("watch_sessions", "heartbeats", "channel_id, stream_id, session_id, playback",
                           "channel_id, stream_id, session_id, playback", """\
SELECT channel_id, stream_id, session_id, playback, max(user_id) AS user_id, min(occurred_at) AS first_at,
       max(occurred_at) AS last_at, toUInt64(count()) AS beats
FROM {source}
GROUP BY channel_id, stream_id, session_id, playback""")
CHAT_MINUTES = Aggregate("chat_minutes", "chat_messages", "channel_id, minute",
                         "channel_id, toStartOfMinute(occurred_at)", """\
SELECT channel_id, toStartOfMinute(occurred_at) AS minute, toUInt64(count()) AS messages,
       uniqState(user_id) AS chatters
FROM {source}
GROUP BY channel_id, minute""")
AGGREGATE_TABLES: tuple[Aggregate, ...] = (VIEWER_MINUTES, RENDITION_MINUTES, WATCH_SESSIONS, CHAT_MINUTES)

AGGREGATES: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS viewer_minutes (
channel_id String,
stream_id String,
minute DateTime('UTC'),
sessions AggregateFunction(uniq, String),
beats SimpleAggregateFunction(sum, UInt64),
rebuffer_beats SimpleAggregateFunction(sum, UInt64)
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (channel_id, stream_id, minute)""",
    VIEWER_MINUTES.view(),
    """CREATE TABLE IF NOT EXISTS rendition_minutes (
channel_id String,
stream_id String,
minute DateTime('UTC'),
rendition LowCardinality(String),
beats UInt64
) ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (channel_id, stream_id, minute, rendition)""",
    RENDITION_MINUTES.view(),
    """CREATE TABLE IF NOT EXISTS watch_sessions (
channel_id String,
stream_id String,
session_id String,
playback LowCardinality(String),
user_id SimpleAggregateFunction(max, String),
first_at SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
last_at SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
beats SimpleAggregateFunction(sum, UInt64)
) ENGINE = AggregatingMergeTree
ORDER BY (channel_id, stream_id, session_id, playback)""",
    WATCH_SESSIONS.view(),
    """CREATE TABLE IF NOT EXISTS chat_minutes (
channel_id String,
minute DateTime('UTC'),
messages SimpleAggregateFunction(sum, UInt64),
chatters AggregateFunction(uniq, String)
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (channel_id, minute)""",
    CHAT_MINUTES.view(),
    """CREATE TABLE IF NOT EXISTS sink_offsets (
topic LowCardinality(String),
partition UInt32,
offset UInt64,
loaded_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(offset)
ORDER BY (topic, partition)""",
)


def ddl(retention_days: int) -> list[str]:
    """Every statement that creates the tables and views, in order; each is idempotent."""
    if not isinstance(retention_days, int) or retention_days < 1:
        raise ValueError(f"retention_days must be a positive int, not {retention_days!r}")
    return [t.ddl.replace("{ttl}", str(retention_days)) for t in TABLES] + list(AGGREGATES)


def ttl_statements(retention_days: int) -> list[str]:
    """ALTERs that set the raw tables' TTL to ``retention_days`` (for a setting changed since creation)."""
    return [f"ALTER TABLE {name} MODIFY TTL toDateTime(occurred_at) + INTERVAL {int(retention_days)} DAY"
            for name in TTL_TABLES]


async def create_tables(store: AnalyticsStore, retention_days: int) -> None:
    """Create what is missing, and set the raw tables' TTL again when the retention setting changed."""
    for statement in ddl(retention_days):
        await store.query(statement)
    found = await store.query(
        "SELECT name, engine_full FROM system.tables "
        "WHERE database = currentDatabase() AND name IN {names:Array(String)}",
        {"names": list(TTL_TABLES)})
    wanted = f"toIntervalDay({int(retention_days)})"
    stale = {str(name) for name, engine in found.rows if wanted not in str(engine)}
    for statement, name in zip(ttl_statements(retention_days), TTL_TABLES, strict=True):
        if name in stale:
            await store.query(statement)
