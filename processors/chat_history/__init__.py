"""Chat history's writer: archives every accepted chat message from ``chat.messages``.

``events.py`` turns the log's records into what the history store takes and
``agent.py`` is the Faust agent that archives the topic.  The store itself
(interface, SQLite and Cassandra backends) is a read model in
``views/chat_history/``, which the gateway reads for replay.
"""
