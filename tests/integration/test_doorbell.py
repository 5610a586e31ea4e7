"""The doorbell on the real broker and Valkey (topics/doorbell.py): idle consumers fetch nothing, rings wake them.

No timing is asserted.  The idle check is set far beyond the tests' bounds where
a test must show that the ring, not the check, woke the consumer.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from infra.embedded.process import free_port
from infra.settings import Settings
from schemas.records.user import UserRegistered
from tests.waiting import eventually
from topics.admin import ensure_topics
from topics.consumer import Event, EventConsumer
from topics.producer import EventProducer
from topics.runtime import make_serde
from topics.serde import AvroSerde

pytestmark = pytest.mark.integration

LATEST: dict[str, Any] = {"auto.offset.reset": "latest"}


def registered(user_id: str) -> UserRegistered:
    return UserRegistered(occurred_at=1_700_000_000_000, user_id=user_id, username=f"u{user_id[:8]}",
                          password_hash="$argon2id$v=19$test")


class Polling:
    """A consumer driven by its own thread, as the media worker and the gateway's live edge drive theirs."""

    def __init__(self, consumer: EventConsumer) -> None:
        self.consumer = consumer
        self.events: list[Event] = []
        self.paused_seen = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            event = self.consumer.poll(0.2)
            if event is not None:
                self.events.append(event)
            if self.consumer.paused:
                self.paused_seen.set()

    def keys(self) -> set[str | None]:
        return {e.key for e in self.events}

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.consumer.close()


@pytest.fixture
def rig(settings_factory: Callable[..., Settings]) -> Iterator[Callable[..., tuple[Settings, AvroSerde]]]:
    serdes: list[AvroSerde] = []

    def make(**kafka: Any) -> tuple[Settings, AvroSerde]:
        s = settings_factory()
        # A client id of its own: rings of other tests on the shared Valkey do not wake these consumers.
        s = s.with_section("kafka", client_id=f"bell-{uuid.uuid4().hex[:8]}", doorbell_url=s.valkey.url, **kafka)
        ensure_topics(s.kafka)
        serdes.append(make_serde(s))
        return s, serdes[-1]

    yield make
    for serde in serdes:
        serde.close()


def start(settings: Settings, serde: AvroSerde, **kafka: Any) -> Polling:
    polling = Polling(EventConsumer(settings.with_section("kafka", **kafka).kafka, serde, ["users"],
                                    group_id=f"bell-{uuid.uuid4().hex[:8]}", **LATEST))
    # Joined, caught up, then idle: it pauses and fetches nothing.
    eventually(polling.paused_seen.is_set, 60, "the idle consumer to pause its partitions", every_s=0.1)
    return polling


def test_an_idle_consumer_pauses_and_a_delivery_rings_it_awake(rig: Callable[..., tuple[Settings, AvroSerde]]) -> None:
    settings, serde = rig(idle_check_ms=60_000)  # far beyond the wait below: only the ring can wake it
    polling = start(settings, serde)
    producer = EventProducer(settings.kafka, serde)
    try:
        user_id = str(uuid.uuid4())
        producer.send_sync(registered(user_id), user_id)
        eventually(lambda: user_id in polling.keys(), 30, "the rung consumer to get the record", every_s=0.05)
        # It stays awake while records flow, and they come in order.
        more = [str(uuid.uuid4()) for _ in range(20)]
        for uid in more:
            producer.produce(registered(uid), user_id)  # one key, one partition: order must hold
        eventually(lambda: set(more) <= {e.value.user_id for e in polling.events
                                         if isinstance(e.value, UserRegistered)}, 30, "every record")
        got = [e.value.user_id for e in polling.events if isinstance(e.value, UserRegistered)]
        assert [u for u in got if u in more] == more
    finally:
        producer.close(10)
        polling.close()


