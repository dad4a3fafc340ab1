"""The bridge's one table from gRPC status + ErrorInfo reason to HTTP: it agrees with the domain
errors' own HTTP statuses, has no ambiguous entries, and falls back sensibly on a bare code."""

from __future__ import annotations

import dataclasses

import grpc
import pytest

from http_bridge.backend import RpcFailure
from http_bridge.errors import (
    FAULTS,
    HTTP_STATUS,
    customer_body,
    failure_of,
    oauth_body,
    problem_of,
    problem_of_exception,
    response_headers,
)
from server import errors
from server.errors import ALL_ERRORS, RateLimited, ServerError, TokenServiceError
from tests.unit.test_errors import EXPECTED

INVALID_ACCESS_TOKEN = {
    "faultstring": "Invalid access token",
    "detail": {"errorcode": "oauth.v2.InvalidAccessToken"},
}
ACCESS_TOKEN_EXPIRED = {
    "faultstring": "Access Token expired",
    "detail": {"errorcode": "keymanagement.service.access_token_expired"},
}


@pytest.mark.parametrize("remote", [False, True], ids=["in-process", "remote"])
@pytest.mark.parametrize("error_class", ALL_ERRORS, ids=lambda c: c.__name__)
def test_every_domain_error_keeps_its_http_status(
    error_class: type[TokenServiceError], remote: bool
) -> None:
    """In process (the failure carries the error's status) and from a remote server (only the
    gRPC code and reason arrive, looked up in the bridge's table), against the hand-written
    expectations (not the class attributes the table is built from)."""
    failure = failure_of(error_class("what is wrong", field="tenant"))
    if remote:
        failure = dataclasses.replace(failure, http_status=None)
    problem = problem_of(failure)
    oauth, http_status, _ = EXPECTED[error_class]
    assert (problem.status, problem.error) == (http_status, oauth)


def test_an_in_process_failure_is_answered_with_its_own_status_not_looked_up() -> None:
    failure = dataclasses.replace(failure_of(errors.InvalidRequest("m")), http_status=409)
    assert problem_of(failure).status == 409


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


# --- the customer API's 401 fault ----------------------------------------------------------

FAULT_OF = {
    errors.InvalidToken: INVALID_ACCESS_TOKEN,
    errors.ExpiredToken: ACCESS_TOKEN_EXPIRED,
    errors.InvalidClient: {
        "faultstring": "Invalid client identifier",
        "detail": {"errorcode": "oauth.v2.InvalidClientIdentifier"},
    },
    errors.InvalidCredentials: {
        "faultstring": "Invalid email or password",
        "detail": {"errorcode": "tokenservice.invalid_credentials"},
    },
}


def fault_of(error: TokenServiceError) -> object:
    return customer_body(problem_of(failure_of(error))).get("fault")


@pytest.mark.parametrize("error_class", ALL_ERRORS, ids=lambda c: c.__name__)
def test_every_401_and_only_a_401_carries_its_fault(error_class: type[TokenServiceError]) -> None:
    """Over the same path a standalone bridge takes (domain error -> RpcFailure -> Problem ->
    body), with the existing fields kept beside it."""
    body = customer_body(problem_of(failure_of(error_class("what is wrong", field="tenant"))))
    message = "internal error" if error_class.http_status == 500 else "what is wrong"
    assert (body["status"], body["type"], body["message"]) == (
        error_class.http_status,
        error_class.error,
        message,
    )
    # customer_body() types the body's values as object; "details" is the list of the shape.
    assert [d["field"] for d in body["details"]] == ["tenant"]  # type: ignore[attr-defined]
    if error_class.http_status == 401:
        assert body["fault"] == FAULT_OF[error_class]
    else:
        assert "fault" not in body


def test_the_cause_alone_tells_expired_from_invalid() -> None:
    """What the standalone bridge reads from ErrorInfo: reason invalid_token, and the cause."""
    expired = RpcFailure(grpc.StatusCode.UNAUTHENTICATED, "invalid_token", "m", cause="expired")
    invalid = RpcFailure(grpc.StatusCode.UNAUTHENTICATED, "invalid_token", "m")
    assert customer_body(problem_of(expired))["fault"] == ACCESS_TOKEN_EXPIRED
    assert customer_body(problem_of(invalid))["fault"] == INVALID_ACCESS_TOKEN
    # Both keep RFC 6750's challenge: expired is still invalid_token.
    assert response_headers(problem_of(expired)) == response_headers(problem_of(invalid))


@pytest.mark.parametrize(
    "failure",
    [
        RpcFailure(grpc.StatusCode.UNAUTHENTICATED, "", "no reason: a remote's bare status"),
        RpcFailure(grpc.StatusCode.UNAUTHENTICATED, "invalid_token", "m", cause="unheard-of"),
        RpcFailure(grpc.StatusCode.UNAUTHENTICATED, "some_new_reason", "m"),
    ],
    ids=["bare-code", "unknown-cause", "unknown-reason"],
)
def test_a_401_the_table_does_not_know_is_an_invalid_access_token(failure: RpcFailure) -> None:
    assert customer_body(problem_of(failure))["fault"] == INVALID_ACCESS_TOKEN


def test_the_fault_table_is_unambiguous_and_fixed() -> None:
    """One fault per (status, reason, cause); fault strings are constants, never a message."""
    classes = [error for error in ALL_ERRORS if error.fault is not None]
    assert len(FAULTS) == len(classes)
    assert {error.http_status for error in classes} == {401}
    problem = problem_of(failure_of(errors.ExpiredToken("a message with a value: abc123")))
    assert "abc123" not in str(customer_body(problem)["fault"])


def test_the_oauth_shape_has_no_fault() -> None:
    for error in (errors.InvalidClient("no"), errors.ExpiredToken("no")):
        body = oauth_body(problem_of(failure_of(error)))
        assert set(body) == {"error", "error_description"}
