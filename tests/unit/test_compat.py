"""Avro schema-resolution compatibility (Avro 1.11.1, "Schema Resolution")."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from schemas.compat import LEVELS, check_backward, check_compatibility, check_forward
from schemas.errors import SchemaError, SchemaLoadError
from schemas.loader import load_schemas

REAL = load_schemas()


def fld(name: str, type_: Any, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, **extra}


def rec(*fields: dict[str, Any], name: str = "R", ns: str = "t", **extra: Any) -> dict[str, Any]:
    return {"type": "record", "name": name, "namespace": ns, "fields": list(fields), **extra}


def enum(*symbols: str, **extra: Any) -> dict[str, Any]:
    return {"type": "enum", "name": "E", "symbols": list(symbols), **extra}


def one(type_: Any, **extra: Any) -> dict[str, Any]:
    """A record with a single field 'x' of type_."""
    return rec(fld("x", type_, **extra))


LINKED = rec(fld("value", "int"), fld("next", ["null", "Node"], default=None), name="Node")
LINKED_PLUS = rec(fld("value", "long"), fld("next", ["null", "Node"], default=None),
                  fld("label", "string", default=""), name="Node")

COMPATIBLE = [  # (new reader, old writer)
    ("identical", one("string"), one("string")),
    ("field added with a default", rec(fld("a", "int"), fld("b", "string", default="")), rec(fld("a", "int"))),
    ("nullable field added", rec(fld("a", "int"), fld("b", ["null", "int"], default=None)), rec(fld("a", "int"))),
    ("field removed", rec(fld("a", "int")), rec(fld("a", "int"), fld("b", "string"))),
    ("int -> long", one("long"), one("int")),
    ("int -> float", one("float"), one("int")),
    ("int -> double", one("double"), one("int")),
    ("long -> float", one("float"), one("long")),
    ("long -> double", one("double"), one("long")),
    ("float -> double", one("double"), one("float")),
    ("string -> bytes", one("bytes"), one("string")),
    ("bytes -> string", one("string"), one("bytes")),
    ("made nullable", one(["null", "string"], default=None), one("string")),
    ("union branch added", one(["null", "string", "int"]), one(["null", "string"])),
    ("union reordered", one(["string", "null"]), one(["null", "string"])),
    ("union branch promoted", one(["null", "double"]), one(["null", "int"])),
    ("non-union to promoting union", one(["null", "long"]), one("int")),
    ("enum symbol added", one(enum("A", "B", "C")), one(enum("A", "B"))),
    ("enum symbol removed, reader default", one(enum("A", "U", default="U")), one(enum("A", "B", default="U"))),
    ("array items promoted", one({"type": "array", "items": "long"}), one({"type": "array", "items": "int"})),
    ("map values promoted", one({"type": "map", "values": "double"}), one({"type": "map", "values": "float"})),
    ("fixed same size", one({"type": "fixed", "name": "F", "size": 16}),
     one({"type": "fixed", "name": "F", "size": 16})),
    ("record renamed with alias", rec(fld("a", "int"), name="New", aliases=["Old"]), rec(fld("a", "int"), name="Old")),
    ("namespace changed", rec(fld("a", "int"), ns="x.y"), rec(fld("a", "int"), ns="p.q")),
    ("field renamed with alias", rec(fld("b", "int", aliases=["a"])), rec(fld("a", "int"))),
    ("logical type added", one({"type": "long", "logicalType": "timestamp-millis"}), one("long")),
    ("logical type dropped", one("string"), one({"type": "string", "logicalType": "uuid"})),
    ("recursive record evolved", LINKED_PLUS, LINKED),
    ("nested record field added with default",
     one(rec(fld("a", "int"), fld("b", "int", default=0), name="In")), one(rec(fld("a", "int"), name="In"))),
    ("wrapped types", one({"type": {"type": "array", "items": "long"}}), one({"type": "array", "items": "int"})),
    ("wrapped union", one({"type": ["null", "long"]}), one(["null", "int"])),
    ("named type referenced twice", rec(fld("a", enum("X")), fld("b", "E")), rec(fld("a", enum("X")), fld("b", "E"))),
    ("primitive schemas", "long", "int"),
]

INCOMPATIBLE = [  # (new reader, old writer, expected fragment of the message)
    ("field added without default", rec(fld("a", "int"), fld("b", "string")), rec(fld("a", "int")),
     "R.b: field in the new schema has no default and is missing from the old schema"),
    ("string -> int", one("int"), one("string"), "R.x: new type int cannot read old type string"),
    ("long -> int", one("int"), one("long"), "R.x: new type int cannot read old type long"),
    ("double -> float", one("float"), one("double"), "new type float cannot read old type double"),
    ("int -> string", one("string"), one("int"), "new type string cannot read old type int"),
    ("boolean -> int", one("int"), one("boolean"), "new type int cannot read old type boolean"),
    ("made required", one("string"), one(["null", "string"], default=None),
     "R.x: new type string cannot read old type null"),
    ("union branch removed", one(["null", "string"]), one(["null", "string", "int"]),
     "R.x: old type int matches no branch of the new union [null, string]"),
    ("enum symbol removed", one(enum("A")), one(enum("A", "B")),
     "R.x: old enum symbols ['B'] are missing from the new enum t.E, which has no default"),
    ("fixed resized", one({"type": "fixed", "name": "F", "size": 8}), one({"type": "fixed", "name": "F", "size": 16}),
     "R.x: new fixed t.F has size 8, old fixed has size 16"),
    ("fixed renamed", one({"type": "fixed", "name": "G", "size": 8}), one({"type": "fixed", "name": "F", "size": 8}),
     "new type fixed t.G cannot read old type fixed t.F"),
    ("record renamed", rec(fld("a", "int"), name="New"), rec(fld("a", "int"), name="Old"),
     "New: new type record t.New cannot read old type record t.Old"),
    ("array items", one({"type": "array", "items": "int"}), one({"type": "array", "items": "string"}),
     "R.x[]: new type int cannot read old type string"),
    ("map values", one({"type": "map", "values": "int"}), one({"type": "map", "values": "long"}),
     "R.x{}: new type int cannot read old type long"),
    ("array to map", one({"type": "map", "values": "int"}), one({"type": "array", "items": "int"}),
     "new type map<int> cannot read old type array<int>"),
    ("enum to string", one("string"), one(enum("A")), "new type string cannot read old type enum t.E"),
    ("nested field added without default",
     one(rec(fld("a", "int"), fld("b", "int"), name="In")), one(rec(fld("a", "int"), name="In")),
     "R.x.b: field in the new schema has no default"),
    ("nested field in a union branch",
     one(["null", rec(fld("a", "int"), name="In")]), one(["null", rec(fld("a", "string"), name="In")]),
     "R.x.a: new type int cannot read old type string"),
    ("nested field in array items",
     one({"type": "array", "items": rec(fld("a", "int"), name="In")}),
     one({"type": "array", "items": rec(fld("a", "string"), name="In")}),
     "R.x[].a: new type int cannot read old type string"),
    ("recursive record narrowed", LINKED, LINKED_PLUS, "Node.value: new type int cannot read old type long"),
    ("logical types do not rescue a change",
     one({"type": "int", "logicalType": "date"}), one({"type": "long", "logicalType": "timestamp-millis"}),
     "new type int cannot read old type long"),
]


@pytest.mark.parametrize(("case", "new", "old"), COMPATIBLE, ids=[c[0] for c in COMPATIBLE])
def test_compatible_changes(case: str, new: Any, old: Any) -> None:
    assert check_backward(new, old) == []


@pytest.mark.parametrize(("case", "new", "old", "message"), INCOMPATIBLE, ids=[c[0] for c in INCOMPATIBLE])
def test_incompatible_changes_name_the_field(case: str, new: Any, old: Any, message: str) -> None:
    problems = check_backward(new, old)
    assert problems, case
    assert any(message in p for p in problems), problems


def test_every_problem_is_reported() -> None:
    new = rec(fld("a", "int"), fld("b", "string"), fld("c", "int"))
    old = rec(fld("a", "string"), fld("c", "long"))
    assert check_backward(new, old) == [
        "R.a: new type int cannot read old type string",
        "R.b: field in the new schema has no default and is missing from the old schema",
        "R.c: new type int cannot read old type long",
    ]


def test_schemas_may_be_given_as_json_text() -> None:
    assert check_backward(json.dumps(one("long")), json.dumps(one("int"))) == []
    assert check_backward(json.dumps(one("int")), one("long")) != []
    assert check_backward('"string"', "bytes") == []


@pytest.mark.parametrize(
    ("schema", "message"),
    [("{not json", "neither JSON nor a primitive"), (one("Missing"), "unknown type 'Missing'"),
     ({"fields": []}, "not a schema"), (rec(fld("a", "int"), fld("a", "E")), "unknown type 'E'"),
     (rec({"name": "a"}), "a field needs a name and a type")],
)
def test_invalid_schemas_raise(schema: Any, message: str) -> None:
    with pytest.raises(SchemaLoadError, match=message):
        check_backward(schema, one("int"))


def test_a_real_schema_with_a_required_field_added_is_rejected() -> None:
    old = REAL["glasscast.channel.ChannelCreated"].raw
    new = copy.deepcopy(old)
    new["fields"].append({"name": "region", "type": "string", "doc": "Ingest region."})
    assert check_backward(new, old) == [
        "ChannelCreated.region: field in the new schema has no default and is missing from the old schema"
    ]
    new["fields"][-1]["default"] = "eu"
    assert check_backward(new, old) == []


def test_a_real_schema_with_a_field_retyped_is_rejected() -> None:
    old = REAL["glasscast.channel.ChannelCreated"].raw
    new = copy.deepcopy(old)
    next(f for f in new["fields"] if f["name"] == "stream_key_hash")["type"] = "int"
    assert check_backward(new, old) == ["ChannelCreated.stream_key_hash: new type int cannot read old type string"]


def test_a_real_enum_losing_a_symbol_falls_back_to_its_default() -> None:
    old = REAL["glasscast.stream.StreamEnded"].raw
    new = copy.deepcopy(old)
    reason = next(f for f in new["fields"] if f["name"] == "reason")["type"]
    reason["symbols"].remove("MODERATION")
    assert check_backward(new, old) == []
    del reason["default"]
    assert check_backward(new, old) == [
        "StreamEnded.reason: old enum symbols ['MODERATION'] are missing from the new enum "
        "glasscast.stream.StreamEndReason, which has no default"
    ]


@pytest.mark.parametrize("name", sorted(REAL))
def test_every_real_schema_is_fully_compatible_with_itself(name: str) -> None:
    raw = REAL[name].raw
    assert check_compatibility(raw, [raw], "FULL_TRANSITIVE") == []


V1 = rec(fld("a", "string"), fld("keep", "int"))
V2 = rec(fld("keep", "int"))
V3 = rec(fld("keep", "int"), fld("a", "int", default=0))


def test_non_transitive_levels_compare_with_the_latest_version_only() -> None:
    assert check_compatibility(V3, [V1, V2], "BACKWARD") == []
    assert check_compatibility(V3, [V1, V2], "BACKWARD_TRANSITIVE") == [
        "BACKWARD against old version 1 of 2: R.a: new type int cannot read old type string"
    ]


def test_forward_is_backward_the_other_way() -> None:
    added = rec(fld("keep", "int"), fld("b", "string"))
    assert check_backward(added, V2) != [] and check_forward(added, V2) == []
    assert check_compatibility(added, [V2], "FORWARD") == []
    assert check_compatibility(V2, [V1], "BACKWARD") == []
    assert check_compatibility(V2, [V1], "FORWARD") == [
        "FORWARD against old version 1 of 1: R.a: field in the old schema has no default "
        "and is missing from the new schema"
    ]
    assert check_compatibility(V2, [V1, V2], "FORWARD") == []
    assert check_compatibility(V2, [V1, V2], "FORWARD_TRANSITIVE") != []


def test_full_needs_both_directions() -> None:
    assert check_compatibility(V3, [V2], "FULL") == []
    problems = check_compatibility(rec(fld("keep", "long")), [V2], "FULL")
    assert problems == ["FORWARD against old version 1 of 1: R.keep: old type int cannot read new type long"]
    assert len(check_compatibility(rec(fld("keep", "long")), [V2, V2], "FULL_TRANSITIVE")) == 2


def test_none_and_first_versions_accept_anything() -> None:
    assert check_compatibility(one("int"), [one("string")], "NONE") == []
    for level in LEVELS:
        assert check_compatibility(one("int"), [], level) == []
    assert check_compatibility(one("int"), [one("string")], "backward") != []


def test_an_unknown_level_is_refused() -> None:
    with pytest.raises(SchemaError, match="unknown compatibility level 'SIDEWAYS'") as info:
        check_compatibility(one("int"), [one("int")], "SIDEWAYS")
    assert isinstance(info.value, ValueError)
