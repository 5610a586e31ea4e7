"""The processors never skip an event for a Valkey outage (docs/ARCHITECTURE.md, "Failures").

The real processors (``glasscast run processors``) run against a private Valkey.
It is killed (SIGKILL, as the fault suite does), segments of a live stream go
onto ``media.segments`` while it is down, and it comes back on the same port
with its append-only file.  Every segment must then be in the segment index:
a view write that fails is retried while the agent holds its place in the log,
never dropped with a crashed agent (which Faust restarts after the event).
Valkey comes back only once the processors' log names a retried view write;
afterwards the processors still fold new events.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from infra.embedded.valkey import ValkeyProcess
from infra.settings import Settings
from schemas.record import Record
from schemas.records.media import SegmentReady
from tests.conftest import wait_processors_assigned
from tests.factories import Backbone, platform_settings
from tests.servers import run_service
from tests.waiting import eventually_async
from topics.producer import EventProducer
from topics.runtime import make_serde
from views.errors import VALKEY_UNAVAILABLE
from views.store import ViewStore

pytestmark = pytest.mark.integration

DOWN_S = 4.0  # longer than redis-py's own retries of one command


@pytest.fixture
def private_valkey(tmp_path: Path) -> Iterator[ValkeyProcess]:
    v = ValkeyProcess(tmp_path / "valkey", persist=True)
    v.start()
    yield v
    v.stop()


def _segment(stream_id: str, channel_id: str, seq: int) -> SegmentReady:
    return SegmentReady(
        occurred_at=int(time.time() * 1000), stream_id=stream_id, channel_id=channel_id, rendition="source",
        seq=seq, duration_ms=2000, program_date_time=1_790_000_000_000 + 2000 * seq, byte_size=7,
        uri=f"{seq:08d}.m4s", parts=(), discontinuity=False, pts_90k=180_000 * seq, init_uri="init.mp4",
        codecs="avc1.64001f,mp4a.40.2", bandwidth_bps=2_000_000, width=1280, height=720, fps=30.0,
        audio_only=False)


def _produce(s: Settings, events: list[Record], key: str) -> None:
    serde = make_serde(s)
    producer = EventProducer(s.kafka, serde)
    try:
        for event in events:
            producer.send_sync(event, key)
    finally:
        producer.close(10)
        serde.close()


async def _seqs(views: ViewStore, stream_id: str) -> set[int]:
    return {int(e["seq"]) for e in await views.segments.segments(stream_id, "source")}


async def test_segments_folded_while_valkey_is_down_are_in_the_index_when_it_is_back(
        tmp_path: Path, backbone: Backbone, private_valkey: ValkeyProcess) -> None:
    s = platform_settings(backbone, tmp_path / "data").with_section("valkey", url=private_valkey.url)
    channel_id, stream_id = str(uuid.uuid4()), str(uuid.uuid4())
    log = tmp_path / "processors.log"
    with run_service(s, "processors", log) as proc:
        wait_processors_assigned(s, proc, log)
        client = aioredis.Redis.from_url(s.valkey.url)
        views = ViewStore(client, s.valkey.key_prefix)
        try:
            await asyncio.to_thread(_produce, s, [_segment(stream_id, channel_id, 0)], stream_id)
            await eventually_async(lambda: _seqs(views, stream_id), 60, "segment 0 in the index")

            pid = private_valkey.process.pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            await asyncio.to_thread(_produce, s, [_segment(stream_id, channel_id, n) for n in (1, 2, 3)], stream_id)
            await asyncio.sleep(DOWN_S)  # the processors try, and fail, meanwhile

            async def retried() -> bool:
                # On a busy machine the processors may still be folding other tests' records of the shared
                # topics: the write they hold their place on (and retry) is then one of those, and ours wait.
                return any("view write of " in line and "retrying" in line for line in log.read_text().splitlines())

            await eventually_async(retried, 60, "the processors to retry a view write")
            private_valkey.stop()
            again = ValkeyProcess(private_valkey.data_dir, port=private_valkey.port, persist=True)
            again.start()
            try:
                async def all_back() -> bool:
                    return await _seqs(views, stream_id) >= {0, 1, 2, 3}

                await eventually_async(all_back, 60, "segments 1-3, folded while Valkey was down, in the index",
                                       ignore=VALKEY_UNAVAILABLE)  # this test's own client reconnects too
                await asyncio.to_thread(_produce, s, [_segment(stream_id, channel_id, 4)], stream_id)

                async def later() -> bool:
                    return 4 in await _seqs(views, stream_id)

                await eventually_async(later, 60, "segment 4, after the outage")
                assert proc.poll() is None
            finally:
                again.stop()
        finally:
            await client.aclose()
