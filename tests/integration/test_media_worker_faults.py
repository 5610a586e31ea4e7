"""A media worker through the failure of its dependencies and its own death (issue 11, points 2 and 5).

* A transient failure of a dependency never costs a GOP: with Valkey stopped
  (a private ValkeyProcess, never the session's), a GOP whose ladder needs
  the audience waits, a GOP of a channel whose audience the worker already
  read goes on with it, nothing is committed past the waiting GOP, and once
  Valkey is back every rendition gets its segment.  A store that fails a
  few writes is retried too.
* A failure of the GOP itself still ends it as before: a missing blob is
  skipped at once, a corrupt one after ``ATTEMPTS`` tries.
* A worker killed with SIGKILL takes its transcode pool (the forkserver and
  every pool process) with it.

The retry tests drive the worker's per-event path in process with a
recording consumer, so they control which GOPs share a partition.
"""

from __future__ import annotations

import asyncio
import errno
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from infra.embedded.valkey import ValkeyProcess
from infra.proctree import PlatformProcess, descendants, still_running
from infra.settings import Settings
from media.blob import FileBlobStore
from media.ingest.gop import Gop, gop_to_flv
from media.transcode.worker import ATTEMPTS, TranscodeWorker, segment_key
from schemas.records.media import GopAvailable, SegmentReady
from tests.integration.test_transcode_job import make_source, split
from tests.servers import run_service
from tests.waiting import eventually, eventually_async
from topics.admin import ensure_topics
from topics.consumer import Event
from topics.runtime import make_serde
from topics.tools import read_topic
from views.viewers import viewers_key

pytestmark = pytest.mark.integration

#: These tests drive the worker's whole-GOP path (GopAvailable in): remuxes and scaled rungs from each GOP,
#: as a worker runs when no ingest packages parts (GLASSCAST_TRANSCODE_REMUX, _LIVE_PARTS).
WHOLE_GOPS = {"remux": True, "live_parts": False}


@pytest.fixture(scope="module")
def gops(tmp_path_factory: pytest.TempPathFactory) -> list[Gop]:
    return split(make_source(tmp_path_factory.mktemp("src") / "720p30.flv", "1280x720", 30, 7, 60))[:3]


class Commits:
    """Stands in for the worker's consumer: records what it commits."""

    def __init__(self) -> None:
        self.offsets: list[int] = []

    def commit_offset(self, topic: str, partition: int, next_offset: int) -> None:
        self.offsets.append(next_offset)


class FlakyStore(FileBlobStore):
    """The origin store, failing its next ``failures`` segment writes with an I/O error."""

    def __init__(self, root: Path, failures: int = 0) -> None:
        super().__init__(root)
        self.failures = failures

    def put(self, key: str, data: bytes) -> str:
        if self.failures > 0 and key.endswith(".m4s"):
            self.failures -= 1
            raise OSError(errno.EIO, "Input/output error (injected)")
        return super().put(key, data)


def announce(stream_id: str, channel_id: str, seq: int, gop: Gop, ref: str, size: int) -> GopAvailable:
    return GopAvailable(
        occurred_at=int(time.time() * 1000), stream_id=stream_id, channel_id=channel_id, seq=seq,
        pts=gop.start_ms, duration=gop.duration_ms, time_base_num=1, time_base_den=1000, byte_size=size,
        blob_ref=ref, video_codec="avc1.64001f", width=1280, height=720, fps=30.0, audio_codec="mp4a.40.2",
        audio_sample_rate_hz=48000, audio_channels=2)


class Rig:
    """A worker in process with a recording consumer, its stores, and the GOPs it is given."""

    def __init__(self, settings: Settings, origin: FileBlobStore, client: aioredis.Redis) -> None:
        ensure_topics(settings.kafka)
        self.settings = settings
        self.serde = make_serde(settings)
        self.blobs = FileBlobStore(settings.data_dir / "blobs")
        self.origin = origin
        self.client = client
        self.worker = TranscodeWorker(settings, self.serde, self.blobs, origin, client)
        self.real_consumer = self.worker.consumer
        self.commits = Commits()
        self.worker.consumer = self.commits  # type: ignore[assignment]
        self.offset = 0

    def event(self, gop: GopAvailable) -> Event:
        event = Event("media.gops", 0, self.offset, gop.occurred_at, gop.stream_id, gop)
        self.offset += 1
        self.worker.offsets.started(("media.gops", 0), event.offset)
        return event

    def gop(self, source: Gop, stream_id: str, channel_id: str, seq: int, data: bytes | None = None) -> Event:
        data = gop_to_flv(source) if data is None else data
        ref = self.blobs.put(f"gops/{stream_id}/{seq:08d}.flv", data)
        return self.event(announce(stream_id, channel_id, seq, source, ref, len(data)))

    async def run(self, event: Event) -> None:
        await self.worker._run_one(event, ("media.gops", 0))

    def stored(self, stream_id: str, renditions: list[str], seq: int) -> bool:
        return all(self.origin.exists(f"file:{segment_key(stream_id, r, seq)}") for r in renditions)

    def announced(self, stream_id: str) -> set[tuple[str, int]]:
        return {(e.value.rendition, e.value.seq) for e in read_topic(
            self.settings.kafka, self.serde, "media.segments", start="beginning", exit_at_end=True)
            if e.key == stream_id and isinstance(e.value, SegmentReady)}

    def close(self) -> None:
        self.worker.consumer = self.real_consumer
        self.worker.close()
        self.serde.close()


@pytest.fixture
def private_valkey(tmp_path: Path) -> Iterator[ValkeyProcess]:
    v = ValkeyProcess(tmp_path / "valkey", persist=False)
    v.start()
    yield v
    v.stop()


