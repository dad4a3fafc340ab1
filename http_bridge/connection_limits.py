"""What one HTTP client can hold: uvicorn's httptools protocol with deadlines, a head size and
header count bound, and a connection cap.

Stock uvicorn (httptools) has none of these. A request's head has no deadline, so sockets that
send a header byte every few seconds are never closed and keep their file descriptors; httptools
buffers a header value until it is complete (on_header is only called then), so a 64 MiB header
is 64 MiB of memory; and `limit_concurrency` answers 503 per *request* while slow sockets keep
their slots, so it cannot help. `LimitedHttpToolsProtocol` keeps uvicorn's protocol and adds:

- **Deadlines.** A request's head must be complete within `header_timeout_seconds`, counted
  from connection_made (the first request) or from the first byte of the next request on a
  keep-alive connection; its body within `body_timeout_seconds` after the head. Past a
  deadline the answer is 408 and the connection closes. Each deadline is one `loop.call_later`,
  armed only when a read leaves the head (or body) incomplete and cancelled when it completes,
  so a request that arrives in one packet arms none (the first request's head timer excepted).
  Between requests uvicorn's own keep-alive timeout closes idle connections.
- **Head size, while streaming.** The raw bytes read while the head is incomplete are counted
  after each read: past `max_header_bytes` (plus the framing of the request line and of
  `max_headers` header lines) the answer is 431 at once, so a connection holds at most that
  plus one read (256 KiB) of head. When the head is complete, the exact size of the URL and the
  header names and values is checked against `max_header_bytes`, and each header line is
  counted as it is parsed: the first beyond `max_headers` is not stored, and the answer is 431.
  Nothing refused this way reaches the app.
- **A connection cap** on uvicorn's `server_state.connections`. At the cap a new connection
  first evicts another one that is not serving a request, oldest first: one already refused and
  only draining, else one still sending its head (answered 408), else an idle keep-alive one
  (closed) - a connection that completed a request in time is more likely a real client than
  one that has not. A candidate must have been in its state for `min_evictable_age_seconds`
  (1 s), so a client whose connection is new and whose head is on its way is never evicted.
  If nothing can be evicted, the new connection gets 503 with `Retry-After: 1`. The candidates
  are kept in insertion-ordered dicts (`ConnectionTable`), an entry moved to the end when its
  connection changes state, so finding one is a look at the first entry.

Every refusal is a short JSON body in the RFC 6749 error shape naming the limit and its value
(never a header value), with `Connection: close`; then the connection stops parsing, half-closes
and discards what the client still sends for up to LINGER_SECONDS or LINGER_BYTES before it is
closed, so that a client still writing its request reads the answer instead of a reset. If a
response to an earlier (pipelined) request is still being written, nothing is answered: the
connection stops reading and closes after that response. Each event is counted in /metrics
(`tokenservice_http_connection_events_total`) and summarised in the log at most once per
interval (server/log_throttle.py), never one line per connection; unparsable requests get
uvicorn's 400 with the same accounting instead of uvicorn's warning per request.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import json
import logging
from typing import Any, ClassVar, Generic, TypeVar

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from http_bridge.response_writes import HeadWithBody
from server import metrics
from server.log_throttle import SummaryLog
from server.settings import ConfigError, Settings

log = logging.getLogger("tokenservice.http")

# A refused connection half-closes and reads (discarding) for at most this long or this much,
# then closes: enough for a client that writes its whole request before reading (1 MiB of
# headers, say) to read the answer; an attacker streaming more is cut off.
LINGER_SECONDS = 2.0
LINGER_BYTES = 4 * 1024 * 1024
# What an incomplete head may carry beyond its URL, names and values: the method, spaces,
# version and line ends of the request line, and ": " plus CRLF per header line.
REQUEST_LINE_FRAMING = 64
HEADER_LINE_FRAMING = 4
EVENTS_INTERVAL = 10.0


@dataclasses.dataclass(frozen=True)
class HttpLimits:
    """The HTTP bridge's connection limits (settings `http_*`; README "Limits")."""

    max_connections: int = 4096
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 10.0
    max_header_bytes: int = 16384
    max_headers: int = 100
    keepalive_timeout_seconds: float = 75.0
    # Not a setting: how long a connection must have been idle or sending its head before a
    # new one may evict it.
    min_evictable_age_seconds: float = 1.0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "min_evictable_age_seconds":
                if value < 0:
                    raise ValueError("min_evictable_age_seconds must not be negative")
            elif value <= 0:
                # 0 is not "off": without a deadline or bound, one client could hold a
                # connection, or memory, for as long as it likes.
                raise ConfigError(f"TOKENSERVICE_HTTP_{field.name.upper()} must be greater than 0")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> HttpLimits:
        values = {
            field.name: getattr(settings, f"http_{field.name}")
            for field in dataclasses.fields(cls)
            if hasattr(settings, f"http_{field.name}")
        }
        return cls(**{**values, **overrides})

    @property
    def streaming_head_bytes(self) -> int:
        """The raw bytes an incomplete head may reach."""
        return self.max_header_bytes + REQUEST_LINE_FRAMING + HEADER_LINE_FRAMING * self.max_headers


