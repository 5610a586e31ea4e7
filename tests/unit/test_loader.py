"""The event schemas: one file per catalogue record, documented, with the agreed fields."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from schemas.errors import SchemaConventionError, SchemaLoadError
from schemas.loader import (
    LoadedSchema,
    canonical_form,
    convention_problems,
    fingerprint,
    load_schema,
    load_schemas,
    schema_files,
    schema_path,
)
from topics.catalogue import all_records

SCHEMAS = load_schemas()


def summary(t: Any) -> str:
    """A short spelling of a field type: 'uuid', 'null|string', 'array<Emote>'."""
    if isinstance(t, list):
        return "|".join(summary(b) for b in t)
    if isinstance(t, dict):
        if "logicalType" in t:
            return str(t["logicalType"])
        if t["type"] == "array":
            return f"array<{summary(t['items'])}>"
        if t["type"] == "map":
            return f"map<{summary(t['values'])}>"
        if t["type"] in ("record", "enum", "fixed"):
            return str(t["name"])
        return summary(t["type"])
    return str(t)


def fields(name: str) -> dict[str, str]:
    return {f["name"]: summary(f["type"]) for f in SCHEMAS[name].raw["fields"]}


def test_every_catalogue_record_has_exactly_one_schema_and_vice_versa() -> None:
    records = all_records()
    assert len(records) == len(set(records)) == 58
    assert sorted(SCHEMAS) == sorted(records)
    assert len(schema_files()) == len(records)


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_file_name_record_name_and_namespace_agree(name: str) -> None:
    schema = SCHEMAS[name]
    aggregate, event = name.split(".")[1:]
    assert schema.path == f"{aggregate}/{event}.avsc" == schema_path(name)
    assert schema.raw["name"] == event
    assert schema.raw["namespace"] == f"glasscast.{aggregate}"
    assert convention_problems(schema.raw, schema.path) == []


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_record_and_every_field_have_docs(name: str) -> None:
    raw = SCHEMAS[name].raw
    assert raw["doc"].strip()

    def walk(t: Any) -> None:
        if isinstance(t, list):
            for b in t:
                walk(b)
        elif isinstance(t, dict):
            if t.get("type") in ("record", "enum"):
                assert t.get("doc", "").strip(), t["name"]
            for f in t.get("fields", []):
                assert f.get("doc", "").strip(), f"{name}.{f['name']}"
                walk(f["type"])
            walk(t.get("items"))
            walk(t.get("values"))

    walk(raw)


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_every_event_starts_with_event_id_and_occurred_at(name: str) -> None:
    first, second = SCHEMAS[name].raw["fields"][:2]
    assert first["name"] == "event_id"
    assert first["type"] == {"type": "string", "logicalType": "uuid"}
    assert second["name"] == "occurred_at"
    assert second["type"] == {"type": "long", "logicalType": "timestamp-millis"}


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_optional_fields_are_null_first_with_null_default(name: str) -> None:
    for f in SCHEMAS[name].raw["fields"]:
        if isinstance(f["type"], list) and "null" in f["type"]:
            assert f["type"][0] == "null" and "default" in f and f["default"] is None, f["name"]


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_enums_have_a_default_symbol(name: str) -> None:
    for f in SCHEMAS[name].raw["fields"]:
        t = f["type"]
        if isinstance(t, dict) and t.get("type") == "enum":
            assert t["default"] in t["symbols"], f["name"]
            assert f["default"] in t["symbols"], f["name"]


@pytest.mark.parametrize("name", sorted(set(SCHEMAS) - {"glasscast.ops.DeadLetter"}))
def test_events_carry_references_never_bytes(name: str) -> None:
    types = [summary(f["type"]) for f in SCHEMAS[name].raw["fields"]]
    assert not [t for t in types if "bytes" in t.split("|")]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("glasscast.user.UserRegistered", {"user_id": "uuid", "username": "string", "email": "null|string",
                                           "password_hash": "string"}),
        ("glasscast.user.ProfileUpdated", {"user_id": "uuid", "display_name": "null|string",
                                           "bio": "null|string", "avatar_url": "null|string"}),
        ("glasscast.channel.ChannelCreated", {"channel_id": "uuid", "owner_user_id": "uuid", "name": "string",
                                              "title": "string", "category": "null|string",
                                              "tags": "array<string>", "stream_key_hash": "string",
                                              "stream_key_nonce": "null|string"}),
        ("glasscast.channel.ChannelUpdated", {"channel_id": "uuid", "updated_by_user_id": "uuid",
                                              "title": "null|string", "category": "null|string",
                                              "tags": "null|array<string>", "vod_retention_days": "null|int"}),
        ("glasscast.channel.StreamKeyRotated", {"channel_id": "uuid", "rotated_by_user_id": "uuid",
                                                "stream_key_hash": "string", "stream_key_nonce": "null|string"}),
        ("glasscast.stream.StreamConfigured", {"stream_id": "uuid", "channel_id": "uuid",
                                               "configured_by_user_id": "uuid", "title": "string",
                                               "category": "null|string", "tags": "array<string>"}),
        ("glasscast.stream.StreamUpdated", {"stream_id": "uuid", "channel_id": "uuid", "updated_by_user_id": "uuid",
                                            "title": "null|string", "category": "null|string",
                                            "tags": "null|array<string>"}),
    ],
)
def test_agreed_contracts_are_exact(name: str, expected: dict[str, str]) -> None:
    assert fields(name) == {"event_id": "uuid", "occurred_at": "timestamp-millis", **expected}


@pytest.mark.parametrize(
    ("name", "required"),
    [
        ("glasscast.stream.StreamStarted", {"stream_id": "uuid", "channel_id": "uuid"}),
        ("glasscast.media.GopAvailable", {
            "stream_id": "uuid", "channel_id": "uuid", "seq": "long", "pts": "long", "duration": "long",
            "time_base_num": "int", "time_base_den": "int", "byte_size": "long", "blob_ref": "string",
            "video_codec": "string", "width": "int", "height": "int", "fps": "null|double",
            "audio_codec": "null|string", "audio_sample_rate_hz": "null|int", "audio_channels": "null|int"}),
        ("glasscast.media.SegmentReady", {
            "stream_id": "uuid", "channel_id": "uuid", "rendition": "string", "seq": "long",
            "duration_ms": "int", "program_date_time": "timestamp-millis", "byte_size": "long", "uri": "string",
            "parts": "array<SegmentPart>", "discontinuity": "boolean"}),
        ("glasscast.viewer.Heartbeat", {
            "channel_id": "uuid", "stream_id": "null|uuid", "session_id": "string", "user_id": "null|uuid",
            "rendition": "string", "buffer_health_s": "double", "bitrate_kbps": "int"}),
        ("glasscast.viewer.ViewerCountUpdated", {
            "channel_id": "uuid", "stream_id": "null|uuid", "viewers": "long", "window_s": "int",
            "bucket_s": "int"}),
        ("glasscast.chat.ChatMessageSent", {
            "message_id": "uuid", "channel_id": "uuid", "user_id": "uuid", "username": "string",
            "text": "string", "nonce": "null|string", "emotes": "array<Emote>", "badges": "array<string>"}),
        ("glasscast.billing.SubscriptionStarted", {
            "subscription_id": "uuid", "user_id": "uuid", "channel_id": "uuid", "tier": "SubscriptionTier",
            "expires_at": "timestamp-millis", "is_gift": "boolean", "gifted_by_user_id": "null|uuid",
            "amount_minor": "long", "currency": "string", "months_total": "int", "message": "null|string"}),
        ("glasscast.billing.SubscriptionRenewed", {
            "subscription_id": "uuid", "user_id": "uuid", "channel_id": "uuid", "tier": "SubscriptionTier",
            "expires_at": "timestamp-millis", "months_total": "int", "is_gift": "boolean",
            "message": "null|string"}),
        ("glasscast.billing.SubscriptionCancelRequested", {
            "subscription_id": "uuid", "user_id": "uuid", "channel_id": "uuid",
            "source": "SubscriptionCancelSource", "provider_subscription_ref": "null|string"}),
        ("glasscast.billing.PaymentSucceeded", {
            "order_id": "uuid", "provider": "string", "provider_event_id": "string", "kind": "PaymentKind",
            "user_id": "uuid", "channel_id": "null|uuid", "tier": "null|int", "bits": "null|int",
            "gift_to_user_ids": "array<uuid>", "message": "null|string", "amount_minor": "long",
            "currency": "string", "renewal": "boolean", "provider_subscription_ref": "null|string"}),
        ("glasscast.billing.PaymentReversed", {
            "order_id": "uuid", "provider": "string", "provider_event_id": "string", "kind": "ReversalKind",
            "amount_minor": "long", "currency": "string"}),
        ("glasscast.billing.BitsCheered", {
            "cheer_id": "uuid", "user_id": "uuid", "channel_id": "uuid", "bits": "long", "text": "string"}),
        ("glasscast.raid.RaidStarted", {
            "raid_id": "uuid", "from_channel_id": "uuid", "to_channel_id": "uuid", "requested_by": "uuid",
            "deadline_at": "timestamp-millis"}),
        ("glasscast.raid.RaidCompleted", {
            "raid_id": "uuid", "from_channel_id": "uuid", "to_channel_id": "uuid", "viewers": "long"}),
        ("glasscast.ops.DeadLetter", {
            "source_topic": "string", "partition": "int", "offset": "long", "timestamp": "null|timestamp-millis",
            "key": "null|bytes", "value": "null|bytes", "error": "string", "consumer_group": "string"}),
    ],
)
def test_agreed_fields_are_present(name: str, required: dict[str, str]) -> None:
    have = fields(name)
    assert {k: have.get(k) for k in required} == required


def test_defaults_of_collections_and_flags() -> None:
    by_name = {f["name"]: f for f in SCHEMAS["glasscast.media.SegmentReady"].raw["fields"]}
    assert by_name["parts"]["default"] == [] and by_name["discontinuity"]["default"] is False
    part = by_name["parts"]["type"]["items"]
    assert {f["name"]: summary(f["type"]) for f in part["fields"]} == {
        "uri": "string", "duration_ms": "int", "independent": "boolean"}
    chat = {f["name"]: f for f in SCHEMAS["glasscast.chat.ChatMessageSent"].raw["fields"]}
    assert chat["emotes"]["default"] == [] and chat["badges"]["default"] == []
    emote = chat["emotes"]["type"]["items"]
    assert [f["name"] for f in emote["fields"]] == ["emote_id", "start", "end"]


def test_fingerprints_are_stable_and_ignore_docs() -> None:
    schema = load_schema("glasscast.channel.ChannelCreated")
    assert isinstance(schema, LoadedSchema)
    assert len(schema.crc64) == 16 and len(schema.sha256) == 64
    undocumented = {**schema.raw, "doc": "something else"}
    assert fingerprint(undocumented) == schema.crc64
    assert canonical_form(undocumented) == schema.canonical
    changed = {**schema.raw, "fields": schema.raw["fields"][:-1]}
    assert fingerprint(changed, "SHA-256") != schema.sha256
    assert len({s.crc64 for s in SCHEMAS.values()}) == len(SCHEMAS)


def test_schema_path_rejects_foreign_names() -> None:
    with pytest.raises(SchemaLoadError, match="not a name of the form"):
        schema_path("com.example.Thing")


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


GOOD = """{"type": "record", "name": "Ping", "namespace": "glasscast.demo", "doc": "A ping.", "fields": [
  {"name": "event_id", "type": {"type": "string", "logicalType": "uuid"}, "doc": "Id."},
  {"name": "occurred_at", "type": {"type": "long", "logicalType": "timestamp-millis"}, "doc": "When."},
  {"name": "n", "type": "int", "doc": "A number."}]}"""


def test_a_conforming_directory_loads(tmp_path: Path) -> None:
    write(tmp_path, "demo/Ping.avsc", GOOD)
    loaded = load_schemas(tmp_path)
    assert list(loaded) == ["glasscast.demo.Ping"]
    assert loaded["glasscast.demo.Ping"].parsed["name"] == "glasscast.demo.Ping"


@pytest.mark.parametrize(
    ("rel", "text", "message"),
    [
        ("demo/Pong.avsc", GOOD, "record name 'Ping' does not match file name 'Pong'"),
        ("other/Ping.avsc", GOOD, "namespace 'glasscast.demo' should be 'glasscast.other'"),
        ("demo/Ping.avsc", GOOD.replace(', "doc": "A number."', ""), "field 'Ping.n' has no doc"),
        ("demo/Ping.avsc", GOOD.replace('"doc": "A ping.", ', ""), "record 'Ping' at Ping has no doc"),
        ("demo/Ping.avsc", GOOD.replace('"logicalType": "uuid"', '"logicalType": "x"'),
         "field 0 must be 'event_id'"),
        ("Ping.avsc", GOOD, "expected <aggregate>/<EventName>.avsc"),
    ],
)
def test_convention_breaches_are_named(tmp_path: Path, rel: str, text: str, message: str) -> None:
    write(tmp_path, rel, text)
    with pytest.raises(SchemaConventionError) as info:
        load_schemas(tmp_path)
    assert message in str(info.value)
    assert rel in str(info.value)


def test_invalid_json_and_invalid_avro_are_load_errors(tmp_path: Path) -> None:
    write(tmp_path, "demo/Ping.avsc", GOOD[:-3])
    with pytest.raises(SchemaLoadError, match=r"demo/Ping.avsc: invalid JSON at line 4 column 50"):
        load_schemas(tmp_path)
    write(tmp_path, "demo/Ping.avsc", GOOD.replace('"type": "int"', '"type": "Nope"'))
    with pytest.raises(SchemaLoadError, match="not a valid Avro schema") as info:
        load_schemas(tmp_path)
    assert isinstance(info.value, ValueError)
