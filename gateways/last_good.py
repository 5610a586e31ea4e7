"""The last good rendering of each live playlist, served for a short while when Valkey stops answering.

Playlists are rendered from views in Valkey (gateways/hls.py), so a Valkey
outage would turn every player's next playlist reload into a 503, and
players give up after a few failed reloads.  Segments need no Valkey (the
origin cache and the blob store serve them), so what a player lacks to keep
playing through a brief outage is its playlist.  The origin keeps the last
playlist it rendered for each path and, while Valkey does not answer, serves
it for up to ``max_age_s`` after it was rendered: the player sees a live
playlist that does not advance (no new segments are indexed during the
outage anyway) and keeps reloading instead of failing.  After ``max_age_s``
the answer is the 503 again, so a long outage is not hidden.

A playlist carries its player's token on every URI, so the entry keeps the
token it was rendered with and ``body_for`` swaps in the asking player's one
(which the origin has checked first).  Entries are bounded in number and the
oldest go first; nothing here reads the clock but through ``clock``.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Rendered:
    """One rendered playlist: its body, the token on its URIs, its Cache-Control and when it was made."""

    body: str
    token: str
    cache_control: str
    rendered_at: float

    def body_for(self, token: str) -> str:
        """The body with ``token`` on its URIs instead of the one it was rendered with."""
        if token == self.token or not self.token:
            return self.body
        return self.body.replace(f"token={self.token}", f"token={token}")


class LastGood:
    """Rendered playlists by request path, usable for ``max_age_s`` after rendering."""

    def __init__(self, max_age_s: float, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        if max_age_s < 0 or max_entries < 1:
            raise ValueError("max_age_s must be >= 0 and max_entries >= 1")
        self.max_age_s = max_age_s
        self.max_entries = max_entries
        self.clock = clock
        self._entries: collections.OrderedDict[str, Rendered] = collections.OrderedDict()
        self.served = 0  # stale answers given (a metric for tests and operators)

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, key: str, body: str, token: str, cache_control: str) -> None:
        entries = self._entries
        entries[key] = Rendered(body, token, cache_control, self.clock())
        entries.move_to_end(key)
        while len(entries) > self.max_entries:
            entries.popitem(last=False)

    def get(self, key: str) -> Rendered | None:
        """The last rendering of ``key`` if it is recent enough to stand in for a fresh one."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self.clock() - entry.rendered_at > self.max_age_s:
            del self._entries[key]
            return None
        return entry

    def age_s(self, entry: Rendered) -> float:
        return max(0.0, self.clock() - entry.rendered_at)
