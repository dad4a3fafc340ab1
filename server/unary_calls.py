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

Cancelling the pending read at the deadline is safe: grpcio's completion callback leaves a
cancelled future alone (`CallbackWrapper.functor_run` checks `waiter.cancelled()`), the batch's
operations stay referenced until grpc core completes them, and the status then goes out as any
abort's does (tests/integration/test_grpc_limits.py shows it reaches the client, with no warning
logged and no task left behind).

grpcio's own `maximum_concurrent_rpcs` is no substitute for the count: beyond it grpcio's main
loop waits (calls queue, unbounded) instead of answering RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import grpc

from server import metrics
from server.errors import InvalidRequest, RequestTimeout

log = logging.getLogger("tokenservice.rpc")
REFUSALS_LOG_INTERVAL_SECONDS = 10.0
NO_MESSAGE = "a unary call needs exactly one request message"
AT_LIMIT = "the server is at its limit of concurrent calls; retry later"


async def one_request(context: grpc.aio.ServicerContext, seconds: float) -> Any:
    """The call's one request message, parsed by the handler's request deserializer, within
    `seconds` (0: no limit)."""
    if seconds <= 0:
        request = await context.read()
    else:
        try:
            async with asyncio.timeout(seconds):
                request = await context.read()
        except TimeoutError:
            raise RequestTimeout(
                f"the request message did not arrive within {seconds:g} s"
            ) from None
    if request is grpc.aio.EOF:
        raise InvalidRequest(NO_MESSAGE)
    return request


class CallsInFlight:
    """The calls of one server inside handlers now, from the handler's start (so including the
    calls still waiting for their message) to its end, and the most it takes at once. The
    interceptor counts with plain attribute updates: everything runs on the event loop's
    thread. /metrics shows the count (`tokenservice_grpc_calls_in_flight`)."""

    __slots__ = ("__weakref__", "_last_report", "_refused", "count", "limit")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise InvalidRequest("TOKENSERVICE_GRPC_MAX_CONCURRENT_RPCS must be at least 1")
        self.count = 0
        self.limit = limit
        self._refused = 0
        self._last_report = -REFUSALS_LOG_INTERVAL_SECONDS
        metrics.track_grpc_calls_in_flight(self)

    def note_refusal(self) -> None:
        """One call refused at the limit. Logged at most once per interval, with the count
        since the last line, so that refusals under attack cannot flood the log."""
        self._refused += 1
        now = time.monotonic()
        if now - self._last_report >= REFUSALS_LOG_INTERVAL_SECONDS:
            log.warning(
                "gRPC at its limit of %d concurrent calls: %d refused with RESOURCE_EXHAUSTED "
                "since the last report",
                self.limit,
                self._refused,
            )
            self._refused = 0
            self._last_report = now
