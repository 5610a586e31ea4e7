"""The typed event records agree with the Avro schemas, and carry values through Avro unchanged.

The records in ``schemas/records/`` are generated from the ``.avsc`` files and
committed; regenerating them here and comparing makes a stale record (or a
hand edit) fail the suite, so records and schemas never drift
(docs/ARCHITECTURE.md, "Events").  Instances come from a strategy derived from
each record's own Avro schema, so a new record is covered without a generator
written for it.
"""

from __future__ import annotations

import dataclasses
import io
import sys
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.codegen import render, target_dir
from schemas.loader import load_schemas
from schemas.record import Record, ticks_to_ms
from schemas.records import RECORD_TYPES
from schemas.records.media import GopAvailable
from topics.catalogue import all_records
from topics.serde import without_logical_types

SCHEMAS = load_schemas()
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)

PRIMITIVES: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "boolean": st.booleans(),
    "int": st.integers(*INT32),
    "long": st.integers(*INT64),
    "float": st.floats(width=32, allow_nan=False, allow_infinity=False),  # survives 4 bytes exactly
    "double": st.floats(allow_nan=False, allow_infinity=False),
    "bytes": st.binary(max_size=32),
    "string": st.text(max_size=24),
}


def _field_values(schema: Any, module: Any) -> st.SearchStrategy[Any]:
    """Python values of one Avro type as the records hold them (tuples, nested records, raw logical types)."""
    if isinstance(schema, str):
        return PRIMITIVES[schema]
    if isinstance(schema, list):
        return st.one_of([_field_values(branch, module) for branch in schema])
    if schema.get("logicalType") == "uuid":
        return st.uuids().map(str)
    kind = schema["type"]
    if kind == "enum":
        return st.sampled_from(schema["symbols"])
    if kind == "array":
        return st.lists(_field_values(schema["items"], module), max_size=3).map(tuple)
    if kind == "record":
        cls = getattr(module, schema["name"])  # a nested record: its own dataclass in the same module
        return st.fixed_dictionaries({f["name"]: _field_values(f["type"], module)
                                      for f in schema["fields"]}).map(lambda kw: cls(**kw))
    return _field_values(kind, module)  # a primitive with a logical type (timestamp-millis: a long)


def records_of(name: str) -> st.SearchStrategy[Record]:
    """Instances of the record type named ``name``, built field by field from its Avro schema."""
    cls = RECORD_TYPES[name]
    return _field_values(SCHEMAS[name].raw, sys.modules[cls.__module__])


def _avro_roundtrip(name: str, record: Record) -> Record:
    parsed = parse_schema(without_logical_types(SCHEMAS[name].raw))
    buf = io.BytesIO()
    schemaless_writer(buf, parsed, record.to_avro())
    buf.seek(0)
    value = schemaless_reader(buf, parsed, None)
    assert buf.read() == b"", "the reader left bytes behind"
    assert isinstance(value, dict)
    return RECORD_TYPES[name].from_avro(value)  # type: ignore[no-any-return]


def test_committed_records_are_what_the_schemas_generate() -> None:
    expected = render(load_schemas())
    committed = {p.name: p.read_text(encoding="utf-8") for p in target_dir().glob("*.py")}
    assert sorted(committed) == sorted(expected), "run `python -m schemas.codegen`"
    for name, source in expected.items():
        assert committed[name] == source, f"schemas/records/{name} is stale: run `python -m schemas.codegen`"


def _fields_match(cls: type[Record], raw: dict[str, Any]) -> None:
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    assert names == [f["name"] for f in raw["fields"]], cls.RECORD
    for f in raw["fields"]:  # nested records are dataclasses of the same shape
        inner = f["type"]
        if isinstance(inner, dict) and inner.get("type") == "array":
            inner = inner["items"]
        if isinstance(inner, list):
            inner = next(b for b in inner if b != "null")
        if isinstance(inner, dict) and inner.get("type") == "record":
            _fields_match(getattr(sys.modules[cls.__module__], inner["name"]), inner)


@pytest.mark.parametrize("name", all_records())
def test_every_catalogue_record_has_its_type(name: str) -> None:
    cls = RECORD_TYPES[name]
    assert cls.RECORD == name
    assert cls.__name__ == name.rsplit(".", 1)[1]
    _fields_match(cls, SCHEMAS[name].raw)


def test_no_record_type_outside_the_catalogue() -> None:
    assert sorted(RECORD_TYPES) == sorted(all_records())


@pytest.mark.parametrize("name", all_records())
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_every_record_roundtrips_through_avro(name: str, data: st.DataObject) -> None:
    record = data.draw(records_of(name), label=name)
    assert isinstance(record, RECORD_TYPES[name])
    assert _avro_roundtrip(name, record) == record


def test_record_defaults_follow_the_schema() -> None:
    gop = GopAvailable(occurred_at=1, stream_id="s", channel_id="c", seq=0, pts=0, duration=0,
                       time_base_num=1, time_base_den=1000, byte_size=0, blob_ref="b", video_codec="avc1",
                       width=2, height=2)
    assert gop.container == "flv" and gop.fps is None and gop.discontinuity is False
    assert len(gop.event_id) == 36 and GopAvailable(**_kwargs(gop)).event_id != gop.event_id  # fresh per event
    assert gop.type == "GopAvailable" and gop.RECORD == "glasscast.media.GopAvailable"


def _kwargs(record: Record) -> dict[str, Any]:
    kwargs = {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}  # type: ignore[arg-type]
    return {k: v for k, v in kwargs.items() if k != "event_id"}


def test_ticks_to_ms() -> None:
    assert ticks_to_ms(90_000, 1, 90_000) == 1000.0
    assert ticks_to_ms(3003, 1, 90_000) == pytest.approx(33.3666, abs=1e-4)
    assert ticks_to_ms(1234, 1, 1000) == 1234.0  # FLV's millisecond time base is the identity
    assert ticks_to_ms(3, 1001, 30_000) == pytest.approx(100.1)
    with pytest.raises(ValueError, match="time base"):
        ticks_to_ms(1, 1, 0)


def test_gop_times_use_its_own_time_base() -> None:
    gop = GopAvailable(occurred_at=1_790_000_000_000, stream_id="s", channel_id="c", seq=3,
                       pts=180_000, duration=135_000, time_base_num=1, time_base_den=90_000,
                       byte_size=10, blob_ref="b", video_codec="avc1.64001f", width=1280, height=720)
    assert gop.pts_ms == 2000.0
    assert gop.duration_ms == 1500.0
    flv = dataclasses.replace(gop, pts=2000, duration=1500, time_base_den=1000)
    assert (flv.pts_ms, flv.duration_ms) == (gop.pts_ms, gop.duration_ms)
