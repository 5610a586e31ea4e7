"""The HLS origin's last good playlists and the mapping of dependency errors (gateways/last_good.py, errors.py)."""

from __future__ import annotations

import redis.exceptions as redis_errors

from gateways.errors import ApiError, Unavailable, dependency_error
from gateways.last_good import LastGood


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_rendering_stands_in_until_it_is_too_old() -> None:
    clock = Clock()
    cache = LastGood(30.0, 10, clock)
    cache.put("/hls/s/source/index.m3u8", "#EXTM3U\n1.m4s?token=AAA\n", "AAA", "public, max-age=1")
    clock.now += 29
    entry = cache.get("/hls/s/source/index.m3u8")
    assert entry is not None and cache.age_s(entry) == 29
    # Each player gets its own token on every URI.
    assert entry.body_for("BBB") == "#EXTM3U\n1.m4s?token=BBB\n"
    assert entry.body_for("AAA") == entry.body
    clock.now += 2
    assert cache.get("/hls/s/source/index.m3u8") is None and len(cache) == 0


def test_entries_are_bounded_oldest_first() -> None:
    cache = LastGood(30.0, 2, Clock())
    for key in ("a", "b", "a", "c"):
        cache.put(key, key, "", "public, max-age=1")
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None


def test_valkey_errors_are_503_with_a_reason_and_others_stay_500() -> None:
    for exc in (redis_errors.ConnectionError("Connection refused"), redis_errors.TimeoutError("Timeout reading"),
                redis_errors.BusyLoadingError("LOADING"), redis_errors.ReadOnlyError("READONLY")):
        answer = dependency_error(exc)
        assert isinstance(answer, Unavailable) and answer.status == 503
        assert answer.extra["reason"] == "valkey_unavailable" and answer.headers == {"Retry-After": "1"}
    bug = dependency_error(redis_errors.ResponseError("WRONGTYPE"))
    assert type(bug) is ApiError and bug.status == 500
