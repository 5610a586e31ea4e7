"""``WS /v1/chat/ws?channel=ID``: one chat room connection (frames: gateways/chat/frames.py).

Signing in happens on the socket, never in its URL.  A URL is what every
server, proxy and edge cache writes to its access log (uvicorn logs each
WebSocket's path and query as it accepts it), so a bearer token there is a
credential in a log.  A client sends ``{"type": "auth", "token": JWT}`` as
its first frame instead; the server answers ``AUTHENTICATED`` with the user,
their badges and the token's expiry, and from then the socket chats as that
user.  (Of the two ways out of the URL this one needs no extra request and no
server-side state: a one-time ticket would cost a POST and a Valkey key per
connection, and would still put a secret, if a short-lived one, in the URL.)
A socket that sends no auth frame reads only, as before; one that still puts
``token=`` in its URL is refused (4400) so that no client keeps leaking it.

The token's expiry holds on an open socket: when it passes, the socket gets an
ERROR ``token_expired`` and is closed with 4401 "token expired", unless the
client sent another auth frame with a fresh token for the same user before
then (which moves the expiry on).  A refused token (forged, expired, for an
account that does not exist) gets an ERROR and 4401; a token for another user
than the one signed in gets an ERROR and the socket carries on as it was.

Bad input never ends the session or touches the room: a binary frame, a frame
over ``chat.max_frame_bytes``, invalid JSON or an unknown type gets an ERROR
frame and the socket carries on (frames beyond the server's hard WebSocket
limit close it with 1009, as RFC 6455 section 7.4.1 says).  A wrong channel
gets an ERROR frame and a 44xx close code, since browsers do not show an HTTP
status for a refused WebSocket handshake.

Valkey not answering never ends a session: a send is refused with a NOTICE
``unavailable`` (nothing was shown or logged), pings still answer, and the
room's fan-out resubscribes by itself when Valkey is back
(gateways/chat/fanout.py).  A connection that cannot even find its room (or
an auth frame that cannot look up the user's standing) then gets an ERROR
``unavailable`` and close code 1013 (Try Again Later).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

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
EXPIRED_REASON = "token expired"  # the close reason (at most 123 bytes: RFC 6455 section 5.5)
URL_TOKEN_REASON = ('send the token in an auth frame ({"type": "auth", "token": ...}) after connecting, '
                    "never in the URL")


class _Refused(Exception):
    """A connection the server refuses before it joins a room."""

    def __init__(self, close_code: int, code: str, reason: str) -> None:
        super().__init__(reason)
        self.close_code, self.code, self.reason = close_code, code, reason


@dataclass
class _Who:
    """Who a socket chats as: nobody (read only) until an auth frame is accepted."""

    principal: Principal | None = None
    is_broadcaster: bool = False
    expires_at_s: float = 0.0  # when the socket's token expires; an auth frame with a fresher token moves it on
    expiry: asyncio.Task[None] | None = None  # closes the socket at ``expires_at_s``


async def _open(svc: Services, websocket: WebSocket) -> ChannelView:
    if "token" in websocket.query_params:
        raise _Refused(CLOSE_BAD_REQUEST, "token_in_url", URL_TOKEN_REASON)
    ref = websocket.query_params.get("channel") or ""
    if not ref:
        raise _Refused(CLOSE_BAD_REQUEST, "bad_request", "give the room as ?channel=<channel id or name>")
    return await find_channel(svc, ref)


async def chat_ws(websocket: WebSocket) -> None:
    svc: Services = websocket.app.state.services
    chat = svc.chat
    await websocket.accept()
    try:
        channel = await _open(svc, websocket)
    except _Refused as exc:
        await websocket.send_text(frames.error(exc.code, exc.reason))
        await websocket.close(exc.close_code, exc.reason[:120])
        return
    except ApiError as exc:
        code = CLOSE_NOT_FOUND if exc.status == 404 else CLOSE_BAD_REQUEST
        await websocket.send_text(frames.error("not_found" if exc.status == 404 else "bad_request", exc.detail))
        await websocket.close(code, exc.detail[:120])
        return
    except VALKEY_UNAVAILABLE:
        await _try_again_later(websocket)
        return
    try:
        sock = Socket(websocket, privileged=False)
        await chat.hub.join(channel.id, sock)
    except VALKEY_UNAVAILABLE:
        await _try_again_later(websocket)
        return
    who = _Who()
    try:
        mode = await chat.rooms.mode(channel.id)
        await sock.send_now(frames.encode({
            "type": "CONNECTED", "room": {"channel_id": channel.id, "channel_name": channel.name,
                                          "settings": mode.to_json()},
            "emotes": emote_set(), "user": None,
            "recent": await chat.recent(svc.redis, channel.id, svc.settings.chat.recent_messages)}))
        await _session(svc, websocket, sock, channel, who)
    except WebSocketDisconnect:
        pass
    except VALKEY_UNAVAILABLE:  # before the session started (CONNECTED needs the room's state)
        await _try_again_later(websocket)
    finally:
        if who.expiry is not None:
            who.expiry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await who.expiry
        await chat.hub.leave(channel.id, sock)


async def _try_again_later(websocket: WebSocket) -> None:
    await websocket.send_text(frames.error("unavailable", "Chat is unavailable for a moment; reconnect shortly."))
    await websocket.close(CLOSE_TRY_AGAIN_LATER, "chat is unavailable for a moment")


async def _principal(svc: Services, token: str) -> Principal:
    """The token's principal, whose account must exist (as ``Services.user_principal`` checks for requests)."""
    auth = svc.settings.auth
    principal = read_token(str(auth.jwt_secret), auth.jwt_issuer, token, int(svc.clock()))
    await svc.check_account(principal)
    return principal


