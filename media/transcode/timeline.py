"""Sample timing for one GOP's segments: the source timeline, converted to track timescales.

Every rendition of a GOP must start at the same decode time and end where the
next GOP begins, or a player switching renditions (RFC 8216 section 6.2.4:
matching content in variant streams has matching timestamps) or appending
segments (contiguous ``tfdt``, ISO/IEC 14496-12 8.8.12) sees gaps and
overlaps.  The rules, all pure arithmetic:

* Video decode times start at the GOP's keyframe: the first sample decodes at
  ``gop_pts_ms`` (``tfdt``), each sample lasts until the next one's decode
  time (the source's for passthrough, the encoder's for scaled rungs), and the
  last until ``gop_pts_ms + gop_duration_ms``, where the next GOP starts.  So
  the durations sum to the GOP duration exactly, in every rendition.
* Presentation times are the source's too: composition offset = pts - dts
  (ISO/IEC 14496-12 8.6.1.3, signed in ``trun`` version 1).  An encoder that
  shifts its decode times (x264 with B-frames starts dts before pts) is
  re-anchored so its first decode time is the keyframe's; its B-frames may
  then get negative offsets, which ``trun`` version 1 carries.
* Audio: every AAC access unit lasts exactly its frame length in samples; the
  first one's time comes from its millisecond timestamp, so GOP boundaries
  are exact to within the FLV's 1 ms rounding.  A hole in the source audio
  (frames lost before ingest) widens the sample before it, so audio after
  the hole stays in sync with video.
* Frame rate reduction keeps the first frame in each output frame slot.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from media.package.fmp4 import VIDEO_TIMESCALE, Sample

__all__ = ["FrameRateFilter", "audio_samples", "ms_to_ticks", "video_samples"]

TICKS_PER_MS = VIDEO_TIMESCALE // 1000
#: Keep every frame when the output rate is at least this share of the source
#: rate: a per-GOP estimate of 29.9 fps must not make a 30 fps source drop frames.
DECIMATE_BELOW = 0.95
#: A frame up to this fraction of an output interval early still opens its slot
#: (millisecond timestamps jitter: 60 fps arrives as 16/17 ms steps).
SLOT_TOLERANCE = 0.25
#: Audio this many frame lengths late counts as a hole in the source.
AUDIO_GAP_FRAMES = 1.5


def ms_to_ticks(ms: float, timescale: int) -> int:
    """A time in ms as ticks of ``timescale`` (rounded to the nearest tick)."""
    return round(ms * timescale / 1000)


def video_samples(frames: Sequence[tuple[int, int, bool, bytes]], gop_duration_ms: int) -> list[Sample]:
    """Samples from (dts_ms, pts_ms, sync, data) in decode order, times relative to the keyframe."""
    if not frames:
        return []
    first_dts = frames[0][0]
    dts = [f[0] - first_dts for f in frames]
    samples = []
    for i, (_, pts_ms, sync, data) in enumerate(frames):
        end = dts[i + 1] if i + 1 < len(frames) else gop_duration_ms
        # A last frame at or past the GOP's end (a clipped GOP) still needs a duration.
        duration = end - dts[i] if end > dts[i] else (dts[i] - dts[i - 1] if i else 1)
        samples.append(Sample(data, duration * TICKS_PER_MS, sync, (pts_ms - dts[i]) * TICKS_PER_MS))
    return samples


def audio_samples(frames: Sequence[tuple[int, bytes]], frame_samples: int, sample_rate: int) -> list[Sample]:
    """Samples from (pts_ms, data) in order: one AAC frame length each, holes filled."""
    if not frames:
        return []
    origin = frames[0][0]
    samples: list[Sample] = []
    elapsed = 0
    for i, (_, data) in enumerate(frames):
        duration = frame_samples
        if i + 1 < len(frames):
            next_at = ms_to_ticks(frames[i + 1][0] - origin, sample_rate)
            if next_at - elapsed > AUDIO_GAP_FRAMES * frame_samples:
                duration = next_at - elapsed
        samples.append(Sample(data, duration))
        elapsed += duration
    return samples


class FrameRateFilter:
    """Decide, frame by frame in presentation order, which frames an ``fps`` output keeps."""

    def __init__(self, fps: float | None, source_fps: float | None) -> None:
        self.active = bool(fps and source_fps and fps < DECIMATE_BELOW * source_fps)
        self.interval_ms = 1000 / fps if fps else 0.0
        self._origin: int | None = None
        self._last_slot = -1

    def keep(self, pts_ms: int) -> bool:
        """True if the frame at ``pts_ms`` opens a new output slot."""
        if self._origin is None:
            self._origin = pts_ms
        if not self.active:
            return True
        slot = math.floor((pts_ms - self._origin) / self.interval_ms + SLOT_TOLERANCE)
        if slot <= self._last_slot:
            return False
        self._last_slot = slot
        return True
