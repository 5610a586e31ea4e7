"""The origin cache's pure parts (gateways/origin_cache.py): the byte-bounded LRU and single flight."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from starlette.responses import FileResponse

from gateways.origin_cache import ByteLRU, OriginCache, OriginObject


def obj(size: int, tag: int = 0) -> OriginObject:
    return OriginObject.from_stat(bytes([tag]) * size, 1_700_000_000.25 + tag)


def test_validators_match_file_response(tmp_path: Path) -> None:
    path = tmp_path / "00000000.m4s"
    path.write_bytes(os.urandom(1000))
    st = os.stat(path)
    response = FileResponse(path, stat_result=st)
    mine = OriginObject.from_stat(path.read_bytes(), st.st_mtime)
    assert (mine.etag, mine.last_modified) == (response.headers["etag"], response.headers["last-modified"])


def test_lru_is_bounded_by_bytes_and_evicts_least_recently_used() -> None:
    lru = ByteLRU(max_bytes=300, max_object_bytes=300)
    for key in "abc":
        assert lru.put(key, obj(100))
    assert lru.get("a") is not None  # now the most recent
    assert lru.put("d", obj(100))
    assert "b" not in lru and {"a", "c", "d"} == {k for k in "abcd" if k in lru}
    assert lru.size_bytes == 300 and lru.evictions == 1
    assert lru.put("e", obj(250))
    assert [k for k in "acde" if k in lru] == ["e"] and lru.size_bytes == 250


def test_lru_replaces_a_key_and_refuses_objects_over_its_share() -> None:
    lru = ByteLRU(max_bytes=800)  # objects over 1/8 (100 bytes) are not kept
    assert lru.put("a", obj(100, 1)) and lru.put("a", obj(50, 2))
    assert lru.size_bytes == 50 and len(lru) == 1 and lru.get("a") == obj(50, 2)
    assert not lru.put("big", obj(101)) and "big" not in lru
    assert not ByteLRU(max_bytes=0).put("a", obj(1))
    with pytest.raises(ValueError, match="max_bytes"):
        ByteLRU(max_bytes=-1)


class Loader:
    """A store read that waits for the test to release it."""

    def __init__(self, result: OriginObject | Exception) -> None:
        self.result = result
        self.calls = 0
        self.release = asyncio.Event()

    async def __call__(self) -> OriginObject:
        self.calls += 1
        await self.release.wait()
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


async def _joined(cache: OriginCache, collapsed: int) -> None:
    while cache.collapsed < collapsed:
        await asyncio.sleep(0)


async def test_concurrent_requests_share_one_load_and_later_ones_hit_memory() -> None:
    cache, loader = OriginCache(max_bytes=10_000), Loader(obj(100))
    waiters = [asyncio.create_task(cache.get("k", loader)) for _ in range(50)]
    await _joined(cache, 49)
    loader.release.set()
    assert {id(o) for o in await asyncio.gather(*waiters)} == {id(loader.result)}
    assert await cache.get("k", loader) is loader.result
    assert (loader.calls, cache.loads, cache.collapsed, cache.hits) == (1, 1, 49, 1)


async def test_errors_reach_every_waiter_and_are_not_kept() -> None:
    cache, missing = OriginCache(max_bytes=10_000), Loader(KeyError("no such object"))
    waiters = [asyncio.create_task(cache.get("k", missing)) for _ in range(10)]
    await _joined(cache, 9)
    missing.release.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, KeyError) for r in results) and missing.calls == 1
    found = Loader(obj(10))
    found.release.set()
    assert await cache.get("k", found) is found.result and found.calls == 1


async def test_a_cancelled_request_does_not_cancel_the_read_for_the_others() -> None:
    cache, loader = OriginCache(max_bytes=10_000), Loader(obj(10))
    first = asyncio.create_task(cache.get("k", loader))
    second = asyncio.create_task(cache.get("k", loader))
    await _joined(cache, 1)
    first.cancel()
    loader.release.set()
    assert await second is loader.result
    with pytest.raises(asyncio.CancelledError):
        await first
    assert "k" in cache.memory


async def test_unkept_objects_are_shared_but_read_again_next_time() -> None:
    cache, loader = OriginCache(max_bytes=10_000), Loader(obj(10))
    loader.release.set()
    assert await cache.get("thumb", loader, keep=False) is loader.result
    assert await cache.get("thumb", loader, keep=False) is loader.result
    assert loader.calls == 2 and "thumb" not in cache.memory and cache.hits == 0


async def test_a_zero_budget_keeps_nothing_but_still_collapses() -> None:
    cache, loader = OriginCache(max_bytes=0), Loader(obj(10))
    waiters = [asyncio.create_task(cache.get("k", loader)) for _ in range(5)]
    await _joined(cache, 4)
    loader.release.set()
    await asyncio.gather(*waiters)
    assert loader.calls == 1 and len(cache.memory) == 0