Connection = TypeVar("Connection")


class ConnectionTable(Generic[Connection]):
    """The connections of one server that a new one may evict, each with the time it entered
    its state: refused ones still draining (any age), then those sending a head, then idle
    keep-alive ones. Every dict is in insertion order and an entry is re-inserted when its
    connection changes state, so each dict's first entry is its oldest."""

    def __init__(self) -> None:
        self.draining: dict[Connection, float] = {}
        self.heads: dict[Connection, float] = {}
        self.idle: dict[Connection, float] = {}

    def sending_head(self, connection: Connection, now: float) -> None:
        self.idle.pop(connection, None)
        self.heads.pop(connection, None)
        self.heads[connection] = now

    def idle_since(self, connection: Connection, now: float) -> None:
        self.heads.pop(connection, None)
        self.idle.pop(connection, None)
        self.idle[connection] = now

    def serving(self, connection: Connection) -> None:
        self.heads.pop(connection, None)
        self.idle.pop(connection, None)

    def drain(self, connection: Connection, now: float) -> None:
        self.serving(connection)
        self.draining[connection] = now

    def forget(self, connection: Connection) -> None:
        self.serving(connection)
        self.draining.pop(connection, None)

    def victim(self, now: float, min_age: float) -> Connection | None:
        """The connection to evict for a new one, or None if none is old enough."""
        for connection in self.draining:
            return connection
        for candidates in (self.heads, self.idle):
            for connection, since in candidates.items():
                if now - since >= min_age:
                    return connection
                break
        return None


class Reading(enum.Enum):
    """What the parser is waiting for."""

    HEAD = enum.auto()
    BODY = enum.auto()
    IDLE = enum.auto()  # the last request is complete; the next has not begun


