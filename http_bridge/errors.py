"""The one table from a gRPC status code plus `ErrorInfo.reason` to an HTTP status, and the two
error body shapes the documented endpoints use.

The table is derived from `server.errors`, where every domain error names its OAuth code, gRPC
code and HTTP status, so the two transports cannot disagree; codes that arrive without a reason
(a remote server that cannot be reached, for instance) fall back on the gRPC code alone. The
customer API's 401 `fault` (its `errorcode`) comes from the same classes, found by status,
reason and the ErrorInfo `cause`.
"""

from __future__ import annotations

import dataclasses

import grpc
from starlette.requests import ClientDisconnect

from http_bridge.backend import RpcFailure
from server.errors import ALL_ERRORS, Fault, InvalidToken, RateLimited, TokenServiceError

REALM = 'realm="tokenservice"'

HTTP_STATUS: dict[tuple[grpc.StatusCode, str], int] = {
    (error.grpc_code, error.error): error.http_status for error in ALL_ERRORS
}
# A status that came with no known reason: by its code alone (as google.api_core does).
HTTP_STATUS_BY_CODE: dict[grpc.StatusCode, tuple[int, str]] = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, "invalid_request"),
    grpc.StatusCode.FAILED_PRECONDITION: (400, "invalid_request"),
    grpc.StatusCode.OUT_OF_RANGE: (400, "invalid_request"),
    grpc.StatusCode.UNAUTHENTICATED: (401, "invalid_token"),
    grpc.StatusCode.PERMISSION_DENIED: (403, "access_denied"),
    grpc.StatusCode.NOT_FOUND: (404, "not_found"),
    grpc.StatusCode.ALREADY_EXISTS: (409, "already_exists"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "rate_limited"),
    grpc.StatusCode.UNAVAILABLE: (503, "temporarily_unavailable"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (503, "temporarily_unavailable"),
}
SERVER_ERROR = (500, "server_error")
# The customer API's 401 fault by (HTTP status, reason, cause); a 401 not listed (a bare
# UNAUTHENTICATED from a remote, a cause this bridge does not know) is an invalid access token.
FAULTS: dict[tuple[int, str, str], Fault] = {
    (error.http_status, error.error, error.cause): error.fault
    for error in ALL_ERRORS
    if error.fault is not None
}
DEFAULT_FAULT = FAULTS[(InvalidToken.http_status, InvalidToken.error, "")]
# Statuses whose answer invites a retry: say when.
RETRY_STATUSES = frozenset({429, 503})


@dataclasses.dataclass
class Problem:
    """What an HTTP client is told about a failed request."""

    status: int
    error: str
    message: str
    field: str = ""
    retry_after: int | None = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    cause: str = ""


class HttpProblem(Exception):
    """A request the bridge itself refuses before any RPC: wrong path, method, media type, size,
    or a request that does not parse."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def failure_of(error: TokenServiceError) -> RpcFailure:
    """The RpcFailure a gRPC client would see for this domain error."""
    return RpcFailure(
        code=error.grpc_code,
        reason=error.error,
        message=error.description,
        field=error.field or "",
        retry_after=error.retry_after if isinstance(error, RateLimited) else None,
        cause=error.cause,
        http_status=error.http_status,
    )


def problem_of(failure: RpcFailure) -> Problem:
    """The HTTP answer: the domain error's own status when the failure carries it, else by
    (code, reason) from the table, else by the code alone."""
    status = failure.http_status or HTTP_STATUS.get((failure.code, failure.reason))
    error = failure.reason
    if status is None:
        status, error = HTTP_STATUS_BY_CODE.get(failure.code, SERVER_ERROR)
    message = failure.message if status < 500 or status == 503 else "internal error"
    retry_after = failure.retry_after
    if status in RETRY_STATUSES and retry_after is None:
        retry_after = 1
    return Problem(status, error, message, failure.field, retry_after, cause=failure.cause)


def problem_of_exception(exc: Exception) -> Problem | None:
    """The Problem for an exception a route may raise; None for anything unexpected."""
    if isinstance(exc, HttpProblem):
        return exc.problem
    if isinstance(exc, RpcFailure):
        return problem_of(exc)
    if isinstance(exc, TokenServiceError):
        return problem_of(failure_of(exc))
    if isinstance(exc, ClientDisconnect):
        # The client went away, or its body missed the deadline and the connection limits
        # answered 408 already (http_bridge/connection_limits.py): nobody reads this answer,
        # but the access log and the metrics record it.
        return Problem(408, "invalid_request", "the request body did not arrive")
    return None


def response_headers(problem: Problem) -> dict[str, str]:
    headers = {"Cache-Control": "no-store", "Pragma": "no-cache", **problem.headers}
    if problem.retry_after is not None:
        headers["Retry-After"] = str(problem.retry_after)
    if problem.status == 401:
        headers["WWW-Authenticate"] = _challenge(problem.error)
    return headers


def _challenge(error: str) -> str:
    if error == "invalid_client":
        return f"Basic {REALM}"
    if error == "invalid_token":
        return f'Bearer {REALM}, error="invalid_token"'
    return f"Bearer {REALM}"


def oauth_body(problem: Problem) -> dict[str, object]:
    """RFC 6749 section 5.2."""
    return {"error": problem.error, "error_description": problem.message}


def customer_body(problem: Problem) -> dict[str, object]:
    """The customer API's ErrorMessage: {status, type, message, details}; a 401 also carries
    the reference's `fault`, whose `errorcode` clients branch on."""
    details = []
    if problem.field:
        details.append({"field": problem.field, "type": problem.error, "message": problem.message})
    body: dict[str, object] = {
        "status": problem.status,
        "type": problem.error,
        "message": problem.message,
        "details": details,
    }
    if problem.status == 401:
        body["fault"] = fault_body(fault_of(problem))
    return body


def fault_of(problem: Problem) -> Fault:
    """The fault of a 401: by reason and cause, then by reason alone, else an invalid token."""
    for cause in (problem.cause, ""):
        fault = FAULTS.get((problem.status, problem.error, cause))
        if fault is not None:
            return fault
    return DEFAULT_FAULT


def fault_body(fault: Fault) -> dict[str, object]:
    """The reference's `{"faultstring": ..., "detail": {"errorcode": ...}}`."""
    return {"faultstring": fault.faultstring, "detail": {"errorcode": fault.errorcode}}
