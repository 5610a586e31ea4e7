"""The in-app notification feed: ``GET /v1/me/notifications``, mark-read, and the live socket.

* ``GET /v1/me/notifications?cursor=&limit=`` the signed-in user's notifications,
  newest first, with ``unread_count`` and ``next_cursor`` (views/notifications.py);
* ``POST /v1/me/notifications/read`` ``{"ids": [...]}`` or ``{"all": true}``;
* ``WS /v1/me/notifications/ws``: signs in with a first frame ``{"type": "auth",
  "token": JWT}`` as the chat socket does (never in the URL: 4400), answered with
  ``AUTHENTICATED`` (user, ``unread_count``, ``expires_at_ms``); then every new
  notification arrives as ``NOTIFICATION`` (``notification``, ``unread_count``).
  Pushes come through Valkey pub/sub (``notif:push:{user}``), so whichever gateway
  holds the socket forwards them; one pub/sub connection per gateway serves all
  its sockets (gateways/push_hub.py), and one account has at most
  ``notifications.sockets_per_user`` sockets per gateway (the next is closed
  with 1013 ``too_many_sockets``).  No auth frame within ``AUTH_TIMEOUT_S``, or a
  refused token, closes with 4401; so does the token's expiry, unless another auth
  frame for the same user brought a fresh token.  ``{"type": "ping"}`` gets PONG.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from gateways import validation as v
from gateways.auth import Principal, read_token
from gateways.chat import frames
from gateways.errors import ApiError, Unauthorized, ValidationFailed
from gateways.push_hub import Inbox, TooManySockets
from gateways.services import Services, json_body, services
from views.errors import VALKEY_UNAVAILABLE
from views.notifications import PAGE_MAX, FeedItem, NotificationFeed

log = logging.getLogger("glasscast.notifications")

CLOSE_UNAUTHORIZED, CLOSE_BAD_REQUEST, CLOSE_TRY_AGAIN_LATER = 4401, 4400, 1013
AUTH_TIMEOUT_S = 10.0  # a socket that does not sign in by then is closed
MAX_IDS = 500  # ids per mark-read request
MAX_ID_LENGTH = 64
MAX_CURSOR = 2**53  # feed scores are exact doubles


def feed_of(svc: Services) -> NotificationFeed:
    return NotificationFeed(svc.redis, svc.settings.valkey.key_prefix, svc.settings.notifications.feed_max)


def item_json(item: FeedItem, read: bool) -> dict[str, Any]:
    return {**item.to_json(), "read": read}


async def list_notifications(request: Request) -> JSONResponse:
    svc = services(request)
    principal = await svc.user_principal(request)
    q = request.query_params
    limit = v.query_int(q.get("limit"), "limit", 1, PAGE_MAX, 20)
    cursor = q.get("cursor")
    score = None if not cursor else v.query_int(cursor, "cursor", 0, MAX_CURSOR, 0)
    page = await feed_of(svc).page(principal.user_id, score, limit)
    return JSONResponse({"notifications": [item_json(i, read) for i, read in page.items],
                         "unread_count": page.unread, "next_cursor": page.next_cursor})


def read_ids(data: dict[str, Any]) -> list[str] | None:
    """The ids a mark-read body names, or None for ``{"all": true}``."""
    v.only(data, {"ids", "all"})
    if ("ids" in data) == ("all" in data):
        raise ValidationFailed("give either 'ids' (a list of notification ids) or 'all': true")
    if "all" in data:
        if data["all"] is not True:
            raise ValidationFailed("'all' must be true", field="all")
        return None
    ids = data["ids"]
    if not isinstance(ids, list) or len(ids) > MAX_IDS or not all(
            isinstance(i, str) and 0 < len(i) <= MAX_ID_LENGTH for i in ids):
        raise ValidationFailed(f"'ids' must be a list of at most {MAX_IDS} notification ids", field="ids")
    return ids


async def mark_read(request: Request) -> JSONResponse:
    svc = services(request)
    principal = await svc.user_principal(request)
    ids = read_ids(await json_body(request))
    unread = await feed_of(svc).mark_read(principal.user_id, ids)
    return JSONResponse({"unread_count": unread})


async def _principal(svc: Services, token: str) -> Principal:
    """The token's principal, checked as ``Services.user_principal`` checks a request's."""
    auth = svc.settings.auth
    principal = read_token(str(auth.jwt_secret), auth.jwt_issuer, token, int(svc.clock()))
    await svc.check_account(principal)  # exists, not deleted, no password change since the token
    return principal


async def _auth_frame(svc: Services, websocket: WebSocket) -> str:
    """The token of the next frame, which must be an auth frame."""
    msg = await websocket.receive()
    if msg["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(msg.get("code", 1000))
    try:
        frame = frames.parse_client_frame(msg.get("text") or "", svc.settings.chat.max_frame_bytes)
    except frames.FrameError as exc:
        raise Unauthorized(f"sign in first: {exc.reason}") from None
    if frame.type != "auth":
        raise Unauthorized('sign in first: send {"type": "auth", "token": ...}')
    return frame.token


async def notifications_ws(websocket: WebSocket) -> None:
    svc: Services = websocket.app.state.services
    await websocket.accept()
    if "token" in websocket.query_params:
        reason = 'send the token in an auth frame ({"type": "auth", "token": ...}), never in the URL'
        await websocket.send_text(frames.error("token_in_url", reason))
        await websocket.close(CLOSE_BAD_REQUEST, "token in URL")
        return
    try:
        principal = await _principal(svc, await asyncio.wait_for(_auth_frame(svc, websocket), AUTH_TIMEOUT_S))
        feed = feed_of(svc)
        unread = await feed.unread(principal.user_id)
    except WebSocketDisconnect:
        return
    except TimeoutError:
        await _close(websocket, "auth_timeout", "no auth frame in time", CLOSE_UNAUTHORIZED)
        return
    except ApiError as exc:
        await _close(websocket, "unauthorized", exc.detail, CLOSE_UNAUTHORIZED)
        return
    except VALKEY_UNAVAILABLE:
        await _close(websocket, "unavailable", "notifications are unavailable for a moment", CLOSE_TRY_AGAIN_LATER)
        return
    try:
        async with svc.push_hub.attach(feed.k_push(principal.user_id)) as inbox:
            await websocket.send_text(frames.encode({
                "type": "AUTHENTICATED", "user": {"id": principal.user_id, "username": principal.username},
                "unread_count": unread, "expires_at_ms": principal.expires_at_s * 1000}))
            pump = asyncio.create_task(_pump(inbox, websocket), name="notification push")
            session = asyncio.create_task(_session(svc, websocket, principal), name="notification socket")
            try:
                await asyncio.wait({pump, session}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (pump, session):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                        await task
    except TooManySockets:
        await _close(websocket, "too_many_sockets",
                     f"at most {svc.settings.notifications.sockets_per_user} notification sockets per account",
                     CLOSE_TRY_AGAIN_LATER)
    except WebSocketDisconnect:
        pass
    except VALKEY_UNAVAILABLE:
        await _close(websocket, "unavailable", "notifications are unavailable for a moment", CLOSE_TRY_AGAIN_LATER)


async def _close(websocket: WebSocket, code: str, reason: str, close_code: int) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        await websocket.send_text(frames.error(code, reason))
        await websocket.close(close_code, reason[:120])


async def _pump(inbox: Inbox, websocket: WebSocket) -> None:
    """Forward the user's pushes to the socket; when the hub gives up on it, ask the client to come back."""
    while (data := await inbox.get()) is not None:
        await websocket.send_text(frames.encode({"type": "NOTIFICATION", **json.loads(data)}))
    await _close(websocket, "unavailable", "notifications are unavailable for a moment", CLOSE_TRY_AGAIN_LATER)


