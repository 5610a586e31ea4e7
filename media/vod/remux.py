"""A clip's MP4: a window of a rendition's fMP4 segments remuxed into one progressive file.

A clip is a range over the segments the origin already stores
(``hls/<stream>/<rendition>/init.mp4`` and ``<seq:08d>.m4s``, ISO/IEC 14496-12
fragmented MP4, media/package/fmp4.py).  Its download is the same coded
samples in an ordinary MP4 with the ``moov`` first ("faststart", so a browser
plays it while it downloads): PyAV demuxes the init segment followed by the
media segments and muxes the packets into a new file by stream copy.  Nothing
is decoded or encoded, so the cost is a copy of the bytes.

How the start is made exact: a copy can only begin at a keyframe, and the
first segment begins at one (one segment per GOP).  The packets are kept from
the last keyframe at or before the requested start, and every timestamp is
shifted so the requested start is 0: the lead-in gets negative times, and
FFmpeg's mov muxer hides it behind an edit list (8.6.6 ``elst``, media_time =
the lead-in), as players honour.  The start is the frame on screen at the
requested time (the last one presented at or before it), so it is at most one
frame interval early, and the clip's first shown frame is at exactly 0.

The end is exact too: frames are kept, in decode order, up to the last one
shown before the end; with B-frames that can drag in a reference frame shown
after it, so the video edit is cut to ``duration_ms`` (media/vod/edit_list.py),
which hides it.  Audio is cut at packet (AAC frame, about 21 ms) boundaries:
packets that start within [start, end); the muxer delays the audio track by
its first packet's offset with an empty edit, so it stays in sync.

Times: the window is relative to the first segment's start, which is the
presentation time of its first video frame (its keyframe plus the composition
offset B-frames add, e.g. 67 ms for 2 B-frames at 30 fps): that is the first
picture a player shows for that segment.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
from av.container import InputContainer

from media.vod.edit_list import set_video_edit_duration

__all__ = ["Cut", "Track", "plan_cut", "remux_clip"]


@dataclass(frozen=True)
class Track:
    """One rendition as the origin stores it: its fMP4 init segment and consecutive media segments."""

    init: bytes
    segments: Sequence[bytes]


@dataclass(frozen=True)
class Cut:
    """Which video packets (decode order) a window keeps, and the presentation time that becomes 0."""

    first: int  # index of the keyframe the copy starts at
    last: int  # index of the last packet kept
    start: int  # presentation time of the clip's first shown frame (stream ticks)
    end: int  # start + duration (stream ticks)


def plan_cut(frames: Sequence[tuple[int, bool]], duration: int, start: int, length: int, *,
             tick_ms: Fraction = Fraction(1, 90)) -> Cut:
    """The cut for [start, start + length) over (pts, keyframe) frames in decode order, in stream ticks.

    ``duration`` is the last frame's length: the frames end at the largest pts plus it.
    ``tick_ms`` (ms per tick; 90 kHz by default) only words the error.
    """
    if not frames:
        raise ValueError("the video track has no frames")
    # The first GOP runs to the next keyframe in decode order; its earliest picture is the segments' start.
    second_key = next((i for i, (_, key) in enumerate(frames) if key and i), len(frames))
    origin = min(pts for pts, _ in frames[:second_key])
    stream_end = max(pts for pts, _ in frames) + duration
    target = origin + start
    if target + length > stream_end:
        raise ValueError(f"clip window ends {round((target + length - origin) * tick_ms)} ms after the segments' "
                         f"start, past their end at {round((stream_end - origin) * tick_ms)} ms")
    shown = [pts for pts, _ in frames if pts <= target]
    first_pts = max(shown)  # the frame on screen at the requested time
    keys = [i for i, (pts, key) in enumerate(frames) if key and pts <= first_pts]
    if not keys:
        raise ValueError("the segments do not start with a keyframe")
    end = first_pts + length
    last = max(i for i, (pts, _) in enumerate(frames) if pts < end)
    return Cut(keys[-1], last, first_pts, end)


@dataclass(frozen=True)
class _Timed:
    """A demuxed packet with its times (stream ticks), which the muxer needs shifted."""

    packet: av.Packet[Any]
    pts: int
    dts: int


@dataclass
class _Input:
    """One track's container, kept open while its packets are copied, and its packets of one kind."""

    container: InputContainer
    stream: Any  # av.VideoStream or av.AudioStream
    packets: list[_Timed]


