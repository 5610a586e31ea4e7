"""Typed event producer: catalogue-checked, Avro in the Confluent wire format.

Idempotent with ``acks=all`` so a retried send never duplicates or reorders a
record.  A background thread serves librdkafka's delivery callbacks, so
neither ``produce`` nor an awaiting coroutine ever blocks the event loop on
``poll``/``flush`` (blocking confluent-kafka calls stay off the loop: docs/ARCHITECTURE.md, "Events").
That thread blocks in ``poll`` (``POLL_S``): librdkafka wakes it for every
delivery, so an idle producer costs a wake-up every half second, not fifty.

With the doorbell on (``kafka.doorbell`` and a ``kafka.doorbell_url``,
``topics/doorbell.py``), every delivery is followed by a ring of its topic, so
consumers that sleep while idle wake for it at once.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from infra.settings import KafkaSettings
from schemas.record import Record
from topics import doorbell
from topics.acks import AckCounter
from topics.catalogue import topic_for_record
from topics.errors import DeliveryError
from topics.serde import AvroSerde

log = logging.getLogger("glasscast.topics.producer")


@dataclass(frozen=True)
class Ack:
    """Where the broker put an acknowledged record."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int


DeliveryCallback = Callable[[DeliveryError | None, Ack | None], None]


def producer_config(kafka: KafkaSettings, **overrides: Any) -> dict[str, Any]:
    """librdkafka settings for every Glasscast producer."""
    conf: dict[str, Any] = {
        "bootstrap.servers": kafka.bootstrap_servers,
        "client.id": kafka.client_id,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": kafka.linger_ms,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
        "batch.num.messages": 10_000,
        "message.timeout.ms": max(30_000, kafka.request_timeout_ms * 3),
    }
    conf.update(overrides)
    return conf


def _ack(msg: Message) -> Ack:
    return Ack(msg.topic() or "", msg.partition() or 0, msg.offset() or 0, msg.timestamp()[1])


REBUILD_AFTER_S = 1.0  # at most one new librdkafka producer a second while the broker stays away
POLL_S = 0.5  # the poll thread's longest block: deliveries and errors wake it at once; close() waits this at most


