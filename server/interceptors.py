"""The one place that turns exceptions into gRPC statuses, and the access log.

A domain error becomes its own gRPC code with a `google.rpc.ErrorInfo` whose `reason` is the
OAuth error code, with the field at fault and the error's cause (`expired`) in its metadata (plus
`RetryInfo` when rate limited); anything else becomes INTERNAL with no details. The access log
names the method, the outcome and the duration: never a request field, so no token, secret or
password can reach it.

Every unary-request method is served as a streaming-request one that reads its one message
itself, within a deadline, and counts against the server's limit of calls in handlers
(server/unary_calls.py says why). Streaming-request methods (server reflection) pass untouched.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from server import metrics
from server.errors import (
    InvalidRequest,
    RateLimited,
    ServerError,
    ShuttingDown,
    TokenServiceError,
)
from server.unary_calls import AT_LIMIT, CallsInFlight, MessageNotRead, RequestReader

log = logging.getLogger("tokenservice.rpc")
ERROR_DOMAIN = "tokenservice"

Handler = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
StreamingRequestHandler = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every unary-request method's handler once (the wrapped handler is kept per method,
    so a call pays for no new closures): unary-unary calls get the error mapping, the access
    log and the call's metrics; every unary-request call reads its message within
    `message_timeout` seconds and is refused with RESOURCE_EXHAUSTED while
    `max_calls` calls are in handlers."""

    def __init__(
        self,
        *,
        message_timeout: float = 10.0,
        max_calls: int = 2000,
        evictable_after: float = 1.0,
    ) -> None:
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}
        self._reader = RequestReader(message_timeout)
        self.calls = CallsInFlight(max_calls, evictable_after=evictable_after)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_streaming:
            return handler
        method = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(handler, method)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        deserializer = tolerant(handler.request_deserializer)
        if handler.unary_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                guarded(handler.unary_unary, method, self.calls, self._reader),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        return grpc.stream_stream_rpc_method_handler(
            streaming_response(handler.unary_stream, self.calls, self._reader),
            request_deserializer=deserializer,
            response_serializer=handler.response_serializer,
        )


class MalformedRequest:
    """Stands in for a request whose bytes did not parse, so that the failure reaches the error
    mapping as invalid_request instead of grpc's own UNKNOWN."""


def tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError:
            return MalformedRequest()

    return parse


_OK = grpc.StatusCode.OK
_CODE_NAMES = {code: code.name for code in grpc.StatusCode}
_CODES_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


def _code_of(context: grpc.aio.ServicerContext) -> grpc.StatusCode:
    """The code a handler aborted with (grpcio gives a StatusCode or its number)."""
    value: Any = context.code()
    if isinstance(value, grpc.StatusCode):
        return value
    return _CODES_BY_NUMBER.get(value, grpc.StatusCode.UNKNOWN)


def _parsed(request: Any) -> Any:
    if isinstance(request, MalformedRequest):
        raise InvalidRequest("the request is not a valid protobuf message of its type")
    return request


def guarded(
    inner: Handler, method: str, calls: CallsInFlight, reader: RequestReader
) -> StreamingRequestHandler:
    """`inner`, a unary-unary handler, as a stream-unary one: limit, message, errors, log."""
    series = metrics.grpc_series(method)

    async def call(requests: Any, context: grpc.aio.ServicerContext) -> Any:
        started = time.perf_counter()
        if calls.count >= calls.limit and not calls.admits(reader):
            refused = _DRAINING if calls.draining else _AT_LIMIT
            series.record(refused[0], time.perf_counter() - started)
            return answer_without_abort(context, refused[1])
        code = _OK
        calls.count += 1
        try:
            try:
                request = await reader.one_request(context)
            except MessageNotRead as unread:
                code = unread.error.grpc_code
                calls.note_unread(unread)  # summarised: an attacker repeats these at will
                return answer_without_abort(context, status_of(unread.error))
            response = await inner(_parsed(request), context)
        except TokenServiceError as error:
            code = error.grpc_code
            _log(method, code, started, error.error)
            await context.abort(*status_of(error))
        except grpc.aio.AbortError:
            code = _code_of(context)  # aborted by the handler itself
            raise
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception as error:
            code = grpc.StatusCode.INTERNAL
            log.error("rpc=%s failed with %s", method, type(error).__name__, exc_info=True)
            await context.abort(*status_of(ServerError("internal error")))
        finally:
            calls.count -= 1
            if calls.draining:
                calls.call_ended()
            series.record(_CODE_NAMES[code], time.perf_counter() - started)
        if log.isEnabledFor(logging.DEBUG):
            _log(method, code, started)
        return response

    return call


