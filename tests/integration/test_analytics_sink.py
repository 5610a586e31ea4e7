"""The analytics sink end to end: events produced through ``topics/`` into chDB, across a kill -9.

The analytics process runs as a real ``glasscast run analytics`` child (the
sink, and chDB's one owner, serving its internal API); the test reads the
tables through that API (``ServiceStore``) and through ``glasscast sql``.
Batches are kept small so that the kill lands in the middle of the load:
some batches in, the rest not, possibly one table of a batch in and the other
not.  The session broker holds other tests' records too, which the sink
loads as well; every count here is of this test's own channel.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import fastavro
import httpx
import pytest
from confluent_kafka import Message

from infra.embedded.process import free_port
from infra.settings import Settings, child_env
from processors.analytics.avro_rows import LOADS, container
from processors.analytics.sink import AvroRouting, Batch, Positions, load
from schemas.records.chat import ChatMessageSent
from schemas.records.viewer import Heartbeat
from tests.factories import Backbone, platform_settings
from tests.servers import run_service
from tests.waiting import eventually
from topics.consumer import Event
from topics.producer import EventProducer
from topics.runtime import make_serde
from topics.serde import AvroSerde, without_logical_types
from topics.wire import frame
from views.analytics.chdb_store import ChdbStore
from views.analytics.errors import QueryRefused
from views.analytics.service_store import ServiceStore
from views.analytics.store import QueryResult
from views.analytics.tables import HEARTBEATS as HEARTBEATS_TABLE
from views.analytics.tables import create_tables

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
HEARTBEATS = 6_000
CHAT = 600


def analytics_settings(backbone: Backbone, data: Path, **analytics: object) -> Settings:
    """Settings whose analytics process listens on a free port, with a password of its own in its URL."""
    url = f"http://glasscast:{secrets.token_urlsafe(16)}@127.0.0.1:{free_port()}"
    return platform_settings(backbone, data, analytics={"url": url, **analytics})


def query(settings: Settings, sql: str, params: dict[str, object] | None = None) -> QueryResult:
    async def run() -> QueryResult:
        store = ServiceStore(settings.analytics.url)
        try:
            return await store.query(sql, params)
        finally:
            await store.close()
    return asyncio.run(run())


def wait_healthy(settings: Settings, proc: subprocess.Popen[bytes], log: Path) -> None:
    port = settings.analytics.url.rsplit(":", 1)[1]

    def healthy() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"analytics exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200

    eventually(healthy, 120, f"the analytics process (log: {log})", ignore=(httpx.TransportError,))


@pytest.fixture
def settings(backbone: Backbone, tmp_path: Path) -> Settings:
    return analytics_settings(backbone, tmp_path / "data", batch_max_rows=100, batch_max_ms=100)


def counts(settings: Settings, channel: str) -> tuple[int, int, int, int]:
    """(heartbeat rows, distinct heartbeat offsets, chat rows, distinct chat offsets) of one channel."""
    row = query(settings, """SELECT
        (SELECT count() FROM heartbeats WHERE channel_id = {c:String}),
        (SELECT uniqExact(src_partition, src_offset) FROM heartbeats WHERE channel_id = {c:String}),
        (SELECT count() FROM chat_messages WHERE channel_id = {c:String}),
        (SELECT uniqExact(src_partition, src_offset) FROM chat_messages WHERE channel_id = {c:String})""",
                {"c": channel}).rows[0]
    return int(str(row[0])), int(str(row[1])), int(str(row[2])), int(str(row[3]))


def produce(settings: Settings, channel: str, heartbeats: int, chat: int, start_ms: int) -> None:
    serde = make_serde(settings)
    producer = EventProducer(settings.kafka, serde)
    try:
        every = max(1, heartbeats // max(1, chat))
        sent_chat = 0
        for i in range(heartbeats):
            producer.produce(Heartbeat(occurred_at=start_ms + i, channel_id=channel, stream_id="s-" + channel,
                                       session_id=f"sess-{i}", rendition="source", buffer_health_s=2.0,
                                       bitrate_kbps=3000), channel)
            if i % every == 0 and sent_chat < chat:
                producer.produce(ChatMessageSent(occurred_at=start_ms + i, message_id=f"m-{sent_chat}",
                                                 channel_id=channel, user_id=f"u-{sent_chat % 7}", username="x",
                                                 text=f"message {sent_chat}"), channel)
                sent_chat += 1
        assert sent_chat == chat
        assert producer.flush(60) == 0
    finally:
        producer.close()
        serde.close()


def test_sink_loads_every_offset_once_across_a_kill_9(settings: Settings, tmp_path: Path) -> None:
    channel = str(uuid.uuid4())
    produce(settings, channel, HEARTBEATS, CHAT, int(time.time() * 1000) - 3_600_000)
    log = tmp_path / "analytics.log"
    with run_service(settings, "analytics", log) as first:
        wait_healthy(settings, first, log)
        # Kill it as soon as part of the load is in: batches of 100 rows, so most of it is still to come.
        seen = eventually(lambda: (c := counts(settings, channel))[0] > 0 and c, 120, "the first rows")
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    assert seen[0] < HEARTBEATS, f"the whole load was in before the kill ({seen}): make the batches smaller"
    with run_service(settings, "analytics", tmp_path / "analytics-2.log") as second:
        wait_healthy(settings, second, tmp_path / "analytics-2.log")
        final = eventually(lambda: (c := counts(settings, channel))[0] >= HEARTBEATS and c[2] >= CHAT and c,
                           120, "every row after the restart")
        assert final == (HEARTBEATS, HEARTBEATS, CHAT, CHAT)
        # A record produced now comes after any row the restart might still have doubled: once it is in,
        # the counts are final.
        produce(settings, channel, 1, 1, int(time.time() * 1000))
        eventually(lambda: counts(settings, channel)[2] == CHAT + 1 and counts(settings, channel), 60,
                   "the last heartbeat")
        assert counts(settings, channel) == (HEARTBEATS + 1, HEARTBEATS + 1, CHAT + 1, CHAT + 1)
        sessions = query(settings, "SELECT uniqExact(session_id) FROM heartbeats WHERE channel_id = {c:String}",
                         {"c": channel}).scalar()
        assert sessions == HEARTBEATS  # sess-0 twice: the first batch's and the sentinel's
        # The aggregates the materialised views fill: every row once, wherever the kill fell (repair_aggregates).
        totals = query(settings, """SELECT
            (SELECT sum(beats) FROM watch_sessions WHERE channel_id = {c:String}),
            (SELECT sum(beats) FROM viewer_minutes WHERE channel_id = {c:String}),
            (SELECT sum(messages) FROM chat_minutes WHERE channel_id = {c:String})""", {"c": channel}).rows[0]
        assert tuple(int(str(v)) for v in totals) == (HEARTBEATS + 1, HEARTBEATS + 1, CHAT + 1)


def test_glasscast_sql_answers_and_refuses_writes(settings: Settings, tmp_path: Path) -> None:
    channel = str(uuid.uuid4())
    produce(settings, channel, 50, 5, int(time.time() * 1000) - 60_000)
    log = tmp_path / "analytics.log"
    env = child_env(settings, os.environ)

    def sql(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "infra.cli", "sql", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)

    with run_service(settings, "analytics", log) as proc:
        wait_healthy(settings, proc, log)
        eventually(lambda: counts(settings, channel)[0] == 50, 120, "the rows")
        statement = f"SELECT count() AS beats, uniqExact(session_id) AS sessions FROM heartbeats " \
                    f"WHERE channel_id = '{channel}'"
        table = sql(statement)
        assert table.returncode == 0, table.stderr
        assert table.stdout.splitlines()[0].split() == ["beats", "sessions"]
        assert table.stdout.splitlines()[2].split() == ["50", "50"]
        as_json = sql(statement, "--format", "json")
        assert as_json.returncode == 0 and as_json.stdout == '{"beats": 50, "sessions": 50}\n'
        as_csv = sql(statement, "--format", "csv")
        assert as_csv.returncode == 0 and as_csv.stdout == "beats,sessions\n50,50\n"
        for write in ("INSERT INTO heartbeats SELECT * FROM heartbeats", "DROP TABLE heartbeats",
                      f"SELECT 1; ALTER TABLE heartbeats DELETE WHERE channel_id = '{channel}'",
                      "SELECT 1 SETTINGS readonly = 0", "OPTIMIZE TABLE heartbeats FINAL"):
            refused = sql(write)
            assert refused.returncode == 2, (write, refused.stdout, refused.stderr)
            assert "glasscast sql:" in refused.stderr and refused.stdout == ""
        assert counts(settings, channel)[0] == 50


def test_the_analytics_api_needs_its_password(settings: Settings, tmp_path: Path) -> None:
    log = tmp_path / "analytics.log"
    port = settings.analytics.url.rsplit(":", 1)[1]
    with run_service(settings, "analytics", log) as proc:
        wait_healthy(settings, proc, log)
        r = httpx.post(f"http://127.0.0.1:{port}/query", json={"sql": "SELECT 1"})
        assert r.status_code == 401
        r = httpx.post(f"http://127.0.0.1:{port}/query", json={"sql": "SELECT 1"}, auth=("glasscast", "wrong"))
        assert r.status_code == 401
        assert query(settings, "SELECT 1 AS one").rows == ((1,),)
        r = httpx.post(f"http://127.0.0.1:{port}/insert_avro", content=b"", params={"table": "heartbeats"})
        assert r.status_code == 401
        # The Avro load over the API (ServiceStore.insert_avro): the container as the body.
        serde = make_serde(settings)
        channel = str(uuid.uuid4())
        framed = serde.encode("viewer.heartbeats", Heartbeat(occurred_at=int(time.time() * 1000), channel_id=channel,
                                                              session_id="over-the-api", rendition="source",
                                                              buffer_health_s=1.0, bitrate_kbps=1))
        writer = serde.writer_schema(int.from_bytes(framed[1:5], "big"))
        serde.close()
        load_as = LOADS[Heartbeat.RECORD]

        async def insert() -> None:
            store = ServiceStore(settings.analytics.url)
            try:
                await store.insert_avro("heartbeats", HEARTBEATS_TABLE.columns, load_as.structure, load_as.select,
                                        container(writer, [(framed, 3, 77)], os.urandom(16)))
                with pytest.raises(QueryRefused):
                    await store.insert_avro("heartbeats", HEARTBEATS_TABLE.columns, load_as.structure,
                                            load_as.select, b"not a container")
            finally:
                await store.close()

        asyncio.run(insert())
        got = query(settings, "SELECT session_id, src_partition, src_offset FROM heartbeats "
                              "WHERE channel_id = {c:String}", {"c": channel})
        assert got.rows == (("over-the-api", 3, 77),)


def test_glasscast_up_restarts_a_killed_analytics_process_without_loss_or_doubles(tmp_path: Path) -> None:
    """The same through the supervisor: kill -9 of the analytics process mid-load, restarted by `glasscast up`."""
    from infra.launcher import GlasscastUp
    from infra.runstate import resolve

    env = {"GLASSCAST_ANALYTICS_BATCH_MAX_ROWS": "300", "GLASSCAST_ANALYTICS_BATCH_MAX_MS": "100"}
    with GlasscastUp(tmp_path / "data", env) as up:
        settings = resolve(Settings(data_dir=tmp_path / "data"))
        channel = str(uuid.uuid4())
        statement = f"SELECT count() AS n, uniqExact(src_partition, src_offset) AS offsets FROM heartbeats " \
                    f"WHERE channel_id = '{channel}'"

        def loaded() -> tuple[int, int]:
            out = up.cli("sql", statement, "--format", "csv").splitlines()[1].split(",")
            return int(out[0]), int(out[1])

        pid = up.status()["processes"]["analytics"]["pid"]
        produce(settings, channel, HEARTBEATS, 0, int(time.time() * 1000) - 600_000)
        eventually(lambda: loaded()[0] > 0, 120, "the first rows")
        os.kill(pid, signal.SIGKILL)
        eventually(lambda: (p := up.status()["processes"]["analytics"])["pid"] != pid and p["alive"], 60,
                   "the supervisor to restart the analytics process")
        assert eventually(lambda: (n := loaded())[0] >= HEARTBEATS and n, 120, "every row",
                          ignore=(RuntimeError,)) == (HEARTBEATS, HEARTBEATS)
        assert up.status()["processes"]["analytics"]["last_exit"] == "signal SIGKILL"


def _heartbeat(channel: str, i: int) -> Heartbeat:
    return Heartbeat(occurred_at=int(time.time() * 1000) + i, channel_id=channel, session_id=f"sess-{i}",
                     rendition="source", buffer_health_s=2.0, bitrate_kbps=3000)


def _sessions(store: ChdbStore, channel: str) -> list[tuple[object, ...]]:
    got = asyncio.run(store.query("SELECT session_id, src_offset FROM heartbeats WHERE channel_id = {c:String} "
                                  "ORDER BY src_offset", {"c": channel}))
    return [tuple(r) for r in got.rows]


@pytest.fixture
def serde_and_store(settings: Settings, tmp_path: Path) -> Iterator[tuple[AvroSerde, ChdbStore]]:
    """The session registry's serde and a chDB store of this test's own, with the tables; closed after."""
    serde = make_serde(settings)
    store = ChdbStore(str(tmp_path / "analytics"))
    try:
        asyncio.run(create_tables(store, 30))
        yield serde, store
    finally:
        asyncio.run(store.close())
        serde.close()


def test_a_table_given_anything_but_its_own_avro_in_a_batch_is_loaded_as_rows(
        serde_and_store: tuple[AvroSerde, ChdbStore]) -> None:
    """Heartbeats written with our schema go to the engine as Avro; one of another writer schema in the same
    batch (decoded, as the consumer would) turns the table's whole batch into rows, in offset order, still one
    insert."""
    serde, store = serde_and_store
    channel = str(uuid.uuid4())
    framed = [serde.encode("viewer.heartbeats", _heartbeat(channel, i)) for i in range(4)]
    schema_id = int.from_bytes(framed[0][1:5], "big")
    assert serde.written_as(schema_id) == (Heartbeat.RECORD, True)
    # An older writer: the schema registered before clip_id was added (and so without it).
    old = json.loads(serde.writer_schema(schema_id))
    old["fields"] = [f for f in old["fields"] if f["name"] != "clip_id"]
    old_id = serde.registry.register(f"analytics-test-{uuid.uuid4().hex[:8]}-{Heartbeat.RECORD}", json.dumps(old))
    body = io.BytesIO()
    value = {k: v for k, v in _heartbeat(channel, 3).to_avro().items() if k != "clip_id"}
    fastavro.schemaless_writer(body, fastavro.parse_schema(without_logical_types(old)), value)
    framed[3] = frame(old_id, body.getvalue())
    routing = AvroRouting(serde)

    def message(offset: int) -> Message:
        return Message(topic="viewer.heartbeats", partition=5, offset=offset, value=framed[offset])

    def event_of(msg: Message) -> Event:
        return Event(msg.topic() or "", msg.partition() or 0, msg.offset() or 0, 0, None,
                     serde.decode(msg.value() or b""))

    only_avro = Batch(routing)
    only_avro.add_messages([message(i) for i in range(2)], Positions(), 0.0, event_of)
    assert set(only_avro.avro) == {"heartbeats"} and not only_avro.rows and only_avro.count == 2
    asyncio.run(load(store, only_avro))
    mixed = Batch(routing)
    mixed.add_messages([message(2), message(3)], Positions(), 0.0, event_of)
    assert not mixed.avro and [r[-1] for r in mixed.rows["heartbeats"]] == [2, 3] and mixed.count == 2
    asyncio.run(load(store, mixed))
    assert _sessions(store, channel) == [(f"sess-{i}", i) for i in range(4)]


def test_a_container_the_engine_refuses_is_loaded_as_rows_and_a_corrupt_record_costs_only_itself(
        serde_and_store: tuple[AvroSerde, ChdbStore], caplog: pytest.LogCaptureFixture) -> None:
    serde, store = serde_and_store
    channel = str(uuid.uuid4())
    framed = [serde.encode("viewer.heartbeats", _heartbeat(channel, i)) for i in range(3)]
    framed[1] = framed[1][:12]  # cut short: neither the engine nor fastavro can read it
    batch = Batch(AvroRouting(serde))
    batch.add_messages([Message(topic="viewer.heartbeats", partition=6, offset=i, value=framed[i])
                        for i in range(3)], Positions(), 0.0, lambda msg: None)
    assert batch.count == 3 and set(batch.avro) == {"heartbeats"}
    asyncio.run(load(store, batch))
    assert _sessions(store, channel) == [("sess-0", 0), ("sess-2", 2)]
    assert "loading them as rows" in caplog.text and "partition 6 offset 1 skipped" in caplog.text
    assert batch.last == {("viewer.heartbeats", 6): 2}
