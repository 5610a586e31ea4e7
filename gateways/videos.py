"""Videos: every ended broadcast, listed per channel, watched with signed URLs, deleted by its owner.

    GET    /v1/channels/{channel}/videos?sort=time|views&cursor=&limit=   {"data": [Video], "cursor"}
    GET    /v1/videos/{id}                                                 Video + "playback" (signed like live)
    DELETE /v1/videos/{id}                                                 owner only; 204
    GET    /vod/{id}/thumb.jpg | sprite.jpg | storyboard.vtt                the video's previews (public)

A video's id is its broadcast's stream id; its title and category are the
stream's.  Deleting produces ``VideoDeleted`` on ``videos`` and answers once
the view has it: from then on the video is in no list, ``GET`` and its VOD
playlists answer 404, and the media workers purge its objects from the store
(media/vod/worker.py), keeping the segments its clips use.  Counts come from
VOD heartbeats (``VideoViewsCounted``).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateways.channels import find_channel
from gateways.directory import choice, limit, params
from gateways.errors import BadRequest, Forbidden, NotFound
from gateways.hls import read_origin_object
from gateways.playback import grant_or_none
from gateways.services import Services, services
from media.blob import BlobNotFound
from schemas.records.video import VideoDeleted
from views.channels import ChannelView
from views.ranked import SORTS, Sort, decode_cursor, encode_cursor
from views.streams import StreamView
from views.videos import VideoView

PAGE_LIMIT, PAGE_MAX_LIMIT = 20, 100
ASSET_CACHE = "public, max-age=3600"
ASSETS = {"thumb.jpg": "image/jpeg", "sprite.jpg": "image/jpeg", "storyboard.vtt": "text/vtt; charset=utf-8"}


def video_json(video: VideoView, stream: StreamView | None, channel: ChannelView | None,
               owner: bool) -> dict[str, Any]:
    """A video as the API shows it."""
    board = video.storyboard
    return {
        "id": video.id, "channel_id": video.channel_id, "channel_name": channel.name if channel else None,
        "title": stream.title if stream else "", "category": stream.category if stream else None,
        "started_at_ms": video.started_at_ms, "ended_at_ms": video.ended_at_ms, "duration_ms": video.duration_ms,
        "thumbnail_url": f"/vod/{video.id}/thumb.jpg" if board else f"/thumbs/{video.id}.jpg",
        "view_count": video.views, "url": f"/videos/{video.id}", "owner": owner,
        "storyboard": None if board is None else {
            "vtt_url": f"/vod/{video.id}/storyboard.vtt", "sprite_url": f"/vod/{video.id}/sprite.jpg",
            "interval_s": board.interval_s, "tile_width": board.tile_width, "tile_height": board.tile_height,
            "columns": board.columns},
    }


async def _viewer_id(svc: Services, request: Request) -> str | None:
    """The signed-in caller, if the request carries a bearer token (a bad one is a 401)."""
    if "authorization" not in request.headers:
        return None
    return (await svc.user_principal(request)).user_id


async def _listed(svc: Services, video_id: str) -> VideoView:
    video = await svc.views.videos.get(video_id)
    if video is None or not video.listed:
        raise NotFound(f"video {video_id} does not exist" if video is None or video.deleted
                       else f"video {video_id} is available when its broadcast ends")
    return video


def sort_of(data: dict[str, str], default: Sort = "time") -> Sort:
    return "views" if choice(data, "sort", SORTS, default) == "views" else "time"


def cursor_of(kind: str, sort: Sort, data: dict[str, str]) -> str | None:
    if not data.get("cursor"):
        return None
    try:
        return decode_cursor(kind, sort, data["cursor"])
    except ValueError as exc:
        raise BadRequest(f"'cursor' is not valid: {exc}", field="cursor") from None


async def list_videos(request: Request) -> JSONResponse:
    svc = services(request)
    channel = await find_channel(svc, request.path_params["channel_id"])
    data = params(request.query_params, {"sort", "cursor", "limit"})
    sort = sort_of(data)
    count = limit(data, PAGE_LIMIT, PAGE_MAX_LIMIT)
    after = cursor_of("videos", sort, data)
    viewer = await _viewer_id(svc, request)
    videos, last = await svc.views.videos.page(channel.id, sort, after, count)
    streams = [await svc.views.get_stream(video.id) for video in videos]
    owner = viewer == channel.owner_user_id
    return JSONResponse({"data": [video_json(video, stream, channel, owner)
                                  for video, stream in zip(videos, streams, strict=True)],
                         "cursor": encode_cursor("videos", sort, last) if last is not None else None},
                        headers={"Cache-Control": "no-store"})


async def get_video(request: Request) -> JSONResponse:
    svc = services(request)
    video = await _listed(svc, str(request.path_params["video_id"]))
    viewer = await _viewer_id(svc, request)
    channel = await svc.views.get_channel(video.channel_id)
    body = video_json(video, await svc.views.get_stream(video.id), channel,
                      channel is not None and viewer == channel.owner_user_id)
    signed = await grant_or_none(svc, request, video.channel_id)
    base = str(request.base_url).rstrip("/")
    body["playback"] = None if signed is None else {
        "token": signed.token, "session_id": signed.session_id,
        "heartbeat_interval_s": signed.heartbeat_interval_s, "expires_at_s": signed.expires_at_s,
        "hls": {"vod": f"{base}/hls/{video.id}/vod.m3u8?token={signed.token}"}}
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


async def delete_video(request: Request) -> Response:
    svc = services(request)
    principal = await svc.user_principal(request)
    video = await _listed(svc, str(request.path_params["video_id"]))
    channel = await svc.views.get_channel(video.channel_id)
    if channel is None or channel.owner_user_id != principal.user_id:
        raise Forbidden("only the channel's owner may delete its videos")
    await svc.emit(VideoDeleted(occurred_at=svc.now_ms(), video_id=video.id, channel_id=video.channel_id,
                                deleted_by_user_id=principal.user_id, reason="OWNER"), video.id)

    async def gone() -> bool:
        seen = await svc.views.videos.get(video.id)
        return seen is not None and seen.deleted
    await svc.wait_for(gone)
    return Response(status_code=204)


async def video_asset(request: Request) -> Response:
    svc = services(request)
    video = await _listed(svc, str(request.path_params["video_id"]))
    name = request.path_params["name"]
    board = video.storyboard
    if name not in ASSETS:
        raise NotFound(f"a video has no '{name}'")
    if board is None:
        raise NotFound(f"video {video.id} has no previews yet")
    key = {"thumb.jpg": board.thumbnail_key, "sprite.jpg": board.sprite_key, "storyboard.vtt": board.vtt_key}[name]
    try:
        obj = await svc.origin_cache.get(key, lambda: read_origin_object(svc.origin, key))
    except BlobNotFound:
        raise NotFound(f"video {video.id} has no {name}") from None
    headers = {"Cache-Control": ASSET_CACHE, "ETag": obj.etag, "Last-Modified": obj.last_modified}
    if obj.etag in {t.strip() for t in request.headers.get("if-none-match", "").split(",")}:
        return Response(status_code=304, headers=headers)
    return Response(b"" if request.method == "HEAD" else obj.body, media_type=ASSETS[name],
                    headers={**headers, "Content-Length": str(len(obj.body))})


routes = [
    Route("/v1/channels/{channel_id}/videos", list_videos, methods=["GET"]),
    Route("/v1/videos/{video_id:uuid}", get_video, methods=["GET"]),
    Route("/v1/videos/{video_id:uuid}", delete_video, methods=["DELETE"]),
    Route("/vod/{video_id:uuid}/{name}", video_asset, methods=["GET", "HEAD"]),
]
