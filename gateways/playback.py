"""Playback: signed HLS URLs for a stream (``GET /v1/streams/{id}/playback``) and their refresh.

The origin (gateways/hls.py) checks the token on every playlist and segment
request.  Tokens are scoped to the channel, expire after
``auth.playback_ttl_s`` and may carry the viewer's session id.
"""

from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateways import validation as v
from gateways.errors import Forbidden, NotFound
from gateways.playback_token import PlaybackClaims, TokenRefused, sign, verify
from gateways.services import Services, json_body, services
from views.streams import StreamView


async def _stream(svc: Services, request: Request) -> StreamView:
    stream_id = str(request.path_params["stream_id"])
    stream = await svc.views.get_stream(stream_id)
    if stream is None:
        raise NotFound(f"stream {stream_id} does not exist")
    return stream


def _answer(request: Request, svc: Services, stream: StreamView, session_id: str) -> dict[str, Any]:
    now = int(svc.clock())
    expires = now + svc.settings.auth.playback_ttl_s
    token = sign(svc.playback_secret, PlaybackClaims(stream.channel_id, expires, session_id))
    base = str(request.base_url).rstrip("/")
    ws_base = base.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    hls = {"master": f"{base}/hls/{stream.id}/master.m3u8?token={token}"}
    if stream.ended:
        hls["vod"] = f"{base}/hls/{stream.id}/vod.m3u8?token={token}"
    return {"stream_id": stream.id, "channel_id": stream.channel_id, "live": stream.live, "status": stream.status,
            "session_id": session_id,
            "token": token, "expires_in": expires - now, "expires_at_s": expires, "hls": hls,
            "chat_ws_url": f"{ws_base}/v1/chat/ws?channel={stream.channel_id}"}


async def get_playback(request: Request) -> JSONResponse:
    svc = services(request)
    stream = await _stream(svc, request)
    session_id = request.query_params.get("session") or uuid.uuid4().hex
    if len(session_id) > 64 or not session_id.isprintable():
        session_id = uuid.uuid4().hex
    return JSONResponse(_answer(request, svc, stream, session_id), headers={"Cache-Control": "no-store"})


async def refresh_token(request: Request) -> JSONResponse:
    """A new token for a viewer whose token expires soon (or just did)."""
    svc = services(request)
    stream = await _stream(svc, request)
    data = await json_body(request)
    v.only(data, {"token"})
    old = v.string(data, "token", max_length=1024)
    # An expired token may still be refreshed for one more lifetime, never one for another channel.
    grace_now = int(svc.clock()) - svc.settings.auth.playback_ttl_s
    try:
        claims = verify(svc.playback_secret, old, stream.channel_id, grace_now)
    except TokenRefused as exc:
        raise Forbidden(str(exc)) from None
    return JSONResponse(_answer(request, svc, stream, claims.session_id or uuid.uuid4().hex),
                        headers={"Cache-Control": "no-store"})


routes = [
    Route("/v1/streams/{stream_id:uuid}/playback", get_playback, methods=["GET"]),
    Route("/v1/streams/{stream_id:uuid}/playback/refresh-token", refresh_token, methods=["POST"]),
]
