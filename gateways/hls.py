"""The HLS origin: master and media playlists rendered from the segment index, and segments.

Playlists are views (processors/views/segments.py) rendered per request by
pure code (media/package/playlist.py); they change every GOP, so they are
cached for a second.  Segments and init segments never change once listed:
they are served as immutable files, with Range and conditional requests.
Paths are matched strictly (uuid stream id, lowercase rendition name, numeric
seq), so no request can name a file outside the origin.

Every request carries ``?token=`` (gateways/playback_token.py): a 403 says
whether it is missing, forged, expired or for another channel.  Playlists are
rendered with the token on every URI they list, so a player that resolves
relative URIs keeps presenting it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from gateways.errors import Forbidden, NotFound
from gateways.playback import playback_secret
from gateways.playback_token import TokenRefused, verify
from gateways.services import services
from media.package.playlist import SegmentEntry, VariantInfo, render_master, render_media
from processors.views.streams import StreamView

M3U8 = "application/vnd.apple.mpegurl"
LIVE_PLAYLIST_CACHE = "public, max-age=1"
VOD_PLAYLIST_CACHE = "public, max-age=3600"
IMMUTABLE = "public, max-age=31536000, immutable"
RENDITION_RE = re.compile(r"^[a-z0-9]{1,16}$")
CHANNEL_CACHE_MAX = 10_000  # stream id -> channel id never changes, so this needs no expiry


async def _authorize(request: Request) -> tuple[StreamView | None, str]:
    """Check the path and the token; (the stream view when it was read, the token)."""
    svc = services(request)
    rendition = request.path_params.get("rendition")
    if rendition is not None and not RENDITION_RE.match(rendition):
        raise Forbidden("path escapes the media root")
    stream_id = str(request.path_params["stream_id"])
    cache: dict[str, str] = svc.extra.setdefault("stream_channels", {})
    stream = None
    channel_id = cache.get(stream_id)
    if channel_id is None or request.url.path.endswith(".m3u8"):
        stream = await svc.views.get_stream(stream_id)
        if stream is None:
            raise NotFound(f"stream {stream_id} does not exist")
        channel_id = stream.channel_id
        if len(cache) >= CHANNEL_CACHE_MAX:
            cache.clear()
        cache[stream_id] = channel_id
    token = request.query_params.get("token", "")
    try:
        verify(playback_secret(svc), token, channel_id, int(svc.clock()))
    except TokenRefused as exc:
        raise Forbidden(str(exc)) from None
    return stream, token


async def _variants(request: Request, playlist: str, token: str) -> list[VariantInfo]:
    svc = services(request)
    stream_id = str(request.path_params["stream_id"])
    summaries = await svc.views.segments.renditions(stream_id)
    if not summaries:
        raise NotFound(f"stream {stream_id} has no segments yet")
    return [VariantInfo(name=r.name, uri=f"{r.name}/{playlist}?token={token}", bandwidth_bps=max(1, r.peak_bps),
                        average_bandwidth_bps=max(1, min(r.average_bps, r.peak_bps)), codecs=r.codecs,
                        width=None if r.audio_only else r.width, height=None if r.audio_only else r.height,
                        fps=None if r.audio_only else r.fps, audio_only=r.audio_only) for r in summaries]


async def master_playlist(request: Request) -> Response:
    stream, token = await _authorize(request)
    ended = stream is not None and stream.ended
    return Response(render_master(await _variants(request, "index.m3u8", token)), media_type=M3U8,
                    headers={"Cache-Control": VOD_PLAYLIST_CACHE if ended else LIVE_PLAYLIST_CACHE})


async def vod_master_playlist(request: Request) -> Response:
    stream, token = await _authorize(request)
    if stream is None or not stream.ended:
        raise NotFound("the VOD is available when the broadcast ends")
    return Response(render_master(await _variants(request, "vod.m3u8", token)), media_type=M3U8,
                    headers={"Cache-Control": VOD_PLAYLIST_CACHE})


async def _segments(request: Request, token: str) -> list[SegmentEntry]:
    svc = services(request)
    stream_id, rendition = str(request.path_params["stream_id"]), request.path_params["rendition"]
    entries = await svc.views.segments.segments(stream_id, rendition)
    if not entries:
        raise NotFound(f"stream {stream_id} has no {rendition} segments yet")
    return [SegmentEntry(**{**e, "uri": f"{e['uri']}?token={token}"}) for e in entries]


def _target_duration(segments: list[SegmentEntry]) -> int:
    # From every segment ever listed, so a live playlist's target never changes (RFC 8216 6.2.2).
    return max(1, max(int(s.duration_ms / 1000 + 0.5) for s in segments))


async def media_playlist(request: Request) -> Response:
    """The live playlist: a rolling window; once the broadcast ends, the same window and ENDLIST."""
    stream, token = await _authorize(request)
    segments = await _segments(request, token)
    ended = stream is not None and stream.ended
    body = render_media(segments, init_uri=f"init.mp4?token={token}", ended=False,
                        target_duration_s=_target_duration(segments),
                        window=services(request).settings.transcode.live_window)
    if ended:
        body += "#EXT-X-ENDLIST\n"
    return Response(body, media_type=M3U8,
                    headers={"Cache-Control": VOD_PLAYLIST_CACHE if ended else LIVE_PLAYLIST_CACHE})


async def vod_playlist(request: Request) -> Response:
    """The whole broadcast (PLAYLIST-TYPE VOD, ENDLIST), as soon as it has ended."""
    stream, token = await _authorize(request)
    if stream is None or not stream.ended:
        raise NotFound("the VOD is available when the broadcast ends")
    segments = await _segments(request, token)
    body = render_media(segments, init_uri=f"init.mp4?token={token}", ended=True,
                        target_duration_s=_target_duration(segments))
    return Response(body, media_type=M3U8, headers={"Cache-Control": VOD_PLAYLIST_CACHE})


def _origin_file(request: Request, name: str) -> Path:
    svc = services(request)
    stream_id, rendition = str(request.path_params["stream_id"]), request.path_params["rendition"]
    path = svc.origin.path(f"hls/{stream_id}/{rendition}/{name}")
    if not path.is_file():
        raise NotFound(f"{rendition}/{name} of stream {stream_id} does not exist")
    return path


def _send_file(request: Request, path: Path, media_type: str) -> Response:
    """The file with Range support (Starlette), answering a matching If-None-Match with 304."""
    response = FileResponse(path, media_type=media_type, headers={"Cache-Control": IMMUTABLE},
                            stat_result=os.stat(path))
    etag = response.headers["etag"]
    if etag in {t.strip() for t in request.headers.get("if-none-match", "").split(",")}:
        return Response(status_code=304, headers={"ETag": etag, "Cache-Control": IMMUTABLE})
    return response


async def init_segment(request: Request) -> Response:
    await _authorize(request)
    return _send_file(request, _origin_file(request, "init.mp4"), "video/mp4")


async def media_segment(request: Request) -> Response:
    await _authorize(request)
    name = f"{int(request.path_params['seq']):08d}.m4s"
    return _send_file(request, _origin_file(request, name), "video/iso.segment")


routes = [
    Route("/hls/{stream_id:uuid}/master.m3u8", master_playlist, methods=["GET", "HEAD"]),
    Route("/hls/{stream_id:uuid}/vod.m3u8", vod_master_playlist, methods=["GET", "HEAD"]),
    Route("/hls/{stream_id:uuid}/{rendition}/index.m3u8", media_playlist, methods=["GET", "HEAD"]),
    Route("/hls/{stream_id:uuid}/{rendition}/vod.m3u8", vod_playlist, methods=["GET", "HEAD"]),
    Route("/hls/{stream_id:uuid}/{rendition}/init.mp4", init_segment, methods=["GET", "HEAD"]),
    Route("/hls/{stream_id:uuid}/{rendition}/{seq:int}.m4s", media_segment, methods=["GET", "HEAD"]),
]
