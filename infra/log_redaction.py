"""Credentials out of log lines: what a logged URL, header or message must never carry.

A credential reaches a log the way a chat socket's JWT did: inside a URL that
a library logs as it is (uvicorn's ``"WebSocket /v1/chat/ws?...&token=..."
[accepted]``, httpx's ``HTTP Request: GET ...``), a header, or a service URL
with its password (``redis://:PASSWORD@host``).  ``redact`` replaces the value
of every secret-named parameter (``token=``, ``key=``, ``password=``... in a
query string, a ``key=value`` log field or a JSON body), anything shaped like
a JWT or a playback token (base64url JSON ``eyJ...``, dot, signature), a
stream key (``live_...``), an argon2 hash, a bearer credential and a URL's
password, whatever logger or library wrote it.  Other text is left alone
(``_HLS_msn=``, ``channel=``, ids).

``RedactingFilter`` does it to a ``logging.LogRecord`` (message, arguments
and traceback), so it can sit on any handler or logger; ``infra/logs.py``
puts it on the one handler every process logs through and on uvicorn's own
loggers.  Pure: no I/O, no state.
"""

from __future__ import annotations

import logging
import re
import traceback

MASK = "[redacted]"

# Parameter and field names whose values are credentials, wherever they appear as name=value or "name": "value".
# A name may carry a prefix (access_token, stream_key, x-api-key), so only a letter or digit right before it
# keeps it from matching (monkey= is not key=).
SECRET_NAMES = ("token", "key", "password", "passwd", "secret", "ticket", "signature", "sig", "credential",
                "credentials", "authorization", "jwt", "requirepass")
_NAMES = "|".join(sorted(SECRET_NAMES, key=len, reverse=True))

_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    # A JWT (header.payload.signature) or a playback token (payload.signature): base64url JSON starts "eyJ".
    (re.compile(r"eyJ[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]+){1,2}"), MASK),
    # A stream key (gateways/auth.py: "live_" and at least 32 URL-safe characters).
    (re.compile(r"live_[A-Za-z0-9_-]{20,}"), "live_" + MASK),
    # An argon2 PHC string ($argon2id$v=19$m=...,t=...,p=...$salt$hash).
    (re.compile(r"\$argon2(?:id|i|d)\$[A-Za-z0-9$=,+/._-]*"), "$argon2" + MASK),
    # The password in a URL's userinfo: scheme://user:PASSWORD@host.
    (re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^/\s:@\"']*:)[^/\s@\"']+@"), r"\1" + MASK + "@"),
    # Authorization: Bearer/Basic CREDENTIAL.
    (re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE), r"\1 " + MASK),
    # name=value in a query string or a log field (the value runs to the next separator; one masked above stays).
    (re.compile(rf"(?<![A-Za-z0-9])((?:{_NAMES})=)[^&\s\"',;()<>\[\]]+", re.IGNORECASE), r"\1" + MASK),
    # "name": "value" in JSON, and 'name': 'value' in a Python repr.
    (re.compile(rf"([\"']\w*(?:{_NAMES})[\"']\s*:\s*[\"'])[^\"']+([\"'])", re.IGNORECASE), r"\1" + MASK + r"\2"),
)


def redact(text: str) -> str:
    """``text`` with every credential it carries replaced by ``[redacted]``."""
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites a record's message and traceback text without credentials; never drops a record.

    The traceback is rendered here (``exc_text``, which ``logging.Formatter``
    prints instead of rendering ``exc_info`` again); formatters that render
    ``exc_info`` themselves (structlog's) are wrapped in ``RedactingFormatter``.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):  # structlog's own records carry a dict: RedactingFormatter sees to those
            try:
                message = record.getMessage()
            except (TypeError, ValueError):  # a broken format string: keep what there is, redacted
                message = f"{record.msg} {record.args}"
            clean = redact(message)
            if clean != message:
                record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class RedactingFormatter(logging.Formatter):
    """Another formatter's output, redacted: whatever it renders (fields, tracebacks) leaves without credentials."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return redact(self.inner.format(record))
