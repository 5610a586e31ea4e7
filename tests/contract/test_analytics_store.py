"""The analytics store contract: one DDL and one set of queries on chDB always, on a ClickHouse server when named.

Every test runs against chDB (the embedded engine, in this process).  With
``CONTRACT_CLICKHOUSE_URL`` set (``http://USER:PASSWORD@HOST:8123``, e.g. the
compose file's ``clickhouse``) each runs against that server too, in a
database of its own that is dropped afterwards; without it those runs are
skipped and say so.  Covered: the tables and their TTLs, expiry with the
aggregates kept, parameters bound by the engine, read-only SQL refusing
writes, the creator report's exact numbers, the sink's positions after a
partly loaded batch, every ``glasscast sql`` example of the README, and the
Avro loads giving exactly the rows the Python path gives.
"""

from __future__ import annotations

import io
import json
import os
import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import fastavro
import pytest

from processors.analytics.avro_rows import LOADS, container
from processors.analytics.rows import row_for
from processors.analytics.sink import Batch, Positions, load, read_positions
from schemas.record import Record
from schemas.records.chat import ChatMessageSent
from schemas.records.stream import StreamHealth
from schemas.records.viewer import Heartbeat, ViewerCountUpdated
from topics.consumer import Event
from topics.serde import without_logical_types
from topics.wire import frame
from views.analytics.errors import QueryRefused
from views.analytics.report import Range, build_report
from views.analytics.store import AnalyticsStore
from views.analytics.tables import AGGREGATES, BY_NAME, CHAT_MESSAGES, HEARTBEATS, TABLES, TTL_TABLES, create_tables

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CLICKHOUSE_URL = os.environ.get("CONTRACT_CLICKHOUSE_URL", "")
DAY_MS = 86_400_000
MINUTE = 60_000
AVSC = {Heartbeat.RECORD: "viewer/Heartbeat.avsc", ViewerCountUpdated.RECORD: "viewer/ViewerCountUpdated.avsc",
        StreamHealth.RECORD: "stream/StreamHealth.avsc"}


