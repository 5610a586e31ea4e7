"""Chat history: the read model of every accepted chat message, for replay.

``store.py`` is the interface and the message type, ``sqlite_store.py`` (one
machine) and ``cassandra_store.py`` (``infra/docker-compose.yml``) are the two
backends and ``backends.py`` opens the one the settings name.  The processors'
agent (``processors/chat_history/``) writes it; the gateway reads it.
"""
