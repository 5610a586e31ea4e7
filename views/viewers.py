"""Viewer counts: heartbeats into HyperLogLog per channel per time bucket, merged over a window.

Players beat about every 30 s (docs/ARCHITECTURE.md, "Control plane").  Each beat's
session id is PFADDed into the HyperLogLog of its channel and of the time
bucket its ``occurred_at`` falls in; the displayed count is a PFCOUNT over the
current bucket and the ones before it, which merges them (a union, so a
session that beat in several buckets counts once; Redis/Valkey HyperLogLog:
about 0.81 % standard error, https://valkey.io/commands/pfcount/).

Why small buckets.  A HyperLogLog cannot forget one element, so "the sessions
seen in the last 60 s" cannot be a sliding cutoff; what drops out is a whole
bucket.  Merging the ``n = window_s / bucket_s`` most recent buckets covers
between ``window_s - bucket_s`` and ``window_s`` seconds back from now, so a
session

* that keeps watching is always counted if ``window_s - bucket_s`` is longer
  than its beat interval (the slack absorbs late or throttled beats), and
* that stops leaves the count ``window_s - bucket_s`` to ``window_s`` after its
  last beat (plus one snapshot interval until the count is shown).

The defaults (``settings.viewers``) are 15 s buckets merged over 60 s: always
counted while beating every 30 s (15 s of slack), gone 45-60 s after the last
beat.  The alternative, minute buckets merged as current + previous, costs one
key per minute instead of four but keeps a departed viewer for 60-120 s; the
finer buckets cost four keys per channel-minute and one PFCOUNT over four keys
per snapshot, which is what "drop out within about 60 s" is worth.

Keys under ``settings.valkey.key_prefix``:

    viewers:hll:{channel_id}:{bucket}   HyperLogLog of session ids; expires after a few windows
    view:viewers:{channel_id}           the displayed count as a plain integer string, read by
                                        the ladder policy and the stream API (``viewers_key``);
                                        absent (read as 0) while the channel is offline
    lease:viewer-snapshot:{tick}        which processors worker reports a snapshot tick

The buckets sit outside ``view:`` on purpose: ``glasscast rebuild-views``
drops everything under ``view:`` and replays the view topics, and heartbeats
cannot be replayed into a time window that has passed, so a rebuild would
zero every live audience for up to a minute.  Outside it they survive a
rebuild, and the dropped ``view:viewers:`` keys come back at the next snapshot.

Everything above the adapter class is pure: times come in as arguments.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

import redis.asyncio as aioredis

from schemas.records.viewer import ViewerCountUpdated

HEARTBEAT_INTERVAL_S = 30  # docs/ARCHITECTURE.md, "Control plane": players beat about this often
HLL_TTL_WINDOWS = 3  # a bucket's key outlives the windows it can be merged into


def bucket_of(ts_ms: int, bucket_s: int) -> int:
    """The bucket a wall time falls in (buckets are counted from the epoch)."""
    return ts_ms // (bucket_s * 1000)


def recent_buckets(now_ms: int, bucket_s: int, window_s: int) -> list[int]:
    """The buckets merged into the count at ``now_ms``, oldest first, the current one last."""
    current = bucket_of(now_ms, bucket_s)
    return list(range(current - window_s // bucket_s + 1, current + 1))


def counted_for_s(bucket_s: int, window_s: int) -> tuple[int, int]:
    """How long after its last beat a session still counts: (at least, at most) seconds."""
    return window_s - bucket_s, window_s


def group_beats(beats: Iterable[tuple[str, int, str]], bucket_s: int,
                oldest_bucket: int) -> dict[tuple[str, int], set[str]]:
    """(channel, occurred_at_ms, session) triples grouped as {(channel, bucket): sessions}.

    Beats in buckets before ``oldest_bucket`` can no longer change any count
    (a replay of an old log), so they are left out.
    """
    groups: dict[tuple[str, int], set[str]] = {}
    for channel_id, occurred_at_ms, session_id in beats:
        bucket = bucket_of(occurred_at_ms, bucket_s)
        if bucket >= oldest_bucket:
            groups.setdefault((channel_id, bucket), set()).add(session_id)
    return groups


def snapshot(event_id: str, now_ms: int, channel_id: str, stream_id: str | None, viewers: int,
             bucket_s: int, window_s: int) -> ViewerCountUpdated:
    """The ViewerCountUpdated for one channel; ``stream_id`` None means it went offline."""
    return ViewerCountUpdated(event_id=event_id, occurred_at=now_ms, channel_id=channel_id, stream_id=stream_id,
                              viewers=viewers if stream_id is not None else 0, window_s=window_s, bucket_s=bucket_s)


def apply_viewer_count(count: ViewerCountUpdated) -> int | None:
    """The count a ViewerCountUpdated leaves in the view; None (no key) when the channel is offline.

    A snapshot is an absolute value, so applying it twice changes nothing and
    a replay in log order ends on the latest one.
    """
    if count.stream_id is None:
        return None
    return max(0, count.viewers)


def viewers_key(prefix: str, channel_id: str) -> str:
    """The Valkey key of a live channel's displayed viewer count."""
    return f"{prefix}view:viewers:{channel_id}"


