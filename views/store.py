"""Views in Valkey: JSON documents by id plus lookup indexes, written atomically.

Key layout under ``settings.valkey.key_prefix`` (default ``gc:``):

    view:user:{id}                 JSON UserView
    view:user-by-name:{name}       user id (names compare case-insensitively)
    view:channel:{id}              JSON ChannelView
    view:channel-by-name:{name}    channel id
    view:channel-by-key:{sha256}   channel id: the ingest's stream-key lookup
    view:owner-channels:{user id}  set of channel ids
    view:stream:{id}               JSON StreamView (live or ended)
    view:channel-live:{channel id} the channel's live stream id, while live
    view:channel-configured:{channel id}  the stream configured ahead of going live, until it starts or ends
    view:stream-health:{id}        JSON: the latest StreamHealth of a live stream
    view:segments:..., view:renditions:...   the segment index (views/segments.py)
    view:directory:..., view:search:...      the live directory, categories and search (views/discovery.py)
    view:chat:..., view:follows:..., view:subs:...  chat room state (views/chat_rooms.py)
    view:follow:..., view:following:..., view:followers:...  the follow graph and its counts (views/follows.py)
    view:subscription:..., view:*-subscri...  paid subscriptions (views/subscriptions.py)
    claim:username:{name}          user id: reserves a name before its event exists
    claim:channel:{name}           channel id

Everything under ``view:`` is derived from the log and may be dropped and
rebuilt (`glasscast rebuild-views`).  Claims are the command side's guard for
unique names; the processor also writes them so a rebuilt Valkey has them too.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

import redis.asyncio as aioredis

from schemas.record import Record
from schemas.records.media import SegmentReady
from schemas.records.stream import StreamHealth
from views.channels import CHANNEL_FOLDS, ChannelView
from views.chat_rooms import CHAT_ROOM_RECORDS, ChatRooms
from views.clips import Clips
from views.discovery import Discovery
from views.fold import Applied, Fold
from views.follows import FOLLOW_RECORDS, Follows
from views.segments import SegmentIndex
from views.streams import CONFIGURED, STREAM_FOLDS, StreamView
from views.subscriptions import Subscriptions
from views.users import USER_FOLDS, UserView
from views.videos import Videos

V = TypeVar("V")


@dataclass(frozen=True)
class Aggregate(Generic[V]):
    """How one aggregate's view is kept: where an event names it, how it is read, folded and written."""

    id_of: Callable[[Any], str]  # the aggregate id in an event of ``folds``
    load: Callable[[str], Awaitable[V | None]]
    folds: Mapping[type[Record], Fold]
    put: Callable[[V | None, V], Awaitable[None]]  # (old, new): a write may clear what the old view indexed


def text(value: bytes | str) -> str:
    """A Valkey reply as str (replies are bytes unless the client decodes them)."""
    return value.decode() if isinstance(value, bytes) else value


def name_key(name: str) -> str:
    """The case-insensitive form names are unique under."""
    return name.strip().lower()


