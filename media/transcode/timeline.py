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
* GOP times come from ``GopAvailable`` in the event's own time base
  (``time_base_num/time_base_den`` s, 1/1000 from our ingest but not by
  contract): ``gop_ms`` turns them into exact milliseconds (a ``Fraction``),
  and they are rounded once, to the track's timescale, where a box needs ticks.
  Times inside a GOP are the FLV's milliseconds, relative to its keyframe.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from typing import TypeAlias

from media.package.fmp4 import VIDEO_TIMESCALE, Sample

__all__ = ["ExactMs", "FrameRateFilter", "audio_samples", "gop_ms", "ms_to_90k", "ms_to_ticks", "video_samples"]

#: Milliseconds, exactly: an ``int`` on a millisecond timeline, a ``Fraction`` from any other time base.
ExactMs: TypeAlias = Fraction | int

TICKS_PER_MS = VIDEO_TIMESCALE // 1000
#: Keep every frame when the output rate is at least this share of the source
#: rate: a per-GOP estimate of 29.9 fps must not make a 30 fps source drop frames.
DECIMATE_BELOW = 0.95
#: A frame up to this fraction of an output interval early still opens its slot
#: (millisecond timestamps jitter: 60 fps arrives as 16/17 ms steps).
SLOT_TOLERANCE = 0.25
#: Audio this many frame lengths late counts as a hole in the source.
AUDIO_GAP_FRAMES = 1.5


def gop_ms(ticks: int, time_base_num: int, time_base_den: int) -> Fraction:
    """A GopAvailable time (``pts``, ``duration``) of its ``num/den`` s time base, in exact milliseconds."""
    if time_base_num <= 0 or time_base_den <= 0:
        raise ValueError(f"time base {time_base_num}/{time_base_den} is not positive")
    return Fraction(ticks * time_base_num * 1000, time_base_den)


def ms_to_ticks(ms: float | Fraction, timescale: int) -> int:
    """A time in ms as ticks of ``timescale`` (rounded to the nearest tick)."""
    return round(ms * timescale / 1000)


def ms_to_90k(ms: ExactMs) -> int:
    """A time in ms on the 90 kHz MPEG timeline (exact for whole ms, else the nearest tick)."""
    return round(ms * TICKS_PER_MS)


def video_samples(frames: Sequence[tuple[int, int, bool, bytes]], gop_duration_ms: ExactMs) -> list[Sample]:
    """Samples from (dts_ms, pts_ms, sync, data) in decode order, times relative to the keyframe."""
    if not frames:
        return []
    first_dts = frames[0][0]
    # Decode times in 90 kHz ticks, then where the next GOP starts: the last sample ends there.
    ticks = [(f[0] - first_dts) * TICKS_PER_MS for f in frames] + [ms_to_90k(gop_duration_ms)]
    samples = []
    for i, (_, pts_ms, sync, data) in enumerate(frames):
        end = ticks[i + 1]
        # A last frame at or past the GOP's end (a clipped GOP) still needs a duration.
        duration = end - ticks[i] if end > ticks[i] else (ticks[i] - ticks[i - 1] if i else TICKS_PER_MS)
        samples.append(Sample(data, duration, sync, pts_ms * TICKS_PER_MS - ticks[i]))
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
