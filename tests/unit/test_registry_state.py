"""The registry state machine without Kafka: ids, versions, dedup, deletes, config, replay."""

from __future__ import annotations

import json
from typing import Any, TypeVar

import pytest

from infra.embedded.registry.errors import (
    IncompatibleSchema,
    InvalidCompatibilityLevel,
    InvalidSchema,
    InvalidVersion,
    SchemaNotFound,
    SubjectConfigNotFound,
    SubjectNotFound,
    SubjectNotSoftDeleted,
    SubjectSoftDeleted,
    VersionNotFound,
    VersionNotSoftDeleted,
    VersionSoftDeleted,
)
from infra.embedded.registry.state import Record, Reference, RegistryState, decode_record

T = TypeVar("T")


def record_schema(name: str, *fields: dict[str, Any]) -> str:
    return json.dumps({"type": "record", "name": name, "namespace": "glasscast.test",
                       "fields": [{"name": "id", "type": "string"}, *fields]})


V1 = record_schema("Thing")
V2 = record_schema("Thing", {"name": "n", "type": "int", "default": 0})
V2_NO_DEFAULT = record_schema("Thing", {"name": "n", "type": "int"})


class Log:
    """A state plus every record it was given, as the topic would hold them."""

    def __init__(self) -> None:
        self.state = RegistryState()
        self.records: list[Record] = []

    def run(self, plan: tuple[T, list[Record]]) -> T:
        result, records = plan
        for record in records:
            key, value = record.encode()
            decoded = decode_record(key, value)  # through bytes, as the store does
            self.state.apply(decoded)
            self.records.append(decoded)
        return result

    def register(self, subject: str, schema: str, refs: tuple[Reference, ...] = ()) -> int:
        return self.run(self.state.plan_register(subject, self.state.parse(schema, "AVRO", refs)))

    def replay(self) -> RegistryState:
        fresh = RegistryState()
        for record in self.records:
            fresh.apply(record)
        return fresh


@pytest.fixture
def log() -> Log:
    return Log()


def test_ids_and_versions_count_up(log: Log) -> None:
    assert log.register("things-value", V1) == 1
    assert log.register("things-value", V2) == 2
    assert log.state.versions("things-value") == [1, 2]
    latest = log.state.version("things-value", "latest")
    assert (latest.version, latest.id, latest.schema) == (2, 2, V2)
    assert log.state.schema_by_id(1).schema == V1


def test_identical_schema_under_same_subject_is_not_a_new_version(log: Log) -> None:
    log.register("s", V1)
    pretty = json.dumps(json.loads(V1), indent=4)
    schema_id, records = log.state.plan_register("s", log.state.parse(pretty))
    assert (schema_id, records) == (1, [])


def test_same_schema_under_another_subject_shares_its_id(log: Log) -> None:
    log.register("a", V1)
    log.register("a", V2)
    assert log.register("b", V2) == 2
    assert log.state.version("b", 1).id == 2
    assert [(sv.subject, sv.version) for sv in log.state.uses_of_id(2)] == [("a", 2), ("b", 1)]


def test_a_logical_type_makes_a_different_schema(log: Log) -> None:
    plain = json.dumps({"type": "long"})
    stamped = json.dumps({"type": "long", "logicalType": "timestamp-millis"})
    assert log.register("a", plain) == 1
    assert log.register("b", stamped) == 2


def test_lookup_finds_the_version_holding_a_schema(log: Log) -> None:
    log.register("s", V1)
    log.register("s", V2)
    found = log.state.lookup("s", log.state.parse(V1))
    assert (found.version, found.id) == (1, 1)
    with pytest.raises(SchemaNotFound):
        log.state.lookup("s", log.state.parse(record_schema("Other")))
    with pytest.raises(SubjectNotFound):
        log.state.lookup("nope", log.state.parse(V1))


