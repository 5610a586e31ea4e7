"""``WS /v1/chat/ws?channel=ID&token=JWT``: one chat room connection (frames: gateways/chat/frames.py).

Without a token the connection reads only.  Bad input never ends the
session or touches the room: a binary frame, a frame over
``chat.max_frame_bytes``, invalid JSON or an unknown type gets an ERROR
frame and the socket carries on (frames beyond the server's hard WebSocket
limit close it with 1009, as RFC 6455 section 7.4.1 says).  A wrong channel
or a bad token gets an ERROR frame and a 44xx close code, since browsers do
not show an HTTP status for a refused WebSocket handshake.

Valkey not answering never ends a session: a send is refused with a NOTICE
``unavailable`` (nothing was shown or logged), pings still answer, and the
room's fan-out resubscribes by itself when Valkey is back
(gateways/chat/fanout.py).  A connection that cannot even find its room then
gets an ERROR ``unavailable`` and close code 1013 (Try Again Later).
"""

from __future__ import annotations

import logging

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from gateways.auth import Principal, read_token
from gateways.channels import find_channel
from gateways.chat import checks, frames
from gateways.chat.emotes import emote_set
from gateways.chat.fanout import Socket
from gateways.chat.send import send_message
from gateways.errors import ApiError
from gateways.services import Services
from views.channels import ChannelView
from views.errors import VALKEY_UNAVAILABLE

log = logging.getLogger("glasscast.chat")

CLOSE_UNAUTHORIZED, CLOSE_NOT_FOUND, CLOSE_BAD_REQUEST = 4401, 4404, 4400
CLOSE_TRY_AGAIN_LATER = 1013  # RFC 6455 section 7.4.1 registry: the server is overloaded or a dependency is down
UNAVAILABLE_REASON = "Chat is unavailable for a moment, so your message was not sent; try again shortly."


class _Refused(Exception):
    """A connection the server refuses before it joins a room."""

    def __init__(self, close_code: int, code: str, reason: str) -> None:
        super().__init__(reason)
        self.close_code, self.code, self.reason = close_code, code, reason


async def _open(svc: Services, websocket: WebSocket) -> tuple[ChannelView, Principal | None]:
    ref = websocket.query_params.get("channel") or ""
    if not ref:
        raise _Refused(CLOSE_BAD_REQUEST, "bad_request", "give the room as ?channel=<channel id or name>")
    channel = await find_channel(svc, ref)
    token = websocket.query_params.get("token")
    if not token:
        return channel, None
    auth = svc.settings.auth
    return channel, read_token(str(auth.jwt_secret), auth.jwt_issuer, token, int(svc.clock()))


async def chat_ws(websocket: WebSocket) -> None:
    svc: Services = websocket.app.state.services
    chat = svc.chat
    await websocket.accept()
    try:
        channel, principal = await _open(svc, websocket)
    except _Refused as exc:
        await websocket.send_text(frames.error(exc.code, exc.reason))
        await websocket.close(exc.close_code, exc.reason)
        return
    except ApiError as exc:
        code = CLOSE_UNAUTHORIZED if exc.status == 401 else CLOSE_NOT_FOUND if exc.status == 404 else CLOSE_BAD_REQUEST
        await websocket.send_text(frames.error("unauthorized" if exc.status == 401 else "not_found", exc.detail))
        await websocket.close(code, exc.detail[:120])
        return
    except VALKEY_UNAVAILABLE:
        await _try_again_later(websocket)
        return
    now = svc.now_ms()
    is_broadcaster = principal is not None and principal.user_id == channel.owner_user_id
    user = None
    user_badges: list[str] = []
    try:
        if principal is not None:
            chatter = await chat.rooms.chatter(channel.id, principal.user_id)
            user_badges = checks.badges(chatter, is_broadcaster, now)
            user = {"id": principal.user_id, "username": principal.username, "badges": user_badges,
                    "banned": chatter.banned, "timed_out_until_ms": chatter.timed_out_until_ms or None}
        sock = Socket(websocket, privileged=checks.privileged(user_badges))
        await chat.hub.join(channel.id, sock)
    except VALKEY_UNAVAILABLE:
        await _try_again_later(websocket)
        return
    try:
        mode = await chat.rooms.mode(channel.id)
        await sock.send_now(frames.encode({
            "type": "CONNECTED", "room": {"channel_id": channel.id, "channel_name": channel.name,
                                          "settings": mode.to_json()},
            "emotes": emote_set(), "user": user,
            "recent": await chat.recent(svc.redis, channel.id, svc.settings.chat.recent_messages)}))
        await _session(svc, websocket, sock, channel, principal, is_broadcaster)
    except WebSocketDisconnect:
        pass
    except VALKEY_UNAVAILABLE:  # before the session started (CONNECTED needs the room's state)
        await _try_again_later(websocket)
    finally:
        await chat.hub.leave(channel.id, sock)


async def _try_again_later(websocket: WebSocket) -> None:
    await websocket.send_text(frames.error("unavailable", "Chat is unavailable for a moment; reconnect shortly."))
    await websocket.close(CLOSE_TRY_AGAIN_LATER, "chat is unavailable for a moment")


async def _session(svc: Services, websocket: WebSocket, sock: Socket, channel: ChannelView,
                   principal: Principal | None, is_broadcaster: bool) -> None:
    limit = svc.settings.chat.max_frame_bytes
    while True:
        msg = await websocket.receive()
        if msg["type"] == "websocket.disconnect":
            return
        text = msg.get("text")
        if text is None:
            await sock.send_now(frames.error("binary_not_supported", "send JSON text frames, not binary"))
            continue
        try:
            frame = frames.parse_client_frame(text, limit)
        except frames.FrameError as exc:
            await sock.send_now(frames.error(exc.code, exc.reason))
            continue
        if frame.type == "ping":
            await sock.send_now(frames.encode({"type": "PONG"}))
            continue
        if principal is None:
            await sock.send_now(frames.encode({"type": "NOTICE", "code": "login_required",
                                               "reason": "Log in to chat.", "nonce": frame.nonce}))
            continue
        try:
            answer = await send_message(svc, channel.id, principal.user_id, principal.username, is_broadcaster,
                                        frame)
        except VALKEY_UNAVAILABLE as exc:
            log.warning("chat: send refused, Valkey did not answer: %s", exc)
            answer = frames.encode({"type": "NOTICE", "code": "unavailable", "reason": UNAVAILABLE_REASON,
                                    "nonce": frame.nonce})
        await sock.send_now(answer)


routes = [WebSocketRoute("/v1/chat/ws", chat_ws)]
