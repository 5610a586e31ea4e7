"""The heartbeat route's pure parts: field validation (gateways/heartbeats.py) and the stream cache
(gateways/heartbeat_intake.py)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from gateways.errors import ValidationFailed
from gateways.heartbeat_intake import STREAM_CACHE_TTL_S, UNKNOWN_STREAM_TTL_S, Intake, StreamChannels
from gateways.heartbeats import heartbeat_fields


def beat(**changes: Any) -> dict[str, Any]:
    return {"session_id": "s-1", "rendition": "720p30", "buffer_health_s": 4, "bitrate_kbps": 3000} | changes


def test_fields_fill_the_heartbeat_schema() -> None:
    assert heartbeat_fields(beat()) == {"session_id": "s-1", "rendition": "720p30", "buffer_health_s": 4.0,
                                        "bitrate_kbps": 3000, "latency_ms": None, "dropped_frames": None,
                                        "clip_id": None}
    got = heartbeat_fields(beat(latency_ms=1800, dropped_frames=0, channel_id=str(uuid.uuid4())))
    assert got["latency_ms"] == 1800 and got["dropped_frames"] == 0 and "channel_id" not in got


@pytest.mark.parametrize(("body", "field", "message"), [
    ({"rendition": "720p30", "buffer_health_s": 1, "bitrate_kbps": 1}, "session_id", "is required"),
    (beat(session_id=""), "session_id", "must not be empty"),
    (beat(session_id="x" * 65), "session_id", "longer than 64"),
    (beat(session_id=7), "session_id", "must be a string"),
    (beat(rendition=None), "rendition", "is required"),
    (beat(buffer_health_s=-0.5), "buffer_health_s", "between 0 and 3600"),
    (beat(buffer_health_s=float("nan")), "buffer_health_s", "must be a number"),
    (beat(buffer_health_s=False), "buffer_health_s", "must be a number"),
    (beat(bitrate_kbps=2.5), "bitrate_kbps", "must be an integer"),
    (beat(bitrate_kbps=2**31), "bitrate_kbps", "between 0 and"),
    (beat(latency_ms=-1), "latency_ms", "between 0 and"),
    (beat(fps=30), "fps", "unknown field"),
])
def test_bad_fields_name_themselves(body: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ValidationFailed, match=message) as info:
        heartbeat_fields(body)
    assert info.value.extra["field"] == field


def test_stream_cache_expires_and_remembers_unknown_streams_briefly() -> None:
    cache = StreamChannels()
    assert cache.get("s1", 100.0) == (False, None)
    cache.put("s1", "c1", 100.0)
    cache.put("gone", None, 100.0)
    assert cache.get("s1", 100.0 + STREAM_CACHE_TTL_S - 0.01) == (True, "c1")
    assert cache.get("s1", 100.0 + STREAM_CACHE_TTL_S) == (False, None)
    assert cache.get("gone", 100.0 + UNKNOWN_STREAM_TTL_S - 0.01) == (True, None)
    assert cache.get("gone", 100.0 + UNKNOWN_STREAM_TTL_S) == (False, None)


def test_stream_cache_is_bounded_oldest_first() -> None:
    cache = StreamChannels(maxsize=3)
    for i in range(5):
        cache.put(f"s{i}", f"c{i}", 0.0)
    cache.put("s2", "c2", 0.0)  # refreshed: now the newest
    cache.put("s5", "c5", 0.0)
    assert [s for s in ("s0", "s1", "s2", "s3", "s4", "s5") if cache.get(s, 0.0)[0]] == ["s2", "s4", "s5"]


def test_event_ids_are_distinct_version_4_uuids() -> None:
    intake = Intake()
    ids = {intake.event_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(uuid.UUID(i).version == 4 for i in ids)
