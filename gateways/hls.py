"""The HLS origin: master and media playlists rendered from the segment index, and segments.

Playlists are views (processors/views/segments.py) rendered per request by
pure code (media/package/playlist.py); they change every GOP, so they are
cached for a second.  Segments and init segments never change once listed:
they are served as immutable files, with Range and conditional requests.
Paths are matched strictly (uuid stream id, lowercase rendition name, numeric
seq), so no request can name a file outside the origin.
"""

from __future__ import annotations

import re
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from gateways.errors import NotFound
from gateways.services import services
from media.package.playlist import SegmentEntry, VariantInfo, render_master, render_media

M3U8 = "application/vnd.apple.mpegurl"
LIVE_PLAYLIST_CACHE = "public, max-age=1"
VOD_PLAYLIST_CACHE = "public, max-age=3600"
IMMUTABLE = "public, max-age=31536000, immutable"
RENDITION_RE = re.compile(r"^[a-z0-9]{1,16}$")


async def _variants(request: Request, playlist: str) -> list[VariantInfo]:
    svc = services(request)
    stream_id = str(request.path_params["stream_id"])
    summaries = await svc.views.segments.renditions(stream_id)
    if not summaries:
        raise NotFound(f"stream {stream_id} has no segments yet")
    return [VariantInfo(name=r.name, uri=f"{r.name}/{playlist}", bandwidth_bps=max(1, r.peak_bps),
                        average_bandwidth_bps=max(1, min(r.average_bps, r.peak_bps)), codecs=r.codecs,
                        width=None if r.audio_only else r.width, height=None if r.audio_only else r.height,
                        fps=None if r.audio_only else r.fps, audio_only=r.audio_only) for r in summaries]


async def _ended(request: Request) -> bool:
    stream = await services(request).views.get_stream(str(request.path_params["stream_id"]))
    return stream is not None and not stream.live


async def master_playlist(request: Request) -> Response:
    cache = VOD_PLAYLIST_CACHE if await _ended(request) else LIVE_PLAYLIST_CACHE
    return Response(render_master(await _variants(request, "index.m3u8")), media_type=M3U8,
                    headers={"Cache-Control": cache})


async def vod_master_playlist(request: Request) -> Response:
    if not await _ended(request):
        raise NotFound("the VOD is available when the broadcast ends")
    return Response(render_master(await _variants(request, "vod.m3u8")), media_type=M3U8,
                    headers={"Cache-Control": VOD_PLAYLIST_CACHE})


async def _segments(request: Request) -> list[SegmentEntry]:
    svc = services(request)
    stream_id, rendition = str(request.path_params["stream_id"]), request.path_params["rendition"]
    if not RENDITION_RE.match(rendition):
        raise NotFound(f"no rendition {rendition!r}")
    entries = await svc.views.segments.segments(stream_id, rendition)
    if not entries:
        raise NotFound(f"stream {stream_id} has no {rendition} segments yet")
    return [SegmentEntry(**e) for e in entries]


def _target_duration(segments: list[SegmentEntry]) -> int:
    # From every segment ever listed, so a live playlist's target never changes (RFC 8216 6.2.2).
    return max(1, max(int(s.duration_ms / 1000 + 0.5) for s in segments))


async def media_playlist(request: Request) -> Response:
    """The live playlist: a rolling window; once the broadcast ends, the same window and ENDLIST."""
    segments = await _segments(request)
    ended = await _ended(request)
    body = render_media(segments, init_uri="init.mp4", ended=False, target_duration_s=_target_duration(segments),
                        window=services(request).settings.transcode.live_window)
    if ended:
        body += "#EXT-X-ENDLIST\n"
    return Response(body, media_type=M3U8,
                    headers={"Cache-Control": VOD_PLAYLIST_CACHE if ended else LIVE_PLAYLIST_CACHE})


async def vod_playlist(request: Request) -> Response:
    """The whole broadcast (PLAYLIST-TYPE VOD, ENDLIST), as soon as it has ended."""
    if not await _ended(request):
        raise NotFound("the VOD is available when the broadcast ends")
    segments = await _segments(request)
    body = render_media(segments, init_uri="init.mp4", ended=True, target_duration_s=_target_duration(segments))
    return Response(body, media_type=M3U8, headers={"Cache-Control": VOD_PLAYLIST_CACHE})


def _origin_file(request: Request, name: str) -> Path:
    svc = services(request)
    stream_id, rendition = str(request.path_params["stream_id"]), request.path_params["rendition"]
    if not RENDITION_RE.match(rendition):
        raise NotFound(f"no rendition {rendition!r}")
    path = svc.origin.path(f"hls/{stream_id}/{rendition}/{name}")
    if not path.is_file():
        raise NotFound(f"{rendition}/{name} of stream {stream_id} does not exist")
    return path


async def init_segment(request: Request) -> Response:
    return FileResponse(_origin_file(request, "init.mp4"), media_type="video/mp4",
                        headers={"Cache-Control": IMMUTABLE})


async def media_segment(request: Request) -> Response:
    name = f"{int(request.path_params['seq']):08d}.m4s"
    return FileResponse(_origin_file(request, name), media_type="video/iso.segment",
                        headers={"Cache-Control": IMMUTABLE})


routes = [
    Route("/hls/{stream_id:uuid}/master.m3u8", master_playlist, methods=["GET", "HEAD"]),
    Route("/hls/{stream_id:uuid}/vod.m3u8", vod_master_playlist, methods=["GET", "HEAD"]),
    Route("/hls/{stream_id:uuid}/{rendition}/index.m3u8", media_playlist, methods=["GET", "HEAD"]),
    Route("/hls/{stream_id:uuid}/{rendition}/vod.m3u8", vod_playlist, methods=["GET", "HEAD"]),
    Route("/hls/{stream_id:uuid}/{rendition}/init.mp4", init_segment, methods=["GET", "HEAD"]),
    Route("/hls/{stream_id:uuid}/{rendition}/{seq:int}.m4s", media_segment, methods=["GET", "HEAD"]),
]
