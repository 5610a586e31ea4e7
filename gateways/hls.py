"""The HLS origin: master and media playlists rendered from the segment index, and segments.

Playlists are views (views/segments.py) rendered per request by
pure code (media/package/playlist.py); they change every GOP, so they are
cached for a second.  Segments and init segments never change once listed:
they are served immutable, with Range and conditional requests.  A whole
object comes from memory (gateways/origin_cache.py: concurrent requests for
one object share a single store read, and recent objects stay in a bounded
LRU), and so does a Range request, cut from those bytes with the validators
and statuses Starlette's ``FileResponse`` gives (gateways/object_response.py),
whichever blob store holds them.
Paths are matched strictly (uuid stream id, lowercase rendition name, seq and
part numbers of bounded ASCII digits, else a 404 with the reason), so no
request can name a file outside the origin.

With Valkey down, segments are still served (the stream's channel is
remembered once seen, and the bytes come from the origin cache or the store),
and each live playlist's last rendering stands in for a fresh one for a short
while (gateways/last_good.py); past that, or for a playlist never rendered
here, the answer is a 503 with a reason (gateways/errors.py).

Every request carries ``?token=`` (gateways/playback_token.py): a 403 says
whether it is missing, forged, expired or for another channel.  Playlists are
rendered with the token on every URI they list, so a player that resolves
relative URIs keeps presenting it.

LL-HLS (draft-pantos-hls-rfc8216bis): a rendition the live edge
(gateways/live_edge.py) has parts for is rendered with its parts, the open
segment, a preload hint (the next part) and rendition reports for its
siblings; complete segments come from the index merged with the edge's newer
ones.  ``_HLS_msn``/``_HLS_part`` hold the request until that segment is
complete or that part exists (a part past its segment's last is part 0 of
the next), woken by the PartReady that satisfies it; 400 for ``_HLS_part``
without ``_HLS_msn``, for a non-integer, for a segment past the last + 2 or a
part past the Advance Part Limit; 503 after 3 target durations; directives
are ignored once the stream ended.  ``_HLS_skip=YES`` renders the delta
update.  Held requests woken by one event share one rendering per edge
version (rendered with a token slot each request fills in).  LL playlists are
``no-cache``.  Parts (``<seq>.<i>.m4s``) are immutable like segments; the
hinted part is held until it exists (404 when its segment ends without it,
503 after 3 target durations); any other missing part is a 404 at once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateways.errors import BadRequest, Forbidden, NotFound, Unavailable
from gateways.live_edge import EdgeSegment, IndexTail, RenditionEdge, Target
from gateways.object_response import object_response
from gateways.origin_cache import OriginObject
from gateways.playback_token import TokenRefused, verify
from gateways.services import Services, services
from gateways.validation import ascii_int
from media.blob import BlobError, BlobNotFound, BlobStore
from media.package.playlist import (
    LowLatency,
    OpenSegment,
    PartEntry,
    RenditionReport,
    SegmentEntry,
    VariantInfo,
    render_master,
    render_media,
)
from views.errors import VALKEY_UNAVAILABLE
from views.streams import StreamView

log = logging.getLogger("glasscast.gateway.hls")

M3U8 = "application/vnd.apple.mpegurl"
SEGMENT = "video/iso.segment"
LIVE_PLAYLIST_CACHE = "public, max-age=1"
LL_PLAYLIST_CACHE = "no-cache"  # an LL-HLS playlist changes every part, and a blocked one answers one request
VOD_PLAYLIST_CACHE = "public, max-age=3600"
IMMUTABLE = "public, max-age=31536000, immutable"
RENDITION_RE = re.compile(r"^[a-z0-9]{1,16}$")
CHANNEL_CACHE_MAX = 10_000  # stream id -> channel id never changes, so this needs no expiry
VERIFIED_TOKENS_MAX = 10_000  # about one token per player; cleared when full, like the channel cache
HOLD_TARGETS = 3  # bis 6.2.5.2: a blocked request not satisfied within 3 target durations gets a 503
MSN_AHEAD = 2  # bis 6.2.5.2: _HLS_msn past the last segment + 2 is a 400
TOKEN_SLOT = "@token@"  # shared renderings carry this where each request's token goes
# Segment and part numbers in paths: ASCII digits up to these (a segment a second for 30 years; parts of
# one segment), so a 5,000-digit number is a 404 with a reason, not int()'s ValueError or a too-long file name.
MAX_SEQ = 999_999_999
MAX_PART = 9_999


async def _authorize(request: Request, fresh: bool | None = None) -> tuple[StreamView | None, str]:
    """Check the path and the token; (the stream view when it was read, the token).

    ``fresh``: read the stream view even when its channel is known (by default, for playlists).
    """
    svc = services(request)
    rendition = request.path_params.get("rendition")
    if rendition is not None and not RENDITION_RE.match(rendition):
        raise Forbidden("path escapes the media root")
    stream_id = str(request.path_params["stream_id"])
    cache = svc.stream_channels
    stream = None
    channel_id = cache.get(stream_id)
    if fresh is None:
        fresh = request.scope["path"].endswith(".m3u8")
    if channel_id is None or fresh:
        stream = await svc.views.get_stream(stream_id)
        if stream is None:
            raise NotFound(f"stream {stream_id} does not exist")
        if stream.ended and fresh and await _deleted(svc, stream_id):
            # Its playlists go with it; the segments its clips use stay servable (gateways/clips.py).
            raise NotFound(f"video {stream_id} was deleted")
        channel_id = stream.channel_id
        if len(cache) >= CHANNEL_CACHE_MAX:
            cache.clear()
        cache[stream_id] = channel_id
    token = _token(request)
    _check_token(svc, token, channel_id)
    return stream, token


async def _deleted(svc: Services, video_id: str) -> bool:
    video = await svc.views.videos.get(video_id)
    return video is not None and video.deleted


def _path_number(request: Request, name: str, max_value: int) -> int:
    """A segment or part number from the path: ASCII digits up to ``max_value``, else a 404 saying so."""
    raw = str(request.path_params[name])
    value = ascii_int(raw, max_value)
    if value is None:
        raise NotFound(f"{name} in the path must be a number from 0 to {max_value} in ASCII digits, "
                       f"not {raw[:20]!r}{'...' if len(raw) > 20 else ''}")
    return value


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


def playback_token(request: Request, channel_id: str) -> str:
    """The request's playback token, checked for ``channel_id`` (403 otherwise)."""
    token = _token(request)
    _check_token(services(request), token, channel_id)
    return token


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


