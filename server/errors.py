"""The one error hierarchy of the service.

Every error a caller can see is a `TokenServiceError` subclass that carries its OAuth `error` code,
its HTTP status and its gRPC status code, so that both transports answer the same thing and nothing
else in the code base decides a status (the pattern of googleapis' api_core exceptions). Messages
say what is wrong with the request; they never contain a token, secret or password.

A class may refine its OAuth code with a `cause` (sent over gRPC as ErrorInfo metadata, so that a
standalone bridge sees it too), and a 401 names the `fault` the customer API answers with: the
Apigee-style `{"fault": {"faultstring", "detail": {"errorcode"}}}` of the Emporix reference,
whose error codes storefront clients branch on (docs/http-bridge.md, "Error codes").
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import grpc


@dataclasses.dataclass(frozen=True)
class Fault:
    """The customer API's `fault` of a 401: a fixed `faultstring` (never a value from the
    request) and the `errorcode` a client branches on."""

    faultstring: str
    errorcode: str


class TokenServiceError(Exception):
    """Base class: an error with a meaning the caller can act on."""

    error: ClassVar[str] = "server_error"
    http_status: ClassVar[int] = 500
    grpc_code: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL
    cause: ClassVar[str] = ""
    fault: ClassVar[Fault | None] = None

    def __init__(self, description: str, *, field: str | None = None) -> None:
        super().__init__(description)
        self.description = description
        self.field = field

    def __init_subclass__(cls, **kwargs: object) -> None:
        """Every subclass joins ALL_ERRORS by being defined: the transports' tables are built
        from it, so an error cannot be added without its HTTP status being decided."""
        super().__init_subclass__(**kwargs)
        _REGISTERED.append(cls)


# Filled by TokenServiceError.__init_subclass__, in definition order.
_REGISTERED: list[type[TokenServiceError]] = []


class InvalidRequest(TokenServiceError):
    """A parameter is missing, malformed, repeated or otherwise unacceptable (RFC 6749 5.2)."""

    error = "invalid_request"
    http_status = 400
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT


class RequestTimeout(TokenServiceError):
    """The request did not arrive in time: a call whose request message did not come within
    TOKENSERVICE_GRPC_MESSAGE_TIMEOUT_SECONDS of its headers (a slow or stalled client)."""

    error = "invalid_request"
    http_status = 408
    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED


class UnsupportedGrantType(TokenServiceError):
    error = "unsupported_grant_type"
    http_status = 400
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT


class InvalidGrant(TokenServiceError):
    """A refresh token or authorisation grant is invalid, expired, revoked or was reused."""

    error = "invalid_grant"
    http_status = 400
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT


class InvalidClient(TokenServiceError):
    """Client authentication failed: unknown client, wrong secret, or wrong kind of client.
    Its fault is Apigee's for an unknown client id, without the id Apigee puts in the string."""

    error = "invalid_client"
    http_status = 401
    grpc_code = grpc.StatusCode.UNAUTHENTICATED
    fault = Fault("Invalid client identifier", "oauth.v2.InvalidClientIdentifier")


class InvalidToken(TokenServiceError):
    """A bearer token that authorises the call is missing, malformed, unknown, revoked, of the
    wrong kind or tenant, or expired past recognition (purged by the janitor)."""

    error = "invalid_token"
    http_status = 401
    grpc_code = grpc.StatusCode.UNAUTHENTICATED
    fault = Fault("Invalid access token", "oauth.v2.InvalidAccessToken")


class ExpiredToken(InvalidToken):
    """The bearer token is an access token that would authorise the call but has expired (not
    revoked, not superseded): `grants.common.refused_bearer` decides. Still `invalid_token`
    (RFC 6750), with cause "expired" so that a storefront knows to refresh instead of
    starting a new session."""

    cause = "expired"
    fault = Fault("Access Token expired", "keymanagement.service.access_token_expired")


class InvalidCredentials(TokenServiceError):
    """Wrong email or password (one message for both, so accounts cannot be enumerated).
    Neither the reference nor Apigee documents a fault for it: the error code is this
    service's own, in its ErrorInfo domain, so that no client mistakes it for a token problem."""

    error = "invalid_grant"
    http_status = 401
    grpc_code = grpc.StatusCode.UNAUTHENTICATED
    fault = Fault("Invalid email or password", "tokenservice.invalid_credentials")


class AccountNotConfirmed(TokenServiceError):
    """The e-mail and password are right, but the account waits for its double opt-in link
    (server/accounts/signup.py). Said only after the password verified, so it tells nothing
    to whoever does not know the password."""

    error = "account_not_confirmed"
    http_status = 403
    grpc_code = grpc.StatusCode.FAILED_PRECONDITION


class InvalidScope(TokenServiceError):
    error = "invalid_scope"
    http_status = 400
    grpc_code = grpc.StatusCode.PERMISSION_DENIED


class UnauthorizedClient(TokenServiceError):
    """The client exists but may not use this grant (for example a service client asking for
    an anonymous token)."""

    error = "unauthorized_client"
    http_status = 400
    grpc_code = grpc.StatusCode.PERMISSION_DENIED


class AccessDenied(TokenServiceError):
    """The caller is authenticated but not allowed: wrong tenant, foreign legal entity, missing
    admin scope."""

    error = "access_denied"
    http_status = 403
    grpc_code = grpc.StatusCode.PERMISSION_DENIED


class NotFound(TokenServiceError):
    error = "not_found"
    http_status = 404
    grpc_code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(TokenServiceError):
    error = "already_exists"
    http_status = 409
    grpc_code = grpc.StatusCode.ALREADY_EXISTS


class RateLimited(TokenServiceError):
    error = "rate_limited"
    http_status = 429
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, description: str, *, field: str | None = None, retry_after: int = 1) -> None:
        super().__init__(description, field=field)
        self.retry_after = retry_after


class StoreUnavailable(TokenServiceError):
    """The store cannot be reached or is locked: retry later. Never a credentials error."""

    error = "temporarily_unavailable"
    http_status = 503
    grpc_code = grpc.StatusCode.UNAVAILABLE


class IdentityProviderUnavailable(TokenServiceError):
    """A tenant's external identity provider did not answer usably (down, too slow, a redirect,
    an oversized or malformed answer): retry later. Never a credentials error; cause
    "identity_provider" tells it from the store's unavailability."""

    error = "temporarily_unavailable"
    http_status = 503
    grpc_code = grpc.StatusCode.UNAVAILABLE
    cause = "identity_provider"


class ShuttingDown(TokenServiceError):
    """The server is draining: the calls it took finish, a new one goes elsewhere. Said by the
    service itself rather than by grpc core's shutdown, which answers calls it holds but no
    handler has taken yet with CANCELLED (grpc/grpc#41785), a status clients do not retry."""

    error = "temporarily_unavailable"
    http_status = 503
    grpc_code = grpc.StatusCode.UNAVAILABLE
    cause = "shutting_down"


class ServerError(TokenServiceError):
    """Anything unexpected: reported with no details."""


# Every error class, in definition order. All of them live in this module: a subclass defined
# elsewhere would be missing from the transports' tables (tests/unit/test_errors.py checks).
ALL_ERRORS: tuple[type[TokenServiceError], ...] = tuple(_REGISTERED)