async def _session(svc: Services, websocket: WebSocket, principal: Principal) -> None:
    """Answer pings and fresh auth frames until the socket closes or its token expires."""
    expires_at_s = float(principal.expires_at_s)
    while True:
        left = expires_at_s - svc.clock()
        try:
            if left <= 0:
                raise TimeoutError
            msg = await asyncio.wait_for(websocket.receive(), left)
        except TimeoutError:
            await _close(websocket, "token_expired", "token expired", CLOSE_UNAUTHORIZED)
            return
        if msg["type"] == "websocket.disconnect":
            return
        try:
            frame = frames.parse_client_frame(msg.get("text") or "", svc.settings.chat.max_frame_bytes)
        except frames.FrameError as exc:
            await websocket.send_text(frames.error(exc.code, exc.reason))
            continue
        if frame.type == "ping":
            await websocket.send_text(frames.encode({"type": "PONG"}))
        elif frame.type == "auth":
            try:
                fresh = await _principal(svc, frame.token)
            except ApiError as exc:
                await _close(websocket, "unauthorized", exc.detail, CLOSE_UNAUTHORIZED)
                return
            if fresh.user_id != principal.user_id:
                await websocket.send_text(frames.error("user_mismatch", "this socket is signed in as another user"))
                continue
            expires_at_s = max(expires_at_s, float(fresh.expires_at_s))
            await websocket.send_text(frames.encode({"type": "AUTHENTICATED", "user": {
                "id": fresh.user_id, "username": fresh.username}, "expires_at_ms": int(expires_at_s * 1000)}))
        else:
            await websocket.send_text(frames.error("unknown_type", "this socket takes auth and ping frames"))


routes = [
    Route("/v1/me/notifications", list_notifications, methods=["GET"]),
    Route("/v1/me/notifications/read", mark_read, methods=["POST"]),
    WebSocketRoute("/v1/me/notifications/ws", notifications_ws),
]
