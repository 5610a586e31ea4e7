"""Credentials: argon2id password hashes, JWT access tokens, stream keys.

Pure functions over their inputs (the clock is passed in).  Stream keys are
shown to their owner once; only their SHA-256 enters events and views.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from gateways.errors import Unauthorized

JWT_ALGORITHM = "HS256"
STREAM_KEY_PREFIX = "live_"
_hasher = PasswordHasher()  # argon2id with the library's RFC 9106 low-memory profile


def hash_password(password: str) -> str:
    """An argon2id PHC string for ``password`` (CPU-heavy: call off the event loop)."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches; never raises on a wrong password."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class Principal:
    """Who a valid bearer token belongs to."""

    user_id: str
    username: str
    expires_at_s: int = 0  # the token's ``exp``: open chat sockets close then unless given a fresh token
    credentials_version: int = 0  # the account's password changes when it was issued (claim ``cv``)


def issue_token(secret: str, issuer: str, user_id: str, username: str, now_s: int, ttl_s: int,
                credentials_version: int = 0) -> str:
    claims: dict[str, object] = {"sub": user_id, "name": username, "iss": issuer, "iat": now_s,
                                 "exp": now_s + ttl_s}
    if credentials_version:
        claims["cv"] = credentials_version  # a password change since makes the token stale
    return jwt.encode(claims, secret, algorithm=JWT_ALGORITHM)


def read_token(secret: str, issuer: str, token: str, now_s: int) -> Principal:
    """The principal of a token; Unauthorized says why a token is refused."""
    try:
        claims = jwt.decode(token, secret, algorithms=[JWT_ALGORITHM], issuer=issuer,
                            options={"require": ["sub", "exp", "iat"], "verify_exp": False})
    except jwt.InvalidSignatureError:
        raise Unauthorized("token signature is invalid") from None
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"token is invalid: {exc}") from None
    if int(claims["exp"]) <= now_s:  # checked here so the clock is the caller's
        raise Unauthorized("token has expired")
    version = claims.get("cv", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise Unauthorized("token is invalid: 'cv' is not an integer")
    return Principal(str(claims["sub"]), str(claims.get("name", "")), int(claims["exp"]), version)


def bearer_token(authorization: str | None) -> str:
    """The token in an ``Authorization: Bearer ...`` header."""
    if not authorization:
        raise Unauthorized("missing Authorization: Bearer token")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization header must be 'Bearer <token>'")
    return token.strip()


def new_stream_key() -> str:
    """A fresh secret stream key (what OBS calls the stream key), not derived from anything."""
    return STREAM_KEY_PREFIX + secrets.token_urlsafe(30)


def new_stream_key_nonce() -> str:
    """The random part a revealable stream key is derived from; it may appear in events."""
    return secrets.token_urlsafe(18)


def stream_key_secret(jwt_secret: str, configured: str) -> bytes:
    """The HMAC key stream keys are derived with: the configured one, or one derived from the JWT secret."""
    if configured:
        return configured.encode()
    return hmac.new(jwt_secret.encode(), b"glasscast stream keys", hashlib.sha256).digest()


def derive_stream_key(secret: bytes, channel_id: str, nonce: str) -> str:
    """The stream key for a channel's current nonce: HMAC-SHA256, so its owner can see it again.

    Events carry the nonce and the key's SHA-256, never the key; without the
    secret the nonce gives nothing away.
    """
    mac = hmac.new(secret, f"{channel_id}:{nonce}".encode(), hashlib.sha256).digest()
    return STREAM_KEY_PREFIX + base64.urlsafe_b64encode(mac).decode().rstrip("=")


def same_digest(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


class KnownUsers:
    """Accounts the view store has shown to exist, with their password-change count, so a valid token costs
    a Valkey read once in a while per user.

    An entry is trusted for ``ttl_s``: a deleted account's tokens, or tokens issued before a password
    change, stop working on the gateway that made the change at once (``forget``/``add``) and on every
    other within that time.  The map is bounded, and when full it starts again (the next read refills it).
    """

    def __init__(self, max_size: int = 100_000, ttl_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_size, self.ttl_s, self.clock = max_size, ttl_s, clock
        self._entries: dict[str, tuple[float, int]] = {}

    def version(self, user_id: str) -> int | None:
        """The account's password-change count while its entry is fresh; None: read the view."""
        entry = self._entries.get(user_id)
        return entry[1] if entry is not None and self.clock() < entry[0] else None

    def __contains__(self, user_id: object) -> bool:
        return isinstance(user_id, str) and self.version(user_id) is not None

    def add(self, user_id: str, credentials_version: int = 0) -> None:
        if len(self._entries) >= self.max_size:
            self._entries.clear()
        self._entries[user_id] = (self.clock() + self.ttl_s, credentials_version)

    def forget(self, user_id: str) -> None:
        self._entries.pop(user_id, None)
