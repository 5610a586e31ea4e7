"""The embedded registry over a real socket, driven by confluent-kafka's own client and serdes.

Each test gets its own registry topic on the session broker, so no state is shared.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from confluent_kafka import Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, topic_record_subject_name_strategy
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from infra.embedded.credentials import url_credentials, with_password
from infra.embedded.process import free_port
from infra.embedded.registry.app import MEDIA_TYPE, create_registry_app
from infra.errors import SettingsError
from infra.settings import Settings
from tests.waiting import eventually

pytestmark = pytest.mark.integration


def avro(name: str, *fields: dict[str, Any]) -> Schema:
    return Schema(json.dumps({"type": "record", "name": name, "namespace": "glasscast.test",
                              "fields": [{"name": "id", "type": "string"}, *fields]}), "AVRO")


V1 = avro("Thing")
V2 = avro("Thing", {"name": "n", "type": "int", "default": 0})
V2_BREAKING = avro("Thing", {"name": "n", "type": "int"})


@contextlib.contextmanager
def serve(settings: Settings) -> Iterator[str]:
    """Run the registry app under uvicorn in a thread; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(create_registry_app(settings), host="127.0.0.1", port=port,
                            lifespan="on", log_level="warning", ws="none")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="registry", daemon=True)
    thread.start()

    def started() -> bool:
        assert thread.is_alive(), "the registry failed to start (see the log above)"
        return bool(server.started)

    eventually(started, 60, "the registry to start")
    base = f"http://127.0.0.1:{port}"
    # It requires the user and password its settings' URL carries (the session registry's), as glasscast up's does.
    credentials = url_credentials(settings.registry.url)
    try:
        yield base if credentials is None else with_password(base, credentials[1], credentials[0])
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture
def registry_settings(settings_factory: Callable[..., Settings], unique: Callable[[str], str]) -> Settings:
    return settings_factory(registry={"topic": unique("_schemas")})


@pytest.fixture
def url(registry_settings: Settings) -> Iterator[str]:
    with serve(registry_settings) as base:
        yield base


@pytest.fixture
def client(url: str) -> Iterator[SchemaRegistryClient]:
    with SchemaRegistryClient({"url": url}) as c:
        yield c


def test_register_read_and_look_up(client: SchemaRegistryClient) -> None:
    first = client.register_schema("things-value", V1)
    second = client.register_schema("things-value", V2)
    assert second == first + 1
    assert client.register_schema("things-value", V2) == second  # same schema, same id
    assert json.loads(client.get_schema(first).schema_str or "") == json.loads(V1.schema_str or "")
    latest = client.get_latest_version("things-value")
    assert (latest.version, latest.schema_id, latest.subject) == (2, second, "things-value")
    assert client.get_version("things-value", 1).schema_id == first
    assert client.get_versions("things-value") == [1, 2]
    assert "things-value" in client.get_subjects()
    found = client.lookup_schema("things-value", V1)
    assert (found.schema_id, found.version) == (first, 1)
    assert client.get_schema_types() == ["AVRO"]
    assert client.get_subjects_by_schema_id(second) == ["things-value"]
    assert [(v.subject, v.version) for v in client.get_schema_versions(second)] == [("things-value", 2)]
    with pytest.raises(SchemaRegistryError) as missing:
        client.lookup_schema("things-value", avro("Other"))
    assert (missing.value.http_status_code, missing.value.error_code) == (404, 40403)


def test_compatibility_config_and_checks(client: SchemaRegistryClient) -> None:
    client.register_schema("s", V1)
    assert client.get_config().compatibility_level == "BACKWARD"
    assert client.test_compatibility("s", V2) is True
    assert client.test_compatibility("s", V2_BREAKING) is False
    with pytest.raises(SchemaRegistryError) as refused:
        client.register_schema("s", V2_BREAKING)
    assert (refused.value.http_status_code, refused.value.error_code) == (409, 409)
    answer: Any = client.set_compatibility("s", "NONE")  # typed str, but the client returns the body
    assert answer == {"compatibility": "NONE"}
    assert client.get_compatibility("s") == "NONE"
    assert client.test_compatibility("s", V2_BREAKING) is True
    client.set_compatibility(level="FULL")
    assert client.get_compatibility() == "FULL"
    assert client.delete_config("s").compatibility_level == "NONE"
    assert client.get_config().compatibility_level == "FULL"


def test_deletes(client: SchemaRegistryClient) -> None:
    client.register_schema("s", V1)
    client.register_schema("s", V2)
    assert client.delete_version("s", 2) == 2
    assert client.get_versions("s") == [1]
    assert client.get_versions("s", deleted=True) == [1, 2]
    assert client.delete_subject("s") == [1]
    assert "s" not in client.get_subjects()
    assert "s" in client.get_subjects(deleted=True)
    with pytest.raises(SchemaRegistryError) as gone:
        client.get_latest_version("s")
    assert gone.value.error_code == 40401
    assert client.delete_subject("s", permanent=True) == [1, 2]
    assert client.get_subjects(deleted=True) == []


def test_one_schema_under_two_subjects_has_one_id(client: SchemaRegistryClient) -> None:
    a = client.register_schema("a-value", V1)
    b = client.register_schema("b-value", V1)
    assert a == b
    assert sorted(client.get_subjects_by_schema_id(a)) == ["a-value", "b-value"]


