"""Unary calls served as streaming-request calls, so that every call ends with a status, and the
count of calls in handlers, so that the server refuses calls beyond a limit instead of queueing.

grpcio's asyncio server reads a unary call's request message itself, and when the stream ends
without one (a client that half-closes at once, or that sends a truncated length prefix) its
`_handle_unary_unary_rpc` returns without sending any status ("The RPC was cancelled immediately
after start on client side", cygrpc aio/server.pyx.pxi): the client waits until its deadline,
or for ever. A stream that sends headers and nothing else waits for its message for ever, each
holding about 19 KiB of the server's memory. So the interceptor registers every unary-request
method as a streaming-request one (unary-unary as stream-unary, unary-stream as stream-stream;
grpc core does not care, the shape is grpcio's alone) and reads the one request message here,
where each way it can fail becomes a status: no message (INVALID_ARGUMENT), no message within
`grpc_message_timeout_seconds` (DEADLINE_EXCEEDED); a message that does not parse is the
interceptor's MalformedRequest (INVALID_ARGUMENT).

Cancelling the pending read at the deadline (RequestReader) is safe: grpcio's completion
callback leaves a cancelled future alone (`CallbackWrapper.functor_run` checks
`waiter.cancelled()`), the batch's operations stay referenced until grpc core completes them,
and the status then goes out as any abort's does (tests/integration/test_grpc_limits.py shows
it reaches the client, with no warning logged and no task left behind).

grpcio's own `maximum_concurrent_rpcs` is no substitute for the count: beyond it grpcio's main
loop waits (calls queue, unbounded) instead of answering RESOURCE_EXHAUSTED.

At the limit, a new call first takes the place of the call that has waited longest for its
message, if that one has waited `evictable_after` seconds (clients send a unary call's message
with its headers, so such a call is broken or hostile): header-only streams spread over many
connections can then hold the limit only until real calls arrive, never against them. The
evicted call is answered RESOURCE_EXHAUSTED, as a refused one is. Only when no call is waiting
that long is the new one refused. What ends a call before its message (no message, the
deadline, an eviction) and every refusal is counted and written as one summary line per
interval (server/log_throttle.py), never a line per call: an attacker repeats them at will.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import grpc

from server import metrics
from server.errors import InvalidRequest, RateLimited, RequestTimeout, TokenServiceError
from server.log_throttle import SummaryLog
from server.settings import ConfigError

log = logging.getLogger("tokenservice.rpc")
NO_MESSAGE = "a unary call needs exactly one request message"
AT_LIMIT = "the server is at its limit of concurrent calls; retry later"
EVICTED = (
    "the server is at its limit of concurrent calls and this call's request message had not "
    "arrived; retry"
)


class MessageNotRead(Exception):
    """A call ended before its request message was read: `error` is what the client is told,
    `event` the name it is counted under in the summary log."""

    def __init__(self, error: TokenServiceError, event: str) -> None:
        super().__init__(error.description)
        self.error = error
        self.event = event


class RequestReader:
    """Reads a call's one request message, parsed by the handler's request deserializer,
    within `seconds` of the handler's start.

    The deadline is kept without a timer per call: `asyncio.timeout` around every read costs
    about 6 us (a TimerHandle pushed onto the loop's heap and cancelled again), which made a
    no-op call 4 % dearer in `make bench`. Instead the waiting calls sit in a dict in arrival
    order, which is deadline order since every call gets the same `seconds`, and a single
    loop timer, set for the oldest deadline, cancels the calls past theirs and sets itself for
    the next. The cancelled read raises RequestTimeout in the call's own task."""

    __slots__ = ("_evicted", "_expired", "_seconds", "_timer", "_waiting")

    def __init__(self, seconds: float) -> None:
        if seconds <= 0:  # not "off": a header-only stream would hold its call for ever
            raise ConfigError("TOKENSERVICE_GRPC_MESSAGE_TIMEOUT_SECONDS must be greater than 0")
        self._seconds = seconds
        self._waiting: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._evicted: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None

    async def one_request(self, context: grpc.aio.ServicerContext) -> Any:
        """The message; MessageNotRead when the stream ended without one, when it did not
        arrive in time, or when the call was evicted while waiting for it."""
        request = await self._read_in_time(context)
        if request is grpc.aio.EOF:
            raise MessageNotRead(InvalidRequest(NO_MESSAGE), "ended without a request message")
        return request

    def evict_oldest(self, waited: float) -> bool:
        """Ends the call that has waited longest for its message, if it has waited at least
        `waited` seconds (its read is cancelled; it answers RESOURCE_EXHAUSTED); False when no
        call has waited that long."""
        for task, deadline in self._waiting.items():  # the first is the oldest
            if deadline - self._seconds > time.monotonic() - waited:
                return False
            del self._waiting[task]
            self._evicted.add(task)
            task.cancel()
            return True
        return False

    async def _read_in_time(self, context: grpc.aio.ServicerContext) -> Any:
        task = asyncio.current_task()
        assert task is not None
        self._waiting[task] = time.monotonic() + self._seconds
        if self._timer is None:
            self._set_timer(self._waiting[task])
        try:
            return await context.read()
        except asyncio.CancelledError:
            if task in self._evicted:
                self._evicted.discard(task)
                task.uncancel()
                raise MessageNotRead(
                    RateLimited(EVICTED, retry_after=1), "evicted waiting for its message"
                ) from None
            if task not in self._expired:
                raise  # the client went away, or the server is stopping
            self._expired.discard(task)
            task.uncancel()
            timeout = RequestTimeout(
                f"the request message did not arrive within {self._seconds:g} s"
            )
            raise MessageNotRead(timeout, "request message timed out") from None
        finally:
            self._waiting.pop(task, None)

    def _set_timer(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(loop.time() + deadline - time.monotonic(), self._expire)

    def _expire(self) -> None:
        self._timer = None
        now = time.monotonic()
        overdue = []
        for task, deadline in self._waiting.items():
            if deadline > now:
                self._set_timer(deadline)
                break
            overdue.append(task)
        for task in overdue:
            del self._waiting[task]
            self._expired.add(task)
            task.cancel()


class CallsInFlight:
    """The calls of one server inside handlers now, from the handler's start (so including the
    calls still waiting for their message) to its end, and the most it takes at once. The
    interceptor counts with plain attribute updates: everything runs on the event loop's
    thread. /metrics shows the count (`tokenservice_grpc_calls_in_flight`). A call evicted to
    make room ends an event-loop step after the newcomer starts, so the count may pass the
    limit by the evictions still under way."""

    __slots__ = (
        "__weakref__",
        "count",
        "drained",
        "draining",
        "evictable_after",
        "limit",
        "refusals",
        "streams",
        "unread",
    )

    def __init__(self, limit: int, *, evictable_after: float = 1.0) -> None:
        if limit < 1:
            raise ConfigError("TOKENSERVICE_GRPC_MAX_CONCURRENT_RPCS must be greater than 0")
        if evictable_after < 0:
            raise ConfigError("TOKENSERVICE_GRPC_EVICTABLE_AFTER_SECONDS must not be negative")
        self.count = 0
        self.streams = 0  # of count: the streaming ones (health Watch), which drain never waits for
        self.limit = limit
        self.draining = False
        self.drained = asyncio.Event()  # set once draining and no unary call is left
        self.evictable_after = evictable_after
        # Refusals and evictions say the server is at its limit: warnings. Calls that sent no
        # message, or not in time, are the clients' doing: information.
        self.refusals = SummaryLog(log, f"gRPC at its limit of {limit} concurrent calls")
        self.unread = SummaryLog(
            log, "gRPC calls ended before their request message", level=logging.INFO
        )
        metrics.track_grpc_calls_in_flight(self)

    def drain(self) -> None:
        """From now on every new call is refused (ShuttingDown), through the limit's own check
        (a limit of 0), so the calls' fast path pays nothing for it."""
        self.draining = True
        self.limit = 0
        self.call_ended()

    def call_ended(self) -> None:
        """While draining, after a unary call ends: whether it was the last."""
        if self.count == self.streams:
            self.drained.set()

    def admits(self, reader: RequestReader) -> bool:
        """Whether a new call may start: below the limit, or at it once the longest-waiting
        call has been evicted for it. A refusal is counted in the summary log; while draining
        every call is refused, and none is evicted or counted."""
        if self.draining:
            return False
        if self.count < self.limit or reader.evict_oldest(self.evictable_after):
            return True
        self.refusals.add("refused")
        return False

    def note_unread(self, unread: MessageNotRead) -> None:
        """Counts a call that ended before its message in the summary log it belongs to."""
        summary = self.refusals if isinstance(unread.error, RateLimited) else self.unread
        summary.add(unread.event)
