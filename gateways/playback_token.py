"""Signed playback tokens for the HLS origin: HMAC-SHA256 over a small claim set.

A token names the channel it opens, when it expires and, optionally, the
viewer session it was issued to.  A session the playback endpoint chose itself
(gateways/viewer_sessions.py) is marked as issued (claim ``i``): only such a
session is counted as a viewer by the heartbeat route, so a session id a
client picked (as ``?session=`` once allowed) never counts, even in a token
refreshed from one signed before sessions were issued.  It is URL-safe (base64url, no padding) so
it travels as ``?token=`` on every playlist and segment URL.  Pure: the
secret and the clock are passed in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass


class TokenRefused(ValueError):
    """Why a playback token does not open this request (the 403 reason)."""


@dataclass(frozen=True)
class PlaybackClaims:
    channel_id: str
    expires_at_s: int
    session_id: str | None = None
    session_issued: bool = False  # the gateway chose the session id (a countable viewer)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(secret: bytes, claims: PlaybackClaims) -> str:
    body: dict[str, str | int] = {"c": claims.channel_id, "e": claims.expires_at_s}
    if claims.session_id:
        body["v"] = claims.session_id
        if claims.session_issued:
            body["i"] = 1
    payload = _b64(json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
    mac = hmac.new(secret, payload.encode(), hashlib.sha256).digest()
    return f"{payload}.{_b64(mac)}"


def verify(secret: bytes, token: str | None, channel_id: str, now_s: int) -> PlaybackClaims:
    """The token's claims if it opens ``channel_id`` now; TokenRefused says why not."""
    if not token:
        raise TokenRefused("missing playback token (get one from GET /v1/streams/{id}/playback)")
    if not token.isascii():  # base64url and a dot; anything else (a lone surrogate too) is not ours
        raise TokenRefused("playback token is malformed")
    payload, dot, mac = token.partition(".")
    try:
        given = _unb64(mac)
    except ValueError:
        given = b""
    if not dot or not payload or not given:
        raise TokenRefused("playback token is malformed")
    expected = hmac.new(secret, payload.encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(given, expected):
        raise TokenRefused("playback token signature is invalid")
    try:
        body = json.loads(_unb64(payload))
        channel, expires, session = str(body["c"]), int(body["e"]), body.get("v")
        if session is not None and not isinstance(session, str):
            raise TypeError("session claim is not a string")
        claims = PlaybackClaims(channel, expires, session, session is not None and body.get("i") == 1)
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        raise TokenRefused("playback token is malformed") from None
    if claims.expires_at_s <= now_s:
        raise TokenRefused("playback token has expired; refresh it")
    if claims.channel_id != channel_id:
        raise TokenRefused("playback token is for another channel")
    return claims


def verify_session(secret: bytes, token: str | None, channel_id: str, session_id: str, now_s: int) -> int:
    """The token's expiry if it opens ``channel_id`` now for the issued ``session_id``; TokenRefused says why not.

    The heartbeat route's check, on every beat a gateway has not seen the token of: it knows the channel and
    the session, so rather than parsing the claims it matches the payload against the one ``sign`` would
    have written for them, and reads only the expiry (about half the cost of ``verify``).  A payload of
    any other shape is refused with ``verify``'s reason, or as another session's.
    """
    if token and token.isascii():
        payload, dot, mac = token.partition(".")
        try:
            given, body = _unb64(mac), _unb64(payload)
        except ValueError:
            given = body = b""
        if dot and hmac.compare_digest(given, hmac.new(secret, payload.encode(), hashlib.sha256).digest()):
            head, tail = f'{{"c":"{channel_id}","e":'.encode(), f',"i":1,"v":"{session_id}"}}'.encode()
            expiry = body[len(head):len(body) - len(tail)]
            if body.startswith(head) and body.endswith(tail) and expiry.isdigit() and len(expiry) < 16:
                if int(expiry) <= now_s:
                    raise TokenRefused("playback token has expired; refresh it")
                return int(expiry)
    claims = verify(secret, token, channel_id, now_s)  # refuses with the reason, or it names another session
    if claims.session_id != session_id or not claims.session_issued:
        raise TokenRefused("'session_id' is not the session this playback token was issued with "
                           "(GET /v1/streams/{id}/playback issues both)")
    return claims.expires_at_s


def derive_secret(jwt_secret: str, playback_secret: str) -> bytes:
    """The HMAC key: the configured playback secret, or one derived from the JWT secret."""
    if playback_secret:
        return playback_secret.encode()
    return hmac.new(jwt_secret.encode(), b"glasscast playback tokens", hashlib.sha256).digest()
