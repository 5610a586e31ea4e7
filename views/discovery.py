"""Discovery views in Valkey: the live directory, category totals and the search index.

Keys under ``{prefix}view:`` (so ``glasscast rebuild-views`` drops and rebuilds them):

    directory:stream:{stream_id}        JSON DirectoryEntry, while the stream is live
    directory:audience:{stream_id}      JSON Audience: the latest viewer count of a stream not yet ended
    directory:channel:{channel_id}      set of the channel's listed streams (a channel event renames them all)
    directory:by-{sort}                 lexicographic sorted set of every live stream (views/directory.py)
    directory:by-{sort}:{category key}  the same, per category
    directory:category-names            set of every category spelling ever used by a channel or a live stream
    directory:category-live             hash category key -> live streams
    directory:category-viewers          hash category key -> viewers of its live streams
    search:doc:{channel_id}             JSON SearchDoc (views/search.py)
    search:token:{token}                hash channel id -> weight of the token in that channel's document
    search:tokens                       lexicographic sorted set of every indexed token, for prefixes

Every entry and document is recomputed from the views it derives from (the
stream, its channel, its latest count), never patched by the event at hand, so
a redelivered event rewrites what is already there and a replay that
interleaves the topics differently ends in the same keys.  Each recomputation
is one optimistic transaction (WATCH the inputs, MULTI the writes, retry if an
input moved; https://valkey.io/topics/transactions/), so processors on several
workers cannot interleave a read and a write of the same stream or channel.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, cast

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError

from schemas.record import Record
from schemas.records.channel import ChannelCreated, ChannelUpdated
from schemas.records.stream import StreamEnded, StreamStarted, StreamUpdated
from schemas.records.viewer import ViewerCountUpdated
from views.channels import ChannelView
from views.directory import Audience, DirectoryEntry, apply_count, category_deltas, live_entry, placements, stream_of
from views.fold import Applied
from views.search import MAX_PREFIX_EXPANSIONS, MIN_PREFIX_LENGTH, SearchDoc, build_doc, prefix_range, rank, text_scores
from views.streams import StreamView
from views.transactions import multi

# KEYS: a token's postings, the token set.  ARGV: the channel id, the token.
_DROP_POSTING = """
redis.call('hdel', KEYS[1], ARGV[1])
if redis.call('hlen', KEYS[1]) == 0 then redis.call('zrem', KEYS[2], ARGV[2]) end
return 0
"""


class ViewKeys(Protocol):
    """The keys of the views discovery derives from (ViewStore's)."""

    def k_stream(self, stream_id: str) -> str: ...
    def k_channel(self, channel_id: str) -> str: ...
    def k_channel_live(self, channel_id: str) -> str: ...


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _load(raw: bytes | str | None, cls: Any) -> Any:
    return None if raw is None else cls.from_json(json.loads(raw))


def _dump(view: Any) -> str:
    return json.dumps(view.to_json(), sort_keys=True)


class Discovery:
    """Keep and read the directory, category totals and search index."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.r = client
        self.d = f"{prefix}view:directory:"
        self.s = f"{prefix}view:search:"

    # -- keys -------------------------------------------------------------
    def k_entry(self, stream_id: str) -> str:
        return f"{self.d}stream:{stream_id}"

    def k_audience(self, stream_id: str) -> str:
        return f"{self.d}audience:{stream_id}"

    def k_channel_streams(self, channel_id: str) -> str:
        return f"{self.d}channel:{channel_id}"

    def k_sorted(self, sort: str, category_key: str | None) -> str:
        return f"{self.d}by-{sort}" if category_key is None else f"{self.d}by-{sort}:{category_key}"

    def k_category(self, what: str) -> str:
        return f"{self.d}category-{what}"

    def k_doc(self, channel_id: str) -> str:
        return f"{self.s}doc:{channel_id}"

    def k_token(self, token: str) -> str:
        return f"{self.s}token:{token}"

    @property
    def k_tokens(self) -> str:
        return f"{self.s}tokens"

    # -- writes (processor side) --------------------------------------------
    async def apply(self, event: Applied[Record], views: ViewKeys) -> bool:
        """Bring discovery up to date with an event the views have already folded; True if it changed."""
        v = event.value
        if isinstance(v, (StreamStarted, StreamUpdated, StreamEnded)):
            stream_id = v.stream_id
            changed = await self._sync_stream(views, stream_id)
            stream: StreamView | None = _load(await self.r.get(views.k_stream(stream_id)), StreamView)
            return (stream is not None and await self._sync_channel(views, stream.channel_id)) or changed
        if isinstance(v, (ChannelCreated, ChannelUpdated)):
            channel_id = v.channel_id
            changed = await self._sync_channel(views, channel_id)
            # Streams applied before their channel (a replay reads the topics in any interleaving) get its
            # name, and a rename reaches every listed stream of the channel, not only the one it points to.
            listed = {_text(m) for m in await self.r.smembers(self.k_channel_streams(channel_id))}
            live = await self.r.get(views.k_channel_live(channel_id))
            if live is not None:
                listed.add(_text(live))
            for stream_id in sorted(listed):
                changed = await self._sync_stream(views, stream_id) or changed
            return changed
        if isinstance(v, ViewerCountUpdated) and v.stream_id is not None:
            return await self._sync_stream(views, v.stream_id, (event.offset, v.viewers))
        return False

    async def _transact(self, body: Callable[[Pipeline], Awaitable[bool]]) -> bool:
        """Run ``body`` (WATCH and read, then MULTI and queue writes, or return False) until EXEC holds."""
        async with self.r.pipeline(transaction=True) as pipe:
            while True:
                try:
                    if not await body(pipe):
                        return False
                    await pipe.execute()
                    return True
                except WatchError:
                    continue  # an input moved between our read and our write: read again

    async def _sync_stream(self, views: ViewKeys, stream_id: str, count: tuple[int, int] | None = None) -> bool:
        """Recompute a stream's directory entry (after folding ``count``, an (offset, viewers), into its audience)."""
        k_stream, k_entry, k_audience = views.k_stream(stream_id), self.k_entry(stream_id), self.k_audience(stream_id)

        async def body(pipe: Pipeline) -> bool:
            await pipe.watch(k_stream, k_entry, k_audience)
            raw_stream, raw_entry, raw_audience = await pipe.mget(k_stream, k_entry, k_audience)
            stream: StreamView | None = _load(raw_stream, StreamView)
            channel = None
            if stream is not None:
                await pipe.watch(views.k_channel(stream.channel_id))
                channel = _load(await pipe.get(views.k_channel(stream.channel_id)), ChannelView)
            old_audience: Audience | None = _load(raw_audience, Audience)
            audience = old_audience if count is None else apply_count(count[0], count[1], old_audience)
            if stream is not None and stream.ended:
                audience = None  # a count arriving after the end must not outlive it
            old: DirectoryEntry | None = _load(raw_entry, DirectoryEntry)
            new = live_entry(stream, channel, audience.viewers if audience is not None else 0)
            if new == old and audience == old_audience:
                if new is not None and new.category:
                    await pipe.sadd(self.k_category("names"), new.category)
                return False
            multi(pipe)
            self._write_entry(pipe, stream_id, old, new)
            if audience is None:
                pipe.delete(k_audience)
            elif audience != old_audience:
                pipe.set(k_audience, _dump(audience))
            return True

        return await self._transact(body)

    def _write_entry(self, pipe: Pipeline, stream_id: str, old: DirectoryEntry | None,
                     new: DirectoryEntry | None) -> None:
        before, after = placements(old), placements(new)
        for sort, cat, m in before - after:
            pipe.zrem(self.k_sorted(sort, cat), m)
        for sort, cat, m in after - before:
            pipe.zadd(self.k_sorted(sort, cat), {m: 0})
        for cat, (live, viewers) in category_deltas(old, new).items():
            pipe.hincrby(self.k_category("live"), cat, live)
            pipe.hincrby(self.k_category("viewers"), cat, viewers)
        if new is None:
            pipe.delete(self.k_entry(stream_id))
        else:
            pipe.set(self.k_entry(stream_id), _dump(new))
            pipe.sadd(self.k_channel_streams(new.channel_id), stream_id)
            if new.category:
                pipe.sadd(self.k_category("names"), new.category)
        if old is not None and (new is None or new.channel_id != old.channel_id):
            pipe.srem(self.k_channel_streams(old.channel_id), stream_id)

    async def _sync_channel(self, views: ViewKeys, channel_id: str) -> bool:
        """Recompute a channel's search document and its postings."""
        k_channel, k_live, k_doc = views.k_channel(channel_id), views.k_channel_live(channel_id), self.k_doc(channel_id)

        async def body(pipe: Pipeline) -> bool:
            await pipe.watch(k_channel, k_live, k_doc)
            raw_channel, live_id, raw_doc = await pipe.mget(k_channel, k_live, k_doc)
            channel: ChannelView | None = _load(raw_channel, ChannelView)
            stream = None
            if live_id is not None:
                await pipe.watch(views.k_stream(_text(live_id)))
                stream = _load(await pipe.get(views.k_stream(_text(live_id))), StreamView)
            old: SearchDoc | None = _load(raw_doc, SearchDoc)
            new = build_doc(channel, stream)
            if new == old:
                if channel is not None and channel.category:
                    await pipe.sadd(self.k_category("names"), channel.category)
                return False
            multi(pipe)
            before = old.tokens if old is not None else {}
            after = new.tokens if new is not None else {}
            for token in before.keys() - after.keys():
                pipe.eval(_DROP_POSTING, 2, self.k_token(token), self.k_tokens, channel_id, token)
            for token, weight in after.items():
                if before.get(token) != weight:
                    pipe.hset(self.k_token(token), channel_id, weight)
                    pipe.zadd(self.k_tokens, {token: 0})
            if new is None:
                pipe.delete(k_doc)
            else:
                pipe.set(k_doc, _dump(new))
            if channel is not None and channel.category:
                pipe.sadd(self.k_category("names"), channel.category)
            return True

        return await self._transact(body)

    # -- reads (gateway side) -------------------------------------------------
    async def page(self, sort: str, category_key: str | None, after: str | None,
                   limit: int) -> tuple[list[DirectoryEntry], str | None]:
        """Up to ``limit`` live streams after the member ``after``, and the last member if more follow."""
        start = b"(" + after.encode() if after is not None else b"-"
        found = [_text(m) for m in cast("list[bytes]", await self.r.zrange(
            self.k_sorted(sort, category_key), start, b"+", bylex=True, offset=0, num=limit + 1))]
        members = found[:limit]
        raw = await self.r.mget([self.k_entry(stream_of(m)) for m in members]) if members else []
        # An entry gone between the two reads ended in between: the page is one shorter.
        entries = [DirectoryEntry.from_json(json.loads(r)) for r in raw if r is not None]
        return entries, (members[-1] if len(found) > limit else None)

    async def categories(self) -> tuple[list[str], dict[str, int], dict[str, int]]:
        """Every category spelling, and live streams and viewers per category key."""
        async with self.r.pipeline(transaction=False) as pipe:
            pipe.smembers(self.k_category("names"))
            pipe.hgetall(self.k_category("live"))
            pipe.hgetall(self.k_category("viewers"))
            names, live, viewers = await pipe.execute()
        return ([_text(n) for n in names], {_text(k): int(n) for k, n in live.items()},
                {_text(k): int(n) for k, n in viewers.items()})

    async def search(self, query: list[str], live_only: bool, limit: int) -> list[dict[str, Any]]:
        """Channels matching every query token, ranked (views/search.py)."""
        async with self.r.pipeline(transaction=False) as pipe:
            for q in query:
                if len(q) >= MIN_PREFIX_LENGTH:
                    low, high = prefix_range(q)
                    pipe.zrange(self.k_tokens, low, high, bylex=True, offset=0, num=MAX_PREFIX_EXPANSIONS)
            expansions = await pipe.execute()
        tokens = list(dict.fromkeys([*query, *(_text(t) for found in expansions for t in found)]))
        async with self.r.pipeline(transaction=False) as pipe:
            for token in tokens:
                pipe.hgetall(self.k_token(token))
            postings = {t: {_text(c): int(w) for c, w in p.items()} for t, p in zip(tokens, await pipe.execute())}
        scores = text_scores(query, postings)
        if not scores:
            return []
        ids = sorted(scores)
        docs = [SearchDoc.from_json(json.loads(r)) for r in await self.r.mget([self.k_doc(c) for c in ids])
                if r is not None]
        live = [d.stream_id for d in docs if d.stream_id is not None]
        viewers: dict[str, int] = {}
        if live:
            for stream_id, raw in zip(live, await self.r.mget([self.k_entry(s) for s in live])):
                if raw is not None:
                    viewers[stream_id] = int(json.loads(raw)["viewers"])
        return rank(docs, scores, viewers, live_only, limit)
