"""The HLS origin: master and media playlists rendered from the segment index, and segments.

Playlists are views (views/segments.py) rendered per request by
pure code (media/package/playlist.py); they change every GOP, so they are
cached for a second.  Segments and init segments never change once listed:
they are served immutable, with Range and conditional requests.  A whole
object comes from memory (gateways/origin_cache.py: concurrent requests for
one object share a single store read, and recent objects stay in a bounded
LRU); a Range request is served from the file, as Starlette's
``FileResponse`` does it, with the same validators.
Paths are matched strictly (uuid stream id, lowercase rendition name, numeric
seq), so no request can name a file outside the origin.

With Valkey down, segments are still served (the stream's channel is
remembered once seen, and the bytes come from the origin cache or the store),
and each live playlist's last rendering stands in for a fresh one for a short
while (gateways/last_good.py); past that, or for a playlist never rendered
here, the answer is a 503 with a reason (gateways/errors.py).

Every request carries ``?token=`` (gateways/playback_token.py): a 403 says
whether it is missing, forged, expired or for another channel.  Playlists are
rendered with the token on every URI they list, so a player that resolves
relative URIs keeps presenting it.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from gateways.errors import Forbidden, NotFound
from gateways.origin_cache import OriginObject
from gateways.playback_token import TokenRefused, verify
from gateways.services import Services, services
from media.blob import BlobNotFound, FileBlobStore
from media.package.playlist import SegmentEntry, VariantInfo, render_master, render_media
from views.errors import VALKEY_UNAVAILABLE
from views.streams import StreamView

M3U8 = "application/vnd.apple.mpegurl"
LIVE_PLAYLIST_CACHE = "public, max-age=1"
VOD_PLAYLIST_CACHE = "public, max-age=3600"
IMMUTABLE = "public, max-age=31536000, immutable"
RENDITION_RE = re.compile(r"^[a-z0-9]{1,16}$")
CHANNEL_CACHE_MAX = 10_000  # stream id -> channel id never changes, so this needs no expiry
VERIFIED_TOKENS_MAX = 10_000  # about one token per player; cleared when full, like the channel cache


async def _authorize(request: Request) -> tuple[StreamView | None, str]:
    """Check the path and the token; (the stream view when it was read, the token)."""
    svc = services(request)
    rendition = request.path_params.get("rendition")
    if rendition is not None and not RENDITION_RE.match(rendition):
        raise Forbidden("path escapes the media root")
    stream_id = str(request.path_params["stream_id"])
    cache = svc.stream_channels
    stream = None
    channel_id = cache.get(stream_id)
    if channel_id is None or request.scope["path"].endswith(".m3u8"):
        stream = await svc.views.get_stream(stream_id)
        if stream is None:
            raise NotFound(f"stream {stream_id} does not exist")
        channel_id = stream.channel_id
        if len(cache) >= CHANNEL_CACHE_MAX:
            cache.clear()
        cache[stream_id] = channel_id
    token = _token(request)
    _check_token(svc, token, channel_id)
    return stream, token


def _token(request: Request) -> str:
    """The ``token`` query parameter; the usual ``?token=<base64url>`` is read without a full parse."""
    query: bytes = request.scope["query_string"]
    if query.startswith(b"token=") and not any(c in query for c in (b"&", b"%", b"+")):
        return query[6:].decode("latin-1")
    return request.query_params.get("token", "")


def _check_token(svc: Services, token: str, channel_id: str) -> None:
    """``verify`` the token, or find it verified before: a player presents one token for many requests.

    Only the signature check and the decoding are remembered; expiry and the
    channel are checked on every request, and anything refused goes through
    ``verify`` again so the 403 says why.
    """
    verified = svc.verified_tokens
    now_s = int(svc.clock())
    claims = verified.get(token)
    if claims is not None and claims.expires_at_s > now_s and claims.channel_id == channel_id:
        return
    try:
        claims = verify(svc.playback_secret, token, channel_id, now_s)
    except TokenRefused as exc:
        raise Forbidden(str(exc)) from None
    if len(verified) >= VERIFIED_TOKENS_MAX:
        verified.clear()
    verified[token] = claims


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


Rendering = tuple[str, str, str]  # (body, the token on its URIs, Cache-Control)


async def _live(request: Request, render: Callable[[Request], Awaitable[Rendering]]) -> Response:
    """A live playlist, or its last good rendering while Valkey does not answer (gateways/last_good.py)."""
    svc = services(request)
    key = request.scope["path"]
    try:
        body, token, cache_control = await render(request)
    except VALKEY_UNAVAILABLE:
        stale = svc.playlists.get(key)
        channel_id = svc.stream_channels.get(str(request.path_params["stream_id"]))
        if stale is None or channel_id is None:
            raise  # a 503 with a reason (gateways/errors.py)
        token = _token(request)
        _check_token(svc, token, channel_id)  # the token is checked as on any request
        svc.playlists.served += 1
        return Response(stale.body_for(token), media_type=M3U8,
                        headers={"Cache-Control": stale.cache_control, "Age": str(int(svc.playlists.age_s(stale)))})
    svc.playlists.put(key, body, token, cache_control)
    return Response(body, media_type=M3U8, headers={"Cache-Control": cache_control})


async def _render_master(request: Request) -> Rendering:
    stream, token = await _authorize(request)
    ended = stream is not None and stream.ended
    return (render_master(await _variants(request, "index.m3u8", token)), token,
            VOD_PLAYLIST_CACHE if ended else LIVE_PLAYLIST_CACHE)


async def master_playlist(request: Request) -> Response:
    return await _live(request, _render_master)


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


async def _render_media(request: Request) -> Rendering:
    stream, token = await _authorize(request)
    segments = await _segments(request, token)
    ended = stream is not None and stream.ended
    body = render_media(segments, init_uri=f"init.mp4?token={token}", ended=False,
                        target_duration_s=_target_duration(segments),
                        window=services(request).settings.transcode.live_window)
    if ended:
        body += "#EXT-X-ENDLIST\n"
    return body, token, VOD_PLAYLIST_CACHE if ended else LIVE_PLAYLIST_CACHE


async def media_playlist(request: Request) -> Response:
    """The live playlist: a rolling window; once the broadcast ends, the same window and ENDLIST."""
    return await _live(request, _render_media)


async def vod_playlist(request: Request) -> Response:
    """The whole broadcast (PLAYLIST-TYPE VOD, ENDLIST), as soon as it has ended."""
    stream, token = await _authorize(request)
    if stream is None or not stream.ended:
        raise NotFound("the VOD is available when the broadcast ends")
    segments = await _segments(request, token)
    body = render_media(segments, init_uri=f"init.mp4?token={token}", ended=True,
                        target_duration_s=_target_duration(segments))
    return Response(body, media_type=M3U8, headers={"Cache-Control": VOD_PLAYLIST_CACHE})


async def read_origin_object(store: FileBlobStore, key: str) -> OriginObject:
    """One store read, off the event loop."""
    blob = await asyncio.to_thread(store.get_object, store.ref(key))
    return OriginObject.from_stat(blob.data, blob.modified_s)


def _origin_key(request: Request, name: str) -> str:
    stream_id, rendition = str(request.path_params["stream_id"]), request.path_params["rendition"]
    return f"hls/{stream_id}/{rendition}/{name}"


def _not_found(request: Request, name: str) -> NotFound:
    stream_id, rendition = str(request.path_params["stream_id"]), request.path_params["rendition"]
    return NotFound(f"{rendition}/{name} of stream {stream_id} does not exist")


def _origin_file(request: Request, name: str) -> Path:
    path = services(request).origin.path(_origin_key(request, name))
    if not path.is_file():
        raise _not_found(request, name)
    return path


def _not_modified(request: Request, etag: str) -> Response | None:
    """304 when If-None-Match lists the object's ETag (RFC 9110 13.1.2)."""
    if etag in {t.strip() for t in request.headers.get("if-none-match", "").split(",")}:
        return Response(status_code=304, headers={"ETag": etag, "Cache-Control": IMMUTABLE})
    return None


