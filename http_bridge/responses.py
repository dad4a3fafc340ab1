"""Response helpers: token-bearing JSON that no cache keeps, and errors in the shape of the
endpoint family that failed (RFC 6749 on /oauth/*, the customer API's ErrorMessage on
/customer*)."""

from __future__ import annotations

import enum
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from http_bridge.errors import (
    Problem,
    customer_body,
    oauth_body,
    problem_of_exception,
    response_headers,
)

log = logging.getLogger("tokenservice.http")
# RFC 6749 section 5.1: token responses must not be cached.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
Endpoint = Callable[[Request], Awaitable[Response]]


class Family(enum.Enum):
    OAUTH = "oauth"
    CUSTOMER = "customer"


def no_store_json(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=NO_STORE)


def family_of(path: str) -> Family:
    return Family.CUSTOMER if path.startswith("/customer") else Family.OAUTH


def problem_response(problem: Problem, family: Family) -> JSONResponse:
    body = customer_body(problem) if family is Family.CUSTOMER else oauth_body(problem)
    return JSONResponse(body, status_code=problem.status, headers=response_headers(problem))


def answers_errors(endpoint: Endpoint) -> Endpoint:
    """Turns whatever a route raises into its family's error response; anything unexpected is a
    500 `server_error` with no details, logged by exception type only."""

    @functools.wraps(endpoint)
    async def guarded(request: Request) -> Response:
        try:
            return await endpoint(request)
        except Exception as exc:
            problem = problem_of_exception(exc)
            if problem is None:
                log.error(
                    "%s %s failed with %s",
                    request.method,
                    request.url.path,
                    type(exc).__name__,
                    exc_info=True,
                )
                problem = Problem(500, "server_error", "internal error")
            return problem_response(problem, family_of(request.url.path))

    return guarded
