"""Clips: a few seconds of a live stream or a video, made in one request without re-encoding.

    POST /v1/clips  {"broadcaster_id", "duration_s"?, "title"?}             the last duration_s of the live stream
    POST /v1/clips  {"video_id", "offset_s", "duration_s"?, "title"?}       a range of a video
    GET  /v1/clips/{id}                                                      Clip + "playback"
    GET  /v1/channels/{channel}/clips?sort=views|time&cursor=&limit=        {"data": [Clip], "cursor"}
    GET  /v1/clips/{id}.mp4                                                  the MP4, once made
    GET  /hls/clips/{id}/master.m3u8?token=, /hls/clips/{id}/{rendition}.m3u8?token=

A clip is a range over the broadcast's existing source and audio segments
(views/clip_window.py says how its start is placed), recorded by
``ClipCreated``; the answer comes once the view has it.  Its playlist lists
those segments (they stay in the store after the video is deleted) and starts
playback after the lead-in with EXT-X-START.  Its MP4 is remuxed afterwards by
the media workers (media/vod/worker.py, ``ClipRendered``), as on Twitch: until
then ``mp4_url`` is null.  Each user may make ``vod.clips_per_minute`` clips.
"""

from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateways import validation as v
from gateways.channels import UUID_RE, find_channel
from gateways.directory import limit, params
from gateways.errors import Conflict, NotFound, TooManyRequests, ValidationFailed
from gateways.hls import M3U8, VOD_PLAYLIST_CACHE, playback_token, read_origin_object
from gateways.playback import grant_or_none
from gateways.services import Services, json_body, services
from gateways.videos import cursor_of, sort_of
from media.blob import BlobNotFound
from media.package.playlist import SegmentEntry, VariantInfo, render_master, render_media
from schemas.records.clip import ClipCreated
from views.channels import ChannelView
from views.clip_window import MAX_CLIP_MS, MIN_CLIP_MS, ClipOutside, ClipWindow, live_window, place, vod_window
from views.clips import ClipView
from views.ranked import encode_cursor

PAGE_LIMIT, PAGE_MAX_LIMIT = 20, 100
SOURCE, AUDIO = "source", "audio"
CLIP_RENDITIONS = (SOURCE, AUDIO)  # a clip plays at the source's quality, as Twitch's do
MAX_TITLE = 140
MAX_OFFSET_S = 7 * 24 * 3600


def clip_json(clip: ClipView, channel: ChannelView | None) -> dict[str, Any]:
    return {
        "id": clip.id, "channel_id": clip.channel_id, "channel_name": channel.name if channel else None,
        "video_id": clip.stream_id, "title": clip.title, "created_by_user_id": clip.created_by_user_id,
        "created_at_ms": clip.created_at_ms, "offset_ms": clip.offset_ms, "duration_ms": clip.duration_ms,
        "from_live": clip.from_live, "view_count": clip.views, "url": f"/clips/{clip.id}",
        "thumbnail_url": f"/v1/clips/{clip.id}/thumb.jpg" if clip.thumbnail_key else None,
        "mp4_url": f"/v1/clips/{clip.id}.mp4" if clip.mp4_key else None,
        "mp4_status": "ready" if clip.mp4_key else "failed" if clip.mp4_error else "processing",
    }


async def _clip(svc: Services, clip_id: str) -> ClipView:
    clip = await svc.views.clips.get(clip_id)
    if clip is None or not clip.created:
        raise NotFound(f"clip {clip_id} does not exist")
    return clip


def _duration_ms(data: dict[str, Any], default_s: int) -> int:
    value = data.get("duration_s", default_s)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            MIN_CLIP_MS <= value * 1000 <= MAX_CLIP_MS):
        raise ValidationFailed(f"'duration_s' must be a number of seconds from {MIN_CLIP_MS // 1000} to "
                               f"{MAX_CLIP_MS // 1000}", field="duration_s")
    return int(value * 1000)


def _offset_ms(data: dict[str, Any]) -> int:
    value = data.get("offset_s")
    if value is None:
        raise ValidationFailed("'offset_s' is required with 'video_id'", field="offset_s")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_OFFSET_S:
        raise ValidationFailed("'offset_s' must be a number of seconds from the video's start, 0 or more",
                               field="offset_s")
    return int(value * 1000)


def _uuid(data: dict[str, Any], name: str) -> str:
    value = v.string(data, name, max_length=64)
    if value is None or not UUID_RE.match(value):
        raise ValidationFailed(f"'{name}' must be an id (a UUID)", field=name)
    return value


async def _charge(svc: Services, user_id: str) -> None:
    """One clip from the user's allowance for this minute, or a 429."""
    per_minute = svc.settings.vod.clips_per_minute
    now_s = svc.clock()
    key = f"{svc.settings.valkey.key_prefix}clip-rate:{user_id}:{int(now_s // 60)}"
    async with svc.redis.pipeline(transaction=True) as tx:
        tx.incr(key)
        tx.expire(key, 120)
        made, _ = await tx.execute()
    if int(made) > per_minute:
        raise TooManyRequests(f"at most {per_minute} clips a minute", max(1, 60 - int(now_s % 60)),
                              reason="clips_rate_limited")