def streaming_response(
    inner: Callable[..., Any], calls: CallsInFlight, reader: RequestReader
) -> StreamingRequestHandler:
    """`inner`, a unary-stream handler (health Watch, WatchRevocations), as a stream-stream
    one: it counts against the limit for as long as it streams, and gets its message as
    unary-unary calls do. A domain error it raises, before its first message or later, ends it
    with that error's status; no access log, no metrics: it may last for hours."""

    async def call(requests: Any, context: grpc.aio.ServicerContext) -> None:
        if calls.count >= calls.limit and not calls.admits(reader):
            return answer_without_abort(context, (_DRAINING if calls.draining else _AT_LIMIT)[1])
        calls.count += 1
        calls.streams += 1
        try:
            try:
                request = _parsed(await reader.one_request(context))
            except MessageNotRead as unread:
                calls.note_unread(unread)
                return answer_without_abort(context, status_of(unread.error))
            if inspect.isasyncgenfunction(inner):
                async for response in inner(request, context):
                    await context.write(response)
            else:
                await inner(request, context)
        except TokenServiceError as error:
            await context.abort(*status_of(error))
        finally:
            calls.count -= 1
            calls.streams -= 1

    return call


Status = tuple[grpc.StatusCode, str, tuple[tuple[str, Any], ...]]


def answer_without_abort(context: grpc.aio.ServicerContext, status: Status) -> None:
    """Ends the call with `status` by setting it and returning, not by context.abort(): grpc's
    abort keeps its AbortError on the call's state, and that error's traceback holds the frames
    that hold the state, a reference cycle only the garbage collector frees, late (the call
    has lived long enough to be promoted). An attacker makes these answers by the thousand
    (calls refused at the limit, streams that never send their message), so they are freed as
    soon as the call ends instead. (For a unary response grpc then sends an empty message
    before the status, which clients ignore on an error status.)"""
    code, details, trailing_metadata = status
    context.set_code(code)
    context.set_details(details)
    context.set_trailing_metadata(trailing_metadata)


def status_of(error: TokenServiceError) -> Status:
    """(code, message, trailing metadata) carrying the rich google.rpc.Status."""
    info = error_details_pb2.ErrorInfo(reason=error.error, domain=ERROR_DOMAIN)
    if error.field:
        info.metadata["field"] = error.field
    if error.cause:
        info.metadata["cause"] = error.cause
    details = [_packed(info)]
    if isinstance(error, RateLimited):
        retry = error_details_pb2.RetryInfo(
            retry_delay=duration_pb2.Duration(seconds=error.retry_after)
        )
        details.append(_packed(retry))
    status = rpc_status.to_status(
        status_pb2.Status(code=error.grpc_code.value[0], message=error.description, details=details)
    )
    return status.code, status.details, tuple(status.trailing_metadata)


def _packed(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _log(method: str, code: grpc.StatusCode, started: float, reason: str = "") -> None:
    elapsed_ms = (time.perf_counter() - started) * 1000
    if code is grpc.StatusCode.OK:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("rpc=%s code=OK ms=%.2f", method, elapsed_ms)
        return
    log.info("rpc=%s code=%s reason=%s ms=%.2f", method, code.name, reason, elapsed_ms)


# A refusal at the limit is the same answer every time: built once.
# (the metrics' code name, the status) of a call refused at the limit, and while draining
_AT_LIMIT = (RateLimited.grpc_code.name, status_of(RateLimited(AT_LIMIT, retry_after=1)))
_DRAINING = (
    ShuttingDown.grpc_code.name,
    status_of(ShuttingDown("the server is shutting down: retry on another replica")),
)