def channel_of_key(key: bytes | str, prefix: str) -> str:
    """The channel id at the end of a ``{prefix}...:{channel_id}`` key."""
    text = key.decode() if isinstance(key, bytes) else key
    return text[len(prefix):]


# KEYS: the channel's live pointer, its displayed count.  ARGV: the snapshot's stream id, its count.
_SET_IF_LIVE = """
if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('set', KEYS[2], ARGV[2])
else redis.call('del', KEYS[2]) end
return 0
"""


class ViewerCounts:
    """The HyperLogLog buckets and the displayed counts in Valkey."""

    def __init__(self, client: aioredis.Redis, prefix: str, bucket_s: int, window_s: int) -> None:
        self.r = client
        self.prefix = prefix
        self.bucket_s = bucket_s
        self.window_s = window_s
        self._hll = f"{prefix}viewers:hll:"
        self._viewers = viewers_key(prefix, "")
        self._live = f"{prefix}view:channel-live:"

    def k_hll(self, channel_id: str, bucket: int) -> str:
        return f"{self._hll}{channel_id}:{bucket}"

    def k_viewers(self, channel_id: str) -> str:
        return f"{self._viewers}{channel_id}"

    async def add(self, groups: Mapping[tuple[str, int], Collection[str]]) -> None:
        """PFADD every group and refresh its expiry, in one round trip."""
        if not groups:
            return
        ttl_s = HLL_TTL_WINDOWS * self.window_s
        async with self.r.pipeline(transaction=False) as pipe:
            for (channel_id, bucket), sessions in groups.items():
                key = self.k_hll(channel_id, bucket)
                pipe.pfadd(key, *sessions)
                pipe.expire(key, ttl_s)
            await pipe.execute()

    async def count(self, channel_ids: Collection[str], now_ms: int) -> dict[str, int]:
        """Each channel's merged count over the recent buckets, in one round trip."""
        if not channel_ids:
            return {}
        buckets = recent_buckets(now_ms, self.bucket_s, self.window_s)
        async with self.r.pipeline(transaction=False) as pipe:
            for channel_id in channel_ids:
                pipe.pfcount(*[self.k_hll(channel_id, b) for b in buckets])
            counts = await pipe.execute()
        return {c: int(n) for c, n in zip(channel_ids, counts)}

    async def _scan(self, prefix: str) -> list[bytes]:
        return [key async for key in self.r.scan_iter(match=f"{prefix}*", count=1000)]

    async def live_channels(self) -> dict[str, str]:
        """Every live channel and its stream id (from the stream view's live pointers)."""
        keys = await self._scan(self._live)
        if not keys:
            return {}
        stream_ids = await self.r.mget(keys)
        return {channel_of_key(k, self._live): (s.decode() if isinstance(s, bytes) else s)
                for k, s in zip(keys, stream_ids) if s is not None}

    async def shown_channels(self) -> set[str]:
        """Channels that have a displayed count (live now, or not yet told they went offline)."""
        return {channel_of_key(k, self._viewers) for k in await self._scan(self._viewers)}

    async def store(self, channel_id: str, stream_id: str | None, viewers: int | None) -> None:
        """Set the displayed count while ``stream_id`` is the channel's live stream, else remove it.

        Checked against the stream view in one step, so a snapshot that arrives
        after its stream ended (or one replayed from an old broadcast) cannot
        bring back a count for a channel that is offline.
        """
        if stream_id is None or viewers is None:
            await self.r.delete(self.k_viewers(channel_id))
        else:
            await self.r.eval(_SET_IF_LIVE, 2, f"{self._live}{channel_id}", self.k_viewers(channel_id),
                              stream_id, str(viewers))

    async def shown(self, channel_id: str) -> int:
        """The displayed count (0 when there is none)."""
        raw = await self.r.get(self.k_viewers(channel_id))
        return int(raw) if raw is not None else 0

    async def lease(self, name: str, ttl_ms: int) -> bool:
        """Whether this caller is the first to claim ``name`` (SET NX); it lapses after ``ttl_ms``."""
        return bool(await self.r.set(f"{self.prefix}lease:{name}", b"1", nx=True, px=ttl_ms))