async def _window(svc: Services, stream_id: str, live: bool, offset_ms: int, duration_ms: int) -> ClipWindow:
    placed = place(await svc.views.segments.segments(stream_id, SOURCE))
    try:
        return live_window(placed, duration_ms) if live else vod_window(placed, offset_ms, duration_ms)
    except ClipOutside as exc:
        raise ValidationFailed(str(exc), field="duration_s" if live else "offset_s",
                               reason="clip_outside_video") from None


async def create_clip(request: Request) -> JSONResponse:
    svc = services(request)
    principal = await svc.user_principal(request)
    data = await json_body(request)
    v.only(data, {"broadcaster_id", "video_id", "offset_s", "duration_s", "title"})
    if ("broadcaster_id" in data) == ("video_id" in data):
        raise ValidationFailed("give either 'broadcaster_id' (clip the live stream) or 'video_id' (clip a video)")
    duration_ms = _duration_ms(data, svc.settings.vod.clip_default_s)
    title = v.text(data, "title", required=False, max_length=MAX_TITLE)
    live = "broadcaster_id" in data
    if live:
        if "offset_s" in data:
            raise ValidationFailed("'offset_s' is for clipping a video; a live clip ends now", field="offset_s")
        channel = await find_channel(svc, v.string(data, "broadcaster_id", max_length=64) or "")
        stream = await svc.views.live_stream_of(channel.id)
        if stream is None:
            raise Conflict(f"channel '{channel.name}' is not live; clip one of its videos instead",
                           field="broadcaster_id", reason="not_live")
        offset_ms = 0
    else:
        video_id = _uuid(data, "video_id")
        video = await svc.views.videos.get(video_id)
        if video is None or not video.listed:
            raise NotFound(f"video {video_id} does not exist" if video is None or video.deleted
                           else f"video {video_id} is available when its broadcast ends")
        offset_ms = _offset_ms(data)
        found = await svc.views.get_stream(video_id)
        if found is None:
            raise NotFound(f"video {video_id} does not exist")
        stream = found
    window = await _window(svc, stream.id, live, offset_ms, duration_ms)
    await _charge(svc, principal.user_id)  # only a clip that can be made counts
    clip_id = str(uuid.uuid4())
    await svc.emit(ClipCreated(
        occurred_at=svc.now_ms(), clip_id=clip_id, channel_id=stream.channel_id, stream_id=stream.id,
        created_by_user_id=principal.user_id, title=title or stream.title, start_at=window.start_at_ms,
        duration_ms=window.duration_ms, first_segment_seq=window.first_seq, last_segment_seq=window.last_seq,
        offset_ms=window.offset_ms, lead_in_ms=window.lead_in_ms, from_live=live), clip_id)

    async def seen() -> bool:
        return await svc.views.clips.get(clip_id) is not None
    await svc.wait_for(seen)
    clip = await svc.views.clips.get(clip_id)
    if clip is None:  # the view is behind: answer from what was recorded
        clip = ClipView(id=clip_id, channel_id=stream.channel_id, stream_id=stream.id,
                        created_by_user_id=principal.user_id, title=title or stream.title,
                        created_at_ms=svc.now_ms(), start_at_ms=window.start_at_ms, duration_ms=window.duration_ms,
                        first_segment_seq=window.first_seq, last_segment_seq=window.last_seq,
                        offset_ms=window.offset_ms, lead_in_ms=window.lead_in_ms, from_live=live, created=True)
    body = clip_json(clip, await svc.views.get_channel(clip.channel_id))
    return JSONResponse(body, status_code=201, headers={"Location": f"/v1/clips/{clip_id}"})


async def get_clip(request: Request) -> JSONResponse:
    svc = services(request)
    clip = await _clip(svc, str(request.path_params["clip_id"]))
    body = clip_json(clip, await svc.views.get_channel(clip.channel_id))
    signed = await grant_or_none(svc, request, clip.channel_id)
    base = str(request.base_url).rstrip("/")
    body["playback"] = None if signed is None else {
        "token": signed.token, "session_id": signed.session_id,
        "heartbeat_interval_s": signed.heartbeat_interval_s, "expires_at_s": signed.expires_at_s,
        "hls": {"master": f"{base}/hls/clips/{clip.id}/master.m3u8?token={signed.token}"},
        "start_offset_s": clip.lead_in_ms / 1000}
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


async def list_clips(request: Request) -> JSONResponse:
    svc = services(request)
    channel = await find_channel(svc, request.path_params["channel_id"])
    data = params(request.query_params, {"sort", "cursor", "limit"})
    sort = sort_of(data, default="views")
    count = limit(data, PAGE_LIMIT, PAGE_MAX_LIMIT)
    clips, last = await svc.views.clips.page(channel.id, sort, cursor_of("clips", sort, data), count)
    return JSONResponse({"data": [clip_json(c, channel) for c in clips],
                         "cursor": encode_cursor("clips", sort, last) if last is not None else None},
                        headers={"Cache-Control": "no-store"})


