"""Pure parts of the ingest's survival: the lease record, the blob-store guard that keeps a
takeover from reusing a GOP seq, and the supervisor that restarts a failed background loop."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from media.blob import FileBlobStore
from media.ingest import pipeline as pipeline_module
from media.ingest.gop import Gop, MediaTag, gop_to_flv
from media.ingest.live import LiveStream
from media.ingest.pipeline import StreamPipeline, continue_after_stored, gop_key, settle_stored
from media.ingest.tasks import supervise
from schemas.record import Record
from topics.errors import DeliveryError

STREAM = LiveStream("s-1", "c-1", 1_790_000_000_000, next_seq=2, timeline_end_ms=4000, announced=True,
                    owner="o", lease_until_ms=1_790_000_010_000)


def test_the_record_reads_back_what_lua_writes() -> None:
    assert LiveStream.from_json(STREAM.to_json()) == STREAM
    # Lua's cjson may write whole numbers as floats and knows no field order; unknown keys are ignored.
    raw = json.loads(STREAM.to_json()) | {"next_seq": 2.0, "lease_until_ms": 1.79000001e12, "future": 1}
    back = LiveStream.from_json(json.dumps(raw))
    assert back.next_seq == 2 and isinstance(back.next_seq, int) and back.lease_until_ms == 1_790_000_010_000


def test_parked_since() -> None:
    assert STREAM.parked_since(STREAM.lease_until_ms) is None  # held
    assert STREAM.parked_since(STREAM.lease_until_ms + 1) == STREAM.lease_until_ms  # lapsed: parked at expiry
    parked = LiveStream("s", "c", 0, owner="", parked_at_ms=5)
    assert parked.parked_since(0) == 5


def _gop(start_ms: int) -> bytes:
    tags = tuple(MediaTag("video", start_ms + i * 40, (b"\x17" if i == 0 else b"\x27") + b"\x01\x00\x00\x00x",
                          keyframe=i == 0) for i in range(50))
    return gop_to_flv(Gop(start_ms, 2000, b"\x17\x00\x00\x00\x00cfg", None, tags, 50, 0))


def test_a_takeover_skips_what_a_dead_owner_stored(tmp_path: Path) -> None:
    blobs = FileBlobStore(tmp_path)
    for seq in range(4):  # the dead owner stored GOPs 0..3; its lease said next_seq 2
        blobs.put(gop_key(STREAM.stream_id, seq), _gop(seq * 2000))
    moved = continue_after_stored(blobs, STREAM)
    assert moved.next_seq == 4 and moved.timeline_end_ms == 8000  # last frame at 7960, plus one frame
    assert settle_stored(blobs, STREAM).next_seq == 4
    clean = LiveStream("s-2", "c-1", 0, next_seq=2, timeline_end_ms=4000)
    blobs.put(gop_key("s-2", 0), _gop(0))
    assert continue_after_stored(blobs, clean) == clean  # nothing stored past next_seq: unchanged
    # The lease was written one ahead of a GOP that never got stored: the last stored is 0.
    assert settle_stored(blobs, clean).next_seq == 1


async def test_a_failing_loop_is_logged_and_restarted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="glasscast.ingest")
    runs = 0
    settled = asyncio.Event()

    async def loop() -> None:
        nonlocal runs
        runs += 1
        if runs <= 2:
            raise ConnectionError("valkey went away")
        if runs == 3:
            return  # a loop that returns is restarted too
        settled.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(supervise("test loop", loop, min_backoff_s=0, max_backoff_s=0))
    await asyncio.wait_for(settled.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert runs == 4
    messages = [r.getMessage() for r in caplog.records]
    assert sum("test loop failed" in m for m in messages) == 2 and any("test loop returned" in m for m in messages)


async def test_a_gop_the_broker_did_not_take_is_sent_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline_module, "EMIT_RETRY_MIN_S", 0.0)
    sent: list[Record] = []
    reserved: list[int] = []

    async def emit(event: Record, key: str) -> None:
        sent.append(event)
        if len(sent) == 1:
            raise DeliveryError("broker down")

    async def reserve(stream: LiveStream) -> bool:
        reserved.append(stream.next_seq)
        return True

    p = StreamPipeline(LiveStream("s-3", "c-1", 0), FileBlobStore(tmp_path), emit, queue_maxsize=2,
                       max_gop_ms=10_000, reserve=reserve)
    await p._store(Gop(0, 2000, b"\x17\x00\x00\x00\x00cfg", None, (MediaTag("video", 0, b"\x17\x01", True),), 1, 0),
                   0.0)
    assert len(sent) == 2 and sent[0] is sent[1]  # the same record, so the same event_id
    assert reserved == [1] and p.stream.next_seq == 1  # seq 1 was recorded before GOP 0 was stored
