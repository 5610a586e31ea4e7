"""Live chat: the WebSocket room protocol, the send path, fan-out and moderation."""