@pytest.fixture(params=["chdb", "clickhouse"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AnalyticsStore]:
    if request.param == "clickhouse":
        if not CLICKHOUSE_URL:
            pytest.skip("CONTRACT_CLICKHOUSE_URL is not set: no ClickHouse server to run the contract against "
                        "(chDB ran it)")
        from views.analytics.clickhouse_store import ClickHouseStore

        database = f"glasscast_contract_{uuid.uuid4().hex[:8]}"
        server = ClickHouseStore(CLICKHOUSE_URL, database)
        await create_tables(server, 30)
        try:
            yield server
        finally:
            await server.query(f"DROP DATABASE IF EXISTS {database}")
            await server.close()
        return
    from views.analytics.chdb_store import ChdbStore

    # chDB opens one data directory per process at a time: each test opens its own and closes it.
    embedded = ChdbStore(str(tmp_path / "analytics"))
    await create_tables(embedded, 30)
    try:
        yield embedded
    finally:
        await embedded.close()


def now_minute_ms() -> int:
    return int(time.time()) // 60 * MINUTE


def heartbeat(at: int, channel: str, session: str, offset: int, **extra: object) -> list[object]:
    row: dict[str, object] = {"occurred_at": at, "channel_id": channel, "stream_id": "s", "session_id": session,
                              "user_id": "", "rendition": "source", "buffer_health_s": 2.0, "bitrate_kbps": 3000,
                              "latency_ms": -1, "dropped_frames": 0, "playback": "LIVE", "clip_id": "",
                              "src_partition": 0, "src_offset": offset, **extra}
    return [row[c] for c in HEARTBEATS.columns]


async def test_every_table_exists_and_the_ddl_runs_again(store: AnalyticsStore) -> None:
    await create_tables(store, 30)  # idempotent
    names = {str(r[0]) for r in (await store.query("SHOW TABLES")).rows}
    assert {t.name for t in TABLES} | {"viewer_minutes", "rendition_minutes", "watch_sessions", "chat_minutes",
                                       "sink_offsets"} <= names
    columns = await store.query("SELECT name, type FROM system.columns WHERE database = currentDatabase() "
                                "AND table = 'heartbeats' ORDER BY position")
    assert dict((str(n), str(t)) for n, t in columns.rows) == {
        "occurred_at": "DateTime64(3, 'UTC')", "channel_id": "String", "stream_id": "String",
        "session_id": "String", "user_id": "String", "rendition": "LowCardinality(String)",
        "buffer_health_s": "Float32", "bitrate_kbps": "UInt32", "latency_ms": "Int32", "dropped_frames": "UInt32",
        "playback": "LowCardinality(String)", "clip_id": "String", "src_partition": "UInt32",
        "src_offset": "UInt64"}
    assert len(AGGREGATES) == 9


async def test_raw_tables_have_the_ttl_and_aggregates_none(store: AnalyticsStore) -> None:
    engines = dict((str(n), str(e)) for n, e in (await store.query(
        "SELECT name, engine_full FROM system.tables WHERE database = currentDatabase()")).rows)
    for name in TTL_TABLES:
        assert "TTL toDateTime(occurred_at) + toIntervalDay(30)" in engines[name], engines[name]
    for name in ("viewer_minutes", "rendition_minutes", "watch_sessions", "chat_minutes", "sink_offsets",
                 "follows", "stream_events"):
        assert "TTL" not in engines[name], engines[name]


async def test_expired_raw_rows_go_and_the_aggregates_stay(store: AnalyticsStore) -> None:
    channel, now = str(uuid.uuid4()), now_minute_ms()
    await store.insert("heartbeats", HEARTBEATS.columns, [
        heartbeat(now - 1 * DAY_MS, channel, "recent", 1), heartbeat(now - 10 * DAY_MS, channel, "older", 2),
        heartbeat(now - 40 * DAY_MS, channel, "expired", 3)])  # past the retention already: never stored raw
    raw = "SELECT session_id FROM heartbeats WHERE channel_id = {c:String} ORDER BY session_id"
    kept = "SELECT uniqMerge(sessions) FROM viewer_minutes WHERE channel_id = {c:String}"
    assert (await store.query(raw, {"c": channel})).rows == (("older",), ("recent",))
    assert (await store.query(kept, {"c": channel})).scalar() == 3
    await create_tables(store, 5)  # the retention setting lowered: the TTL follows it
    await store.query("OPTIMIZE TABLE heartbeats FINAL")
    assert (await store.query(raw, {"c": channel})).rows == (("recent",),)
    assert (await store.query(kept, {"c": channel})).scalar() == 3
    sessions = await store.query("SELECT count() FROM (SELECT session_id FROM watch_sessions "
                                 "WHERE channel_id = {c:String} GROUP BY session_id)", {"c": channel})
    assert sessions.scalar() == 3


async def test_parameters_are_bound_by_the_engine(store: AnalyticsStore) -> None:
    channel = str(uuid.uuid4())
    await store.insert("heartbeats", HEARTBEATS.columns, [heartbeat(now_minute_ms(), channel, "it's \\ \t x", 1)])
    hostile = "x' OR 1 = 1 --"
    assert (await store.query("SELECT count() FROM heartbeats WHERE channel_id = {c:String}",
                              {"c": hostile})).scalar() == 0
    found = await store.query("SELECT session_id FROM heartbeats WHERE channel_id = {c:String} "
                              "AND session_id IN {s:Array(String)}", {"c": channel, "s": ["it's \\ \t x", "y"]})
    assert found.rows == (("it's \\ \t x",),)
    typed = await store.query("SELECT {i:Int64} + 1, {f:Float64} * 2, {n:Nullable(String)}",
                              {"i": 41, "f": 1.25, "n": None})
    assert typed.rows == ((42, 2.5, None),)


@pytest.mark.parametrize("statement", [
    "INSERT INTO heartbeats SELECT * FROM heartbeats",
    "DROP TABLE heartbeats",
    "ALTER TABLE heartbeats DELETE WHERE 1",
    "TRUNCATE TABLE heartbeats",
    "SELECT 1; DROP TABLE heartbeats",
    "SELECT 1 SETTINGS readonly = 0",
    "SELECT * FROM heartbeats INTO OUTFILE '/tmp/out.csv'",
    "CREATE TABLE x (a UInt8) ENGINE = Memory",
    "/* SELECT */ OPTIMIZE TABLE heartbeats",
    "",
])
async def test_read_only_sql_refuses_writes(store: AnalyticsStore, statement: str) -> None:
    with pytest.raises(QueryRefused):
        await store.query(statement, readonly=True)
    assert (await store.query("EXISTS TABLE heartbeats")).scalar() == 1


async def test_read_only_sql_reads(store: AnalyticsStore) -> None:
    for statement in ("SHOW TABLES", "DESCRIBE TABLE heartbeats", "WITH 2 AS x SELECT x * 3",
                      "-- a comment first\nSELECT 'a;b' AS s;", "select count() from heartbeats"):
        await store.query(statement, readonly=True)
    assert (await store.query("WITH 2 AS x SELECT x * 3", readonly=True)).rows == ((6,),)


async def test_creator_report_numbers(store: AnalyticsStore) -> None:
    channel, t0 = str(uuid.uuid4()), now_minute_ms() - 100 * MINUTE
    rows = [heartbeat(t0 + s * 1000, channel, "A", i) for i, s in enumerate(range(0, 60, 10))]
    rows += [heartbeat(t0 + s * 1000, channel, "B", 100 + i, rendition="480p30",
                       buffer_health_s=0.1 if s == 60 else 2.0) for i, s in enumerate(range(30, 100, 10))]
    await store.insert("heartbeats", HEARTBEATS.columns, rows)
    chat = [[t0 + 5000, channel, "m1", "u1", "u1", "hi", 0, [], 0, 1],
            [t0 + 65000, channel, "m2", "u2", "u2", "hi", 1, ["subscriber"], 0, 2]]
    await store.insert("chat_messages", CHAT_MESSAGES.columns, chat)
    await store.insert("follows", ("occurred_at", "channel_id", "follower_id", "followed", "src_partition",
                                   "src_offset"), [[t0 + 1000, channel, "f1", 1, 0, 1]])
    report = (await build_report(store, Range(channel, "s", t0, t0 + 10 * MINUTE), 10.0)).to_json()
    assert report["viewers_per_minute"] == [{"t": t0, "viewers": 2}, {"t": t0 + MINUTE, "viewers": 1}]
    assert (report["peak_viewers"], report["avg_viewers"], report["unique_viewers"]) == (2, 1.5, 2)
    assert (report["watch_time_s"], report["avg_watch_time_s"]) == (130.0, 65.0)
    assert report["chat_per_minute"] == [{"t": t0, "messages": 1}, {"t": t0 + MINUTE, "messages": 1}]
    assert (report["chat_messages"], report["chatters"], report["new_followers"]) == (2, 2, 1)
    assert report["renditions"] == [{"rendition": "480p30", "share": round(7 / 13, 4)},
                                    {"rendition": "source", "share": round(6 / 13, 4)}]
    assert report["rebuffering_ratio"] == round(1 / 13, 4)


async def test_positions_after_a_partly_loaded_batch(store: AnalyticsStore) -> None:
    """A batch whose heartbeats went in but not its chat rows nor its watermark: the next run adds only those."""
    channel, at = str(uuid.uuid4()), now_minute_ms()
    events = [Event("viewer.heartbeats", 7, 10 + i, at, channel,
                    Heartbeat(occurred_at=at, channel_id=channel, session_id=f"s{i}", rendition="source",
                              buffer_health_s=1.0, bitrate_kbps=1)) for i in range(3)]
    events += [Event("chat.messages", 7, 20 + i, at, channel,
                     ChatMessageSent(occurred_at=at, message_id=f"m{i}", channel_id=channel, user_id="u",
                                     username="u", text="t")) for i in range(2)]
    first = Batch()
    first.add(events, Positions(), 0.0)
    await store.insert("heartbeats", HEARTBEATS.columns, first.rows["heartbeats"])  # then the process died
    positions = await read_positions(store)
    assert positions.start("viewer.heartbeats", 7) == -2  # no watermark yet: from the beginning
    again = Batch()
    again.add(events, positions, 0.0)
    assert dict(again.rows) == {"chat_messages": first.rows["chat_messages"]}
    await load(store, again)
    positions = await read_positions(store)
    assert positions.start("viewer.heartbeats", 7) == 13 and positions.start("chat.messages", 7) == 22
    third = Batch()
    third.add(events, positions, 0.0)
    assert third.count == 0
    counted = await store.query("SELECT (SELECT count() FROM heartbeats WHERE channel_id = {c:String}), "
                                "(SELECT count() FROM chat_messages WHERE channel_id = {c:String})", {"c": channel})
    assert counted.rows == ((3, 2),)


def readme_examples() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r'glasscast sql "(.*?)"', text, flags=re.DOTALL)


