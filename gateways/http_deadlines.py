"""Deadlines for slow HTTP clients: uvicorn's httptools protocol with a header and a body timeout.

uvicorn closes a keep-alive connection that stays idle ``timeout_keep_alive``
seconds after a response, but it has no deadline before the first request, and
any byte that arrives cancels the keep-alive timer: a client that opens
connections and sends nothing, or a header line every few seconds
("slowloris"), holds each socket, its parser and its buffers for as long as
it likes.  llhttp also keeps whatever header bytes arrive, without a limit.
``DeadlineProtocol`` adds what RFC 9112 section 9.5 leaves to the server:

- the head (request line and header fields) must be complete within
  ``header_timeout_s`` of the connection opening or of the previous response
  ending; past that the connection closes, with ``408 Request Timeout``
  (RFC 9110 section 15.5.9) when part of a request had come, silently when
  nothing had (a browser's unused pre-connection);
- the body must be complete within ``body_timeout_s`` of the head; past that
  the client gets a 408 if no answer has started, the connection closes, and
  the app sees the client gone (``http.disconnect``);
- a head over ``max_header_bytes`` is refused with ``431 Request Header
  Fields Too Large`` (RFC 6585 section 5) and the connection closed.

The timers run only while the gateway waits for the client, never while the
app works on a request (a blocking LL-HLS reload may hold one for seconds).
Setting a deadline is a clock read: each connection has one timer, moved
only when a deadline comes earlier than it (a body deadline is set only when
a read ends mid-body), and the head is measured per read, not per header.
``http_options`` is what the gateway's uvicorn ``Config`` gets (gateways/drain.py).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateways.errors import PROBLEM_JSON
from infra.settings import GatewaySettings

REQUEST_TIMEOUT = (408, "Request Timeout")
HEADERS_TOO_LARGE = (431, "Request Header Fields Too Large")
HEADER_LINE_OVERHEAD = 4  # ": " and CRLF around each field line, which llhttp does not pass on


class HeadTooLarge(Exception):
    """Raised from a parser callback to stop at a head over the limit (httptools wraps it in HttpParserError)."""


class DeadlineProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` with header and body deadlines and a head size limit (module docstring)."""

    header_timeout_s: ClassVar[float] = 10.0
    body_timeout_s: ClassVar[float] = 30.0
    max_header_bytes: ClassVar[int] = 65536

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # What the connection waits for from the client ("head", "body" or None) and until when (loop time).
        self._waiting_for: str | None = None
        self._deadline_at = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._in_head = True  # the bytes that come are a request head
        self._head_too_large = False
        self._head_bytes = 0
        self._heard = False  # a byte came since the head deadline was set
        self._body_pending = False  # between a head and the end of its body
        self._upgrading = False

    # One timer per connection, moved only when a deadline comes earlier than it: setting a deadline is
    # a clock read, not a timer made and cancelled per request (uvicorn already makes one, for keep-alive).

    def _expect(self, what: str, timeout_s: float) -> None:
        self._waiting_for, self._deadline_at = what, self.loop.time() + timeout_s
        if self._timer is None or self._timer.when() > self._deadline_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self.loop.call_at(self._deadline_at, self._check)

    def _check(self) -> None:
        self._timer = None
        if self._waiting_for is None or self.transport.is_closing():
            return
        if self.loop.time() < self._deadline_at:  # the deadline moved on since the timer was set
            self._timer = self.loop.call_at(self._deadline_at, self._check)
        elif self._waiting_for == "head":
            self._head_timed_out()
        else:
            self._body_timed_out()

    def _await_head(self) -> None:
        self._heard = False
        self._expect("head", self.header_timeout_s)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._waiting_for = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._heard = True
        if self._in_head:
            self._head_bytes += len(data)  # counted per read, so the head's last read may count body bytes too
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self._in_head and self._head_bytes > self.max_header_bytes:
            self._waiting_for = None
            self._send_and_close(HEADERS_TOO_LARGE, f"request head over {self.max_header_bytes} bytes")
        elif self._body_pending and self._waiting_for is None:
            self._expect("body", self.body_timeout_s)  # this read ended mid-body

    # Parser callbacks: the head is complete, the body is complete; the response is sent.

    def on_headers_complete(self) -> None:
        self._waiting_for = None
        self._in_head = False
        # Counted per read, the head may look larger than it is; only then is it measured exactly.
        if self._head_bytes > self.max_header_bytes and self._head_size() > self.max_header_bytes:
            self._head_too_large = True
            raise HeadTooLarge  # httptools stops parsing; uvicorn answers through send_400_response
        self._upgrading = self.parser.should_upgrade() and self._should_upgrade()
        super().on_headers_complete()
        self._body_pending = not self._upgrading  # a WebSocket leaves this protocol: no body deadline

    def on_message_complete(self) -> None:
        self._body_pending = False
        self._waiting_for = None
        self._in_head, self._head_bytes = True, 0  # what comes next is the next request's head
        super().on_message_complete()
        if not self._upgrading and self.cycle.response_complete and not self.pipeline:
            self._await_head()  # answered before its body came: now wait for the next head

    def on_response_complete(self) -> None:
        waiting = not self.pipeline  # no request already read and queued behind this one
        super().on_response_complete()
        if waiting and not self._body_pending and not self.transport.is_closing():
            self._await_head()

    def _head_size(self) -> int:
        return len(self.url) + sum(len(n) + len(v) + HEADER_LINE_OVERHEAD for n, v in self.headers)

    # What a deadline or the size limit does.

    def send_400_response(self, msg: str) -> None:
        if self._head_too_large:
            self._send_and_close(HEADERS_TOO_LARGE, f"request head over {self.max_header_bytes} bytes")
        else:
            super().send_400_response(msg)

    def _head_timed_out(self) -> None:
        if self._heard:
            self._send_and_close(REQUEST_TIMEOUT, f"request head not received within {self.header_timeout_s:g} s")
        else:
            self.transport.close()

    def _body_timed_out(self) -> None:
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:
            self._send_and_close(REQUEST_TIMEOUT, f"request body not received within {self.body_timeout_s:g} s")
        else:
            self.transport.close()
        if cycle is not None:  # what connection_lost will do, at once: the app reads http.disconnect
            cycle.disconnected = True
            cycle.message_event.set()

    def _send_and_close(self, status: tuple[int, str], detail: str) -> None:
        """Answer with a problem document (gateways/errors.py's shape; no route, so no instance) and close."""
        code, title = status
        body = json.dumps({"type": "about:blank", "title": title, "status": code, "detail": detail}).encode()
        head = [b"HTTP/1.1 %d %s\r\n" % (code, title.encode())]
        for name, value in self.server_state.default_headers:
            head.extend([name, b": ", value, b"\r\n"])
        head.append(b"content-type: %s\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
                    % (PROBLEM_JSON.encode(), len(body)))
        self.transport.write(b"".join(head) + body)
        self.transport.close()


def deadline_protocol(gateway: GatewaySettings) -> type[DeadlineProtocol]:
    """``DeadlineProtocol`` with these settings' limits (uvicorn makes one protocol object per connection)."""
    class GatewayHttpProtocol(DeadlineProtocol):
        header_timeout_s = gateway.header_timeout_s
        body_timeout_s = gateway.body_timeout_s
        max_header_bytes = gateway.max_header_bytes

    return GatewayHttpProtocol


def http_options(gateway: GatewaySettings) -> dict[str, Any]:
    """The uvicorn ``Config`` options for the gateway's HTTP connections."""
    trusted = ",".join(gateway.trusted_proxies)
    return {"http": deadline_protocol(gateway), "timeout_keep_alive": gateway.keep_alive_s,
            # uvicorn trusts X-Forwarded-For from 127.0.0.1 unless told otherwise: only the named proxies.
            "proxy_headers": bool(trusted), "forwarded_allow_ips": trusted or "127.0.0.1"}
