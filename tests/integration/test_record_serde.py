"""Every typed record survives the real serde: registered with the embedded registry, framed, decoded back.

``tests/unit/test_records.py`` checks the records against fastavro alone; this
goes through ``AvroSerde`` as producers and consumers use it (Confluent wire
format, subjects under TopicRecordNameStrategy, the writer schema fetched by id).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.record import Record
from schemas.records import RECORD_TYPES
from schemas.records.channel import ChannelCreated
from tests.factories import Backbone, platform_settings
from tests.unit.test_records import records_of
from topics.catalogue import all_records, topic_for_record
from topics.runtime import make_serde
from topics.serde import AvroSerde

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def serde(backbone: Backbone, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AvroSerde]:
    s = make_serde(platform_settings(backbone, tmp_path_factory.mktemp("serde")))
    yield s
    s.close()


@pytest.mark.parametrize("name", all_records())
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_record_roundtrips_through_the_serde(serde: AvroSerde, name: str, data: st.DataObject) -> None:
    record: Record = data.draw(records_of(name), label=name)
    framed = serde.encode(topic_for_record(name).name, record)
    assert framed[0] == 0  # Confluent magic byte, then the registered schema id
    decoded = serde.decode(framed)
    assert type(decoded) is RECORD_TYPES[name]
    assert decoded == record
    assert serde.decode_value(framed) == (name, record.to_avro())


def test_the_raw_path_writes_the_same_bytes(serde: AvroSerde) -> None:
    made = ChannelCreated(occurred_at=1_790_000_000_000, channel_id="c", owner_user_id="u", name="n",
                          title="t", tags=("a", "b"), stream_key_hash="f" * 64)
    topic = topic_for_record(made.RECORD).name
    assert serde.encode(topic, made) == serde.encode_value(topic, made.RECORD, made.to_avro())