def test_the_readme_has_sql_examples() -> None:
    assert len(readme_examples()) >= 3


@pytest.mark.parametrize("example", readme_examples(), ids=lambda s: " ".join(s.split())[:40])
async def test_readme_sql_examples_run(store: AnalyticsStore, example: str) -> None:
    await store.query(example, readonly=True)


async def test_a_time_outside_the_usual_range_is_stored_not_refused(store: AnalyticsStore) -> None:
    """Events with early or absurd times (a test's occurred_at of 1 s, a client's far future) load like any other,
    at that time or at the edge of DateTime64's range, instead of failing their whole batch."""
    from views.analytics.tables import BY_NAME

    follows = BY_NAME["follows"]
    channel = str(uuid.uuid4())
    times = [0, 1_000, -5, 1_796_394_949_120, 2**62]
    assert follows.columns == ("occurred_at", "channel_id", "follower_id", "followed", "src_partition", "src_offset")
    rows = [[t, channel, f"user-{i}", 1, 0, i] for i, t in enumerate(times)]
    await store.insert("follows", follows.columns, rows)
    got = await store.query("SELECT follower_id, toUnixTimestamp64Milli(occurred_at) FROM follows "
                            "WHERE channel_id = {c:String} ORDER BY follower_id", {"c": channel})
    stored = {str(u): int(str(t)) for u, t in got.rows}
    assert stored["user-0"] == 0 and stored["user-1"] == 1_000 and stored["user-2"] == -5
    assert stored["user-3"] == 1_796_394_949_120
    assert stored["user-4"] == 10_413_791_999_999  # the last millisecond of 2299


