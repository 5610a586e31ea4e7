from __future__ import annotations

import datetime as dt
import uuid

import pytest

from topics.errors import TopicsError
from topics.tools import json_safe, parse_since


def test_parse_since() -> None:
    now = 1_800_000_000.0
    assert parse_since("15m", now) == int((now - 900) * 1000)
    assert parse_since("2h", now) == int((now - 7200) * 1000)
    assert parse_since("1700000000000", now) == 1_700_000_000_000
    assert parse_since("2023-11-14T22:13:20Z", now) == 1_700_000_000_000
    with pytest.raises(TopicsError, match="--since"):
        parse_since("yesterday", now)


def test_json_safe() -> None:
    u = uuid.uuid4()
    value = {"t": dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.timezone.utc), "u": u, "b": b"\x00\x01",
             "l": [u]}
    assert json_safe(value) == {"t": "2023-11-14T22:13:20Z", "u": str(u), "b": "AAE=", "l": [str(u)]}