def _send_file(request: Request, path: Path, media_type: str) -> Response:
    """The file with Range support (Starlette), answering a matching If-None-Match with 304."""
    response = FileResponse(path, media_type=media_type, headers={"Cache-Control": IMMUTABLE},
                            stat_result=os.stat(path))
    return _not_modified(request, response.headers["etag"]) or response


async def _send_immutable(request: Request, name: str, media_type: str) -> Response:
    """A segment or init segment: whole from the origin cache, ranges from the file."""
    if "range" in request.headers:
        return _send_file(request, _origin_file(request, name), media_type)
    svc = services(request)
    key = _origin_key(request, name)
    try:
        obj = await svc.origin_cache.get(key, lambda: read_origin_object(svc.origin, key))
    except BlobNotFound:
        raise _not_found(request, name) from None
    # The headers FileResponse sends for the whole file, so either path answers alike.
    headers = {"Cache-Control": IMMUTABLE, "accept-ranges": "bytes", "content-length": str(len(obj.body)),
               "last-modified": obj.last_modified, "etag": obj.etag}
    return _not_modified(request, obj.etag) or Response(
        b"" if request.method == "HEAD" else obj.body, media_type=media_type, headers=headers)


async def init_segment(request: Request) -> Response:
    await _authorize(request)
    return await _send_immutable(request, "init.mp4", "video/mp4")


async def media_segment(request: Request) -> Response:
    await _authorize(request)
    return await _send_immutable(request, f"{int(request.path_params['seq']):08d}.m4s", "video/iso.segment")


routes = [
    Route("/hls/{stream_id:uuid}/master.m3u8", master_playlist, methods=["GET", "HEAD"]),
    Route("/hls/{stream_id:uuid}/vod.m3u8", vod_master_playlist, methods=["GET", "HEAD"]),
    Route("/hls/{stream_id:uuid}/{rendition}/index.m3u8", media_playlist, methods=["GET", "HEAD"]),
    Route("/hls/{stream_id:uuid}/{rendition}/vod.m3u8", vod_playlist, methods=["GET", "HEAD"]),
    Route("/hls/{stream_id:uuid}/{rendition}/init.mp4", init_segment, methods=["GET", "HEAD"]),
    Route("/hls/{stream_id:uuid}/{rendition}/{seq:int}.m4s", media_segment, methods=["GET", "HEAD"]),
]