HEAD, BODY, IDLE = Reading.HEAD, Reading.BODY, Reading.IDLE  # plain globals: read per request


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a head that was just refused."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol under HttpLimits; see the module docstring. Serve
    `limited_protocol(limits)`, which binds the limits and one ConnectionTable per server (the
    defaults here serve the default limits with one table per process)."""

    limits: ClassVar[HttpLimits] = HttpLimits()
    table: ClassVar[ConnectionTable[LimitedHttpToolsProtocol]] = ConnectionTable()
    events: ClassVar[SummaryLog] = SummaryLog(
        log, "HTTP connection limits", interval=EVENTS_INTERVAL
    )
    # A response's head and body in one socket write (http_bridge/response_writes.py); off
    # only where the bench measures what the limits alone cost.
    one_write_per_response: ClassVar[bool] = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reading = HEAD
        self._head_bytes = 0  # raw bytes read while the head is incomplete
        self._header_bytes = 0  # names and values of the headers parsed so far
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None
        self._refused = False  # answered by the limits: nothing more is parsed
        self._draining = False
        self._discarded = 0

    # --- connection ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if self.one_write_per_response:
            transport = HeadWithBody(transport, self.loop)  # type: ignore[assignment]
        super().connection_made(transport)
        now = self.loop.time()
        if len(self.connections) > self.limits.max_connections and not self._make_room(now):
            self._refuse(503, "refused", "too many connections; retry later", retry_after=True)
            return
        self.table.sending_head(self, now)
        self._head_timer = self.loop.call_later(
            self.limits.header_timeout_seconds, self._head_timed_out
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        self.table.forget(self)
        super().connection_lost(exc)

    def shutdown(self) -> None:
        if self._draining:
            self.transport.abort()
            return
        super().shutdown()

    def _make_room(self, now: float) -> bool:
        """Evicts until this connection is within the cap; False if it cannot be. (A refused
        connection counts until it is closed or evicted, so a second eviction can be needed.)"""
        while len(self.connections) > self.limits.max_connections:
            victim = self.table.victim(now, self.limits.min_evictable_age_seconds)
            if victim is None:
                return False
            victim._evicted()
        return True

    def _evicted(self) -> None:
        self.table.forget(self)
        self.connections.discard(self)  # its slot is free now, not when the loop gets to it
        if not self._refused:
            self._refused = True
            self._cancel_timers()
            if self._reading is HEAD:
                self.metric_event("evicted_head")
                self.transport.write(self._answer(408, self._head_deadline_message()))
            else:
                self.metric_event("evicted_idle")
        self.transport.abort()

    # --- reading ---------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._refused:
            self._discard(len(data))
            return
        self._unset_keepalive_if_required()
        reading = self._reading
        if reading is IDLE:
            self._reading = reading = HEAD
        if reading is HEAD:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # no upgrades here (ws="none"): the request went to the app as plain HTTP
        except httptools.HttpParserError:
            if not self._refused:  # else a callback refused the head and stopped the parser
                self._refused = True
                self.metric_event("malformed")
                self.send_400_response("Invalid HTTP request received.")
            return
        reading = self._reading
        if reading is HEAD:
            if self._head_bytes > self.limits.streaming_head_bytes:
                self._refuse_large_head()
            elif self._head_timer is None:
                self._head_timer = self.loop.call_later(
                    self.limits.header_timeout_seconds, self._head_timed_out
                )
                if not self._serving():
                    self.table.sending_head(self, self.loop.time())
        elif reading is BODY and self._body_timer is None:
            self._body_timer = self.loop.call_later(
                self.limits.body_timeout_seconds, self._body_timed_out
            )

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self.headers
        if len(headers) >= self.limits.max_headers:
            self._refuse(431, "too_many_headers", f"more than {self.limits.max_headers} headers")
            raise _Refused
        self._header_bytes += len(name) + len(value)
        # uvicorn's on_header, inline (it runs for every header of every request)
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self._header_bytes + len(self.url) > self.limits.max_header_bytes:
            self._refuse_large_head()
            raise _Refused
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self._reading = BODY
        self._head_bytes = self._header_bytes = 0
        self.table.serving(self)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._reading = IDLE
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._refused or self.transport.is_closing() or not self.cycle.response_complete:
            return  # refused, closing, or a pipelined request is being served now
        if self._reading is IDLE:
            self.table.idle_since(self, self.loop.time())
        elif self._reading is HEAD:
            self.table.sending_head(self, self.loop.time())

    def _serving(self) -> bool:
        cycle = self.cycle
        return cycle is not None and not cycle.response_complete

    # --- deadlines -------------------------------------------------------------------------

    def _head_deadline_message(self) -> str:
        return f"request headers not received within {self.limits.header_timeout_seconds:g} s"

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._refused and not self.transport.is_closing():
            self._refuse(408, "header_timeout", self._head_deadline_message())

    def _body_timed_out(self) -> None:
        self._body_timer = None
        if not self._refused and not self.transport.is_closing():
            seconds = self.limits.body_timeout_seconds
            self._refuse(408, "body_timeout", f"request body not received within {seconds:g} s")

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._body_timer, self._linger_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = self._linger_timer = None

    # --- refusing --------------------------------------------------------------------------

    def _refuse_large_head(self) -> None:
        self._refuse(
            431,
            "header_too_large",
            f"request headers larger than {self.limits.max_header_bytes} bytes",
        )

    def _refuse(
        self, status: int, event: str, description: str, *, retry_after: bool = False
    ) -> None:
        """Answers `status` and closes; parsing stops for good."""
        self._refused = True
        self._cancel_timers()
        self.metric_event(event)
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            if cycle.response_started or self.pipeline or self._reading is not BODY:
                # A response is being written: end the connection after it, answer nothing.
                cycle.keep_alive = False
                self.flow.pause_reading()
                self.table.forget(self)
                return
            # The app is waiting for this request's body: it will see a disconnect, and what
            # it answers is dropped.
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.write(self._answer(status, description, retry_after=retry_after))
        self._linger()

    def _answer(self, status: int, description: str, *, retry_after: bool = False) -> bytes:
        error = "temporarily_unavailable" if status == 503 else "invalid_request"
        body = json.dumps({"error": error, "error_description": description}).encode()
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head.append(b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body))
        if retry_after:
            head.append(b"retry-after: 1\r\n")
        head += [b"connection: close\r\n\r\n", body]
        return b"".join(head)

    def _linger(self) -> None:
        """Half-closes, and reads what the client still sends (discarding it) for a bounded
        time: closing with unread data would reset the connection, and a client still writing
        its request would lose the answer."""
        self._draining = True
        self.table.drain(self, self.loop.time())
        self.flow.resume_reading()
        transport = self.transport
        try:
            if transport.can_write_eof():
                transport.write_eof()
        except OSError:  # reset by the client in the meantime (ENOTCONN): nothing to wait for
            transport.abort()
            return
        self._linger_timer = self.loop.call_later(LINGER_SECONDS, transport.abort)

    def _discard(self, size: int) -> None:
        self._discarded += size
        if self._discarded > LINGER_BYTES:
            self.transport.abort()

    @classmethod
    def metric_event(cls, event: str) -> None:
        metrics.record_http_connection_event(event)
        cls.events.add(event)


def limited_protocol(
    limits: HttpLimits, *, one_write_per_response: bool = True
) -> type[LimitedHttpToolsProtocol]:
    """A protocol class for one server: `limits`, with one table of evictable connections and
    one summary log shared by that server's connections."""

    class Limited(LimitedHttpToolsProtocol):
        pass

    Limited.limits = limits
    Limited.one_write_per_response = one_write_per_response
    Limited.table = ConnectionTable()
    Limited.events = SummaryLog(log, "HTTP connection limits", interval=EVENTS_INTERVAL)
    return Limited
