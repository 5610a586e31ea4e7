"""The ingest's own packager (media/ingest/parts.py) with the real ffmpeg CLI publishing: the source and audio
renditions come out as LL-HLS parts while the GOP arrives, each stored before its PartReady, and each segment is
its parts concatenated, decodable, and announced by a SegmentReady that lists them."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from pathlib import Path

import av
import pytest

from infra.settings import Settings
from media.blob import FileBlobStore
from media.package.parts import part_key, part_target_ms
from media.testpattern import ffmpeg_push
from schemas.records.media import PartReady, SegmentReady
from tests.integration.ingest_support import ingest_settings, running_ingest

pytestmark = pytest.mark.integration


async def test_source_and_audio_parts_segments_and_their_events(settings_factory: Callable[..., Settings],
                                                                tmp_path: Path) -> None:
    s = ingest_settings(settings_factory())
    origin = FileBlobStore(s.data_dir / "origin")
    async with running_ingest(s) as ingest, contextlib.AsyncExitStack() as cleanup:
        channel_id, key = await ingest.channel()
        push = ffmpeg_push(ingest.url, key, 6, log=tmp_path / "ffmpeg.log")
        cleanup.callback(lambda: (push.kill(), push.wait()))
        started = await ingest.wait_events("stream.lifecycle", channel_id, lambda f: len(f) >= 1)
        stream_id = started[0].value.stream_id
        await ingest.wait_events("stream.lifecycle", channel_id,
                                 lambda f: any(e.type == "StreamEnded" for e in f), timeout_s=60)
        segments = [e.value for e in await ingest.wait_events(
            "media.segments", stream_id, lambda f: len(f) >= 6)]  # 3 GOPs x (source, audio)
        parts = [e.value for e in ingest.events("media.parts", stream_id)]
    assert all(isinstance(p, PartReady) for p in parts) and all(isinstance(g, SegmentReady) for g in segments)
    target = part_target_ms(30)
    for rendition in ("source", "audio"):
        mine = [p for p in parts if isinstance(p, PartReady) and p.rendition == rendition]
        assert {p.part_target_ms for p in mine} == {target}
        by_seq: dict[int, list[PartReady]] = {}
        for p in mine:
            by_seq.setdefault(p.seq, []).append(p)
        assert sorted(by_seq) == [0, 1, 2], rendition
        init = origin.get(origin.ref(f"hls/{stream_id}/{rendition}/init.mp4"))
        for seq, seg_parts in by_seq.items():
            assert [p.part for p in seg_parts] == list(range(len(seg_parts)))  # in order, none missing
            assert [p.segment_complete for p in seg_parts] == [False] * (len(seg_parts) - 1) + [True]
            for p in seg_parts[:-1]:
                assert 0.85 * target <= p.duration_ms <= target, p
            assert seg_parts[0].independent and (rendition == "audio" or not seg_parts[1].independent)
            blobs = [origin.get(origin.ref(part_key(stream_id, rendition, seq, p.part))) for p in seg_parts]
            assert [len(b) for b in blobs] == [p.byte_size for p in seg_parts]
            whole = origin.get(origin.ref(f"hls/{stream_id}/{rendition}/{seq:08d}.m4s"))
            assert whole == b"".join(blobs)  # a segment is its parts concatenated
            (segment,) = [g for g in segments if isinstance(g, SegmentReady) and g.rendition == rendition
                          and g.seq == seq]
            assert [(q.uri, q.duration_ms, q.independent) for q in segment.parts] == [
                (p.uri, p.duration_ms, p.independent) for p in seg_parts]
            assert segment.duration_ms == seg_parts[-1].segment_duration_ms
            assert abs(sum(p.duration_ms for p in seg_parts) - segment.duration_ms) <= len(seg_parts)
            assert seg_parts[0].program_date_time == segment.program_date_time
            with av.open(io.BytesIO(init + whole), format="mp4") as container:
                if rendition == "source":
                    frames = list(container.decode(container.streams.video[0]))
                    assert frames[0].key_frame and (seq == 2 or len(frames) == 60), (seq, len(frames))
                    assert abs(segment.duration_ms - len(frames) * 1000 / 30) <= 2 or seq == 2
                else:
                    assert list(container.decode(container.streams.audio[0]))
            # Every part decodes on the init segment plus what came before it in its segment.
            with av.open(io.BytesIO(init + blobs[0]), format="mp4") as container:
                assert list(container.decode(container.streams.audio[0] if rendition == "audio"
                                             else container.streams.video[0]))
