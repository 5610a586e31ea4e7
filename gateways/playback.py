"""Playback: signed HLS URLs for a stream (``GET /v1/streams/{id}/playback``) and their refresh.

The origin (gateways/hls.py) checks the token on every playlist and segment
request.  Tokens are scoped to the channel and expire after
``auth.playback_ttl_s``.  Each answer also issues the viewer session the
player's heartbeats count under, bound to the token
(gateways/viewer_sessions.py: at most ``viewers.sessions_per_client`` per
client and channel, and ``viewers.session_issues_per_minute`` answers per
client, then 429).  A refreshed token keeps its session, so a player that
refreshes (or reloads with its last token) stays one viewer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateways import validation as v
from gateways.errors import Forbidden, NotFound, TooManyRequests
from gateways.playback_token import PlaybackClaims, TokenRefused, sign, verify
from gateways.services import Services, json_body, services
from gateways.viewer_sessions import SessionIssuer, client_key
from views.streams import StreamView


async def _stream(svc: Services, request: Request) -> StreamView:
    stream_id = str(request.path_params["stream_id"])
    stream = await svc.views.get_stream(stream_id)
    if stream is None:
        raise NotFound(f"stream {stream_id} does not exist")
    return stream


async def _issue_session(svc: Services, request: Request, channel_id: str) -> str:
    """A new viewer session for this client and channel, within the client's limits (else 429)."""
    viewers = svc.settings.viewers
    issuer = SessionIssuer(svc.redis, svc.settings.valkey.key_prefix, viewers, svc.playback_secret)
    client = client_key(request.client.host if request.client is not None else None)
    issued = await issuer.issue(client, channel_id, svc.clock())
    if issued.session_id is None:
        raise TooManyRequests(f"more than {viewers.session_issues_per_minute} playback sessions a minute from "
                              "this address; try again later", issued.retry_after_s, reason="sessions_rate_limited")
    return issued.session_id


@dataclass(frozen=True)
class Grant:
    """A playback token for a channel's media and the viewer session it is bound to."""

    token: str
    session_id: str
    expires_at_s: int
    heartbeat_interval_s: float


def _sign(svc: Services, channel_id: str, session_id: str) -> Grant:
    expires = int(svc.clock()) + svc.settings.auth.playback_ttl_s
    token = sign(svc.playback_secret, PlaybackClaims(channel_id, expires, session_id, session_issued=True))
    return Grant(token, session_id, expires, svc.settings.viewers.heartbeat_interval_s)


async def grant(svc: Services, request: Request, channel_id: str) -> Grant:
    """A new viewer session and its playback token, for the VOD and clip players as for live (else 429)."""
    return _sign(svc, channel_id, await _issue_session(svc, request, channel_id))


async def grant_or_none(svc: Services, request: Request, channel_id: str) -> Grant | None:
    """``grant``, or None once this client has had its sessions for the minute (a page polling a clip or
    a video for its state still gets the state)."""
    try:
        return await grant(svc, request, channel_id)
    except TooManyRequests:
        return None


def _answer(request: Request, svc: Services, stream: StreamView, session_id: str) -> dict[str, Any]:
    now = int(svc.clock())
    signed = _sign(svc, stream.channel_id, session_id)
    token, expires = signed.token, signed.expires_at_s
    base = str(request.base_url).rstrip("/")
    ws_base = base.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    hls = {"master": f"{base}/hls/{stream.id}/master.m3u8?token={token}"}
    if stream.ended:
        hls["vod"] = f"{base}/hls/{stream.id}/vod.m3u8?token={token}"
    return {"stream_id": stream.id, "channel_id": stream.channel_id, "live": stream.live, "status": stream.status,
            "session_id": session_id, "heartbeat_interval_s": svc.settings.viewers.heartbeat_interval_s,
            "token": token, "expires_in": expires - now, "expires_at_s": expires, "hls": hls,
            "chat_ws_url": f"{ws_base}/v1/chat/ws?channel={stream.channel_id}"}


async def get_playback(request: Request) -> JSONResponse:
    svc = services(request)
    stream = await _stream(svc, request)
    session_id = await _issue_session(svc, request, stream.channel_id)
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
    # The session lives on; a token from before sessions were issued gets an issued one.
    if claims.session_id is not None and claims.session_issued:
        session_id = claims.session_id
    else:
        session_id = await _issue_session(svc, request, stream.channel_id)
    return JSONResponse(_answer(request, svc, stream, session_id), headers={"Cache-Control": "no-store"})


routes = [
    Route("/v1/streams/{stream_id:uuid}/playback", get_playback, methods=["GET"]),
    Route("/v1/streams/{stream_id:uuid}/playback/refresh-token", refresh_token, methods=["POST"]),
]
