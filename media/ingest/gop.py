"""GOP splitting: FLV audio/video tag bodies in, self-contained GOPs out.

The GOP is the unit of transcoding, segmenting and VOD (docs/ARCHITECTURE.md, "Media
pipeline"), so each one must decode on its own: it starts on a video keyframe
(for H.264 an IDR picture, H.264 clause 3 "IDR picture": no frame after it
refers to one before it) and carries the codec configuration it needs.  In FLV that
configuration travels out of band as *sequence headers* (FLV spec v10.1 annex
E.4.3.1 AVCPacketType 0 / E.4.2.1 AACPacketType 0; Enhanced RTMP
SequenceStart): they set the decoder up, they are not frames.

``GopSplitter`` is pure: tags are pushed in, finished GOPs come out, nothing
here reads a clock or touches I/O.  Memory is bounded by ``max_gop_ms`` and
``max_gop_bytes``: a GOP that grows past either is cut and the frames up to the
next keyframe are dropped, since they reference pictures in the cut GOP.

Timestamps are RTMP/FLV decode times in ms: 32 bits on the wire (FLV spec
E.4.1, Timestamp + TimestampExtended), wrapping every ~49.7 days.  The splitter
unwraps them onto one increasing int timeline; every ``MediaTag`` in a ``Gop``
carries its unwrapped time, and ``gop_to_flv`` writes the low 32 bits back.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

from media.ingest import flv
from media.ingest.flv import TAG_AUDIO, TAG_SCRIPT, TAG_VIDEO

TIMESTAMP_WRAP = 2**32  # RTMP 1.0 timestamps are 32-bit ms and roll over
AUDIO_LEAD_MS = 1_000  # audio may run this far ahead of video before it alone cuts a GOP
INTERVAL_HISTORY = 64  # recent video frame intervals kept for the median


@dataclass(frozen=True)
class MediaTag:
    """One FLV audio or video tag body, as received, with what the splitter needs to know.

    ``keyframe``, ``config`` and ``aux`` are fields, set once by :meth:`from_payload`
    (which parses the tag header with ``flv.parse_video``/``parse_audio``), so the
    splitter never re-parses and tests can build tags without real payloads.
    ``aux`` marks tags that are neither frames nor configuration (AVC end of
    sequence, video info/command frames, Enhanced RTMP metadata, unknown packet
    types); the splitter skips them.
    """

    kind: Literal["audio", "video"]
    timestamp_ms: int
    payload: bytes  # the FLV tag body exactly as received
    keyframe: bool = False
    config: bool = False
    aux: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ("audio", "video"):
            raise ValueError(f"MediaTag kind must be 'audio' or 'video', not {self.kind!r}")
        if self.keyframe and (self.kind != "video" or self.config or self.aux):
            raise ValueError("only a coded video frame can be a keyframe")
        if self.config and self.aux:
            raise ValueError("a MediaTag cannot be both config and aux")

    @classmethod
    def from_payload(cls, kind: Literal["audio", "video"], timestamp_ms: int, payload: bytes) -> MediaTag:
        """Classify a tag body; raises the FLV parser's ``FlvError`` (a ``ValueError``) on bad input."""
        if kind == "video":
            video = flv.parse_video(payload)
            return cls(kind, timestamp_ms, payload,
                       keyframe=video.keyframe and video.packet_type == "nalu",
                       config=video.packet_type == "config",
                       aux=video.packet_type not in ("config", "nalu"))
        if kind == "audio":
            audio = flv.parse_audio(payload)
            return cls(kind, timestamp_ms, payload,
                       config=audio.packet_type == "config", aux=audio.packet_type == "other")
        raise ValueError(f"MediaTag kind must be 'audio' or 'video', not {kind!r}")

    @property
    def frame(self) -> bool:
        """A coded audio or video frame (not configuration, not aux)."""
        return not (self.config or self.aux)


@dataclass(frozen=True)
class Gop:
    """A keyframe and everything up to the next one, with the config needed to decode it.

    ``video_config``/``audio_config`` are the sequence-header tag bodies as received
    (``flv.parse_video(cfg).data`` is the AVCDecoderConfigurationRecord).
    """

    start_ms: int
    duration_ms: int
    video_config: bytes | None
    audio_config: bytes | None
    tags: tuple[MediaTag, ...]
    video_frames: int
    audio_frames: int
    metadata: bytes | None = None


