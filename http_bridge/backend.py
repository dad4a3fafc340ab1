"""What the bridge needs from the token service: the TokenService and AccountService RPCs and a
readiness check.

Two implementations: `launcher.in_process.InProcessBackend` calls the servicer in the same
process (no network hop; it lives with the launcher because it needs the whole core), and
`channel.ChannelBackend` calls a remote server over a grpc.aio channel. Both
report a failed call the same way, as an `RpcFailure` carrying the gRPC status code and the
`google.rpc.ErrorInfo` reason, so the HTTP mapping is one table whatever the transport.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Protocol

import grpc

from tokenservice.v1 import account_service_pb2 as account_pb
from tokenservice.v1 import token_service_pb2 as pb


@dataclasses.dataclass
class RpcFailure(Exception):
    """A call that failed with a status: the code, the OAuth error code (ErrorInfo.reason; empty
    when the server sent none), a message safe to show, the field at fault, a retry hint, the
    cause that refines the reason (ErrorInfo metadata `cause`: "expired" for an expired bearer
    token; empty otherwise), and the HTTP status when the failing domain error is at hand (the
    in-process backend), so that it is not looked up again from the code and reason."""

    code: grpc.StatusCode
    reason: str
    message: str
    field: str = ""
    retry_after: int | None = None
    cause: str = ""
    http_status: int | None = None

    def __str__(self) -> str:
        return f"{self.code.name} {self.reason}: {self.message}"


class AccountBackend(Protocol):
    """The AccountService RPCs (server/account_servicer.py). `client_address`: the HTTP
    client's, for the account-request and login throttles."""

    async def sign_up(
        self, request: account_pb.SignUpRequest, *, client_address: str = ""
    ) -> account_pb.SignUpResponse: ...

    async def confirm_sign_up(
        self, request: account_pb.ConfirmSignUpRequest
    ) -> pb.TokenResponse: ...

    async def resend_sign_up_link(
        self, request: account_pb.ResendSignUpLinkRequest, *, client_address: str = ""
    ) -> account_pb.AccountAccepted: ...

    async def change_password(
        self, request: account_pb.ChangePasswordRequest, *, client_address: str = ""
    ) -> account_pb.SessionsEnded: ...

    async def request_password_reset(
        self, request: account_pb.RequestPasswordResetRequest, *, client_address: str = ""
    ) -> account_pb.AccountAccepted: ...

    async def reset_password(
        self, request: account_pb.ResetPasswordRequest
    ) -> account_pb.SessionsEnded: ...

    async def request_email_change(
        self, request: account_pb.RequestEmailChangeRequest, *, client_address: str = ""
    ) -> account_pb.AccountAccepted: ...

    async def confirm_email_change(
        self, request: account_pb.ConfirmEmailChangeRequest
    ) -> account_pb.AccountAccepted: ...


class TokenBackend(AccountBackend, Protocol):
    async def issue_token(
        self, request: pb.IssueTokenRequest, *, client_address: str = ""
    ) -> pb.TokenResponse:
        """`client_address`: the HTTP client's, for the login throttle (server/abuse.py)."""
        ...

    async def refresh_token(self, request: pb.RefreshTokenRequest) -> pb.TokenResponse: ...

    async def introspect_token(
        self, request: pb.IntrospectTokenRequest
    ) -> pb.IntrospectTokenResponse: ...

    async def revoke_token(self, request: pb.RevokeTokenRequest) -> pb.RevokeTokenResponse: ...

    async def get_jwks(self, request: pb.GetJwksRequest) -> pb.GetJwksResponse: ...

    async def get_allowed_origins(
        self, request: pb.GetAllowedOriginsRequest
    ) -> pb.GetAllowedOriginsResponse:
        """A tenant's CORS origins (http_bridge/cors.py caches them)."""
        ...

    async def list_own_sessions(
        self, request: pb.ListOwnSessionsRequest
    ) -> pb.ListSessionsResponse: ...

    async def end_own_session(self, request: pb.EndOwnSessionRequest) -> pb.EndSessionsResponse: ...

    async def end_own_sessions(
        self, request: pb.EndOwnSessionsRequest
    ) -> pb.EndSessionsResponse: ...

    def watch_revocations(
        self, request: pb.WatchRevocationsRequest
    ) -> AsyncIterator[pb.RevocationEvent]:
        """The revocation feed, event by event; a refusal (or a failure later) raises
        RpcFailure from the iteration."""
        ...

    async def ready(self) -> bool:
        """True when calls can succeed now (the store, or the remote server, answers)."""
        ...

    async def close(self) -> None: ...
