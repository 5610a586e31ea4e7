from __future__ import annotations

import datetime as dt
import io
import uuid

import fastavro
import pytest

from schemas.loader import load_schemas
from schemas.records.channel import ChannelCreated
from schemas.records.stream import StreamEnded
from schemas.records.user import UserRegistered
from topics.errors import TopicsError
from topics.tools import export_schema, json_safe, parse_since, with_logical_types


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
    value = {"t": dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.UTC), "u": u, "b": b"\x00\x01",
             "l": [u]}
    assert json_safe(value) == {"t": "2023-11-14T22:13:20Z", "u": str(u), "b": "AAE=", "l": [str(u)]}


def test_typed_records_print_as_before() -> None:
    """``tail`` prints a typed record's timestamps as ISO 8601 and its uuids as text, as it always has."""
    made = ChannelCreated(occurred_at=1_700_000_000_123, channel_id=str(uuid.uuid4()), owner_user_id="u",
                          name="speedy", title="t", tags=("a",), stream_key_hash="f" * 64)
    value = json_safe(with_logical_types(load_schemas()[made.RECORD].raw, made.to_avro()))
    assert value["occurred_at"] == "2023-11-14T22:13:20.123000Z"
    assert value["channel_id"] == made.channel_id and value["tags"] == ["a"] and value["category"] is None
    ended = StreamEnded(occurred_at=1_700_000_000_000, stream_id="s", channel_id="c", started_at=1_699_999_999_999,
                        duration_ms=1)
    printed = json_safe(with_logical_types(load_schemas()[ended.RECORD].raw, ended.to_avro()))
    assert (printed["occurred_at"], printed["started_at"]) == ("2023-11-14T22:13:20Z", "2023-11-14T22:13:19.999000Z")
    assert printed["last_gop_seq"] is None and printed["reason"] == "UNKNOWN"


def test_export_schema_keeps_logical_types() -> None:
    class Schemas:
        def schema(self, record: str) -> dict[str, object]:
            return load_schemas()[record].raw  # type: ignore[return-value]

    schema = export_schema("users", Schemas())  # type: ignore[arg-type]
    made = UserRegistered(occurred_at=1_700_000_000_000, user_id=str(uuid.uuid4()), username="speedy_runner",
                          password_hash="h")
    buf = io.BytesIO()
    fastavro.writer(buf, fastavro.parse_schema(schema), [{
        "topic": "users", "partition": 0, "offset": 3, "timestamp": 1_700_000_000_000, "key": made.user_id,
        "type": made.RECORD, "value": (made.RECORD, made.to_avro())}])
    buf.seek(0)
    (row,) = list(fastavro.reader(buf))
    assert row["type"] == made.RECORD and row["value"]["username"] == "speedy_runner"  # type: ignore[index]
    assert row["value"]["occurred_at"] == dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.UTC)  # type: ignore[index]
