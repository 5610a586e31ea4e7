"""Recommended live streams for the signed-in viewer.

    GET /v1/recommendations?limit=     (a signed-in user; 401 otherwise)

``Recommender.for_viewer`` gathers what ``views/recommend.py`` ranks:

* the live streams, most watched first, from the directory (at most
  ``CANDIDATES_MAX``: what a row of recommendations could ever show);
* the viewer's follows (the ``SEED_FOLLOWS`` newest are co-watching seeds)
  and which of the live channels they follow, own or are banned from chat in,
  all from the views in Valkey, so the exclusions hold whatever the analytics
  store says;
* each live channel's co-watching score for this viewer: the
  channel-to-channel table this gateway keeps (``Services.cowatch``,
  computed again every few minutes) summed over the viewer's seeds, their
  follows and the channels they watched (one read of the analytics store,
  views/analytics/cowatch.py).

The analytics store is a nice-to-have here: if it does not answer, the
list is the cold-start one (by category and stream popularity) and the answer
says ``"personalized": false``, rather than the directory page losing a row.
Each request reads the analytics store once, so a user may ask
``REQUESTS_PER_MINUTE`` times a minute across every gateway (429 after).
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Collection, Sequence

import redis.asyncio as aioredis
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateways.chat.ratelimit import RateLimiter
from gateways.directory import limit, params
from gateways.errors import TooManyRequests
from gateways.services import services
from views.analytics.cowatch import NeighbourCache, history
from views.analytics.errors import AnalyticsError
from views.analytics.store import AnalyticsStore
from views.chat_rooms import RoomKeys
from views.directory import VIEWERS, DirectoryEntry
from views.follows import FOLLOWING
from views.recommend import Recommendation, cowatch_scores, one_per_channel, rank, seed_weights
from views.store import ViewStore, text

log = logging.getLogger("glasscast.gateway.recommendations")

RECOMMEND_LIMIT, RECOMMEND_MAX_LIMIT = 12, 50
REQUESTS_PER_MINUTE = 60  # per user, every gateway together
REQUEST_WINDOW_MS = 60_000
CANDIDATES_MAX = 500  # live streams considered, most watched first
SEED_FOLLOWS = 200  # the newest follows that seed co-watching


class Recommender:
    """Reads the views and the analytics store and ranks live streams for one viewer."""

    def __init__(self, views: ViewStore, redis: aioredis.Redis, prefix: str, store: AnalyticsStore,
                 cowatch: NeighbourCache) -> None:
        self.views = views
        self.r = redis
        self.prefix = prefix
        self.store = store
        self.cowatch = cowatch

    async def excluded(self, user_id: str, live: Sequence[DirectoryEntry]) -> set[str]:
        """The live channels never to recommend to ``user_id``: followed, owned, or banned from their chat."""
        ids = [e.channel_id for e in live]
        if not ids:
            return set()
        states = await self.views.follows.states(user_id, ids)
        async with self.r.pipeline(transaction=False) as pipe:
            pipe.smembers(self.views.k_owner_channels(user_id))
            for channel_id in ids:
                pipe.sismember(RoomKeys(self.prefix, channel_id).chat("bans"), user_id)
            owned, *banned = await pipe.execute()
        out = {text(c) for c in owned}
        out.update(c for c, s in zip(ids, states, strict=True) if s is not None and s.following)
        out.update(c for c, b in zip(ids, banned, strict=True) if b)
        return out

    async def scores(self, user_id: str, candidates: Collection[str], now_ms: int) -> dict[str, float] | None:
        """Each candidate's co-watching score for the viewer; None when the analytics store did not answer."""
        follows, _ = await self.views.follows.page(FOLLOWING, user_id, None, SEED_FOLLOWS)
        tuning = self.cowatch.tuning
        try:
            table = await self.cowatch.get(now_ms)
            watched = await history(self.store, user_id, now_ms, tuning)
        except AnalyticsError as exc:
            log.warning("recommendations without co-watching: %s", exc)
            return None
        return cowatch_scores(seed_weights(watched, [f.id for f in follows], tuning), table, candidates)

    async def for_viewer(self, user_id: str, count: int, now_ms: int) -> tuple[list[Recommendation], bool]:
        """Up to ``count`` recommendations, and whether co-watching was consulted (False: cold start only)."""
        entries, _ = await self.views.discovery.page(VIEWERS, None, None, CANDIDATES_MAX)
        live = one_per_channel(entries)
        excluded = await self.excluded(user_id, live)
        candidates = {e.channel_id for e in live} - excluded
        scores = await self.scores(user_id, candidates, now_ms) if candidates else {}
        _, _, category_viewers = await self.views.discovery.categories()
        return rank(live, scores or {}, category_viewers, excluded, count), scores is not None


class RecommendLimiter(RateLimiter):
    """Recommendation requests per user in a sliding minute."""

    def __init__(self, client: aioredis.Redis, key_prefix: str) -> None:
        super().__init__(client, key_prefix)
        self.prefix = f"{key_prefix}recommend:rate:"


async def recommendations(request: Request) -> JSONResponse:
    svc = services(request)
    principal = await svc.user_principal(request)
    allowed, wait_ms = await RecommendLimiter(svc.redis, svc.settings.valkey.key_prefix).allow(
        "requests", principal.user_id, svc.now_ms(), REQUEST_WINDOW_MS, REQUESTS_PER_MINUTE, uuid.uuid4().hex)
    if not allowed:
        wait_s = max(1, math.ceil(wait_ms / 1000))
        raise TooManyRequests(f"too many recommendation requests: at most {REQUESTS_PER_MINUTE} a minute; "
                              f"try again in {wait_s} s", retry_after_s=wait_s)
    data = params(request.query_params, {"limit"})
    count = limit(data, RECOMMEND_LIMIT, RECOMMEND_MAX_LIMIT)
    recommender = Recommender(svc.views, svc.redis, svc.settings.valkey.key_prefix, svc.analytics, svc.cowatch)
    picks, personalized = await recommender.for_viewer(principal.user_id, count, svc.now_ms())
    return JSONResponse({"recommendations": [p.public() for p in picks], "personalized": personalized},
                        headers={"Cache-Control": "private, no-store"})


routes = [
    Route("/v1/recommendations", recommendations, methods=["GET"]),
]
