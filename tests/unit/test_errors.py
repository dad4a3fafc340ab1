"""The one error table: every error has its OAuth code, HTTP status and gRPC code, and the
interceptor's rich status carries the OAuth code as ErrorInfo.reason."""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

import http_bridge
import server
from server import errors
from server.grants.common import refused_bearer
from server.interceptors import status_of
from server.records import TokenKind, TokenRecord, TokenUse

EXPECTED = {
    errors.InvalidRequest: ("invalid_request", 400, grpc.StatusCode.INVALID_ARGUMENT),
    errors.RequestTimeout: ("invalid_request", 408, grpc.StatusCode.DEADLINE_EXCEEDED),
    errors.UnsupportedGrantType: ("unsupported_grant_type", 400, grpc.StatusCode.INVALID_ARGUMENT),
    errors.InvalidGrant: ("invalid_grant", 400, grpc.StatusCode.INVALID_ARGUMENT),
    errors.InvalidClient: ("invalid_client", 401, grpc.StatusCode.UNAUTHENTICATED),
    errors.InvalidToken: ("invalid_token", 401, grpc.StatusCode.UNAUTHENTICATED),
    errors.ExpiredToken: ("invalid_token", 401, grpc.StatusCode.UNAUTHENTICATED),
    errors.InvalidCredentials: ("invalid_grant", 401, grpc.StatusCode.UNAUTHENTICATED),
    errors.AccountNotConfirmed: (
        "account_not_confirmed",
        403,
        grpc.StatusCode.FAILED_PRECONDITION,
    ),
    errors.InvalidScope: ("invalid_scope", 400, grpc.StatusCode.PERMISSION_DENIED),
    errors.UnauthorizedClient: ("unauthorized_client", 400, grpc.StatusCode.PERMISSION_DENIED),
    errors.AccessDenied: ("access_denied", 403, grpc.StatusCode.PERMISSION_DENIED),
    errors.NotFound: ("not_found", 404, grpc.StatusCode.NOT_FOUND),
    errors.AlreadyExists: ("already_exists", 409, grpc.StatusCode.ALREADY_EXISTS),
    errors.RateLimited: ("rate_limited", 429, grpc.StatusCode.RESOURCE_EXHAUSTED),
    errors.StoreUnavailable: ("temporarily_unavailable", 503, grpc.StatusCode.UNAVAILABLE),
    errors.IdentityProviderUnavailable: (
        "temporarily_unavailable",
        503,
        grpc.StatusCode.UNAVAILABLE,
    ),
    errors.ShuttingDown: ("temporarily_unavailable", 503, grpc.StatusCode.UNAVAILABLE),
    errors.ServerError: ("server_error", 500, grpc.StatusCode.INTERNAL),
}


def test_the_table_covers_every_error() -> None:
    """ALL_ERRORS registers itself (TokenServiceError.__init_subclass__): a new error class
    fails here until its OAuth code, HTTP status and gRPC code are written into EXPECTED."""
    assert set(EXPECTED) == set(errors.ALL_ERRORS)


def test_every_error_class_anywhere_is_in_the_table() -> None:
    """An error class defined outside server/errors.py, after ALL_ERRORS was taken, would be
    answered as a 500 by the bridge's table: every subclass in the code base is in it."""
    for package in (server, http_bridge):
        for module in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}."):
            if not module.name.endswith(".__main__"):  # runs the CLI
                importlib.import_module(module.name)

    def subclasses(base: type[errors.TokenServiceError]) -> set[type[errors.TokenServiceError]]:
        found = set(base.__subclasses__())
        return found.union(*(subclasses(child) for child in found))

    assert subclasses(errors.TokenServiceError) == set(errors.ALL_ERRORS)


@pytest.mark.parametrize("error_class", errors.ALL_ERRORS)
def test_each_error_maps_to_one_status_with_error_info(
    error_class: type[errors.TokenServiceError],
) -> None:
    oauth, http, code = EXPECTED[error_class]
    assert (error_class.error, error_class.http_status, error_class.grpc_code) == (
        oauth,
        http,
        code,
    )
    status_code, message, metadata = status_of(error_class("what went wrong", field="f"))
    assert status_code == code and message == "what went wrong"
    [(key, blob)] = metadata
    assert key == "grpc-status-details-bin"
    status = status_pb2.Status.FromString(blob)
    info = error_details_pb2.ErrorInfo()
    status.details[0].Unpack(info)
    assert info.reason == oauth and info.domain == "tokenservice"
    assert info.metadata["field"] == "f"


def test_rate_limited_carries_retry_info() -> None:
    _, _, metadata = status_of(errors.RateLimited("slow down", retry_after=7))
    status = status_pb2.Status.FromString(metadata[0][1])
    retry = error_details_pb2.RetryInfo()
    status.details[1].Unpack(retry)
    assert retry.retry_delay.seconds == 7


def test_an_expired_token_carries_its_cause_in_error_info() -> None:
    """The one difference between ExpiredToken and InvalidToken that crosses gRPC: the cause
    in ErrorInfo's metadata (absent for every other error)."""
    for error, cause in (
        (errors.ExpiredToken("expired"), "expired"),
        (errors.InvalidToken("no"), None),
    ):
        _, _, metadata = status_of(error)
        info = error_details_pb2.ErrorInfo()
        status_pb2.Status.FromString(metadata[0][1]).details[0].Unpack(info)
        assert info.reason == "invalid_token"
        assert info.metadata.get("cause") == cause


def test_refused_bearer_says_expired_only_when_time_alone_is_wrong() -> None:
    """grants.common.refused_bearer: expired at and after expires_at, unless revoked or rotated
    (refreshing cannot help those)."""
    token = TokenRecord(
        digest="d",
        kind=TokenKind.ANONYMOUS,
        use=TokenUse.ACCESS,
        tenant="acme",
        client_id="c",
        scope="tenant=acme",
        issued_at=100,
        expires_at=200,
    )
    assert type(refused_bearer(token, 200, "m")) is errors.ExpiredToken
    assert type(refused_bearer(token, 10_000, "m")) is errors.ExpiredToken
    for other in (
        dataclasses.replace(token, revoked_at=150),
        dataclasses.replace(token, rotated_at=150),
    ):
        assert type(refused_bearer(other, 300, "m")) is errors.InvalidToken
    assert type(refused_bearer(token, 199, "m")) is errors.InvalidToken  # live: not "expired"
