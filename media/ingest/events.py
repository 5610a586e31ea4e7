"""The ingest's events as Avro-ready values: pure builders, time passed in.

Records: StreamStarted, StreamHealth, StreamReconnected, StreamEnded on
``stream.lifecycle`` (keyed by channel), GopAvailable on ``media.gops`` (keyed
by stream).  GOP times are on the stream timeline in milliseconds
(time base 1/1000, the RTMP timestamp unit).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, Sequence

from media.ingest.live import LiveStream

if TYPE_CHECKING:
    from media.ingest.gop import Gop
    from media.ingest.pipeline import Tracks

STARTED = "glasscast.stream.StreamStarted"
HEALTH = "glasscast.stream.StreamHealth"
RECONNECTED = "glasscast.stream.StreamReconnected"
ENDED = "glasscast.stream.StreamEnded"
GOP_AVAILABLE = "glasscast.media.GopAvailable"


def _envelope(now_ms: int) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "occurred_at": now_ms}


def _number(meta: dict[str, Any], key: str) -> float | None:
    value = meta.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else None


def stream_started(stream: LiveStream, title: str, category: str | None, ingest_host: str,
                   metadata: dict[str, Any], tracks: Tracks, now_ms: int,
                   tags: Sequence[str] = ()) -> dict[str, Any]:
    width = tracks.width or _number(metadata, "width")
    height = tracks.height or _number(metadata, "height")
    bitrate = _number(metadata, "videodatarate")
    encoder = metadata.get("encoder")
    return {
        **_envelope(now_ms), "stream_id": stream.stream_id, "channel_id": stream.channel_id, "title": title,
        "category": category, "tags": list(tags), "ingest_host": ingest_host, "protocol": "RTMP",
        "encoder": encoder if isinstance(encoder, str) else None,
        "video_codec": tracks.video_codec, "width": int(width) if width else None,
        "height": int(height) if height else None, "fps": _number(metadata, "framerate"),
        "video_bitrate_kbps": int(bitrate) if bitrate else None, "audio_codec": tracks.audio_codec,
        "audio_sample_rate_hz": tracks.sample_rate_hz, "audio_channels": tracks.channels,
    }


def stream_reconnected(stream: LiveStream, gap_ms: int, ingest_host: str, now_ms: int) -> dict[str, Any]:
    return {**_envelope(now_ms), "stream_id": stream.stream_id, "channel_id": stream.channel_id,
            "gap_ms": gap_ms, "reconnect_count": stream.reconnects, "ingest_host": ingest_host,
            "next_gop_seq": stream.next_seq}


def stream_ended(stream: LiveStream, reason: str, now_ms: int, error: str | None = None) -> dict[str, Any]:
    return {**_envelope(now_ms), "stream_id": stream.stream_id, "channel_id": stream.channel_id,
            "started_at": stream.started_at_ms, "duration_ms": max(0, now_ms - stream.started_at_ms),
            "reason": reason, "last_gop_seq": stream.next_seq - 1 if stream.next_seq else None, "error": error}


def stream_health(stream: LiveStream, window: dict[str, Any], tracks: Tracks, now_ms: int) -> dict[str, Any]:
    return {**_envelope(now_ms), "stream_id": stream.stream_id, "channel_id": stream.channel_id, **window,
            "video_codec": tracks.video_codec, "audio_codec": tracks.audio_codec,
            "width": tracks.width, "height": tracks.height}


def gop_available(stream: LiveStream, seq: int, gop: Gop, byte_size: int, blob_ref: str, tracks: Tracks,
                  fps: float | None, discontinuity: bool, now_ms: int) -> dict[str, Any]:
    if fps is None and gop.duration_ms > 0 and gop.video_frames:
        fps = round(gop.video_frames * 1000 / gop.duration_ms, 3)
    return {
        **_envelope(now_ms), "stream_id": stream.stream_id, "channel_id": stream.channel_id, "seq": seq,
        "pts": gop.start_ms, "duration": gop.duration_ms, "time_base_num": 1, "time_base_den": 1000,
        "byte_size": byte_size, "blob_ref": blob_ref, "container": "flv", "codec_config_ref": None,
        "video_codec": tracks.video_codec or "avc1", "width": tracks.width or 0, "height": tracks.height or 0,
        "fps": fps, "audio_codec": tracks.audio_codec, "audio_sample_rate_hz": tracks.sample_rate_hz,
        "audio_channels": tracks.channels, "discontinuity": discontinuity,
    }