async def _object(svc: Services, key: str, what: str, media_type: str, request: Request) -> Response:
    try:
        obj = await svc.origin_cache.get(key, lambda: read_origin_object(svc.origin, key), keep=False)
    except BlobNotFound:
        raise NotFound(f"{what} is not in the store") from None
    headers = {"Cache-Control": "public, max-age=86400", "ETag": obj.etag, "Last-Modified": obj.last_modified}
    if obj.etag in {t.strip() for t in request.headers.get("if-none-match", "").split(",")}:
        return Response(status_code=304, headers=headers)
    return Response(b"" if request.method == "HEAD" else obj.body, media_type=media_type,
                    headers={**headers, "Content-Length": str(len(obj.body))})


async def clip_mp4(request: Request) -> Response:
    svc = services(request)
    clip = await _clip(svc, str(request.path_params["clip_id"]))
    if clip.mp4_key is None:
        raise NotFound(f"clip {clip.id} has no MP4 yet" if clip.mp4_error is None
                       else f"clip {clip.id} has no MP4: {clip.mp4_error}")
    return await _object(svc, clip.mp4_key, f"the MP4 of clip {clip.id}", "video/mp4", request)


async def clip_thumbnail(request: Request) -> Response:
    svc = services(request)
    clip = await _clip(svc, str(request.path_params["clip_id"]))
    if clip.thumbnail_key is None:
        raise NotFound(f"clip {clip.id} has no thumbnail")
    return await _object(svc, clip.thumbnail_key, f"the thumbnail of clip {clip.id}", "image/jpeg", request)


def _start_tag(clip: ClipView) -> str:
    return f"#EXT-X-START:TIME-OFFSET={clip.lead_in_ms / 1000:.3f},PRECISE=YES\n"


def _with_start(body: str, clip: ClipView) -> str:
    head, _, rest = body.partition("\n")
    return f"{head}\n{_start_tag(clip)}{rest}"


async def clip_master(request: Request) -> Response:
    svc = services(request)
    clip = await _clip(svc, str(request.path_params["clip_id"]))
    token = playback_token(request, clip.channel_id)
    summaries = [r for r in await svc.views.segments.renditions(clip.stream_id) if r.name in CLIP_RENDITIONS]
    if not summaries:
        raise NotFound(f"clip {clip.id} has no segments")
    variants = [VariantInfo(name=r.name, uri=f"{r.name}.m3u8?token={token}", bandwidth_bps=max(1, r.peak_bps),
                            average_bandwidth_bps=max(1, min(r.average_bps, r.peak_bps)), codecs=r.codecs,
                            width=None if r.audio_only else r.width, height=None if r.audio_only else r.height,
                            fps=None if r.audio_only else r.fps, audio_only=r.audio_only) for r in summaries]
    return Response(_with_start(render_master(variants), clip), media_type=M3U8,
                    headers={"Cache-Control": VOD_PLAYLIST_CACHE})


async def clip_media(request: Request) -> Response:
    svc = services(request)
    clip = await _clip(svc, str(request.path_params["clip_id"]))
    rendition = request.path_params["rendition"]
    if rendition not in CLIP_RENDITIONS:
        raise NotFound(f"a clip has no '{rendition}' rendition (it has {', '.join(CLIP_RENDITIONS)})")
    token = playback_token(request, clip.channel_id)
    base = f"/hls/{clip.stream_id}/{rendition}"
    entries = [e for e in await svc.views.segments.segments(clip.stream_id, rendition)
               if clip.first_segment_seq <= int(e["seq"]) <= clip.last_segment_seq]
    if not entries:
        raise NotFound(f"clip {clip.id} has no {rendition} segments")
    segments = [SegmentEntry(**{**e, "uri": f"{base}/{e['uri']}?token={token}"}) for e in entries]
    target = max(1, max(int(s.duration_ms / 1000 + 0.5) for s in segments))
    body = render_media(segments, init_uri=f"{base}/init.mp4?token={token}", ended=True, target_duration_s=target)
    return Response(_with_start(body, clip), media_type=M3U8, headers={"Cache-Control": VOD_PLAYLIST_CACHE})


routes = [
    Route("/v1/clips", create_clip, methods=["POST"]),
    Route("/v1/clips/{clip_id:uuid}.mp4", clip_mp4, methods=["GET", "HEAD"]),
    Route("/v1/clips/{clip_id:uuid}/thumb.jpg", clip_thumbnail, methods=["GET", "HEAD"]),
    Route("/v1/clips/{clip_id:uuid}", get_clip, methods=["GET"]),
    Route("/v1/channels/{channel_id}/clips", list_clips, methods=["GET"]),
    Route("/hls/clips/{clip_id:uuid}/master.m3u8", clip_master, methods=["GET", "HEAD"]),
    Route("/hls/clips/{clip_id:uuid}/{rendition}.m3u8", clip_media, methods=["GET", "HEAD"]),
]
