"""The embedded Schema Registry: Confluent's REST API over a compacted ``_schemas`` topic.

``state.py`` is the pure state machine (records in, subjects/versions/ids out),
``store.py`` keeps it in step with the Kafka topic, and ``app.py`` serves it over
HTTP.  ``glasscast up`` runs it when ``GLASSCAST_REGISTRY_URL`` is empty.
"""

from infra.embedded.registry.app import create_registry_app, serve_registry

__all__ = ["create_registry_app", "serve_registry"]
