"""The chat WebSocket protocol: JSON text frames, one object per line.

Client -> server (one JSON object per text frame):

    {"type": "auth", "token": "<JWT>"}                        sign the socket in (or give it a fresh token)
    {"type": "send", "text": "hello Kappa", "nonce": "c-1"}     send a message (nonce: dedup key)
    {"type": "ping"}                                          answered with PONG

The bearer token travels in an ``auth`` frame, never in the socket's URL
(which servers and proxies log): gateways/chat/ws.py.

Server -> client: a text frame holds one or more JSON objects separated by
"\\n" (messages for one socket are coalesced into one frame, as Twitch's IRC
over WebSocket does with its lines); JSON never contains a raw newline.

    CONNECTED  room, settings, emotes, the recent messages (``user`` is null until an auth frame is answered)
    AUTHENTICATED  to an auth frame: the user, their badges and standing, and when the token expires
               (``expires_at_ms``); the socket closes with 4401 "token expired" then, unless another auth
               frame brought a fresh token
    MESSAGE    a chat message (id, user, badges, text, emotes with positions, nonce, sent_at_ms); a cheer
               (``cheer100 GG``) also has ``bits``, the bits it spent (gateways/chat/cheers.py)
    DONATION   a paid donation (user, amount_minor, currency, message, sandbox) (gateways/payments/checkout.py)
    ACK        to the sender only: the message was accepted (nonce, id, duplicate; a cheer's ``bits``)
    NOTICE     to the sender only: a message was refused, and why (code, reason; a cheer short of bits:
               ``insufficient_bits``, nothing charged)
    CLEARMSG   a moderator deleted a message
    CLEARCHAT  a user was banned or timed out: hide their messages
    ROOMSTATE  room settings changed (slow mode, followers-only...)
    SUBSCRIPTION  a new sub, a resub (``months``, optional ``message``) or gifted subs (``recipients``, ``count``):
               ``kind`` is Twitch's sub | resub | subgift | submysterygift (processors/subscriptions/announce.py)
    RAID       a raid (views/raids.py): ``kind`` countdown | cancelled | outgoing (in the raiding room: the page
               moves to ``target``) | incoming (announced in the target's room), with ``raider`` and ``viewers``
    ERROR      a bad frame (binary, too large, not JSON, unknown type); the socket stays open
    PONG
    RECONNECT  the gateway is going away (a deploy): reconnect after ``delay_ms`` (reason); the server then
               closes the socket with 1012 "service restart" (gateways/drain.py spreads these over a window)

Encoding is done once per message (``encode``), and ``text_frame`` builds the
RFC 6455 frame bytes once so the same bytes go to every socket.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

CLIENT_TYPES = ("send", "ping", "auth")
MAX_NONCE_LENGTH = 64


class FrameError(Exception):
    """A client frame the server cannot take; ``code`` is machine-readable."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class ClientFrame:
    type: str
    text: str = ""
    nonce: str | None = None
    token: str = field(default="", repr=False)  # an auth frame's bearer token; never in a repr (logs)


def encode(obj: dict[str, Any]) -> str:
    """Compact JSON (no raw newlines: json escapes them inside strings)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def error(code: str, reason: str) -> str:
    return encode({"type": "ERROR", "code": code, "reason": reason})


def parse_client_frame(text: str, max_bytes: int) -> ClientFrame:
    """A client's text frame as a ClientFrame, or FrameError saying what is wrong."""
    if len(text.encode()) > max_bytes:
        raise FrameError("frame_too_large", f"frames are limited to {max_bytes} bytes")
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise FrameError("invalid_json", "frame is not valid JSON") from None
    if not isinstance(data, dict):
        raise FrameError("invalid_frame", "frame must be a JSON object")
    kind = data.get("type")
    if kind not in CLIENT_TYPES:
        raise FrameError("unknown_type", f"unknown frame type {str(kind)[:32]!r}; expected one of "
                                         f"{', '.join(CLIENT_TYPES)}")
    if kind == "ping":
        return ClientFrame("ping")
    if kind == "auth":
        token = data.get("token")
        if not isinstance(token, str) or not token:
            raise FrameError("invalid_frame", "'token' must be the bearer token (a non-empty string)")
        return ClientFrame("auth", token=token)
    body, nonce = data.get("text"), data.get("nonce")
    if not isinstance(body, str):
        raise FrameError("invalid_frame", "'text' must be a string")
    if nonce is not None and (not isinstance(nonce, str) or not 0 < len(nonce) <= MAX_NONCE_LENGTH):
        raise FrameError("invalid_frame", f"'nonce' must be a string of 1 to {MAX_NONCE_LENGTH} characters")
    return ClientFrame("send", body, nonce)


def text_frame(payload: bytes) -> bytes:
    """An unmasked, unfragmented RFC 6455 text frame (section 5.2) around ``payload``."""
    n = len(payload)
    if n < 126:
        header = bytes((0x81, n))
    elif n < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, n)
    else:
        header = struct.pack("!BBQ", 0x81, 127, n)
    return header + payload
