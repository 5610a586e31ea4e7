"""Every event schema round-trips through fastavro: decode(encode(v)) == v.

Values come from a hypothesis strategy derived from the Avro schema itself
(Avro 1.11.1, "Schema Declaration" and "Logical Types"), so a new schema is
covered without writing a generator for it.  Logical types are generated in
the form fastavro reads them back as: uuid -> ``uuid.UUID``, timestamp-millis ->
an aware UTC ``datetime`` with whole milliseconds, date -> ``datetime.date``.
Floats are drawn as float32 values so they survive the 4-byte encoding exactly.
"""

from __future__ import annotations

import io
from datetime import UTC, date, datetime
from typing import Any

import pytest
from fastavro import schemaless_reader, schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.compat import check_backward
from schemas.loader import load_schemas, parse

SCHEMAS = load_schemas()
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
# Wall times a Glasscast event can plausibly carry, well inside datetime's range.
EARLIEST = datetime(1900, 1, 1)
LATEST = datetime(2200, 1, 1)

PRIMITIVE_STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "boolean": st.booleans(),
    "int": st.integers(*INT32),
    "long": st.integers(*INT64),
    "float": st.floats(width=32, allow_nan=False, allow_infinity=False),
    "double": st.floats(allow_nan=False, allow_infinity=False),
    "bytes": st.binary(max_size=64),
    "string": st.text(max_size=40),
}


def _utc_datetimes(resolution_us: int) -> st.SearchStrategy[datetime]:
    return st.datetimes(EARLIEST, LATEST, timezones=st.just(UTC)).map(
        lambda d: d.replace(microsecond=d.microsecond - d.microsecond % resolution_us)
    )


LOGICAL_STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "uuid": st.uuids(),
    "timestamp-millis": _utc_datetimes(1000),
    "timestamp-micros": _utc_datetimes(1),
    "date": st.dates(date(1900, 1, 1), date(2200, 1, 1)),
}


def from_schema(parsed: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A strategy of values valid for a fastavro-parsed schema."""
    named: dict[str, st.SearchStrategy[Any]] = {}

    def build(schema: Any) -> st.SearchStrategy[Any]:
        if isinstance(schema, str):
            if schema in PRIMITIVE_STRATEGIES:
                return PRIMITIVE_STRATEGIES[schema]
            # A reference to a named type; deferred so recursive types work.
            return st.deferred(lambda: named[schema])
        if isinstance(schema, list):
            return st.one_of([build(branch) for branch in schema])
        logical = schema.get("logicalType")
        if logical is not None:
            if logical not in LOGICAL_STRATEGIES:
                raise NotImplementedError(f"no strategy for logicalType {logical!r}")
            return LOGICAL_STRATEGIES[logical]
        kind = schema["type"]
        if kind == "array":
            return st.lists(build(schema["items"]), max_size=4)
        if kind == "map":
            return st.dictionaries(st.text(max_size=8), build(schema["values"]), max_size=3)
        if kind == "enum":
            strategy: st.SearchStrategy[Any] = st.sampled_from(schema["symbols"])
        elif kind == "fixed":
            strategy = st.binary(min_size=schema["size"], max_size=schema["size"])
        elif kind in ("record", "error"):
            strategy = st.fixed_dictionaries({f["name"]: build(f["type"]) for f in schema["fields"]})
        else:
            return build(kind)
        named[schema["name"]] = strategy
        return strategy

    # fastavro's parsed form defines each named type inline at its first use and
    # refers to it by full name afterwards, so one walk registers every name
    # before any deferred reference is drawn.
    return build(parsed)


def roundtrip(parsed: dict[str, Any], value: Any, reader: dict[str, Any] | None = None) -> Any:
    buffer = io.BytesIO()
    schemaless_writer(buffer, parsed, value)
    buffer.seek(0)
    decoded = schemaless_reader(buffer, parsed, reader)
    assert buffer.read() == b"", "the reader left bytes behind"
    return decoded


@pytest.mark.parametrize("name", sorted(SCHEMAS))
@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_every_event_schema_roundtrips(name: str, data: st.DataObject) -> None:
    parsed = SCHEMAS[name].parsed
    value = data.draw(from_schema(parsed), label=name)
    assert roundtrip(parsed, value) == value


KITCHEN_SINK = parse({
    "type": "record", "name": "Sink", "namespace": "t", "fields": [
        {"name": "f32", "type": "float"},
        {"name": "f64", "type": "double"},
        {"name": "blob", "type": ["null", "bytes"]},
        {"name": "digest", "type": {"type": "fixed", "name": "Digest", "size": 8}},
        {"name": "again", "type": ["null", "Digest"]},
        {"name": "colour", "type": {"type": "enum", "name": "Colour", "symbols": ["RED", "GREEN"]}},
        {"name": "scores", "type": {"type": "map", "values": {"type": "array", "items": "long"}}},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "at_us", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "who", "type": ["null", {"type": "string", "logicalType": "uuid"}]},
        {"name": "next", "type": ["null", "Sink"]},
    ],
}, "kitchen sink")


@settings(max_examples=100, deadline=None)
@given(value=from_schema(KITCHEN_SINK))
def test_the_strategy_covers_every_avro_type(value: dict[str, Any]) -> None:
    assert roundtrip(KITCHEN_SINK, value) == value


OLD = parse({"type": "record", "name": "R", "fields": [
    {"name": "a", "type": "int"},
    {"name": "gone", "type": "string"},
    {"name": "kind", "type": {"type": "enum", "name": "K", "symbols": ["X", "Y", "Z"], "default": "X"}},
]}, "old")
NEW = parse({"type": "record", "name": "R", "fields": [
    {"name": "a", "type": ["null", "double"], "default": None},
    {"name": "added", "type": {"type": "array", "items": "string"}, "default": []},
    {"name": "kind", "type": {"type": "enum", "name": "K", "symbols": ["X", "Y"], "default": "X"}},
]}, "new")


@settings(max_examples=50, deadline=None)
@given(value=from_schema(OLD))
def test_a_pair_judged_compatible_really_resolves(value: dict[str, Any]) -> None:
    assert check_backward(NEW, OLD) == []
    decoded = roundtrip(OLD, value, reader=NEW)
    expected_kind = value["kind"] if value["kind"] != "Z" else "X"
    assert decoded == {"a": float(value["a"]), "added": [], "kind": expected_kind}