def test_state_survives_a_restart(registry_settings: Settings) -> None:
    with serve(registry_settings) as base, SchemaRegistryClient({"url": base}) as client:
        ids = [client.register_schema("s", V1), client.register_schema("s", V2),
               client.register_schema("t", V1)]
        client.set_compatibility("t", "FORWARD")
        client.set_compatibility(level="FULL")
        client.delete_version("s", 1)
    with serve(registry_settings) as base, SchemaRegistryClient({"url": base}) as client:
        assert client.get_versions("s") == [2]
        assert client.get_versions("s", deleted=True) == [1, 2]
        assert client.get_version("s", 2).schema_id == ids[1]
        assert client.get_version("t", 1).schema_id == ids[0] == ids[2]
        assert client.get_compatibility("t") == "FORWARD"
        assert client.get_compatibility() == "FULL"
        assert client.register_schema("u", avro("Fresh")) == max(ids) + 1


def test_avro_serde_round_trip_with_topic_record_strategy(client: SchemaRegistryClient) -> None:
    schema = avro("Happened", {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}})
    serializer = AvroSerializer(client, schema.schema_str,
                                conf={"subject.name.strategy": topic_record_subject_name_strategy})
    deserializer = AvroDeserializer(client)
    ctx = SerializationContext("events", MessageField.VALUE)
    value = {"id": "x1", "at": dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)}
    data = serializer(value, ctx)
    assert data is not None and data[0] == 0  # Confluent wire format: magic byte, then the id
    assert deserializer(data, ctx) == value
    assert client.get_versions("events-glasscast.test.Happened") == [1]


def test_errors_use_confluents_shape(url: str) -> None:
    with httpx.Client(base_url=url, headers={"Content-Type": MEDIA_TYPE}) as http:
        answer = http.get("/subjects/nope/versions")
        assert answer.status_code == 404
        assert answer.headers["content-type"].startswith(MEDIA_TYPE)
        assert answer.json()["error_code"] == 40401
        bad = http.post("/subjects/s/versions", json={"schema": "{not json"})
        assert (bad.status_code, bad.json()["error_code"]) == (422, 42201)
        assert bad.json()["message"].startswith("Invalid schema")
        proto = http.post("/subjects/s/versions", json={"schema": "syntax = 1;", "schemaType": "PROTOBUF"})
        assert proto.json()["error_code"] == 42201 and "AVRO" in proto.json()["message"]
        http.post("/subjects/s/versions", json={"schema": V1.schema_str})
        assert http.get("/subjects/s/versions/0").json()["error_code"] == 42202
        assert http.get("/schemas/ids/999").json()["error_code"] == 40403
        assert http.get("/no/such/route").json()["error_code"] == 404
        verbose = http.post("/compatibility/subjects/s/versions/latest?verbose=true",
                            json={"schema": V2_BREAKING.schema_str})
        assert verbose.json()["is_compatible"] is False and verbose.json()["messages"]
        assert http.get("/mode").json() == {"mode": "READWRITE"}
        assert json.loads(http.get("/schemas/ids/1/schema").text) == json.loads(V1.schema_str or "")


def test_reads_a_topic_written_in_confluents_format(registry_settings: Settings) -> None:
    topic = registry_settings.registry.topic
    with serve(registry_settings):
        pass  # creates the compacted topic
    producer = Producer({"bootstrap.servers": registry_settings.kafka.bootstrap_servers, "acks": "all"})
    records: list[tuple[dict[str, Any], dict[str, Any] | None]] = [
        ({"keytype": "NOOP", "magic": 0}, None),
        ({"keytype": "SCHEMA", "subject": "old-value", "version": 1, "magic": 1},
         {"subject": "old-value", "version": 1, "id": 41, "schema": V1.schema_str, "deleted": False}),
        ({"keytype": "SCHEMA", "subject": "gone-value", "version": 1, "magic": 1},
         {"subject": "gone-value", "version": 1, "id": 42, "schema": V2.schema_str, "deleted": False}),
        ({"keytype": "DELETE_SUBJECT", "subject": "gone-value", "magic": 0},
         {"subject": "gone-value", "version": 1}),
        ({"keytype": "CONFIG", "subject": "old-value", "magic": 0}, {"compatibilityLevel": "FULL"}),
        ({"keytype": "MODE", "subject": None, "magic": 0}, {"mode": "READWRITE"}),
    ]
    for key, value in records:
        producer.produce(topic, key=json.dumps(key).encode(),
                         value=None if value is None else json.dumps(value).encode())
    # One flush, so one batch: the registry must read past a multi-record last batch.
    assert producer.flush(10) == 0
    producer.close()
    with serve(registry_settings) as base, SchemaRegistryClient({"url": base}) as client:
        assert client.get_subjects() == ["old-value"]
        assert client.get_subjects(deleted=True) == ["gone-value", "old-value"]
        assert client.get_version("old-value", 1).schema_id == 41
        assert client.get_compatibility("old-value") == "FULL"
        assert client.register_schema("new-value", V2) == 42  # the soft-deleted id is reused
        assert client.register_schema("new-value", avro("Thing", {"name": "m", "type": "long",
                                                                  "default": 0})) == 43


def test_bad_settings_fail_at_construction(registry_settings: Settings) -> None:
    with pytest.raises(SettingsError, match="GLASSCAST_REGISTRY_COMPATIBILITY"):
        create_registry_app(registry_settings.with_section("registry", compatibility="SIDEWAYS"))
    with pytest.raises(SettingsError, match="GLASSCAST_KAFKA_BOOTSTRAP_SERVERS"):
        create_registry_app(registry_settings.with_section("kafka", bootstrap_servers=""))
