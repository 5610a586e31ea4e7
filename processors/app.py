"""The Faust app that materialises views from the log.

Agents are thin loops: decode, fold into the view in Valkey, maybe dead-letter
(docs/ARCHITECTURE.md, "Processors").  ``build_processors(settings)`` is the one entry
point; ``glasscast run processors`` runs the worker it returns.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass
from typing import Any

import faust
import redis.asyncio as aioredis

from infra.settings import KafkaSettings, Settings
from processors.chat_history.agent import add_chat_history_agent
from processors.codec import Decoded, Undecodable, register_codec
from processors.eventsub.dispatcher import add_eventsub_dispatcher
from processors.ledger.worker import add_ledger_worker
from processors.notifications.agents import add_notification_agents
from processors.raids.worker import add_raid_worker
from processors.retrying import hold, release, until_done
from processors.stream import IdleStream
from processors.subscriptions.processor import add_subscription_processor
from processors.transport import SCHEME
from processors.transport import register as register_transport
from processors.viewers_agent import add_viewer_agents
from topics.consumer import dead_letter_record
from topics.producer import EventProducer
from topics.serde import AvroSerde
from views.errors import VALKEY_UNAVAILABLE
from views.fold import Applied
from views.readiness import ready_key
from views.store import VIEW_TOPICS, ViewStore

log = logging.getLogger("glasscast.processors")

CODEC = "glasscast_avro"


@dataclass
class Resources:
    """What the agents share (kept off Faust's own attributes such as ``producer``)."""

    views: ViewStore
    dead_letters: EventProducer


class ProcessorsApp(faust.App):
    """The Faust app plus the resources its agents share."""

    fetch_max_wait_ms: int = 10
    kafka_settings: KafkaSettings | None = None  # the consumer sleeps on its doorbell while idle (transport.py)
    resources: Resources


def build_processors(settings: Settings, serde: AvroSerde) -> ProcessorsApp:
    """The Faust app with every view agent, configured from ``settings``."""
    register_transport()
    register_codec(CODEC, serde)
    session_s = settings.kafka.session_timeout_ms / 1000
    datadir = settings.data_dir / "processors"
    datadir.mkdir(parents=True, exist_ok=True)
    app = ProcessorsApp(
        settings.processors.app_id,
        broker=f"{SCHEME}://{settings.kafka.bootstrap_servers}",
        store="memory://",
        web_enabled=False,
        autodiscover=False,
        topic_allow_declare=False,  # topics/ creates the catalogue's topics
        topic_disable_leader=True,
        consumer_auto_offset_reset=settings.processors.auto_offset_reset,
        broker_session_timeout=session_s,
        broker_heartbeat_interval=max(0.5, session_s / 3),
        broker_request_timeout=max(30.0, session_s * 2),
        broker_rebalance_timeout=max(10.0, session_s * 2),
        broker_commit_every=100,
        broker_commit_interval=1.0,
        datadir=str(datadir),
        Stream=IdleStream,  # take_events that does not wake while idle (processors/stream.py)
        logging_config=None,
        loghandlers=[],
    )
    app.fetch_max_wait_ms = settings.kafka.fetch_wait_max_ms
    app.kafka_settings = settings.kafka
    res = app.resources = Resources(
        views=ViewStore(aioredis.Redis.from_url(settings.valkey.url), settings.valkey.key_prefix),
        dead_letters=EventProducer(settings.kafka, serde))
    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def announce(sender: Any, assigned: set[Any], **_: Any) -> None:
        # Readiness for operators and tests: this worker owns these partitions now.
        parts = sorted(f"{tp.topic}:{tp.partition}" for tp in assigned)
        await res.views.r.set(ready_key(settings), json.dumps({"partitions": parts}))
        log.info("assigned %d partitions: %s", len(parts), ", ".join(parts))

    add_viewer_agents(app, settings, res.views, res.dead_letters, CODEC)
    add_chat_history_agent(app, settings, res.dead_letters, CODEC)
    add_eventsub_dispatcher(app, settings, serde)  # its own consumer group: a slow webhook holds no view back
    add_ledger_worker(app, settings, serde)  # its own consumer group: commits only after the ledger is written
    add_notification_agents(app, settings, res.views, res.dead_letters, CODEC)
    add_raid_worker(app, settings, serde)  # its own consumer group; completes raids whose countdown ended
    add_subscription_processor(app, settings, serde)  # its own consumer group, committed after its work
    view_topic = app.topic(*VIEW_TOPICS, key_serializer="raw", value_serializer=CODEC)

    @app.agent(view_topic)
    async def materialise_views(stream: faust.StreamT[Any]) -> None:
        async for event in stream.events():
            msg = event.message
            value = event.value
            if isinstance(value, Undecodable):
                log.warning("undecodable record %s[%s]@%s: %s", msg.topic, msg.partition, msg.offset, value.error)
                res.dead_letters.produce(dead_letter_record(
                    msg.topic, msg.partition, msg.offset, int((msg.timestamp or 0) * 1000),
                    msg.key, value.raw, value.error, settings.processors.app_id), key=msg.topic)
                continue
            if isinstance(value, Decoded):
                applied = Applied(msg.offset, value.value)
                hold([event])  # a write cut short leaves the event uncommitted (processors/retrying.py)
                await until_done(functools.partial(res.views.apply, applied),
                                 f"view write of {msg.topic}[{msg.partition}]@{msg.offset}", VALKEY_UNAVAILABLE, log)
                release([event])

    return app
