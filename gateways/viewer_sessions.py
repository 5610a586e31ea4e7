"""Viewer sessions: the playback endpoint issues them, and only they count as viewers.

Viewer counts choose the transcoding tier, so a client must not be able to
make itself many viewers.  A session id is therefore never the client's
choice: ``GET /v1/streams/{id}/playback`` issues one and binds it to the
playback token (gateways/playback_token.py signs it, marked as issued), and
the heartbeat route counts a beat only when its token carries its session
(gateways/heartbeats.py): a forged or unknown session is refused with no
Valkey round trip.

How many sessions one client can hold.  A session id is an HMAC of the
channel, the client (its IPv4 address, or the /64 of an IPv6 address, which is
what one subscriber gets) and a slot number below
``viewers.sessions_per_client``.  Each playback answer takes the client's
next slot for the channel (a counter in Valkey, so every gateway shares it),
wrapping round: however many times a client asks, it can only ever be given
that many distinct session ids for a channel, and a household's devices still
get one each.  The answers themselves are limited per client to
``viewers.session_issues_per_minute`` (fixed one-minute windows in the same
script and round trip); past that the endpoint answers 429 with Retry-After.

Everything above ``SessionIssuer`` is pure.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass

import redis.asyncio as aioredis

from infra.settings import ViewerSettings

RATE_WINDOW_S = 60  # session_issues_per_minute counts in windows this long
SLOT_COUNTER_TTL_S = 3600  # a client's slot counter for a channel is forgotten after an idle hour
IPV6_CLIENT_PREFIX = 64  # one subscriber's IPv6 allocation (RFC 6177): one client, not 2**64
SESSION_ID_BYTES = 16  # 32 hex characters, as the uuid4().hex ids players had before
SESSION_KEY_LABEL = b"glasscast viewer sessions"

# KEYS[1]: the client's issue counter for this window; KEYS[2]: its slot counter for the channel.
# ARGV: window seconds, issue limit, slot counter ttl.  Returns {issued this window, slot or -1, ttl}.
ISSUE_SCRIPT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
if n > tonumber(ARGV[2]) then return {n, -1, redis.call('TTL', KEYS[1])} end
local slot = redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return {n, slot, 0}
"""


@dataclass(frozen=True)
class Issued:
    """A session the playback endpoint hands out, or why it does not (``retry_after_s`` > 0)."""

    session_id: str | None
    retry_after_s: int = 0


def client_key(host: str | None) -> str:
    """Who a client is for the per-client limits: an IPv4 address or an IPv6 /64 (as text)."""
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]  # not an IP (a unix socket path, a test transport): itself
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False))
    return str(address)


def session_key(playback_secret: bytes) -> bytes:
    """The HMAC key of session ids, kept apart from the one that signs tokens."""
    return hmac.new(playback_secret, SESSION_KEY_LABEL, hashlib.sha256).digest()


def session_id(key: bytes, channel_id: str, client: str, slot: int) -> str:
    """The session id of a client's slot for a channel (pure; the same inputs give the same id)."""
    message = f"{channel_id}\n{client}\n{slot}".encode()
    return hmac.new(key, message, hashlib.sha256).digest()[:SESSION_ID_BYTES].hex()


class SessionIssuer:
    """Takes a client's next session slot for a channel, within its issue rate (one Valkey round trip)."""

    def __init__(self, client: aioredis.Redis, key_prefix: str, settings: ViewerSettings,
                 playback_secret: bytes) -> None:
        self.script = client.register_script(ISSUE_SCRIPT)
        self.prefix = key_prefix
        self.settings = settings
        self.key = session_key(playback_secret)

    def keys(self, client: str, channel_id: str, now_s: float) -> list[str]:
        # One hash tag per client, so both keys live on one node of a cluster (the script touches both).
        window = int(now_s) // RATE_WINDOW_S
        return [f"{self.prefix}viewer-sessions:{{{client}}}:issued:{window}",
                f"{self.prefix}viewer-sessions:{{{client}}}:slot:{channel_id}"]

    async def issue(self, client: str, channel_id: str, now_s: float) -> Issued:
        """A session for the client, or how long until it may ask again."""
        s = self.settings
        _, slot, ttl = await self.script(keys=self.keys(client, channel_id, now_s),
                                         args=[RATE_WINDOW_S, s.session_issues_per_minute, SLOT_COUNTER_TTL_S])
        if int(slot) < 0:
            return Issued(None, max(1, int(ttl)))
        return Issued(session_id(self.key, channel_id, client, int(slot) % s.sessions_per_client))