@dataclass
class _Building:
    start_ms: int
    video_config: bytes
    audio_config: bytes | None
    metadata: bytes | None
    tags: list[MediaTag] = field(default_factory=list)
    size: int = 0
    last_video_ms: int = 0

    def add(self, tag: MediaTag) -> None:
        self.tags.append(tag)
        self.size += len(tag.payload)
        if tag.kind == "video":
            self.last_video_ms = max(self.last_video_ms, tag.timestamp_ms)

    def take_audio_from(self, boundary_ms: int) -> list[MediaTag]:
        """Remove and return audio that raced ahead of the keyframe at ``boundary_ms``."""
        ahead = [t for t in self.tags if t.kind == "audio" and t.timestamp_ms >= boundary_ms]
        if ahead:
            self.tags = [t for t in self.tags if not (t.kind == "audio" and t.timestamp_ms >= boundary_ms)]
            self.size -= sum(len(t.payload) for t in ahead)
        return ahead

    def finish(self, duration_ms: int) -> Gop:
        # An encoder that resets its clock makes times jump back; never a negative duration.
        return Gop(self.start_ms, max(duration_ms, 0), self.video_config, self.audio_config, tuple(self.tags),
                   sum(t.kind == "video" for t in self.tags), sum(t.kind == "audio" for t in self.tags),
                   self.metadata)


class GopSplitter:
    """Push ``MediaTag``s in arrival order; get each GOP back once the next keyframe arrives.

    Audio is assigned by timestamp: audio that arrives before keyframe K with a
    time >= K (encoders interleave loosely, and ties at K are common) moves into
    K's GOP.  Audio that arrives *after* K with a time < K stays in K's GOP
    (counted in ``late_audio``): holding the finished GOP back for it would
    add latency to every GOP, and it decodes either way.
    """

    def __init__(self, max_gop_ms: int = 10_000, max_gop_bytes: int = 64 * 2**20) -> None:
        if max_gop_ms <= 0 or max_gop_bytes <= 0:
            raise ValueError(f"max_gop_ms and max_gop_bytes must be positive, got {max_gop_ms}, {max_gop_bytes}")
        self.max_gop_ms = max_gop_ms
        self.max_gop_bytes = max_gop_bytes
        self.dropped_frames = 0  # audio and video frames no GOP could take (before a keyframe, after a cut)
        self.oversize_cuts = 0
        self.late_audio = 0
        self._video_config: bytes | None = None
        self._audio_config: bytes | None = None
        self._metadata: bytes | None = None
        self._open: _Building | None = None
        # Audio seen while no GOP is open; frames at or after the coming keyframe join its GOP.
        self._preroll: deque[MediaTag] = deque()
        self._preroll_bytes = 0
        self._last_raw: int | None = None
        self._last_ms = 0
        self._last_video_ms: int | None = None
        self._intervals: deque[int] = deque(maxlen=INTERVAL_HISTORY)

    @property
    def last_timestamp_ms(self) -> int:
        """The unwrapped time of the last tag pushed."""
        return self._last_ms

    @property
    def open_start_ms(self) -> int | None:
        """When the GOP being built started (its keyframe's time), or None between GOPs."""
        return None if self._open is None else self._open.start_ms

    def set_metadata(self, body: bytes) -> None:
        """An onMetaData script-data body, written first in every GOP started from now on."""
        self._metadata = bytes(body)

    def push(self, tag: MediaTag) -> list[Gop]:
        """Take one tag; return the GOPs it completed (usually none, at most one)."""
        tag = replace(tag, timestamp_ms=self._unwrap(tag.timestamp_ms))
        out: list[Gop] = []
        if tag.config:
            # Applies from the next keyframe: the open GOP keeps the config its frames were coded with.
            if tag.kind == "video":
                self._video_config = tag.payload
            else:
                self._audio_config = tag.payload
                if self._open is not None and self._open.audio_config is None:
                    # Audio config arriving after the keyframe: no frame in the
                    # open GOP was coded with another one, so it can use it.
                    self._open.audio_config = tag.payload
        elif tag.kind == "video" and not tag.aux:
            self._push_video(tag, out)
        elif not tag.aux:  # aux tags (end of sequence and the like) carry no frame
            self._push_audio(tag, out)
        return out

    def flush(self) -> Gop | None:
        """End of stream: the open GOP, timed by the median frame interval, or None."""
        self._drop_preroll(lambda t: True)
        gop, self._open = self._open, None
        return None if gop is None else gop.finish(self._tail_duration(gop))

    def _unwrap(self, timestamp_ms: int) -> int:
        # The signed 32-bit difference from the previous tag: a step across 2**32
        # is a small step forward, and slightly late tags stay slightly behind.
        raw = timestamp_ms % TIMESTAMP_WRAP
        if self._last_raw is None:
            self._last_ms = timestamp_ms
        else:
            delta = (raw - self._last_raw) % TIMESTAMP_WRAP
            self._last_ms += delta - TIMESTAMP_WRAP if delta >= TIMESTAMP_WRAP // 2 else delta
        self._last_raw = raw
        return self._last_ms

    def _push_video(self, tag: MediaTag, out: list[Gop]) -> None:
        ts = tag.timestamp_ms
        if self._last_video_ms is not None and ts > self._last_video_ms:
            self._intervals.append(ts - self._last_video_ms)
        self._last_video_ms = ts
        if tag.keyframe and self._video_config is not None:
            self._start(tag, out)
        elif self._open is None:
            self._drop_video(tag)
        elif ts - self._open.start_ms >= self.max_gop_ms or self._too_big(tag):
            self._cut(out)
            self._drop_video(tag)
        else:
            self._open.add(tag)

    def _push_audio(self, tag: MediaTag, out: list[Gop]) -> None:
        gop = self._open
        if gop is not None and (tag.timestamp_ms - gop.start_ms >= self.max_gop_ms + AUDIO_LEAD_MS
                                or self._too_big(tag)):
            self._cut(out)
            gop = None
        if gop is None:
            self._preroll.append(tag)
            self._preroll_bytes += len(tag.payload)
            newest = tag.timestamp_ms
            while self._preroll and (self._preroll_bytes > self.max_gop_bytes
                                     or newest - self._preroll[0].timestamp_ms > self.max_gop_ms):
                self._preroll_bytes -= len(self._preroll.popleft().payload)
                self.dropped_frames += 1
            return
        if tag.timestamp_ms < gop.start_ms:
            self.late_audio += 1
        gop.add(tag)

    def _start(self, keyframe: MediaTag, out: list[Gop]) -> None:
        start = keyframe.timestamp_ms
        carried: list[MediaTag] = []
        if self._open is not None:
            carried = self._open.take_audio_from(start)
            out.append(self._open.finish(start - self._open.start_ms))
        else:
            self._drop_preroll(lambda t: t.timestamp_ms < start)
            carried, self._preroll, self._preroll_bytes = list(self._preroll), deque(), 0
        assert self._video_config is not None
        self._open = _Building(start, self._video_config, self._audio_config, self._metadata)
        for t in carried:
            self._open.add(t)
        self._open.add(keyframe)

    def _too_big(self, tag: MediaTag) -> bool:
        return self._open is not None and self._open.size + len(tag.payload) > self.max_gop_bytes

    def _cut(self, out: list[Gop]) -> None:
        # Frames until the next keyframe reference this GOP's pictures, so they are dropped.
        assert self._open is not None
        self.oversize_cuts += 1
        out.append(self._open.finish(self._tail_duration(self._open)))
        self._open = None

    def _drop_video(self, tag: MediaTag) -> None:
        self.dropped_frames += 1
        # Decode times only grow, so the next keyframe is at or after this frame:
        # buffered audio before it can never join a GOP.
        self._drop_preroll(lambda t: t.timestamp_ms < tag.timestamp_ms)

    def _drop_preroll(self, doomed: Callable[[MediaTag], bool]) -> None:
        kept = [t for t in self._preroll if not doomed(t)]
        self.dropped_frames += len(self._preroll) - len(kept)
        self._preroll = deque(kept)
        self._preroll_bytes = sum(len(t.payload) for t in kept)

    def _tail_duration(self, gop: _Building) -> int:
        # The last frame has no successor to time it; assume it lasts a typical frame.
        interval = statistics.median_low(self._intervals) if self._intervals else 0
        return gop.last_video_ms - gop.start_ms + interval


