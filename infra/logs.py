"""Structured logging for every process: JSON lines or a readable console format.

Modules log through the standard ``logging`` module; structlog's
ProcessorFormatter renders every record (ours and the libraries') the same way,
with the process role bound as ``service``.  No line leaves with a credential
in it: the handler's formatter output and every record of uvicorn's and our
loggers go through ``infra/log_redaction.py`` (tokens, keys, passwords, URL
passwords), whichever library wrote them.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from infra.log_redaction import RedactingFilter, RedactingFormatter
from infra.settings import LogSettings

# Loggers that log request URLs themselves get the redaction filter too (a logger's filter sees only its own
# records), so that a handler other than ours (a test's capture, uvicorn's own log config) never sees a
# credential from them either.
REDACTED_LOGGERS = ("uvicorn.error", "uvicorn.access", "httpx")


def configure_logging(log: LogSettings, service: str) -> None:
    """Route all logging to stderr in the configured format, tagged with ``service``."""

    def add_service(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        event.setdefault("service", service)
        return event

    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_service,
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if log.format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(formatter))
    redaction = RedactingFilter()
    handler.addFilter(redaction)
    for name in REDACTED_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(redaction)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(log.level.upper())
    if root.level > logging.DEBUG:
        for noisy in ("aiokafka", "faust", "mode", "uvicorn.access", "httpx"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