async def _live(request: Request, render: Callable[[Request], Awaitable[Rendering]], variant: str = "") -> Response:
    """A live playlist, or its last good rendering while Valkey does not answer (gateways/last_good.py)."""
    svc = services(request)
    key = request.scope["path"] + variant
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
    """The live playlist: a rolling window; once the broadcast ends, the same window and ENDLIST.

    A rendition the live edge has parts for is an LL-HLS playlist, with blocking reload and
    delta updates (``_render_low_latency``); any other is rendered from the segment index alone.
    """
    stream_id, rendition = str(request.path_params["stream_id"]), request.path_params["rendition"]
    if services(request).edge.get(stream_id, rendition) is None:
        return await _live(request, _render_media)
    skip = _skip(request)
    return await _live(request, _render_low_latency, "?skip" if skip else "")


# -- LL-HLS: blocking playlist reload, delta updates, parts (draft-pantos-hls-rfc8216bis) ------------


@dataclass(frozen=True)
class Directives:
    """The delivery directives of a playlist request (bis 6.2.5)."""

    msn: int | None = None
    part: int | None = None
    skip: bool = False


def _directive_int(request: Request, name: str) -> int | None:
    value = request.query_params.get(name)
    if value is None:
        return None
    if not (value.isascii() and value.isdigit() and len(value) <= 20):
        raise BadRequest(f"{name} must be a decimal integer, got {value[:40]!r}")
    return int(value)


