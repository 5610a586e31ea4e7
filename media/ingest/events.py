"""The ingest's events as typed records: pure builders, time passed in.

StreamStarted, StreamHealth, StreamReconnected and StreamEnded go on
``stream.lifecycle`` (keyed by channel), GopAvailable on ``media.gops`` (keyed
by stream); docs/ARCHITECTURE.md, "Events".  The ingest writes GOP times in
its own time base, 1/1000 s (the RTMP timestamp unit), and says so in every
GopAvailable (``time_base_num``/``time_base_den``), so consumers never assume it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from media.ingest.health import HealthSnapshot
from media.ingest.live import LiveStream
from schemas.records.media import GopAvailable
from schemas.records.stream import StreamEnded, StreamEndReason, StreamHealth, StreamReconnected, StreamStarted

if TYPE_CHECKING:
    from media.ingest.gop import Gop
    from media.ingest.pipeline import Tracks

#: The time base of the ingest's GOP times: RTMP/FLV timestamps are milliseconds.
TIME_BASE_NUM, TIME_BASE_DEN = 1, 1000


def _number(meta: dict[str, Any], key: str) -> float | None:
    value = meta.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else None


def frame_rate(metadata: dict[str, Any]) -> float | None:
    """The encoder's frame rate from onMetaData (``framerate``), if it sent a sane one."""
    fps = _number(metadata, "framerate")
    return fps if fps is not None and fps <= 240 else None


def stream_started(stream: LiveStream, title: str, category: str | None, ingest_host: str,
                   metadata: dict[str, Any], tracks: Tracks, now_ms: int,
                   tags: Sequence[str] = ()) -> StreamStarted:
    width = tracks.width or _number(metadata, "width")
    height = tracks.height or _number(metadata, "height")
    bitrate = _number(metadata, "videodatarate")
    encoder = metadata.get("encoder")
    return StreamStarted(
        occurred_at=now_ms, stream_id=stream.stream_id, channel_id=stream.channel_id, title=title,
        category=category, tags=tuple(tags), ingest_host=ingest_host, protocol="RTMP",
        encoder=encoder if isinstance(encoder, str) else None,
        video_codec=tracks.video_codec, width=int(width) if width else None,
        height=int(height) if height else None, fps=_number(metadata, "framerate"),
        video_bitrate_kbps=int(bitrate) if bitrate else None, audio_codec=tracks.audio_codec,
        audio_sample_rate_hz=tracks.sample_rate_hz, audio_channels=tracks.channels)


def stream_reconnected(stream: LiveStream, gap_ms: int, ingest_host: str, now_ms: int) -> StreamReconnected:
    return StreamReconnected(occurred_at=now_ms, stream_id=stream.stream_id, channel_id=stream.channel_id,
                             gap_ms=gap_ms, reconnect_count=stream.reconnects, ingest_host=ingest_host,
                             next_gop_seq=stream.next_seq)


def stream_ended(stream: LiveStream, reason: StreamEndReason, now_ms: int, error: str | None = None) -> StreamEnded:
    return StreamEnded(occurred_at=now_ms, stream_id=stream.stream_id, channel_id=stream.channel_id,
                       started_at=stream.started_at_ms, duration_ms=max(0, now_ms - stream.started_at_ms),
                       reason=reason, last_gop_seq=stream.next_seq - 1 if stream.next_seq else None, error=error)


def stream_health(stream: LiveStream, window: HealthSnapshot, tracks: Tracks, now_ms: int) -> StreamHealth:
    return StreamHealth(
        occurred_at=now_ms, stream_id=stream.stream_id, channel_id=stream.channel_id,
        window_ms=window.window_ms, ingest_bitrate_kbps=window.ingest_bitrate_kbps, fps=window.fps,
        keyframe_interval_ms=window.keyframe_interval_ms, dropped_frames=window.dropped_frames,
        bytes_received=window.bytes_received, status=window.status,
        video_bitrate_kbps=window.video_bitrate_kbps, audio_bitrate_kbps=window.audio_bitrate_kbps,
        video_codec=tracks.video_codec, audio_codec=tracks.audio_codec, width=tracks.width, height=tracks.height,
        late_frames=window.late_frames)


def gop_available(stream: LiveStream, seq: int, gop: Gop, byte_size: int, blob_ref: str, tracks: Tracks,
                  fps: float | None, discontinuity: bool, now_ms: int) -> GopAvailable:
    if fps is None and gop.duration_ms > 0 and gop.video_frames:
        fps = round(gop.video_frames * 1000 / gop.duration_ms, 3)
    return GopAvailable(
        occurred_at=now_ms, stream_id=stream.stream_id, channel_id=stream.channel_id, seq=seq,
        pts=gop.start_ms, duration=gop.duration_ms, time_base_num=TIME_BASE_NUM, time_base_den=TIME_BASE_DEN,
        byte_size=byte_size, blob_ref=blob_ref, container="flv", codec_config_ref=None,
        video_codec=tracks.video_codec or "avc1", width=tracks.width or 0, height=tracks.height or 0,
        fps=fps, audio_codec=tracks.audio_codec, audio_sample_rate_hz=tracks.sample_rate_hz,
        audio_channels=tracks.channels, discontinuity=discontinuity)