class ViewStore:
    """Read and write the user and channel views."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.r = client
        self.prefix = prefix
        self.views = f"{prefix}view:"
        self.segments = SegmentIndex(client, prefix)
        self.discovery = Discovery(client, prefix)
        self.chat_rooms = ChatRooms(client, prefix)
        self.follows = Follows(client, prefix, self.k_channel_live)
        self.videos = Videos(client, prefix)
        self.clips = Clips(client, prefix)
        self.subscriptions = Subscriptions(client, prefix)
        aggregates: tuple[Aggregate[Any], ...] = (
            Aggregate[UserView](lambda e: e.user_id, self.get_user, USER_FOLDS, self._put_user),
            Aggregate[ChannelView](lambda e: e.channel_id, self.get_channel, CHANNEL_FOLDS, self._put_channel),
            Aggregate[StreamView](lambda e: e.stream_id, self.get_stream, STREAM_FOLDS, self._put_stream),
        )
        #: The aggregate whose view each record folds into.
        self.aggregates: dict[type[Record], Aggregate[Any]] = {
            record: aggregate for aggregate in aggregates for record in aggregate.folds}

    # -- keys -------------------------------------------------------------
    def k_user(self, user_id: str) -> str:
        return f"{self.views}user:{user_id}"

    def k_user_by_name(self, name: str) -> str:
        return f"{self.views}user-by-name:{name_key(name)}"

    def k_channel(self, channel_id: str) -> str:
        return f"{self.views}channel:{channel_id}"

    def k_channel_by_name(self, name: str) -> str:
        return f"{self.views}channel-by-name:{name_key(name)}"

    def k_channel_by_key(self, key_hash: str) -> str:
        return f"{self.views}channel-by-key:{key_hash}"

    def k_owner_channels(self, user_id: str) -> str:
        return f"{self.views}owner-channels:{user_id}"

    def k_stream(self, stream_id: str) -> str:
        return f"{self.views}stream:{stream_id}"

    def k_channel_live(self, channel_id: str) -> str:
        return f"{self.views}channel-live:{channel_id}"

    def k_channel_configured(self, channel_id: str) -> str:
        return f"{self.views}channel-configured:{channel_id}"

    def k_stream_health(self, stream_id: str) -> str:
        return f"{self.views}stream-health:{stream_id}"

    def k_claim(self, kind: str, name: str) -> str:
        return f"{self.prefix}claim:{kind}:{name_key(name)}"

    # -- reads ------------------------------------------------------------
    async def _get(self, key: str, cls: Callable[[dict[str, Any]], Any]) -> Any:
        raw = await self.r.get(key)
        return None if raw is None else cls(json.loads(raw))

    async def get_user(self, user_id: str) -> UserView | None:
        return await self._get(self.k_user(user_id), UserView.from_json)  # type: ignore[no-any-return]

    async def get_user_by_name(self, name: str) -> UserView | None:
        user_id = await self.r.get(self.k_user_by_name(name))
        return None if user_id is None else await self.get_user(text(user_id))

    async def get_channel(self, channel_id: str) -> ChannelView | None:
        return await self._get(self.k_channel(channel_id), ChannelView.from_json)  # type: ignore[no-any-return]

    async def get_channel_by_key_hash(self, key_hash: str) -> ChannelView | None:
        channel_id = await self.r.get(self.k_channel_by_key(key_hash))
        return None if channel_id is None else await self.get_channel(text(channel_id))

    async def get_channel_by_name(self, name: str) -> ChannelView | None:
        channel_id = await self.r.get(self.k_channel_by_name(name))
        return None if channel_id is None else await self.get_channel(text(channel_id))

    async def get_stream(self, stream_id: str) -> StreamView | None:
        return await self._get(self.k_stream(stream_id), StreamView.from_json)  # type: ignore[no-any-return]

    async def live_stream_of(self, channel_id: str) -> StreamView | None:
        stream_id = await self.r.get(self.k_channel_live(channel_id))
        return None if stream_id is None else await self.get_stream(text(stream_id))

    async def configured_stream_of(self, channel_id: str) -> StreamView | None:
        stream_id = await self.r.get(self.k_channel_configured(channel_id))
        return None if stream_id is None else await self.get_stream(text(stream_id))

    async def stream_health(self, stream_id: str) -> dict[str, Any] | None:
        raw = await self.r.get(self.k_stream_health(stream_id))
        return None if raw is None else json.loads(raw)

    async def channels_of(self, user_id: str) -> list[ChannelView]:
        ids = sorted(text(m) for m in await self.r.smembers(self.k_owner_channels(user_id)))
        found = [await self.get_channel(i) for i in ids]
        return [c for c in found if c is not None]

    # -- claims (command side) ---------------------------------------------
    async def claim(self, kind: str, name: str, owner_id: str) -> bool:
        """Reserve a unique name; True if it is now ours (or already was)."""
        key = self.k_claim(kind, name)
        if await self.r.set(key, owner_id, nx=True):
            return True
        current = await self.r.get(key)
        return current is not None and text(current) == owner_id

    async def claimed(self, kind: str, name: str) -> str | None:
        """Who holds a name claim, if anyone."""
        current = await self.r.get(self.k_claim(kind, name))
        return None if current is None else text(current)

    async def release(self, kind: str, name: str, owner_id: str) -> None:
        """Give a claim back if it is still ours (the command failed)."""
        key = self.k_claim(kind, name)
        current = await self.r.get(key)
        if current is not None and text(current) == owner_id:
            await self.r.delete(key)

    # -- writes (processor side) --------------------------------------------
    async def apply(self, event: Applied[Record]) -> bool:
        """Fold one event into its views; True if one changed."""
        changed = await self._fold(event)
        if type(event.value) in FOLLOW_RECORDS:  # after the chat rooms' fold of the same event (views/follows.py)
            changed = await self.follows.apply(event) or changed
        changed = await self.videos.apply(event) or changed
        changed = await self.clips.apply(event) or changed
        changed = await self.subscriptions.apply(event) or changed
        # Discovery reads the views just written, and runs on a redelivery too: its write may be
        # the one a crash cut off after the view's own.
        return await self.discovery.apply(event, self) or changed

    async def _fold(self, event: Applied[Record]) -> bool:
        v = event.value
        aggregate = self.aggregates.get(type(v))
        if aggregate is not None:
            return await self._load_fold_put(aggregate, event)
        if type(v) in CHAT_ROOM_RECORDS:
            return await self.chat_rooms.apply(v)
        if isinstance(v, StreamHealth):
            return await self._put_health(event.offset, v)
        if isinstance(v, SegmentReady):
            return await self.segments.apply(v)
        return False

    @staticmethod
    async def _load_fold_put(aggregate: Aggregate[V], event: Applied[Record]) -> bool:
        """Fold ``event`` into its aggregate's view and write it if it changed; True if it did."""
        old = await aggregate.load(aggregate.id_of(event.value))
        new = aggregate.folds[type(event.value)](event, old)
        if new is None or new == old:
            return False
        await aggregate.put(old, new)
        return True

    async def _put_stream(self, old: StreamView | None, new: StreamView) -> None:
        # Only this stream's own change clears a channel pointer to it.
        clear_if_mine = "if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('del', KEYS[1]) end return 0"
        async with self.r.pipeline(transaction=True) as tx:
            tx.set(self.k_stream(new.id), json.dumps(new.to_json(), sort_keys=True))
            if new.status == CONFIGURED:
                tx.set(self.k_channel_configured(new.channel_id), new.id)
            else:
                tx.eval(clear_if_mine, 1, self.k_channel_configured(new.channel_id), new.id)
            if new.live:
                tx.set(self.k_channel_live(new.channel_id), new.id)
            else:
                tx.eval(clear_if_mine, 1, self.k_channel_live(new.channel_id), new.id)
            if new.ended:
                tx.delete(self.k_stream_health(new.id))
            await tx.execute()

    async def _put_health(self, offset: int, health: StreamHealth) -> bool:
        """Keep the latest health sample of a live stream (the creator dashboard reads it)."""
        stream = await self.get_stream(health.stream_id)
        if stream is None or not stream.live:
            return False
        sample: dict[str, Any] = {**health.to_avro(), "offset": offset}  # the record as the log carries it
        await self.r.set(self.k_stream_health(stream.id), json.dumps(sample, sort_keys=True, default=str))
        return True

    async def _put_user(self, old: UserView | None, new: UserView) -> None:
        async with self.r.pipeline(transaction=True) as tx:
            tx.set(self.k_user(new.id), json.dumps(new.to_json(), sort_keys=True))
            tx.set(self.k_user_by_name(new.username), new.id)
            tx.set(self.k_claim("username", new.username), new.id)
            await tx.execute()

    async def _put_channel(self, old: ChannelView | None, new: ChannelView) -> None:
        async with self.r.pipeline(transaction=True) as tx:
            tx.set(self.k_channel(new.id), json.dumps(new.to_json(), sort_keys=True))
            tx.set(self.k_channel_by_name(new.name), new.id)
            tx.set(self.k_claim("channel", new.name), new.id)
            tx.sadd(self.k_owner_channels(new.owner_user_id), new.id)
            if old is not None and old.stream_key_hash != new.stream_key_hash:
                tx.delete(self.k_channel_by_key(old.stream_key_hash))
            tx.set(self.k_channel_by_key(new.stream_key_hash), new.id)
            await tx.execute()

    # -- maintenance ------------------------------------------------------
    async def drop_views(self) -> int:
        """Delete every derived key; returns how many."""
        deleted = 0
        async for key in self.r.scan_iter(match=f"{self.views}*", count=1000):
            deleted += int(await self.r.delete(key))
        return deleted

    async def dump(self) -> dict[str, Any]:
        """Every view key and its value, for comparing two builds of the views."""
        out: dict[str, Any] = {}
        async for key in self.r.scan_iter(match=f"{self.views}*", count=1000):
            kind = await self.r.type(key)
            if kind == b"set":
                out[text(key)] = sorted(text(m) for m in await self.r.smembers(key))
            elif kind == b"zset":
                scored = cast("list[tuple[bytes, float]]", await self.r.zrange(key, 0, -1, withscores=True))
                out[text(key)] = [(text(m), s) for m, s in scored]
            elif kind == b"hash":
                out[text(key)] = {text(k): text(v) for k, v in sorted((await self.r.hgetall(key)).items())}
            else:
                raw = await self.r.get(key)
                out[text(key)] = text(raw) if raw is not None else None
        return dict(sorted(out.items()))


VIEW_TOPICS: tuple[str, ...] = ("users", "channels", "stream.lifecycle", "media.segments", "viewer.counts",
                                 "chat.moderation", "social.follows", "billing.subscriptions", "videos", "clips")