def _demux(track: Track, kind: str) -> _Input | None:
    """The track's first ``kind`` stream and its packets; None if it has no such stream."""
    data = track.init + b"".join(track.segments)
    try:
        container = av.open(io.BytesIO(data), mode="r", format="mp4")
    except av.FFmpegError as exc:
        raise ValueError(f"unreadable {kind} track: {exc}") from exc
    try:
        streams = container.streams.video if kind == "video" else container.streams.audio
        if not streams:
            container.close()
            return None
        # A flush packet (size 0) and a packet without times carry nothing to copy.
        packets = [_Timed(p, p.pts, p.dts) for p in container.demux(streams[0])
                   if p.size and p.pts is not None and p.dts is not None]
    except av.FFmpegError as exc:
        container.close()
        raise ValueError(f"unreadable {kind} track: {exc}") from exc
    return _Input(container, streams[0], packets)


def remux_clip(video: Track, audio: Track | None, skip_ms: int, duration_ms: int) -> bytes:
    """A faststart MP4 of [skip_ms, skip_ms + duration_ms) after the first segment's start, by stream copy.

    Audio comes from ``audio`` when given, else from the video track's own
    audio, if it has any.  Raises ``ValueError`` for a window beyond the
    segments or unreadable segments.
    """
    if skip_ms < 0 or duration_ms <= 0:
        raise ValueError(f"clip window needs skip_ms >= 0 and duration_ms > 0, got {skip_ms} and {duration_ms}")
    if not video.segments:
        raise ValueError("the video track has no segments")
    vin = _demux(video, "video")
    ain: _Input | None = None
    try:
        if vin is None or not vin.packets:
            raise ValueError("the video track has no video")
        vtb = Fraction(vin.stream.time_base)
        ain = _demux(audio if audio is not None else video, "audio")
        ticks_per_ms = 1 / (vtb * 1000)
        cut = plan_cut([(p.pts, p.packet.is_keyframe) for p in vin.packets], vin.packets[-1].packet.duration or 0,
                       round(skip_ms * ticks_per_ms), round(duration_ms * ticks_per_ms), tick_ms=1 / ticks_per_ms)
        kept_video = vin.packets[cut.first:cut.last + 1]
        audio_cut: tuple[Any, list[_Timed], int] | None = None
        if ain is not None and ain.packets:
            atb = Fraction(ain.stream.time_base)
            a_start, a_end = round(cut.start * vtb / atb), round(cut.end * vtb / atb)
            kept_audio = [p for p in ain.packets if a_start <= p.pts < a_end]
            if kept_audio:
                audio_cut = (ain.stream, kept_audio, a_start)
        mp4 = _mux((vin.stream, kept_video, cut.start), audio_cut)
    finally:
        for opened in (vin, ain):
            if opened is not None:
                opened.container.close()
    return set_video_edit_duration(mp4, duration_ms)


def _mux(*tracks: tuple[Any, list[_Timed], int] | None) -> bytes:
    """Packets of (template stream, packets, the time that becomes 0) per track, muxed into a faststart MP4."""
    # The mov muxer moves the moov to the front ("faststart") by reopening its output by name, so it
    # needs a real file: a private temporary directory, removed with what is in it.
    with tempfile.TemporaryDirectory(prefix="clip-") as tmp:
        path = os.path.join(tmp, "clip.mp4")
        try:
            with av.open(path, mode="w", format="mp4", options={"movflags": "faststart"}) as out:
                order: list[tuple[Fraction, int, _Timed]] = []
                outputs = []
                for index, track in enumerate(t for t in tracks if t is not None):
                    template, packets, zero = track
                    outputs.append((out.add_stream_from_template(template), zero))
                    time_base = Fraction(template.time_base)
                    order += [((p.dts - zero) * time_base, index, p) for p in packets]
                # Interleaved by decode time, so the file plays while it downloads.
                order.sort(key=lambda item: (item[0], item[1]))
                for _, index, timed in order:
                    stream, zero = outputs[index]
                    # Shifted so the clip's start is 0: the lead-in is negative, and the muxer's edit list hides it.
                    timed.packet.pts, timed.packet.dts = timed.pts - zero, timed.dts - zero
                    timed.packet.stream = stream
                    out.mux(timed.packet)
        except av.FFmpegError as exc:
            raise ValueError(f"the clip could not be muxed: {exc}") from exc
        with open(path, "rb") as f:
            return f.read()