def gop_to_flv(gop: Gop) -> bytes:
    """A complete FLV file holding one GOP, decodable on its own, on the source timeline."""
    has_audio = gop.audio_config is not None or any(t.kind == "audio" for t in gop.tags)
    # Headers go at the earliest time in the file (audio may precede the keyframe
    # slightly); FLV times are 32-bit, so the unwrapped timeline is written mod 2**32.
    first_ms = min([gop.start_ms, *(t.timestamp_ms for t in gop.tags)]) % TIMESTAMP_WRAP
    parts = [flv.file_header(has_audio=has_audio, has_video=True)]
    if gop.metadata is not None:
        # At time 0, as FLV files carry it: FFmpeg reads onMetaData at any other
        # time as a packet of an extra subtitle stream.
        parts.append(flv.tag(TAG_SCRIPT, 0, gop.metadata))
    if gop.video_config is not None:
        parts.append(flv.tag(TAG_VIDEO, first_ms, gop.video_config))
    if gop.audio_config is not None:
        parts.append(flv.tag(TAG_AUDIO, first_ms, gop.audio_config))
    for t in gop.tags:
        kind = TAG_VIDEO if t.kind == "video" else TAG_AUDIO
        parts.append(flv.tag(kind, t.timestamp_ms % TIMESTAMP_WRAP, t.payload))
    return b"".join(parts)
