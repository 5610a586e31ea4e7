"""LL-HLS parts: the frames of a GOP cut into short fMP4 fragments as they arrive.

A segment is still one GOP (docs/ARCHITECTURE.md, "Media pipeline"); each
segment is also published as *parts* (draft-pantos-hls-rfc8216bis 4.4.4.9),
so a player can start on the newest frames without waiting for the GOP to
end.  ``PartCutter`` is pure: the ingest pushes the frames of one broadcast
in arrival order, with the GOP boundaries its ``GopSplitter`` decided, and
gets back ``CutPart`` values to store and announce.  Nothing here reads a
clock or touches I/O.

The cutting rule, on the decode times of the video frames (milliseconds):

- a keyframe starts a new segment, and its part 0 (INDEPENDENT=YES);
- a part is closed when the next frame arrives and adding it would make the
  part end past ``part_target_ms`` (the frame length is estimated from the
  longest of the last few intervals), so a part lasts ``floor(target /
  frame)`` frames;
- a segment's last part ends where the splitter says the GOP ends.

So every part but a segment's last lasts between ``target - frame`` and
``target``; ``part_target_ms`` (below) picks a target where that is always
at least the 85 % the draft asks for (4.4.4.9).  A frame's duration is only
known when the next one arrives, so a part is handed out one frame after its
last frame: about 33 ms at 30 fps.

Each GOP is also split in two for the transcoded rungs (``rung_split``): the
media workers force an IDR at the first frame of the part that starts the
second half, so a rung's segments last about half a GOP (1 s for the 2 s GOP
OBS and Twitch use).  A player without LL-HLS holds back three target
durations (bis 4.4.3.8: HOLD-BACK is at least three), so halving the rungs'
segments halves how far behind such a player is (under 5 s instead of about
6.5 s at a 2 s GOP).  The source rendition is the encoder's own GOP and
cannot be split without a decode.  A rung's media sequence numbers are
``2 * seq`` and ``2 * seq + 1`` (``rung_segment``), dense as the draft wants
them, with no counter anyone has to keep.  The split is the part boundary
nearest the middle of the GOP as the previous GOP predicts it (1 s for the
first); a GOP that ends before that splits at its last part, and only a GOP
of a single part has no second half (its number is then a gap).

Audio joins the part that is open when it arrives (its own timestamps place
it: every fragment carries its decode time, ``tfdt``), and its decode times
run on from the previous part's, so AAC frames neither overlap nor leave
gaps at part boundaries; a real hole in the source (1.5 frames or more) is
kept as a hole.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from media.package.fmp4 import VIDEO_TIMESCALE, AudioTrack, Fragment, Sample, VideoTrack, media_segment

__all__ = ["AudioFrame", "CutPart", "PartCutter", "VideoFrame", "part_bytes", "part_fragments", "part_key",
           "part_target_ms", "part_uri", "rung_segment"]

TICKS_PER_MS = VIDEO_TIMESCALE // 1000
MIN_PART_TARGET_MS = 200  # Apple's authoring spec advises no shorter; MediaMTX's default
MIN_SHARE = 0.85  # bis 4.4.4.9: a part but a segment's last lasts at least 85 % of PART-TARGET
INTERVALS = 8  # recent frame intervals the frame length is estimated from
AUDIO_HOLE_FRAMES = 1.5
FIRST_RUNG_SPLIT_MS = 1000  # where the first GOP of a broadcast splits for the rungs (half of a 2 s GOP)
RUNG_SEGMENTS_PER_GOP = 2


def part_key(stream_id: str, rendition: str, seq: int, index: int) -> str:
    """Where part ``index`` of segment ``seq`` of a rendition lives in the origin store."""
    return f"hls/{stream_id}/{rendition}/{seq:08d}.{index}.m4s"


def part_uri(seq: int, index: int) -> str:
    """The part's URI in its media playlist (relative, like the segment's ``<seq>.m4s``)."""
    return f"{seq:08d}.{index}.m4s"


def rung_segment(seq: int, part: int, split: int | None) -> tuple[int, int]:
    """The transcoded rungs' (media sequence number, part index) of part ``part`` of source segment ``seq``,
    whose second half starts at part ``split`` (None: not split, or not yet)."""
    if seq < 0 or part < 0:
        raise ValueError(f"seq and part must be >= 0, got {seq}, {part}")
    if split is not None and 0 < split <= part:
        return RUNG_SEGMENTS_PER_GOP * seq + 1, part - split
    return RUNG_SEGMENTS_PER_GOP * seq, part


def part_target_ms(fps: float | None) -> int:
    """PART-TARGET for a frame rate: at least 200 ms, and long enough that one frame is at most 15 % of it.

    Whole frames then always fill at least 85 % of it: 223 ms at 30 fps (parts of 6 frames, 200 ms),
    267 ms at 25, 278 at 24, 200 at 50 and 60.  Unknown rates are taken as 30 fps.
    """
    frame_ms = 1000 / fps if fps and fps > 0 else 1000 / 30
    return max(MIN_PART_TARGET_MS, math.ceil(frame_ms / (1 - MIN_SHARE)))


@dataclass(frozen=True)
class VideoFrame:
    dts_ms: int
    pts_ms: int
    keyframe: bool
    data: bytes  # length-prefixed NAL units (AVCC), as FLV carries them


@dataclass(frozen=True)
class AudioFrame:
    pts_ms: int
    data: bytes  # one raw AAC access unit


@dataclass(frozen=True)
class CutPart:
    """One part of one segment: its span on the video timeline and its samples."""

    index: int  # within its segment, from 0
    segment_start_ms: int
    start_ms: int
    duration_ms: int
    video: tuple[Sample, ...]
    audio: tuple[Sample, ...]
    audio_start_ticks: int  # decode time of the first audio sample, in samples of the audio rate
    last: bool  # the segment's last part: the segment is complete with it
    #: The part that starts the segment's second half for the transcoded rungs, once decided (at the latest
    #: with this part: the next part when this one ends nearest the middle, this one when it is the last).
    rung_split: int | None = None

    @property
    def independent(self) -> bool:
        return self.index == 0  # part 0 starts with the segment's keyframe; the others do not

    @property
    def video_start_ticks(self) -> int:
        return self.start_ms * TICKS_PER_MS


@dataclass
class _Open:
    index: int
    start_ms: int
    video: list[VideoFrame] = field(default_factory=list)
    audio: list[Sample] = field(default_factory=list)
    audio_start: int | None = None


class PartCutter:
    """Frames in, parts out; see the module docstring."""

    def __init__(self, part_target_ms: int, audio_rate: int | None = None, audio_frame_samples: int = 1024) -> None:
        if part_target_ms <= 0:
            raise ValueError(f"part_target_ms must be positive, got {part_target_ms}")
        self.part_target_ms = part_target_ms
        self.audio_rate = audio_rate
        self.audio_frame_samples = audio_frame_samples
        self.segment_start_ms: int | None = None
        self.overlong_parts = 0  # parts the frame timing made longer than the target (late frames)
        self._part: _Open | None = None
        self._intervals: deque[int] = deque(maxlen=INTERVALS)
        self._last_dts: int | None = None
        self._next_audio: int | None = None  # where the next AAC frame's decode time runs on to, in samples
        self._split_at_ms = FIRST_RUNG_SPLIT_MS  # where the open segment's rung split is aimed
        self._split: int | None = None  # the open segment's rung split, once decided

    @property
    def open(self) -> bool:
        return self._part is not None

    def start_segment(self, keyframe: VideoFrame) -> None:
        """The splitter started a GOP with this keyframe (the previous one was ended with ``end_segment``)."""
        if self._part is not None:
            raise ValueError("start_segment while a segment is open: call end_segment first")
        self.segment_start_ms = keyframe.dts_ms
        self._split = None
        self._part = _Open(0, keyframe.dts_ms, [keyframe])
        self._note_dts(keyframe.dts_ms)

    def add_video(self, frame: VideoFrame) -> list[CutPart]:
        """A non-key frame of the open GOP; the part it closed, if any."""
        part = self._part
        if part is None:
            return []  # no GOP open: the splitter dropped it as well
        out: list[CutPart] = []
        estimate = max(self._intervals, default=frame.dts_ms - part.video[-1].dts_ms)
        if part.video and frame.dts_ms - part.start_ms + estimate > self.part_target_ms:
            out.append(self._close(frame.dts_ms, last=False))
            self._part = _Open(part.index + 1, frame.dts_ms)
        assert self._part is not None
        self._part.video.append(frame)
        self._note_dts(frame.dts_ms)
        return out

    def add_audio(self, frame: AudioFrame) -> None:
        """An AAC frame: it joins the open part (dropped when no GOP is open, as the splitter drops it)."""
        part = self._part
        if part is None or self.audio_rate is None:
            return
        at = round(frame.pts_ms * self.audio_rate / 1000)
        if self._next_audio is not None and abs(at - self._next_audio) < AUDIO_HOLE_FRAMES * self.audio_frame_samples:
            at = self._next_audio  # runs on from the previous frame: no jitter from 1 ms timestamps
        if part.audio:
            previous_end = self._next_audio if self._next_audio is not None else at
            if at > previous_end:  # a hole in the source: the previous frame lasts until this one
                last = part.audio[-1]
                part.audio[-1] = Sample(last.data, last.duration + at - previous_end)
        else:
            part.audio_start = at
        part.audio.append(Sample(frame.data, self.audio_frame_samples))
        self._next_audio = at + self.audio_frame_samples

    def end_segment(self, end_ms: int) -> list[CutPart]:
        """The splitter ended the GOP at ``end_ms`` (the next keyframe, or its estimate of the last frame's end)."""
        if self._part is None:
            return []
        assert self.segment_start_ms is not None
        if end_ms > self.segment_start_ms:  # the next GOP is aimed at the middle of this one
            self._split_at_ms = max(self.part_target_ms, (end_ms - self.segment_start_ms) // 2)
        out = [self._close(end_ms, last=True)]
        self._part = None
        self.segment_start_ms = None
        return out

    def _note_dts(self, dts_ms: int) -> None:
        if self._last_dts is not None and dts_ms > self._last_dts:
            self._intervals.append(dts_ms - self._last_dts)
        self._last_dts = dts_ms

    def _close(self, end_ms: int, last: bool) -> CutPart:
        part = self._part
        assert part is not None and self.segment_start_ms is not None
        frames = part.video
        ends = [f.dts_ms for f in frames[1:]] + [end_ms]
        samples: list[Sample] = []
        for f, end in zip(frames, ends):
            duration_ms = end - f.dts_ms
            if duration_ms <= 0:  # a clipped last frame still needs a duration
                duration_ms = samples[-1].duration // TICKS_PER_MS if samples else 1
            samples.append(Sample(f.data, duration_ms * TICKS_PER_MS, f.keyframe, (f.pts_ms - f.dts_ms) * TICKS_PER_MS))
        duration = sum(s.duration for s in samples) // TICKS_PER_MS
        if not last and duration > self.part_target_ms:
            self.overlong_parts += 1
        if self._split is None:
            ends_at = part.start_ms + duration - self.segment_start_ms
            if last:
                self._split = part.index if part.index > 0 else None
            elif ends_at + self.part_target_ms // 2 >= self._split_at_ms:  # the boundary nearest the middle
                self._split = part.index + 1
        return CutPart(part.index, self.segment_start_ms, part.start_ms, duration, tuple(samples),
                       tuple(part.audio), part.audio_start or 0, last, self._split)


def part_fragments(part: CutPart, video: VideoTrack | None, audio: AudioTrack | None) -> list[Fragment]:
    """The part's fragments for a rendition with these tracks (track ids in init-segment order: video first)."""
    fragments: list[Fragment] = []
    if video is not None and part.video:
        fragments.append(Fragment(1, part.video_start_ticks, part.video, video=True))
    if audio is not None and part.audio:
        fragments.append(Fragment(2 if video is not None else 1, part.audio_start_ticks, part.audio, video=False))
    return fragments


def part_bytes(part: CutPart, sequence_number: int, video: VideoTrack | None, audio: AudioTrack | None) -> bytes:
    """The part as stored: moof + mdat (part 0 also opens with styp), so a segment is its parts concatenated."""
    fragments = part_fragments(part, video, audio)
    if not fragments:
        return b""
    return media_segment(sequence_number, fragments, styp=part.index == 0)