async def test_a_gop_waits_out_valkey_and_nothing_is_committed_past_it(
        settings_factory: Callable[..., Settings], private_valkey: ValkeyProcess, gops: list[Gop],
        tmp_path: Path) -> None:
    s = settings_factory(ladder={"mode": "tiered", "tier_small": 10, "tier_medium": 100},
                         transcode={"group_id": f"faults-{uuid.uuid4().hex[:8]}", "workers": 1, **WHOLE_GOPS}
                         ).with_section("valkey", url=private_valkey.url)
    client = aioredis.Redis.from_url(s.valkey.url, socket_timeout=5)
    rig = Rig(s, FileBlobStore(s.data_dir / "origin"), client)
    stream_x, stream_y = str(uuid.uuid4()), str(uuid.uuid4())
    channel_x, channel_y = str(uuid.uuid4()), str(uuid.uuid4())
    two = ["source", "480p30"]  # 50 viewers: the source and one scaled rung
    valkey = private_valkey
    try:
        for channel in (channel_x, channel_y):
            await client.set(viewers_key(s.valkey.key_prefix, channel), 50)
        await rig.run(rig.gop(gops[0], stream_y, channel_y, 0))  # the worker reads channel Y's audience
        assert rig.commits.offsets == [1] and rig.stored(stream_y, two, 0)

        valkey.stop()
        waiting = asyncio.create_task(rig.run(rig.gop(gops[1], stream_x, channel_x, 0)))  # X: never read
        going = asyncio.create_task(rig.run(rig.gop(gops[2], stream_y, channel_y, 1)))  # Y: last count stands in
        await asyncio.wait_for(going, 120)
        assert rig.stored(stream_y, two, 1)  # live video of a known channel keeps flowing
        await eventually_async(lambda: rig.worker.retries >= 2, 30, "the waiting GOP to be retried")
        assert not waiting.done() and not rig.stored(stream_x, ["source"], 0)
        assert rig.commits.offsets == [1]  # nothing past the GOP that waits, though the one after it is done

        valkey = ValkeyProcess(private_valkey.data_dir, port=private_valkey.port, persist=False)
        valkey.start()
        await client.set(viewers_key(s.valkey.key_prefix, channel_x), 50)
        await asyncio.wait_for(waiting, 60)
        assert rig.commits.offsets == [1, 3]
        # Every rendition got the segment that waited, and announced it.
        assert rig.stored(stream_x, two, 0)
        assert rig.announced(stream_x) == {("source", 0), ("480p30", 0)}
        assert rig.announced(stream_y) == {(r, seq) for r in two for seq in (0, 1)}
        assert rig.worker.skipped == 0
    finally:
        rig.close()
        await client.aclose()
        if valkey is not private_valkey:
            valkey.stop()


async def test_store_failures_are_retried_and_bad_gops_skipped_as_before(
        settings_factory: Callable[..., Settings], gops: list[Gop]) -> None:
    s = settings_factory(ladder={"mode": "passthrough"},
                         transcode={"group_id": f"faults-{uuid.uuid4().hex[:8]}", "workers": 1, **WHOLE_GOPS})
    client = aioredis.Redis.from_url(s.valkey.url)
    origin = FlakyStore(s.data_dir / "origin")
    rig = Rig(s, origin, client)
    stream_id, channel_id = str(uuid.uuid4()), str(uuid.uuid4())
    try:
        origin.failures = 3  # the origin store fails three writes, then heals
        await asyncio.wait_for(rig.run(rig.gop(gops[0], stream_id, channel_id, 0)), 60)
        assert origin.failures == 0 and rig.worker.retries >= 3 and rig.stored(stream_id, ["source"], 0)
        assert rig.commits.offsets == [1] and rig.worker.skipped == 0

        # A GOP whose blob is gone: skipped at once.
        missing = rig.event(announce(stream_id, channel_id, 1, gops[1], f"file:gops/{stream_id}/gone.flv", 1))
        retries = rig.worker.retries
        await asyncio.wait_for(rig.run(missing), 10)
        assert rig.commits.offsets == [1, 2] and rig.worker.skipped == 1 and rig.worker.retries == retries

        # A corrupt GOP: ATTEMPTS tries, then skipped.
        corrupt = rig.gop(gops[1], stream_id, channel_id, 2, data=b"FLV\x01\x05 not really")
        await asyncio.wait_for(rig.run(corrupt), 60)
        assert rig.commits.offsets == [1, 2, 3] and rig.worker.skipped == 2
        assert rig.worker.retries == retries + ATTEMPTS - 1
        assert rig.announced(stream_id) == {("source", 0)}
    finally:
        rig.close()
        await client.aclose()


def test_a_worker_killed_with_sigkill_takes_its_pool_with_it(settings_factory: Callable[..., Settings],
                                                              tmp_path: Path) -> None:
    s = settings_factory(transcode={"group_id": f"faults-{uuid.uuid4().hex[:8]}", "workers": 2, **WHOLE_GOPS})
    log = tmp_path / "worker.log"
    with run_service(s, "media-worker", log) as worker:
        def pool() -> set[int] | None:
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited with {worker.returncode}:\n{log.read_text()[-3000:]}")
            tree = descendants(worker.pid)
            forkservers = [p for p in tree if p.ppid == worker.pid and "forkserver" in p.command]
            # The pool warms at start: the forkserver and its two pool processes.
            if forkservers and sum(p.ppid == forkservers[0].pid for p in tree) >= 2:
                return tree
            return None

        tree: list[PlatformProcess] = eventually(pool, 60, "the worker's pool to start")
        assert any("forkserver" in p.command for p in tree)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        survivors = lambda: {p.pid: p.command for p in tree if still_running(p)}  # noqa: E731
        eventually(lambda: not survivors(), 10, "every process of the pool to die with its worker")