class EventProducer:
    """Produce catalogue records; ``send`` awaits the broker's acknowledgement.

    A broker that restarts loses the idempotent producer's id (the embedded
    broker keeps it in memory), and librdkafka then retries against it until
    every record times out.  So when librdkafka reports every broker down (or
    a fatal error), the poll thread replaces the client with a fresh one and
    purges the old one: records it had not delivered fail to their callers at
    once (nothing acknowledged is lost), and the next record goes through the
    new client as soon as the broker is back.
    """

    def __init__(self, kafka: KafkaSettings, serde: AvroSerde, **overrides: Any) -> None:
        self.serde = serde
        self._config = producer_config(kafka, **overrides)
        self._config["error_cb"] = self._on_error
        self._ringer = doorbell.Ringer(kafka) if doorbell.enabled(kafka) else None
        if self._ringer is not None:  # records produced without a callback of their own ring through this one
            self._config["on_delivery"] = self._delivered
        self._producer = Producer(self._config)
        self._topics: dict[str, str] = {}  # record full name -> its catalogue topic
        # Per event loop that awaits sends (weakly: a loop that is gone takes its settler with it).
        self._settlers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Settler] = weakref.WeakKeyDictionary()
        self._closing = threading.Event()
        self._rebuild = threading.Event()
        self._rebuilt_at = 0.0
        self.rebuilds = 0  # how many times the client was replaced (tests, metrics)
        self._poller = threading.Thread(target=self._poll_loop, name="producer-poll", daemon=True)
        self._poller.start()

    def _on_error(self, err: KafkaError) -> None:
        # Runs on the poll thread.  Transport errors alone are routine (idle reconnects).
        if err.code() == KafkaError._ALL_BROKERS_DOWN or err.fatal():
            self._rebuild.set()

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is None and self._ringer is not None:
            self._ringer.ring(msg.topic() or "")

    def _poll_loop(self) -> None:
        while not self._closing.is_set():
            try:
                self._producer.poll(POLL_S)
            except KafkaException as exc:  # a fatal client error: never let the poll thread die of it
                log.error("producer client failed: %s", exc)
                self._rebuild.set()
            if self._rebuild.is_set() and time.monotonic() - self._rebuilt_at >= REBUILD_AFTER_S:
                self._replace_client()

    def _replace_client(self) -> None:
        self._rebuild.clear()
        self._rebuilt_at = time.monotonic()
        old, self._producer = self._producer, Producer(self._config)
        self.rebuilds += 1
        old.purge()  # undelivered records fail to their callers now, not after message.timeout.ms
        old.flush(0)
        log.warning("the broker went away: replaced the producer client (%d so far)", self.rebuilds)

    def produce(
        self,
        event: Record,
        key: str,
        on_delivery: DeliveryCallback | None = None,
        timestamp_ms: int | None = None,
        topic: str | None = None,
    ) -> None:
        """Queue one record; ``on_delivery`` runs on the poll thread when it is acknowledged."""
        record = event.RECORD
        if topic is None:
            topic = self._topics.get(record) or self._topics.setdefault(record, topic_for_record(record).name)
        data = self.serde.encode(topic, event)
        if on_delivery is None and timestamp_ms is None:
            try:  # the hot path: nothing to build per record but the bytes
                self._producer.produce(topic, data, key.encode())
                return
            except BufferError:
                pass  # queue full: the slow path below waits for room
            except KafkaException as exc:
                raise DeliveryError(f"{topic}: {exc}") from exc
        callback = None
        if on_delivery is not None:
            ringer = self._ringer

            def callback(err: KafkaError | None, msg: Message) -> None:
                if err is not None:
                    on_delivery(DeliveryError(f"{record} to {topic}: {err.str()}"), None)
                else:
                    if ringer is not None:
                        ringer.ring(topic)
                    on_delivery(None, _ack(msg))
        self._produce_raw(topic, key.encode(), data, callback, timestamp_ms)

    def produce_counted(self, event: Record, key: str, counter: AckCounter) -> None:
        """Queue one record whose answer ``counter`` counts (``topics/acks.py``): for records sent by the thousand."""
        self.produce_value_counted(event.RECORD, event.to_avro(), key, counter)

    def produce_value_counted(self, record: str, value: Mapping[str, Any], key: str, counter: AckCounter,
                              topic: str | None = None) -> None:
        """``produce_counted`` for the Avro value of a ``record`` (a fan-out varies a few fields of one record)."""
        if topic is None:
            topic = self._topics.get(record) or self._topics.setdefault(record, topic_for_record(record).name)
        data = self.serde.encode_value(topic, record, value)
        counter.ringer = self._ringer
        counter.produced += 1
        try:
            self._produce_raw(topic, key.encode(), data, counter.answered, None)
        except DeliveryError:
            counter.produced -= 1
            raise

    def _produce_raw(self, topic: str, key: bytes, data: bytes, callback: Any, timestamp_ms: int | None) -> None:
        kwargs: dict[str, Any] = {"key": key, "value": data}
        if callback is not None:
            kwargs["on_delivery"] = callback
        if timestamp_ms is not None:
            kwargs["timestamp"] = timestamp_ms
        while True:
            try:
                self._producer.produce(topic, **kwargs)
                return
            except BufferError:
                # Local queue full: let librdkafka drain (back-pressure to the caller).
                self._producer.poll(0.01)
            except KafkaException as exc:
                raise DeliveryError(f"{topic}: {exc}") from exc

    async def send(self, event: Record, key: str, timestamp_ms: int | None = None, topic: str | None = None,
                   timeout_s: float | None = None) -> Ack:
        """Produce and wait for the acknowledgement without blocking the loop.

        ``timeout_s``: raise ``TimeoutError`` if none came by then (as ``asyncio.wait_for`` would, without
        a task per record); the record may still be delivered later.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Ack] = loop.create_future()
        settler = self._settlers.get(loop)
        if settler is None:
            settler = self._settlers.setdefault(loop, _Settler(loop))
        add = settler.add

        def done(err: DeliveryError | None, ack: Ack | None) -> None:
            add(future, err, ack)

        self.produce(event, key, on_delivery=done, timestamp_ms=timestamp_ms, topic=topic)
        if timeout_s is None:
            return await future
        timer = loop.call_later(timeout_s, _expire, future)
        try:
            return await future
        finally:
            timer.cancel()

    def send_sync(self, event: Record, key: str, timeout_s: float = 30.0,
                  timestamp_ms: int | None = None, topic: str | None = None) -> Ack:
        """Produce and block until acknowledged (CLI tools and scripts)."""
        result: list[Any] = []
        done = threading.Event()

        def callback(err: DeliveryError | None, ack: Ack | None) -> None:
            result.append(err or ack)
            done.set()

        self.produce(event, key, on_delivery=callback, timestamp_ms=timestamp_ms, topic=topic)
        if not done.wait(timeout_s):
            raise DeliveryError(f"{event.RECORD}: no acknowledgement within {timeout_s} s")
        if isinstance(result[0], DeliveryError):
            raise result[0]
        return result[0]  # type: ignore[no-any-return]

    def metadata(self, timeout_s: float = 5.0) -> list[str]:
        """Topic names the broker reports (a liveness check; blocks up to ``timeout_s``)."""
        return sorted(self._producer.list_topics(timeout=timeout_s).topics)

    def flush(self, timeout_s: float = 30.0) -> int:
        """Wait for queued records; returns how many are still undelivered."""
        return int(self._producer.flush(timeout_s))

    def close(self, timeout_s: float = 30.0) -> None:
        remaining = self.flush(timeout_s)
        self._closing.set()
        self._poller.join(timeout=2 * POLL_S + 1)
        if self._ringer is not None:
            self._ringer.close()
        if remaining:
            raise DeliveryError(f"{remaining} records not acknowledged at close")


class _Settler:
    """Delivery reports for the awaiting coroutines of one event loop, handed to it in batches.

    The poll thread adds each report; the loop is woken (``call_soon_threadsafe``, a write to its
    self-pipe) once for every report that arrives before it runs the batch, not once per report.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.lock = threading.Lock()
        self.pending: list[tuple[asyncio.Future[Ack], DeliveryError | None, Ack | None]] = []
        self.scheduled = False

    def add(self, future: asyncio.Future[Ack], err: DeliveryError | None, ack: Ack | None) -> None:
        with self.lock:
            self.pending.append((future, err, ack))
            if self.scheduled:
                return
            self.scheduled = True
        try:
            self.loop.call_soon_threadsafe(self.run)
        except RuntimeError:  # the loop is closed: nobody awaits these any more
            with self.lock:
                self.pending.clear()
                self.scheduled = False

    def run(self) -> None:
        with self.lock:
            batch, self.pending, self.scheduled = self.pending, [], False
        for future, err, ack in batch:
            _settle(future, err, ack)


def _expire(future: asyncio.Future[Ack]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


def _settle(future: asyncio.Future[Ack], err: DeliveryError | None, ack: Ack | None) -> None:
    if future.done():
        return
    if err is not None:
        future.set_exception(err)
    else:
        future.set_result(ack)  # type: ignore[arg-type]
