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


async def master_playlist(request: Request) -> Response:
    svc = services(request)
    stream_id = str(request.path_params["stream_id"])
    summaries = await svc.views.segments.renditions(stream_id)
    if not summaries:
        raise NotFound(f"stream {stream_id} has no segments yet")
    variants = [VariantInfo(name=r.name, uri=f"{r.name}/index.m3u8", bandwidth_bps=r.peak_bps,
                            average_bandwidth_bps=r.average_bps, codecs=r.codecs, width=r.width,
                            height=r.height, fps=r.fps, audio_only=r.audio_only) for r in summaries]
    stream = await svc.views.get_stream(stream_id)
    cache = VOD_PLAYLIST_CACHE if stream is not None and not stream.live else LIVE_PLAYLIST_CACHE
    return Response(render_master(variants), media_type=M3U8, headers={"Cache-Control": cache})


async def media_playlist(request: Request) -> Response:
    svc = services(request)
    stream_id, rendition = str(request.path_params["stream_id"]), request.path_params["rendition"]
    if not RENDITION_RE.match(rendition):
        raise NotFound(f"no rendition {rendition!r}")
    entries = await svc.views.segments.segments(stream_id, rendition)
    if not entries:
        raise NotFound(f"stream {stream_id} has no {rendition} segments yet")
    stream = await svc.views.get_stream(stream_id)
    ended = stream is not None and not stream.live
    segments = [SegmentEntry(**e) for e in entries]
    body = render_media(segments, init_uri="init.mp4", ended=ended,
                        window=None if ended else svc.settings.transcode.live_window)
    return Response(body, media_type=M3U8,
                    headers={"Cache-Control": VOD_PLAYLIST_CACHE if ended else LIVE_PLAYLIST_CACHE})


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
    Route("/hls/{stream_id:uuid}/{rendition}/index.m3u8", media_playlist, methods=["GET", "HEAD"]),
    Route("/hls/{stream_id:uuid}/{rendition}/init.mp4", init_segment, methods=["GET", "HEAD"]),
    Route("/hls/{stream_id:uuid}/{rendition}/{seq:int}.m4s", media_segment, methods=["GET", "HEAD"]),
]
