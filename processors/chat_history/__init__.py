"""Chat history: every accepted chat message, archived from ``chat.messages`` for replay.

``store.py`` is the interface and the message type, ``events.py`` turns the
log's records into what the store takes, ``sqlite_store.py`` (one machine) and
``cassandra_store.py`` (``infra/docker-compose.yml``) are the two backends,
``backends.py`` opens the one the settings name and ``agent.py`` is the Faust
agent that archives the topic.
"""