async def test_a_row_the_store_refuses_costs_that_row_not_the_batch(store: AnalyticsStore,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    channel, at = str(uuid.uuid4()), now_minute_ms()
    batch = Batch()
    batch.add([Event("viewer.heartbeats", 9, 100 + i, at, channel,
                     Heartbeat(occurred_at=at, channel_id=channel, session_id=f"s{i}", rendition="source",
                               buffer_health_s=1.0, bitrate_kbps=1)) for i in range(3)], Positions(), 0.0)
    rows = batch.rows["heartbeats"]
    bad = list(rows[1])
    bad[HEARTBEATS.columns.index("bitrate_kbps")] = "not a number"  # what no engine takes into a UInt32
    rows[1] = tuple(bad)
    await load(store, batch)
    got = await store.query("SELECT session_id FROM heartbeats WHERE channel_id = {c:String} ORDER BY session_id",
                            {"c": channel})
    assert [str(r[0]) for r in got.rows] == ["s0", "s2"]
    assert (await read_positions(store)).start("viewer.heartbeats", 9) == 103
    assert "partition 9 offset 101 refused" in caplog.text


def _avro_samples(channel: str, at: int) -> list[Record]:
    """Records of every type the engine reads from Avro, with the values rows.py treats specially."""
    stream = str(uuid.uuid4())
    return [
        Heartbeat(occurred_at=at, channel_id=channel, session_id="plain", rendition="source", buffer_health_s=1.25,
                  bitrate_kbps=3000),
        Heartbeat(occurred_at=at + 1, channel_id=channel, stream_id=stream, session_id="full",
                  user_id=str(uuid.uuid4()), rendition="720p30", buffer_health_s=0.1, bitrate_kbps=-5, latency_ms=1500,
                  dropped_frames=-3, playback="CLIP", clip_id=str(uuid.uuid4())),
        Heartbeat(occurred_at=at - 3_600_000, channel_id=channel, session_id="earlier", rendition="audio",
                  buffer_health_s=0.0, bitrate_kbps=0, latency_ms=0, dropped_frames=7, playback="VOD"),
        Heartbeat(occurred_at=2**62, channel_id=channel, session_id="far", rendition="source", buffer_health_s=3.0,
                  bitrate_kbps=1),
        ViewerCountUpdated(occurred_at=at, channel_id=channel, stream_id=stream, viewers=12, window_s=60,
                           bucket_s=5),
        ViewerCountUpdated(occurred_at=-5, channel_id=channel, viewers=-1, window_s=60, bucket_s=5),
        StreamHealth(occurred_at=at, stream_id=stream, channel_id=channel, window_ms=5000, ingest_bitrate_kbps=4500,
                     fps=59.94, dropped_frames=2, bytes_received=10**10, status="DEGRADED", video_bitrate_kbps=4300,
                     audio_bitrate_kbps=160, width=1920, height=1080, late_frames=1),
        StreamHealth(occurred_at=5, stream_id=stream, channel_id=channel, window_ms=-1, ingest_bitrate_kbps=-1,
                     fps=0.0, dropped_frames=-1, bytes_received=-1, late_frames=-2),
    ]


async def test_avro_loads_give_exactly_the_rows_python_gives(store: AnalyticsStore) -> None:
    """Each record type the sink hands over as Avro (avro_rows.LOADS) lands as the row rows.py makes of it:
    the same records loaded both ways, to partitions 1 (the engine reading the Avro) and 2 (rows), compare equal."""
    channel, at = str(uuid.uuid4()), now_minute_ms()
    samples = _avro_samples(channel, at)
    assert {r.RECORD for r in samples} == set(LOADS)
    by_table: dict[str, list[tuple[int, Record]]] = {}
    for offset, record in enumerate(samples):
        by_table.setdefault(LOADS[record.RECORD].table, []).append((offset, record))
    for table, records in by_table.items():
        load_as = LOADS[records[0][1].RECORD]
        schema = json.loads((ROOT / "schemas" / AVSC[records[0][1].RECORD]).read_text())
        parsed = fastavro.parse_schema(without_logical_types(schema))
        framed = []
        for offset, record in records:
            body = io.BytesIO()
            fastavro.schemaless_writer(body, parsed, record.to_avro())
            framed.append((frame(42, body.getvalue()), 1, offset))
        columns = BY_NAME[table].columns
        await store.insert_avro(table, columns, load_as.structure, load_as.select,
                                container(json.dumps(schema), framed, os.urandom(16)))
        rows = []
        for offset, record in records:
            made = row_for(record)
            assert made is not None and made[0] == table
            rows.append((*made[1], 2, offset))
        await store.insert(table, columns, rows)
        every = ", ".join(c for c in columns if c != "src_partition")
        got = {p: (await store.query(
            f"SELECT {every} FROM {table} WHERE channel_id = {{c:String}} AND src_partition = {p} ORDER BY src_offset",
            {"c": channel})).rows for p in (1, 2)}
        assert len(got[1]) == len(records) and got[1] == got[2], (table, got)


async def test_a_container_the_engine_cannot_read_is_refused_whole(store: AnalyticsStore) -> None:
    load_as = LOADS[Heartbeat.RECORD]
    with pytest.raises(QueryRefused):
        await store.insert_avro("heartbeats", HEARTBEATS.columns, load_as.structure, load_as.select,
                                b"Obj\x01 not a container")
    with pytest.raises(QueryRefused):
        await store.insert_avro("heartbeats; DROP TABLE x", HEARTBEATS.columns, load_as.structure, load_as.select,
                                b"")


async def _aggregates(store: AnalyticsStore, channel: str) -> tuple[object, ...]:
    got = await store.query("""SELECT
        (SELECT uniqMerge(sessions) FROM viewer_minutes WHERE channel_id = {c:String}),
        (SELECT sum(beats) FROM viewer_minutes WHERE channel_id = {c:String}),
        (SELECT sum(beats) FROM rendition_minutes WHERE channel_id = {c:String}),
        (SELECT count() FROM (SELECT session_id FROM watch_sessions WHERE channel_id = {c:String}
                              GROUP BY stream_id, session_id, playback)),
        (SELECT sum(beats) FROM watch_sessions WHERE channel_id = {c:String}),
        (SELECT sum(messages) FROM chat_minutes WHERE channel_id = {c:String}),
        (SELECT uniqMerge(chatters) FROM chat_minutes WHERE channel_id = {c:String})""", {"c": channel})
    return tuple(got.rows[0])


async def test_aggregates_a_cut_batch_left_short_are_computed_again(store: AnalyticsStore) -> None:
    """A batch whose raw rows went in but not all their materialised views' rows (killed in between) and not
    its watermark: the next start computes the aggregate rows those raw rows touch again, once, however
    often it runs, and leaves complete aggregates as they are."""
    from processors.analytics.sink import repair_aggregates

    channel, at = str(uuid.uuid4()), now_minute_ms()

    def beat(i: int) -> Event:
        return Event("viewer.heartbeats", 11, 100 + i, at, channel,
                     Heartbeat(occurred_at=at + i, channel_id=channel, stream_id="s", session_id=f"s{i % 5}",
                               rendition="source", buffer_health_s=1.0, bitrate_kbps=1))

    def chat(i: int) -> Event:
        return Event("chat.messages", 11, 100 + i, at, channel,
                     ChatMessageSent(occurred_at=at + i, message_id=f"m{i}", channel_id=channel, user_id=f"u{i % 3}",
                                     username="u", text="t"))

    first = Batch()
    first.add([beat(i) for i in range(4)] + [chat(i) for i in range(2)], Positions(), 0.0)
    await load(store, first)  # watermark: heartbeats and chat up to offset 103 / 101
    cut = Batch()
    cut.add([beat(i) for i in range(4, 10)] + [chat(i) for i in range(2, 6)], await read_positions(store), 0.0)
    for table, rows in cut.rows.items():  # the raw rows, with their views' rows, but no watermark
        await store.insert(table, BY_NAME[table].columns, rows)
    complete = (5, 10, 10, 5, 10, 6, 3)
    assert await _aggregates(store, channel) == complete
    assert await repair_aggregates(store, await read_positions(store)) == [
        "viewer_minutes", "rendition_minutes", "watch_sessions", "chat_minutes"]
    assert await _aggregates(store, channel) == complete  # complete ones are not doubled
    # Now as if the views' rows never went in: every aggregate row of this channel gone.
    for name in ("viewer_minutes", "rendition_minutes", "watch_sessions", "chat_minutes"):
        await store.query(f"DELETE FROM {name} WHERE channel_id = {{c:String}}", {"c": channel})
    assert await _aggregates(store, channel) == (0, 0, 0, 0, 0, 0, 0)
    await repair_aggregates(store, await read_positions(store))
    assert await _aggregates(store, channel) == complete
    await repair_aggregates(store, await read_positions(store))  # a crash in the repair: run again
    assert await _aggregates(store, channel) == complete
    # Once the batch has its watermark, nothing is cut.
    await load(store, Batch(last=dict(cut.last)))
    assert await repair_aggregates(store, await read_positions(store)) == []
