"""The ledger's time buckets: leaderboard and bits-by-day keys expire at a time their bucket fixes (pure)."""

from __future__ import annotations

import datetime as dt

from views.ledger_store import BOARD_TTL_S, DAY_KEPT_S, bucket_expiry_ms, buckets, day_expiry_ms, day_of


def ms(*args: int) -> int:
    return int(dt.datetime(*args, tzinfo=dt.UTC).timestamp() * 1000)


def test_a_bucket_expires_from_its_start_whenever_in_it_the_cheer_came() -> None:
    thursday_noon, thursday_late = ms(2026, 12, 3, 12, 0), ms(2026, 12, 3, 23, 59, 59)
    for period in ("day", "week", "month"):
        assert bucket_expiry_ms(period, thursday_noon) == bucket_expiry_ms(period, thursday_late)
    assert bucket_expiry_ms("day", thursday_noon) == ms(2026, 12, 3) + BOARD_TTL_S["day"] * 1000
    assert bucket_expiry_ms("week", thursday_noon) == ms(2026, 11, 30) + BOARD_TTL_S["week"] * 1000  # ISO Monday
    assert bucket_expiry_ms("month", thursday_noon) == ms(2026, 12, 1) + BOARD_TTL_S["month"] * 1000
    assert bucket_expiry_ms("all", thursday_noon) == 0
    # Every bucket outlives the period it counts, so the running one is never gone early.
    assert bucket_expiry_ms("week", ms(2026, 12, 6, 23, 59)) > ms(2026, 12, 7)
    assert bucket_expiry_ms("month", ms(2026, 12, 31, 23, 59)) > ms(2027, 1, 1)
    assert buckets(thursday_noon)["week"] == "w:202649"


def test_a_day_of_bits_is_kept_past_the_pages_thirty_days() -> None:
    at = ms(2026, 12, 3, 17, 30)
    assert day_of(at) == "20261203" and day_of(ms(2026, 12, 3)) == "20261203" and day_of(at + 86_400_000) == "20261204"
    assert day_expiry_ms(at) == day_expiry_ms(ms(2026, 12, 3)) == ms(2026, 12, 3) + DAY_KEPT_S * 1000
    assert day_expiry_ms(at) > ms(2027, 1, 2)  # the 30th day back from 2027-01-02 is still there
