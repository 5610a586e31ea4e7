"""Build the topics/ objects a process needs from its Settings."""

from __future__ import annotations

from infra.settings import Settings
from schemas.loader import load_schemas
from topics.producer import EventProducer
from topics.registry_client import RegistryClient
from topics.serde import AvroSerde


def make_serde(settings: Settings) -> AvroSerde:
    """An AvroSerde over the configured Schema Registry and our schemas."""
    return AvroSerde(RegistryClient(settings.registry.url),
                     {name: s.raw for name, s in load_schemas().items()})


def make_producer(settings: Settings, serde: AvroSerde | None = None, **overrides: object) -> EventProducer:
    return EventProducer(settings.kafka, serde or make_serde(settings), **overrides)
