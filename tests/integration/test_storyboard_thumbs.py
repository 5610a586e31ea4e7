"""Storyboard thumbnails (media/transcode/storyboard_thumbs.py): real GOP FLVs, real stores, every 10 s of media.

The source has 3 s GOPs (starting at 0, 3, 6, ... s), so the first GOP of
[10, 20) s is the one at 12 s and of [20, 30) s the one at 21 s: a GOP per
interval, never the one covering the boundary.  A worker that never saw the
earlier GOPs (it just started) reads their starts from the stored FLVs and
decides the same, and a GOP done again writes the same bytes.
"""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import av
import pytest
import redis.asyncio as aioredis

from infra.settings import Settings
from media.blob import FileBlobStore
from media.ingest.gop import Gop, gop_to_flv
from media.ingest.pipeline import gop_key
from media.transcode.storyboard_thumbs import StoryboardThumbnails
from media.transcode.thumbnail import gop_flv_start_ms, storyboard_thumb_key
from media.transcode.worker import TranscodeWorker
from media.vod.storyboard import build_storyboard
from media.vod.thumbs import read_storyboard_thumbs, thumb_index
from schemas.records.media import GopAvailable
from tests.integration.test_transcode_job import make_source, split
from topics.admin import ensure_topics
from topics.runtime import make_serde


@pytest.fixture(scope="module")
def gops(tmp_path_factory: pytest.TempPathFactory) -> list[Gop]:
    found = split(make_source(tmp_path_factory.mktemp("src") / "3s-gops.flv", "640x360", 30, 26, 90))
    assert [g.start_ms for g in found] == [3000 * i for i in range(8)]  # the 9th has no end yet
    return found


def _event(stream_id: str, seq: int, gop: Gop, ref: str) -> GopAvailable:
    return GopAvailable(
        occurred_at=int(time.time() * 1000), stream_id=stream_id, channel_id=str(uuid.uuid4()), seq=seq,
        pts=gop.start_ms, duration=gop.duration_ms, time_base_num=1, time_base_den=1000, byte_size=0,
        blob_ref=ref, container="flv", codec_config_ref=None, video_codec="avc1.64001e", width=640, height=360,
        fps=30.0, audio_codec="mp4a.40.2", audio_sample_rate_hz=48000, audio_channels=2, discontinuity=False)


def _stored(tmp_path: Path, gops: list[Gop]) -> tuple[str, FileBlobStore, list[GopAvailable], list[bytes]]:
    stream_id = str(uuid.uuid4())
    blobs = FileBlobStore(tmp_path / "blobs")
    flvs = [gop_to_flv(g) for g in gops]
    events = [_event(stream_id, seq, g, blobs.put(gop_key(stream_id, seq), flvs[seq])) for seq, g in enumerate(gops)]
    return stream_id, blobs, events, flvs


def _size(jpeg: bytes) -> tuple[int, int]:
    with av.open(io.BytesIO(jpeg), mode="r", format="image2pipe") as container:
        frame = next(container.decode(video=0))
    return frame.width, frame.height


async def test_the_first_gop_of_each_ten_seconds_writes_a_small_thumbnail(tmp_path: Path, gops: list[Gop]) -> None:
    stream_id, blobs, events, flvs = _stored(tmp_path, gops)
    origin = FileBlobStore(tmp_path / "origin")
    thumbs = StoryboardThumbnails(blobs, origin)
    for event, flv in zip(events, flvs, strict=True):
        thumbs.observe(event)
        await thumbs.write(event, flv)
    assert [b.key for b in origin.list(f"thumbs/{stream_id}/")] == [
        storyboard_thumb_key(stream_id, i) for i in range(3)]
    assert storyboard_thumb_key(stream_id, 1) == f"thumbs/{stream_id}/000001.jpg"
    assert thumbs.written == 3
    for i in range(3):
        assert _size(origin.get(origin.ref(storyboard_thumb_key(stream_id, i)))) == (160, 90)

    # Read back, they make a storyboard of three cues.
    origin.put(f"thumbs/{stream_id}/notes.txt", b"not a thumbnail")
    stored = read_storyboard_thumbs(origin, stream_id)
    assert [i for i, _ in stored] == [0, 1, 2]
    assert build_storyboard(stored, "storyboard.jpg").vtt.count("#xywh=") == 3
    assert thumb_index(storyboard_thumb_key(stream_id, 12), stream_id) == 12
    assert thumb_index(storyboard_thumb_key(stream_id, 12), "another") is None

    # A fresh worker (nothing observed) reads GOP 0's and the previous GOP's starts from the stored GOPs.
    fresh_origin = FileBlobStore(tmp_path / "fresh")
    fresh = StoryboardThumbnails(blobs, fresh_origin)
    for seq in (5, 4, 7):  # 15 s: not first in [10, 20); 12 s and 21 s: first in theirs
        await fresh.write(events[seq], flvs[seq])
    assert [b.key for b in fresh_origin.list(f"thumbs/{stream_id}/")] == [
        storyboard_thumb_key(stream_id, 1), storyboard_thumb_key(stream_id, 2)]
    for i in (1, 2):  # the same key holds the same bytes whichever worker wrote it
        key = storyboard_thumb_key(stream_id, i)
        assert fresh_origin.get(fresh_origin.ref(key)) == origin.get(origin.ref(key))

    # Done again (a redelivery), nothing is rewritten.
    await fresh.write(events[4], flvs[4])
    assert fresh.written == 2


async def test_a_missing_gop_costs_only_the_thumbnail(tmp_path: Path, gops: list[Gop]) -> None:
    stream_id, blobs, events, flvs = _stored(tmp_path, gops)
    blobs.delete(blobs.ref(gop_key(stream_id, 3)))
    origin = FileBlobStore(tmp_path / "origin")
    thumbs = StoryboardThumbnails(blobs, origin)
    await thumbs.write(events[4], flvs[4])  # its previous GOP is gone: skipped, not raised
    assert list(origin.list("thumbs/")) == [] and thumbs.skipped == 1


def test_a_stored_gop_tells_its_start_across_the_32_bit_wrap(gops: list[Gop]) -> None:
    flv = gop_to_flv(gops[2])
    assert gop_flv_start_ms(flv, 6000) == 6000
    assert gop_flv_start_ms(flv, 2**32 + 5000) == 2**32 + 6000  # the FLV holds the timeline mod 2**32
    with pytest.raises(ValueError):
        gop_flv_start_ms(b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00", 0)


@pytest.mark.integration
async def test_the_media_worker_writes_them_as_it_handles_gops(
        settings_factory: Callable[..., Settings], gops: list[Gop], tmp_path: Path) -> None:
    s = settings_factory(ladder={"mode": "passthrough"},
                         transcode={"group_id": f"storyboard-{uuid.uuid4().hex[:8]}", "workers": 1})
    ensure_topics(s.kafka)
    serde = make_serde(s)
    client = aioredis.Redis.from_url(s.valkey.url)
    stream_id, blobs, events, _ = _stored(s.data_dir, gops)
    origin = FileBlobStore(s.data_dir / "origin")
    worker = TranscodeWorker(s, serde, blobs, origin, client)
    try:
        for event in events:
            await worker.handle(event)
    finally:
        worker.close()
        await client.aclose()
        serde.close()
    assert [b.key for b in origin.list(f"thumbs/{stream_id}/")] == [
        storyboard_thumb_key(stream_id, i) for i in range(3)]
    assert origin.exists(origin.ref(f"thumbs/{stream_id}.jpg"))  # the live thumbnail as before
