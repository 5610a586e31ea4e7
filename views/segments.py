"""The segment index: per stream and rendition, every stored segment and what the master
playlist needs to know about the rendition.

Valkey layout under ``{prefix}view:``:

    segments:{stream_id}:{rendition}   hash seq -> JSON segment entry
    renditions:{stream_id}             hash rendition -> JSON RenditionSummary

A redelivered SegmentReady (a worker died after producing it, the GOP was
transcoded again) lands on the same seq field and changes nothing: the
summary is updated only when a seq is new.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from schemas.records.media import SegmentReady


@dataclass(frozen=True)
class RenditionSummary:
    name: str
    codecs: str
    init_uri: str | None
    audio_only: bool
    width: int | None
    height: int | None
    fps: float | None
    peak_bps: int = 0
    total_bits: int = 0
    total_ms: int = 0
    segments: int = 0

    @property
    def average_bps(self) -> int:
        return int(self.total_bits * 1000 / self.total_ms) if self.total_ms else self.peak_bps

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RenditionSummary:
        return cls(**data)


def segment_entry(segment: SegmentReady) -> dict[str, Any]:
    """The part of a SegmentReady the playlists need (deterministic per segment)."""
    return {"seq": segment.seq, "duration_ms": segment.duration_ms, "uri": segment.uri,
            "program_date_time_ms": segment.program_date_time, "discontinuity": segment.discontinuity,
            "byte_size": segment.byte_size}


def summarize(segment: SegmentReady, summary: RenditionSummary | None) -> RenditionSummary:
    """Fold one new segment into its rendition's summary."""
    bits = segment.byte_size * 8
    duration = segment.duration_ms
    bps = int(segment.bandwidth_bps or (bits * 1000 / duration if duration else 0))
    if summary is None:
        summary = RenditionSummary(name=segment.rendition, codecs=segment.codecs or "", init_uri=segment.init_uri,
                                   audio_only=segment.audio_only, width=segment.width, height=segment.height,
                                   fps=segment.fps)
    return replace(summary, peak_bps=max(summary.peak_bps, bps), total_bits=summary.total_bits + bits,
                   total_ms=summary.total_ms + duration, segments=summary.segments + 1)


class SegmentIndex:
    """Read and write the segment index in Valkey."""

    def __init__(self, client: Any, prefix: str) -> None:
        self.r = client
        self.views = f"{prefix}view:"

    def k_segments(self, stream_id: str, rendition: str) -> str:
        return f"{self.views}segments:{stream_id}:{rendition}"

    def k_renditions(self, stream_id: str) -> str:
        return f"{self.views}renditions:{stream_id}"

    async def apply(self, segment: SegmentReady) -> bool:
        """Index one SegmentReady; False if that segment was already listed."""
        stream_id, rendition = segment.stream_id, segment.rendition
        entry = json.dumps(segment_entry(segment), sort_keys=True)
        if not await self.r.hsetnx(self.k_segments(stream_id, rendition), str(segment.seq), entry):
            return False
        raw = await self.r.hget(self.k_renditions(stream_id), rendition)
        summary = summarize(segment, None if raw is None else RenditionSummary.from_json(json.loads(raw)))
        await self.r.hset(self.k_renditions(stream_id), rendition, json.dumps(summary.to_json(), sort_keys=True))
        return True

    async def renditions(self, stream_id: str) -> list[RenditionSummary]:
        raw = await self.r.hgetall(self.k_renditions(stream_id))
        return [RenditionSummary.from_json(json.loads(v)) for v in raw.values()]

    async def segments(self, stream_id: str, rendition: str) -> list[dict[str, Any]]:
        """Every listed segment of a rendition, in seq order."""
        raw = await self.r.hgetall(self.k_segments(stream_id, rendition))
        return sorted((json.loads(v) for v in raw.values()), key=lambda e: e["seq"])
