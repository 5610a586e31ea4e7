"""The media worker's storyboard thumbnails: one small JPEG per 10 s of media, for the VOD's scrubbing previews.

The policy is pure (``storyboard_index`` in media/transcode/thumbnail.py): the
first GOP starting in each 10 s interval of media time writes
``thumbs/{stream_id}/{index:06d}.jpg``.  This adapter finds the starts the
policy needs (GOP 0's and the previous GOP's): from what this worker has seen
arrive, else from the GOP FLVs the ingest stored, and skips a key already
stored, since a redelivered GOP would write the same bytes again.  Every GOP
takes part, backlog ones too: a VOD needs its pictures even when the live
path fell behind, and one keyframe decode per 10 s of media costs next to
nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict

from media.blob import BlobNotFound, BlobStore
from media.ingest.pipeline import gop_key
from media.transcode.thumbnail import (
    STORYBOARD_MAX_HEIGHT,
    STORYBOARD_MAX_WIDTH,
    GopStarts,
    gop_flv_start_ms,
    gop_thumbnail,
    storyboard_index,
    storyboard_thumb_key,
)
from media.transcode.timeline import ExactMs, gop_ms
from schemas.records.media import GopAvailable

__all__ = ["StoryboardThumbnails"]

log = logging.getLogger("glasscast.transcode")

WARNED_STREAMS = 1_000  # streams whose missing GOPs were already reported (once each, not once per GOP)


class StoryboardThumbnails:
    """Writes the storyboard thumbnail a GOP opens, if it opens one."""

    def __init__(self, gops: BlobStore, origin: BlobStore) -> None:
        self.gops = gops
        self.origin = origin
        self.starts = GopStarts()
        self.written = 0
        self.skipped = 0  # GOPs whose thumbnail could not be placed: a GOP it depends on is gone
        self._warned: OrderedDict[str, None] = OrderedDict()

    def observe(self, gop: GopAvailable) -> None:
        """Note where the GOP starts; call it as GOPs arrive (in order, one stream per partition)."""
        self.starts.observe(gop.stream_id, gop.seq, gop_ms(gop.pts, gop.time_base_num, gop.time_base_den))

    async def _start(self, gop: GopAvailable, seq: int, near_ms: ExactMs) -> ExactMs:
        known = self.starts.start(gop.stream_id, seq)
        if known is not None:
            return known
        data = await asyncio.to_thread(self.gops.get, self.gops.ref(gop_key(gop.stream_id, seq)))
        start = gop_flv_start_ms(data, round(near_ms))
        self.starts.observe(gop.stream_id, seq, start)
        return start

    async def write(self, gop: GopAvailable, flv: bytes) -> None:
        """Store this GOP's storyboard thumbnail if it is the first GOP of its interval.

        A failure costs only the thumbnail: it is logged, never raised.
        """
        try:
            start_ms = gop_ms(gop.pts, gop.time_base_num, gop.time_base_den)
            origin_ms = await self._start(gop, 0, start_ms)
            previous_ms = await self._start(gop, gop.seq - 1, start_ms) if gop.seq > 0 else None
            index = storyboard_index(start_ms, previous_ms, origin_ms)
            if index is None:
                return
            key = storyboard_thumb_key(gop.stream_id, index)
            if not await asyncio.to_thread(self.origin.exists, self.origin.ref(key)):
                jpeg = await asyncio.to_thread(gop_thumbnail, flv, STORYBOARD_MAX_WIDTH, STORYBOARD_MAX_HEIGHT)
                await asyncio.to_thread(self.origin.put, key, jpeg)
                self.written += 1
        except BlobNotFound as exc:
            self.skipped += 1
            if gop.stream_id not in self._warned:
                log.warning("storyboard thumbnails of stream %s skipped from GOP %d: %s", gop.stream_id, gop.seq, exc)
                self._warned[gop.stream_id] = None
                while len(self._warned) > WARNED_STREAMS:
                    self._warned.popitem(last=False)
        except Exception:
            log.warning("storyboard thumbnail of GOP %s seq %d failed", gop.stream_id, gop.seq, exc_info=True)
