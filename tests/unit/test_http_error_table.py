"""The bridge's one table from gRPC status + ErrorInfo reason to HTTP: it agrees with the domain
errors' own HTTP statuses, has no ambiguous entries, and falls back sensibly on a bare code."""

from __future__ import annotations

import grpc
import pytest

from http_bridge.backend import RpcFailure
from http_bridge.errors import (
    HTTP_STATUS,
    customer_body,
    oauth_body,
    problem_of,
    problem_of_exception,
    response_headers,
)
from http_bridge.in_process import failure_of
from server.errors import ALL_ERRORS, RateLimited, ServerError, TokenServiceError


@pytest.mark.parametrize("error_class", ALL_ERRORS, ids=lambda c: c.__name__)
def test_every_domain_error_keeps_its_http_status(error_class: type[TokenServiceError]) -> None:
    problem = problem_of(failure_of(error_class("what is wrong", field="tenant")))
    assert problem.status == error_class.http_status
    assert problem.error == error_class.error


def test_no_two_errors_share_a_code_and_reason_with_different_statuses() -> None:
    seen: dict[tuple[grpc.StatusCode, str], int] = {}
    for error_class in ALL_ERRORS:
        key = (error_class.grpc_code, error_class.error)
        assert seen.setdefault(key, error_class.http_status) == error_class.http_status, key
    assert len(HTTP_STATUS) == len(seen)


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [
        (grpc.StatusCode.UNAVAILABLE, 503, "temporarily_unavailable"),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 503, "temporarily_unavailable"),
        (grpc.StatusCode.INVALID_ARGUMENT, 400, "invalid_request"),
        (grpc.StatusCode.UNAUTHENTICATED, 401, "invalid_token"),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 429, "rate_limited"),
        (grpc.StatusCode.INTERNAL, 500, "server_error"),
        (grpc.StatusCode.UNKNOWN, 500, "server_error"),
    ],
)
def test_a_bare_code_falls_back_on_the_code(code: grpc.StatusCode, status: int, error: str) -> None:
    problem = problem_of(RpcFailure(code=code, reason="", message="some internal text"))
    assert (problem.status, problem.error) == (status, error)
    if status == 500:
        assert problem.message == "internal error"  # no internals leak out


def test_retry_after_for_rate_limits_and_unavailability() -> None:
    limited = problem_of(failure_of(RateLimited("slow down", retry_after=7)))
    assert response_headers(limited)["Retry-After"] == "7"
    down = problem_of(RpcFailure(grpc.StatusCode.UNAVAILABLE, "", "down"))
    assert response_headers(down)["Retry-After"] == "1"


def test_challenges_on_401() -> None:
    client = problem_of(RpcFailure(grpc.StatusCode.UNAUTHENTICATED, "invalid_client", "no"))
    token = problem_of(RpcFailure(grpc.StatusCode.UNAUTHENTICATED, "invalid_token", "no"))
    assert response_headers(client)["WWW-Authenticate"] == 'Basic realm="tokenservice"'
    assert response_headers(token)["WWW-Authenticate"] == (
        'Bearer realm="tokenservice", error="invalid_token"'
    )
    assert response_headers(client)["Cache-Control"] == "no-store"


def test_bodies_of_both_families() -> None:
    problem = problem_of(failure_of(ServerError("boom")))
    assert oauth_body(problem) == {"error": "server_error", "error_description": "internal error"}
    assert problem_of_exception(ValueError("unexpected")) is None
    field_problem = problem_of_exception(
        RpcFailure(
            grpc.StatusCode.INVALID_ARGUMENT, "invalid_request", "tenant is required", "tenant"
        )
    )
    assert field_problem is not None
    assert customer_body(field_problem) == {
        "status": 400,
        "type": "invalid_request",
        "message": "tenant is required",
        "details": [
            {"field": "tenant", "type": "invalid_request", "message": "tenant is required"}
        ],
    }
