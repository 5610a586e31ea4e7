"""A Faust Kafka transport whose consumer fetches with a short wait, and sleeps on the doorbell while idle.

Faust's aiokafka driver hard-codes ``fetch_max_wait_ms=1500``; the embedded
broker only re-checks a waiting fetch on its timer (docs/ARCHITECTURE.md,
"Embedded platform"), so views would lag events by up to 1.5 s.  This transport applies the app's
``fetch_max_wait_ms`` (from ``settings.kafka.fetch_wait_max_ms``) before
aiokafka builds its fetcher.  Registered as the ``glasscast://`` broker scheme.

A short wait costs the broker CPU on every fetch, also when nothing happens.
With the doorbell on (``app.kafka_settings``, ``topics/doorbell.py``), a task
in the consumer thread's event loop pauses every assigned partition (aiokafka's
own ``pause``: Faust never uses it, it keeps its own set of paused partitions)
once the consumer has had no record, ring or new assignment for
``doorbell.LINGER_S``, so an idle worker sends no fetch; a ring of one of the
subscribed topics resumes them at once.  Every ``kafka.idle_check_ms`` it
resumes until every partition has had a fetch answer, then pauses again if
nothing came; while its doorbell connection is down it does not pause at
all.  aiokafka drops what a fetch in flight returns for a paused partition
and fetches it again at the resume, so nothing is skipped or reordered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiokafka
from aiokafka import TopicPartition
from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as faust_aiokafka

from infra.settings import KafkaSettings
from topics import doorbell

log = logging.getLogger("glasscast.processors.transport")

SCHEME = "glasscast"
DEFAULT_FETCH_MAX_WAIT_MS = 10
PROBE_POLL_S = 0.005  # during an idle check: how often the fetch answers are looked at


class LowLatencyConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    _gate: doorbell.IdleGate | None = None
    _doorbell_task: asyncio.Task[None] | None = None

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka hands this to its Fetcher in start(), which runs after this.
        consumer._fetch_max_wait_ms = getattr(self.app, "fetch_max_wait_ms", DEFAULT_FETCH_MAX_WAIT_MS)
        return consumer

    async def on_start(self) -> None:
        await super().on_start()  # in the consumer thread's loop: the aiokafka consumer is started
        kafka: KafkaSettings | None = getattr(self.app, "kafka_settings", None)
        if kafka is not None and doorbell.enabled(kafka):
            self._gate = doorbell.new_gate(kafka, time.monotonic())
            self._doorbell_task = asyncio.ensure_future(self._doorbell(kafka))

    async def on_thread_stop(self) -> None:
        task, self._doorbell_task = self._doorbell_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await super().on_thread_stop()

    async def _fetch_records(self, consumer: aiokafka.AIOKafkaConsumer, active_partitions: Any,
                             timeout: float | None = None, max_records: int | None = None) -> Any:
        records = await super()._fetch_records(consumer, active_partitions, timeout=timeout,
                                               max_records=max_records)
        if records and self._gate is not None:
            self._gate.wake(time.monotonic())
        return records

    async def _doorbell(self, kafka: KafkaSettings) -> None:
        """Pause while idle, resume at a ring (see the module docstring)."""
        consumer = self._ensure_consumer()
        gate = self._gate
        assert gate is not None
        bell = doorbell.AsyncDoorbell(kafka, ())
        subscribed: frozenset[str] | None = None
        assigned: frozenset[TopicPartition] = frozenset()
        probe_ms = 0
        try:
            while True:
                now = time.monotonic()
                topics = frozenset(consumer.subscription())
                if topics and (not bell.healthy or topics != subscribed):
                    if await bell.connect(topics):
                        subscribed = topics
                    else:
                        subscribed = None
                    self._resume(consumer, gate, now)  # rings were missed (or cannot be heard): fetch
                    if subscribed is None:
                        await asyncio.sleep(doorbell.RETRY_S)
                        continue
                parts = frozenset(consumer.assignment())
                if parts != assigned:  # a rebalance: new partitions catch up first
                    assigned = parts
                    self._resume(consumer, gate, now)
                if gate.probing and parts and all(_answered_since(consumer, tp, probe_ms) for tp in parts):
                    gate.probe_done(now)
                if gate.should_pause(now):
                    if parts and bell.healthy:
                        consumer.pause(*parts)
                        gate.paused_at(now)
                    else:
                        gate.wake(now)
                if gate.paused:
                    timeout = gate.next_check - now
                elif gate.probing:
                    timeout = PROBE_POLL_S
                else:
                    timeout = gate.awake_until - now
                if not bell.healthy:  # not subscribed yet (Faust subscribes after the start): look again soon
                    await asyncio.sleep(max(0.0, min(timeout, doorbell.RETRY_S)))
                    continue
                rung = await bell.wait(timeout)
                now = time.monotonic()
                if rung is not False:  # rung, or the doorbell went down
                    self._resume(consumer, gate, now)
                elif gate.check_due(now):
                    probe_ms = int(time.time() * 1000)
                    self._resume(consumer, gate, now, probe=True)
        except asyncio.CancelledError:
            raise
        except Exception:  # never leave the partitions paused behind a dead task
            log.exception("doorbell task failed; fetching without pauses from now on")
            self._resume(consumer, gate, time.monotonic())
            self._gate = None
        finally:
            await bell.close()

    @staticmethod
    def _resume(consumer: aiokafka.AIOKafkaConsumer, gate: doorbell.IdleGate, now: float,
                probe: bool = False) -> None:
        paused = consumer.paused()
        if paused:
            consumer.resume(*paused)
        gate.resumed(now, probe)


def _answered_since(consumer: aiokafka.AIOKafkaConsumer, tp: TopicPartition, since_ms: int) -> bool:
    """Whether a fetch answer for ``tp`` arrived since ``since_ms`` (aiokafka notes each one's time)."""
    assignment = consumer._subscription.subscription.assignment if consumer._subscription.subscription else None
    state = assignment.state_value(tp) if assignment is not None else None
    return state is None or (state.timestamp or 0) >= since_ms


class LowLatencyConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> LowLatencyConsumerThread:
        return LowLatencyConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    Consumer = LowLatencyConsumer


def register() -> None:
    """Make ``glasscast://host:port`` a Faust broker URL (idempotent)."""
    TRANSPORTS.aliases[SCHEME] = f"{__name__}:Transport"
