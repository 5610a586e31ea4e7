"""``glasscast videos``: every video kept, with what its objects take in the stores.

Listed videos come from the videos view (its retention index holds every
listed video); their objects are counted in the stores themselves
(``storage_of``), so the report is what the stores hold now, segments, parts,
GOPs, thumbnails and storyboards together.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import redis.asyncio as aioredis

from infra.settings import Settings
from media.blob_stores import open_store
from media.vod.worker import storage_of
from views.videos import Videos

MS_PER_HOUR = 3_600_000


@dataclass(frozen=True)
class VideoStorage:
    video_id: str
    channel_id: str
    duration_ms: int
    objects: int
    bytes: int


async def storage_report(settings: Settings) -> list[VideoStorage]:
    """Every listed video, oldest end first, with its objects and bytes."""
    client = aioredis.Redis.from_url(settings.valkey.url)
    origin, gops = open_store(settings, "origin"), open_store(settings, "blobs")
    try:
        videos = Videos(client, settings.valkey.key_prefix)
        ids = await videos.ended_before(2**62, 2**31)
        found = await videos.get_many(ids)
    finally:
        await client.aclose()
    report = []
    for video in found:
        use = await asyncio.to_thread(storage_of, origin, gops, video.id)
        report.append(VideoStorage(video.id, video.channel_id, video.duration_ms, use.objects, use.bytes))
    return report


def format_report(rows: list[VideoStorage]) -> list[str]:
    """The report as table lines, with a total and the bytes per hour of video."""
    lines = [f"{'VIDEO':36}  {'CHANNEL':36}  {'DURATION':>9}  {'OBJECTS':>8}  {'BYTES':>14}"]
    for r in rows:
        lines.append(f"{r.video_id:36}  {r.channel_id:36}  {r.duration_ms / 1000:8.1f}s  {r.objects:8d}  "
                     f"{r.bytes:14d}")
    hours = sum(r.duration_ms for r in rows) / MS_PER_HOUR
    total = sum(r.bytes for r in rows)
    per_hour = f"{total / hours / 1e9:.2f} GB per hour of video" if hours else "no video"
    lines.append(f"{len(rows)} videos, {total} bytes in {sum(r.objects for r in rows)} objects ({per_hour})")
    return lines