def test_a_record_nobody_rang_for_is_fetched_at_the_idle_check(
        rig: Callable[..., tuple[Settings, AvroSerde]]) -> None:
    settings, serde = rig(idle_check_ms=500)
    polling = start(settings, serde)
    silent = EventProducer(settings.with_section("kafka", doorbell=False).kafka, serde)  # rings nothing
    try:
        user_id = str(uuid.uuid4())
        silent.send_sync(registered(user_id), user_id)
        eventually(lambda: user_id in polling.keys(), 30, "the idle check to fetch the record", every_s=0.05)
    finally:
        silent.close(10)
        polling.close()


def test_a_consumer_whose_doorbell_is_down_does_not_pause(rig: Callable[..., tuple[Settings, AvroSerde]]) -> None:
    settings, serde = rig(idle_check_ms=60_000)
    down = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    consumer = EventConsumer(settings.with_section("kafka", doorbell_url=down).kafka, serde, ["users"],
                             group_id=f"bell-{uuid.uuid4().hex[:8]}", **LATEST)
    silent = EventProducer(settings.with_section("kafka", doorbell=False).kafka, serde)
    try:
        eventually(lambda: (consumer.poll(0.1), bool(consumer.assignment()))[1], 60, "an assignment")
        for _ in range(40):  # 4 s of polling: twice the linger after which a listening consumer pauses
            consumer.poll(0.1)
            assert not consumer.paused
        user_id = str(uuid.uuid4())
        silent.send_sync(registered(user_id), user_id)

        def got() -> bool:
            event = consumer.poll(0.1)
            return event is not None and event.key == user_id

        eventually(got, 30, "the record, fetched without a doorbell", every_s=0)
    finally:
        silent.close(10)
        consumer.close()


def test_a_held_partition_stays_held_through_a_ring_and_is_read_again_from_where_it_was_held(
        rig: Callable[..., tuple[Settings, AvroSerde]]) -> None:
    settings, serde = rig(idle_check_ms=500)
    consumer = EventConsumer(settings.kafka, serde, ["users"])  # assigned, no group: no rebalance moves it
    consumer.assign("end")
    producer = EventProducer(settings.kafka, serde)
    got: list[Event] = []

    def read(until: Callable[[], bool], what: str) -> None:
        def step() -> bool:
            got.extend(consumer.consume(100, 0.1))
            return until()
        eventually(step, 30, what, every_s=0.0)

    try:
        read(lambda: consumer.paused, "the idle consumer to pause")
        key = str(uuid.uuid4())  # one key: one partition, in order
        first = [str(uuid.uuid4()) for _ in range(10)]
        for uid in first:
            producer.produce(registered(uid), key)
        def mine(events: list[Event]) -> list[Event]:  # other tests write to the shared topic meanwhile
            return [e for e in events if e.key == key]

        read(lambda: len(mine(got)) >= 10, "the first records")
        held = mine(got)[3]
        consumer.hold_partition("users", held.partition, held.offset)
        read(lambda: consumer.paused, "the consumer, idle again, to pause")
        more = [str(uuid.uuid4()) for _ in range(5)]
        for uid in more:
            producer.send_sync(registered(uid), key)  # each rings the topic: the doorbell wakes the consumer
        before = len(got)
        read(lambda: not consumer.paused, "the ring to wake the consumer")
        for _ in range(20):  # two seconds of reads after the rings: nothing of the held partition arrives
            got.extend(consumer.consume(100, 0.1))
        assert not [e for e in got[before:] if e.partition == held.partition and e.key == key]
        consumer.release_partition("users", held.partition)
        after = len(got)
        read(lambda: {e.value.user_id for e in mine(got[after:]) if isinstance(e.value, UserRegistered)} >= set(more),
             "the held partition read again")
        again = [e.value.user_id for e in mine(got[after:]) if isinstance(e.value, UserRegistered)]
        assert again == first[3:] + more  # from the held offset, in order, nothing skipped
    finally:
        producer.close(10)
        consumer.close()