def test_incompatible_schema_is_refused_under_backward(log: Log) -> None:
    log.register("s", V1)
    with pytest.raises(IncompatibleSchema) as caught:
        log.register("s", V2_NO_DEFAULT)
    assert caught.value.messages and "n" in " ".join(caught.value.messages)
    assert log.state.compatibility_problems("s", log.state.parse(V2), "latest") == []
    assert log.state.compatibility_problems("s", log.state.parse(V2_NO_DEFAULT), 1)


def test_level_none_accepts_anything(log: Log) -> None:
    log.register("s", V1)
    log.run(log.state.plan_set_config("s", "none"))
    assert log.register("s", V2_NO_DEFAULT) == 2


def test_compatibility_against_a_missing_subject(log: Log) -> None:
    candidate = log.state.parse(V1)
    assert log.state.compatibility_problems("nope", candidate, "latest") == []
    with pytest.raises(SubjectNotFound):
        log.state.compatibility_problems("nope", candidate, 1)


def test_soft_and_hard_delete_of_a_version(log: Log) -> None:
    log.register("s", V1)
    log.register("s", V2)
    with pytest.raises(VersionNotSoftDeleted):
        log.state.plan_delete_version("s", 2, permanent=True)
    assert log.run(log.state.plan_delete_version("s", "latest")) == 2
    assert log.state.versions("s") == [1]
    assert log.state.versions("s", deleted=True) == [1, 2]
    assert log.state.versions("s", deleted_only=True) == [2]
    assert log.state.version("s", "latest").version == 1
    with pytest.raises(VersionNotFound):
        log.state.version("s", 2)
    assert log.state.version("s", 2, deleted=True).deleted
    with pytest.raises(VersionSoftDeleted):
        log.state.plan_delete_version("s", 2)
    assert log.run(log.state.plan_delete_version("s", 2, permanent=True)) == 2
    assert log.records[-1].value is None
    assert log.state.versions("s", deleted=True) == [1]
    # The id stays taken: a hard delete never lets another schema reuse it.
    assert log.register("s", record_schema("Thing", {"name": "z", "type": "int", "default": 1})) == 3


def test_soft_then_hard_delete_of_a_subject(log: Log) -> None:
    log.register("s", V1)
    log.register("s", V2)
    log.run(log.state.plan_set_config("s", "FULL"))
    with pytest.raises(SubjectNotSoftDeleted):
        log.state.plan_delete_subject("s", permanent=True)
    assert log.run(log.state.plan_delete_subject("s")) == [1, 2]
    assert log.records[-2].key == {"keytype": "DELETE_SUBJECT", "subject": "s", "magic": 0}
    assert log.records[-2].value == {"subject": "s", "version": 2}
    assert "s" not in log.state.subject_levels  # its config goes with it
    assert log.state.subjects() == []
    assert log.state.subjects(deleted=True) == ["s"]
    with pytest.raises(SubjectNotFound):
        log.state.versions("s")
    with pytest.raises(SubjectSoftDeleted):
        log.state.plan_delete_subject("s")
    assert log.state.schema_by_id(1).schema == V1  # ids still resolve for old data
    assert log.run(log.state.plan_delete_subject("s", permanent=True)) == [1, 2]
    assert log.state.subjects(deleted=True) == []
    with pytest.raises(SchemaNotFound):
        log.state.schema_by_id(1)
    log.register("s", V1)
    assert log.state.version("s", "latest").version == 1  # versions restart after a hard delete


def test_registering_after_a_soft_delete_continues_the_versions(log: Log) -> None:
    log.register("s", V1)
    log.run(log.state.plan_delete_subject("s"))
    assert log.register("s", V1) == 1
    assert log.state.versions("s") == [2]


