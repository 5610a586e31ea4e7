"""Signed playback tokens for the HLS origin: HMAC-SHA256 over a small claim set.

A token names the channel it opens, when it expires and, optionally, the
viewer session it was issued to.  It is URL-safe (base64url, no padding) so
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


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(secret: bytes, claims: PlaybackClaims) -> str:
    body = {"c": claims.channel_id, "e": claims.expires_at_s}
    if claims.session_id:
        body["v"] = claims.session_id
    payload = _b64(json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
    mac = hmac.new(secret, payload.encode(), hashlib.sha256).digest()
    return f"{payload}.{_b64(mac)}"


def verify(secret: bytes, token: str | None, channel_id: str, now_s: int) -> PlaybackClaims:
    """The token's claims if it opens ``channel_id`` now; TokenRefused says why not."""
    if not token:
        raise TokenRefused("missing playback token (get one from GET /v1/streams/{id}/playback)")
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
        claims = PlaybackClaims(str(body["c"]), int(body["e"]), body.get("v"))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise TokenRefused("playback token is malformed") from None
    if claims.expires_at_s <= now_s:
        raise TokenRefused("playback token has expired; refresh it")
    if claims.channel_id != channel_id:
        raise TokenRefused("playback token is for another channel")
    return claims


def derive_secret(jwt_secret: str, playback_secret: str) -> bytes:
    """The HMAC key: the configured playback secret, or one derived from the JWT secret."""
    if playback_secret:
        return playback_secret.encode()
    return hmac.new(jwt_secret.encode(), b"glasscast playback tokens", hashlib.sha256).digest()