def _skip(request: Request) -> bool:
    # YES skips segments; v2 would also skip date ranges, of which there are none.
    return request.query_params.get("_HLS_skip") in ("YES", "v2")


def _directives(request: Request) -> Directives:
    msn, part = _directive_int(request, "_HLS_msn"), _directive_int(request, "_HLS_part")
    if part is not None and msn is None:
        raise BadRequest("_HLS_part without _HLS_msn (bis 6.2.5.2)")
    return Directives(msn, part, _skip(request))


def advance_part_limit(part_target_ms: int) -> int:
    """How far past the last part _HLS_part may ask (bis 6.2.5.2): 3 / PART-TARGET under a second, else 3."""
    return max(3, 3000 // part_target_ms) if part_target_ms < 1000 else 3


def check_directives(edge: RenditionEdge, d: Directives) -> Target | None:
    """What a request with these directives waits for, or None; BadRequest when it asks too far ahead."""
    if d.msn is None:
        return None
    last = edge.last_complete_seq
    if d.msn > last + MSN_AHEAD:
        raise BadRequest(f"_HLS_msn={d.msn} is past the last segment ({last}) + {MSN_AHEAD} (bis 6.2.5.2)")
    if d.part is None:
        return ("segment", d.msn, None)
    at_msn, at_part = edge.position()
    ahead = d.part - at_part if d.msn == at_msn else d.part + 1 if d.msn > at_msn else 0
    limit = advance_part_limit(edge.part_target_ms)
    if ahead > limit:
        raise BadRequest(f"_HLS_part={d.part} of {d.msn} is {ahead} parts past the last, over the limit of {limit}")
    return ("part", d.msn, d.part)


async def _render_low_latency(request: Request) -> Rendering:
    """Hold the request until its directives are satisfied (or 503), then the shared rendering."""
    svc = services(request)
    _, token = await _authorize(request, fresh=False)  # the stream view is read by the shared rendering
    d = _directives(request)
    stream_id, rendition = str(request.path_params["stream_id"]), request.path_params["rendition"]
    edge = svc.edge.get(stream_id, rendition)
    if edge is not None and not svc.edge.ended(stream_id):  # directives are ignored once the stream ended
        target = check_directives(edge, d)
        if target is not None:
            hold_s = HOLD_TARGETS * edge.target_duration_s()
            if not await svc.edge.wait(stream_id, rendition, target, hold_s):
                raise Unavailable(f"{rendition} did not reach {d.msn}.{d.part} within {hold_s} s (bis 6.2.5.2)",
                                  reason="blocking_reload_timeout")
    body, cache_control = await svc.edge.renderings.get(
        (stream_id, rendition, d.skip), svc.edge.version(stream_id),
        lambda: _render_edge(svc, stream_id, rendition, d.skip))
    return body.replace(TOKEN_SLOT, token), token, cache_control


def _edge_entry(segment: EdgeSegment, slot: str) -> SegmentEntry:
    parts = tuple(PartEntry(p.duration_ms, p.uri + slot, p.independent, p.byte_size) for p in segment.parts)
    return SegmentEntry(seq=segment.seq, duration_ms=segment.duration_ms or 1, uri=f"{segment.uri}{slot}",
                        program_date_time_ms=segment.program_date_time_ms or 0, discontinuity=segment.discontinuity,
                        byte_size=segment.byte_size, parts=parts if segment.listable else ())


async def _index_tail(svc: Services, stream_id: str, rendition: str) -> IndexTail:
    """The stream's state and newest indexed segments: read at most once a second per rendition."""
    stream = await svc.views.get_stream(stream_id)
    if stream is None:
        raise NotFound(f"stream {stream_id} does not exist")
    entries = [SegmentEntry(**e) for e in await svc.views.segments.segments(stream_id, rendition)]
    keep = svc.settings.transcode.live_window + svc.settings.gateway.live_edge_segments
    dropped = entries[:-keep]
    return IndexTail(stream.ended, tuple(entries[-keep:]), sum(e.discontinuity for e in dropped),
                     _target_duration(entries) if entries else 1)


async def _render_edge(svc: Services, stream_id: str, rendition: str, skip: bool) -> tuple[str, str]:
    """One rendering for every request at this edge version: the index's segments, the edge's newer ones
    and its open segment, with ``TOKEN_SLOT`` for the token.  (body, Cache-Control)"""
    edge = svc.edge.get(stream_id, rendition)
    index = await svc.edge.indexes.get((stream_id, rendition), edge.complete[0].seq if edge and edge.complete else -1,
                                       lambda: _index_tail(svc, stream_id, rendition))
    slot = f"?token={TOKEN_SLOT}"
    by_seq = {e.seq: replace(e, uri=f"{e.uri}{slot}") for e in index.segments}
    by_seq.update({s.seq: _edge_entry(s, slot) for s in edge.complete} if edge is not None else {})
    if not by_seq:
        raise NotFound(f"stream {stream_id} has no {rendition} segments yet")
    merged = sorted(by_seq.values(), key=lambda s: s.seq)
    window = svc.settings.transcode.live_window
    # Only the window is rendered: the flags of what is left out go into DISCONTINUITY-SEQUENCE.
    segments, before = merged[-window:], index.discontinuities_before + sum(s.discontinuity for s in merged[:-window])
    target_s = max(index.target_s, _target_duration(segments))
    init_uri = f"{edge.init_uri if edge is not None else 'init.mp4'}{slot}"
    plain = functools.partial(render_media, init_uri=init_uri, ended=False, target_duration_s=target_s,
                              discontinuities_before=before)
    ended = index.ended or svc.edge.ended(stream_id)
    if edge is None or ended:  # whole segments; ENDLIST once ended
        body = plain([replace(s, parts=()) for s in segments])
        if ended:
            return body + "#EXT-X-ENDLIST\n", VOD_PLAYLIST_CACHE if index.ended else LIVE_PLAYLIST_CACHE
        return body, LIVE_PLAYLIST_CACHE
    last = segments[-1].seq
    open_ = edge.open if edge.open is not None and edge.open.listable and edge.open.seq == last + 1 else None
    hint = f"{open_.seq:08d}.{open_.parts[-1].index + 1}.m4s" if open_ is not None else f"{last + 1:08d}.0.m4s"
    reports = tuple(RenditionReport(f"../{name}/index.m3u8{slot}", *other.report())
                    for name, other in sorted(svc.edge.renditions(stream_id).items())
                    if name != rendition and other.report()[0] >= 0)
    opened = None if open_ is None else OpenSegment(
        open_.seq, open_.first_pdt_ms, tuple(PartEntry(p.duration_ms, p.uri + slot, p.independent, p.byte_size)
                                             for p in open_.parts), open_.discontinuity)
    try:
        return plain(segments, low_latency=LowLatency(edge.part_target_ms, hint + slot, reports, skip=skip),
                     open_segment=opened), LL_PLAYLIST_CACHE
    except ValueError:  # parts that break a MUST got past the edge's checks: serve the segments, not a 500
        log.exception("stream %s %s: LL-HLS rendering refused; rendering whole segments", stream_id, rendition)
        return plain([replace(s, parts=()) for s in segments]), LIVE_PLAYLIST_CACHE


def _hinted(edge: RenditionEdge, seq: int, part: int) -> bool:
    """Whether seq.part is the part the edge's playlist hints at (EXT-X-PRELOAD-HINT)."""
    if edge.open is not None and edge.open.listable:
        return (seq, part) == (edge.open.seq, edge.open.parts[-1].index + 1)
    return (seq, part) == (edge.last_complete_seq + 1, 0)


async def media_part(request: Request) -> Response:
    """A part: immutable once it exists; the hinted one is held until it does (bis 6.2.6)."""
    seq, part = _path_number(request, "seq", MAX_SEQ), _path_number(request, "part", MAX_PART)
    await _authorize(request)
    svc = services(request)
    stream_id, rendition = str(request.path_params["stream_id"]), request.path_params["rendition"]
    name = f"{seq:08d}.{part}.m4s"
    try:
        return await _send_immutable(request, name, SEGMENT)
    except NotFound:
        edge = svc.edge.get(stream_id, rendition)
        if edge is None or svc.edge.ended(stream_id) or not _hinted(edge, seq, part):
            raise
    hold_s = HOLD_TARGETS * edge.target_duration_s()
    if not await svc.edge.wait(stream_id, rendition, ("hint", seq, part), hold_s):
        raise Unavailable(f"{rendition}/{name} did not appear within {hold_s} s", reason="part_timeout")
    return await _send_immutable(request, name, SEGMENT)  # 404 when its segment completed without it


async def vod_playlist(request: Request) -> Response:
    """The whole broadcast (PLAYLIST-TYPE VOD, ENDLIST), as soon as it has ended."""
    stream, token = await _authorize(request)
    if stream is None or not stream.ended:
        raise NotFound("the VOD is available when the broadcast ends")
    segments = await _segments(request, token)
    body = render_media(segments, init_uri=f"init.mp4?token={token}", ended=True,
                        target_duration_s=_target_duration(segments))
    return Response(body, media_type=M3U8, headers={"Cache-Control": VOD_PLAYLIST_CACHE})


async def read_origin_object(store: BlobStore, key: str) -> OriginObject:
    """One store read, off the event loop."""
    try:
        blob = await asyncio.to_thread(store.get_object, store.ref(key))
    except BlobError as exc:
        if not isinstance(exc, BlobNotFound):  # the client gets a 503 (gateways/errors.py); the reason is here
            log.warning("origin read of %s failed: %s", key, exc)
        raise
    return OriginObject.from_stat(blob.data, blob.modified_s)


def _origin_key(request: Request, name: str) -> str:
    stream_id, rendition = str(request.path_params["stream_id"]), request.path_params["rendition"]
    return f"hls/{stream_id}/{rendition}/{name}"


def _not_found(request: Request, name: str) -> NotFound:
    stream_id, rendition = str(request.path_params["stream_id"]), request.path_params["rendition"]
    return NotFound(f"{rendition}/{name} of stream {stream_id} does not exist")


async def _send_immutable(request: Request, name: str, media_type: str) -> Response:
    """A segment or init segment from the origin cache, whole or a range of it."""
    svc = services(request)
    key = _origin_key(request, name)
    try:
        obj = await svc.origin_cache.get(key, lambda: read_origin_object(svc.origin, key))
    except BlobNotFound:
        raise _not_found(request, name) from None
    return object_response(request, obj, media_type, IMMUTABLE)


async def init_segment(request: Request) -> Response:
    await _authorize(request)
    return await _send_immutable(request, "init.mp4", "video/mp4")


async def media_segment(request: Request) -> Response:
    seq = _path_number(request, "seq", MAX_SEQ)
    await _authorize(request)
    return await _send_immutable(request, f"{seq:08d}.m4s", SEGMENT)


routes = [
    Route("/hls/{stream_id:uuid}/master.m3u8", master_playlist, methods=["GET", "HEAD"]),
    Route("/hls/{stream_id:uuid}/vod.m3u8", vod_master_playlist, methods=["GET", "HEAD"]),
    Route("/hls/{stream_id:uuid}/{rendition}/index.m3u8", media_playlist, methods=["GET", "HEAD"]),
    Route("/hls/{stream_id:uuid}/{rendition}/vod.m3u8", vod_playlist, methods=["GET", "HEAD"]),
    Route("/hls/{stream_id:uuid}/{rendition}/init.mp4", init_segment, methods=["GET", "HEAD"]),
    # Parts before segments: "{seq}.m4s" would also match a part's "<seq>.<i>.m4s" (both parsed in the handler).
    Route("/hls/{stream_id:uuid}/{rendition}/{seq}.{part}.m4s", media_part, methods=["GET", "HEAD"]),
    Route("/hls/{stream_id:uuid}/{rendition}/{seq}.m4s", media_segment, methods=["GET", "HEAD"]),
]
