"""A GOP FLV (as ``media.ingest.gop.gop_to_flv`` writes it) read back into coded samples.

The ingest stores each GOP as a self-contained FLV: the AVC and AAC sequence
headers (FLV spec v10.1 annex E.4.3.1 AVCPacketType 0, E.4.2.2 AACPacketType 0),
then the GOP's tags, the first video tag being the keyframe.  The job needs
those tags as samples it can remux (passthrough, audio) or feed to a decoder,
so this module parses the tags itself (pure; ``media.ingest.flv``) instead of
running FFmpeg's FLV demuxer.

Times: FLV tag timestamps are the low 32 bits of the stream timeline in ms
(E.4.1; ``gop_to_flv`` writes them mod 2**32).  The caller's ``GopAvailable.pts``
is the unwrapped time of the keyframe (in the event's own time base), so every
tag is placed *relative to the keyframe* (a signed 32-bit difference, which
survives the wrap) and these relative milliseconds are added to the GOP's pts
once it is converted to milliseconds (``media.transcode.timeline.gop_ms``).  A video tag's time is its decode
time; its presentation time adds the composition time offset (E.4.3.1
CompositionTime), which is non-zero when the publisher uses B-frames.
"""

from __future__ import annotations

from dataclasses import dataclass

from media.ingest import flv

__all__ = ["AudioFrame", "SourceGop", "VideoFrame", "parse_gop_flv"]

TIMESTAMP_WRAP = 2**32  # FLV/RTMP timestamps are 32-bit ms (FLV spec E.4.1)


@dataclass(frozen=True)
class VideoFrame:
    """A coded H.264 access unit: length-prefixed NAL units as in the source avcC."""

    dts_ms: int  # decode time relative to the GOP's keyframe
    cts_ms: int  # composition offset: presentation time = dts_ms + cts_ms
    keyframe: bool
    data: bytes


@dataclass(frozen=True)
class AudioFrame:
    """A raw AAC access unit (no ADTS header)."""

    pts_ms: int  # relative to the GOP's keyframe; may be slightly negative
    data: bytes


@dataclass(frozen=True)
class SourceGop:
    """The codec configuration and coded frames of one GOP, in decode order."""

    avcc: bytes
    asc: bytes | None
    video: tuple[VideoFrame, ...]
    audio: tuple[AudioFrame, ...]


def _relative(timestamp_ms: int, origin_ms: int) -> int:
    # The signed 32-bit difference: a GOP straddling the 2**32 ms wrap stays in order.
    delta = (timestamp_ms - origin_ms) % TIMESTAMP_WRAP
    return delta - TIMESTAMP_WRAP if delta >= TIMESTAMP_WRAP // 2 else delta


def parse_gop_flv(data: bytes) -> SourceGop:
    """Split a GOP FLV into its configuration records and coded frames; raises ``ValueError``."""
    avcc: bytes | None = None
    asc: bytes | None = None
    video: list[tuple[int, flv.VideoTag]] = []
    audio: list[tuple[int, bytes]] = []
    for tag_type, timestamp_ms, body in flv.iter_file_tags(data):
        if tag_type == flv.TAG_VIDEO:
            tag = flv.parse_video(body)
            flv.check_supported(tag)
            if tag.packet_type == "config":
                avcc = avcc or tag.data  # the GOP's frames were coded against the first one
            elif tag.packet_type == "nalu" and tag.data:
                video.append((timestamp_ms, tag))
        elif tag_type == flv.TAG_AUDIO:
            atag = flv.parse_audio(body)
            flv.check_supported(atag)
            if atag.packet_type == "config":
                asc = asc or atag.data
            elif atag.packet_type == "raw" and atag.data:
                audio.append((timestamp_ms, atag.data))
    if avcc is None:
        raise ValueError("GOP FLV has no AVC sequence header")
    if not video or not video[0][1].keyframe:
        raise ValueError("GOP FLV does not start with a video keyframe")
    origin = video[0][0]
    return SourceGop(
        avcc=avcc, asc=asc,
        video=tuple(VideoFrame(_relative(ts, origin), t.composition_time_ms, t.keyframe, t.data) for ts, t in video),
        # Audio without its configuration cannot be decoded or described, so it is left out.
        audio=tuple(AudioFrame(_relative(ts, origin), d) for ts, d in audio) if asc is not None else (),
    )