async def _authenticate(svc: Services, sock: Socket, channel: ChannelView, who: _Who, token: str) -> bool:
    """Answer an auth frame; False when the socket was closed (a refused token)."""
    try:
        principal = await _principal(svc, token)
    except ApiError as exc:
        await sock.restart(frames.error("unauthorized", exc.detail), CLOSE_UNAUTHORIZED, exc.detail[:120])
        return False
    if who.principal is not None and principal.user_id != who.principal.user_id:
        await sock.send_now(frames.error("user_mismatch", "this socket is signed in as another user; "
                                                          "reconnect to chat as someone else"))
        return True
    now = svc.now_ms()
    is_broadcaster = principal.user_id == channel.owner_user_id
    chatter = await svc.chat.rooms.chatter(channel.id, principal.user_id)
    badges = checks.badges(chatter, is_broadcaster, now)
    # Both tokens are the user's and valid until their expiry, so the later one sets when the socket closes.
    who.expires_at_s = max(who.expires_at_s, float(principal.expires_at_s))
    who.principal, who.is_broadcaster = principal, is_broadcaster
    sock.privileged = checks.privileged(badges)
    if who.expiry is None:
        who.expiry = asyncio.create_task(_close_at_expiry(svc, sock, who), name="chat token expiry")
    await sock.send_now(frames.encode({
        "type": "AUTHENTICATED", "expires_at_ms": int(who.expires_at_s * 1000),
        "user": {"id": principal.user_id, "username": principal.username, "badges": badges,
                 "banned": chatter.banned, "timed_out_until_ms": chatter.timed_out_until_ms or None}}))
    return True


async def _close_at_expiry(svc: Services, sock: Socket, who: _Who) -> None:
    """Close the socket once its token has expired; a fresh token (``who.expires_at_s``) moves the time on."""
    while (left := who.expires_at_s - svc.clock()) > 0:
        await asyncio.sleep(left)
    await sock.restart(frames.error("token_expired", "your token expired: sign in again to keep chatting"),
                       CLOSE_UNAUTHORIZED, EXPIRED_REASON)


async def _session(svc: Services, websocket: WebSocket, sock: Socket, channel: ChannelView, who: _Who) -> None:
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
        if frame.type == "auth":
            try:
                if not await _authenticate(svc, sock, channel, who, frame.token):
                    return
            except VALKEY_UNAVAILABLE:
                await _try_again_later(websocket)
                return
            continue
        principal = who.principal
        if principal is None:
            await sock.send_now(frames.encode({"type": "NOTICE", "code": "login_required",
                                               "reason": "Log in to chat.", "nonce": frame.nonce}))
            continue
        try:
            answer = await send_message(svc, channel.id, principal.user_id, principal.username, who.is_broadcaster,
                                        frame)
        except VALKEY_UNAVAILABLE as exc:
            log.warning("chat: send refused, Valkey did not answer: %s", exc)
            answer = frames.encode({"type": "NOTICE", "code": "unavailable", "reason": UNAVAILABLE_REASON,
                                    "nonce": frame.nonce})
        await sock.send_now(answer)


routes = [WebSocketRoute("/v1/chat/ws", chat_ws)]