def test_config_levels_and_fallbacks(log: Log) -> None:
    assert log.state.level() == "BACKWARD"
    assert log.state.config(None) == "BACKWARD"
    with pytest.raises(SubjectConfigNotFound):
        log.state.config("s")
    assert log.state.config("s", default_to_global=True) == "BACKWARD"
    log.run(log.state.plan_set_config(None, "full_transitive"))
    log.run(log.state.plan_set_config("s", "NONE"))
    assert (log.state.level(), log.state.level("s"), log.state.level("t")) == \
        ("FULL_TRANSITIVE", "NONE", "FULL_TRANSITIVE")
    assert log.records[-1].key == {"keytype": "CONFIG", "subject": "s", "magic": 0}
    assert log.records[-1].value == {"compatibilityLevel": "NONE"}
    assert log.run(log.state.plan_delete_config("s")) == "NONE"
    assert log.state.level("s") == "FULL_TRANSITIVE"
    assert log.run(log.state.plan_delete_config(None)) == "FULL_TRANSITIVE"
    assert log.state.level() == "BACKWARD"
    with pytest.raises(SubjectNotFound):
        log.state.plan_delete_config("s")
    with pytest.raises(InvalidCompatibilityLevel):
        log.state.plan_set_config(None, "SIDEWAYS")


def test_records_use_confluents_format(log: Log) -> None:
    log.register("s", V1)
    key, value = log.records[0].encode()
    assert key == b'{"keytype":"SCHEMA","subject":"s","version":1,"magic":1}'
    assert json.loads(value or b"") == {"subject": "s", "version": 1, "id": 1, "schema": V1, "deleted": False}


def test_replaying_the_records_rebuilds_the_same_state(log: Log) -> None:
    log.register("a", V1)
    log.register("a", V2)
    log.register("b", V1)
    log.run(log.state.plan_set_config("b", "FORWARD"))
    log.run(log.state.plan_delete_version("a", 1))
    again = log.replay()
    assert again.subjects(deleted=True) == ["a", "b"]
    assert again.versions("a", deleted=True) == [1, 2] and again.versions("a") == [2]
    assert again.max_id == 2 and again.level("b") == "FORWARD"
    assert again.version("b", 1).id == 1


def test_apply_ignores_other_key_types_and_rejects_broken_records() -> None:
    state = RegistryState()
    state.apply(Record({"keytype": "NOOP", "magic": 0}, None))
    state.apply(Record({"keytype": "MODE", "subject": None, "magic": 0}, {"mode": "READWRITE"}))
    with pytest.raises(ValueError):
        state.apply(Record({"keytype": "SCHEMA", "subject": "s", "version": 1, "magic": 1}, {"id": 1}))
    with pytest.raises(ValueError):
        decode_record(b"[1]", None)


def test_invalid_schemas_and_versions_are_refused(log: Log) -> None:
    with pytest.raises(InvalidSchema, match="Invalid schema"):
        log.state.parse("{not json")
    with pytest.raises(InvalidSchema, match="Invalid schema"):
        log.state.parse(json.dumps({"type": "record", "name": "R", "fields": [{"name": "x", "type": "Nope"}]}))
    with pytest.raises(InvalidSchema, match="PROTOBUF"):
        log.state.parse('syntax = "proto3";', "PROTOBUF")
    for bad in ("0", "x", str(2**31), "1.5"):
        with pytest.raises(InvalidVersion):
            log.state.version("s", bad)


def test_references_resolve_named_types_from_other_subjects(log: Log) -> None:
    money = json.dumps({"type": "record", "name": "Money", "namespace": "glasscast.test",
                        "fields": [{"name": "cents", "type": "long"}]})
    log.register("money", money)
    price = json.dumps({"type": "record", "name": "Price", "namespace": "glasscast.test",
                        "fields": [{"name": "a", "type": "Money"}, {"name": "b", "type": "Money"}]})
    ref = (Reference("glasscast.test.Money", "money", 1),)
    with pytest.raises(InvalidSchema):
        log.state.parse(price)
    assert log.register("price", price, ref) == 2
    assert log.state.version("price", 1).references == ref
    assert log.register("price", price, ref) == 2  # dedup holds with references
    with pytest.raises(InvalidSchema, match="not found"):
        log.state.parse(price, "AVRO", (Reference("glasscast.test.Money", "money", 9),))
