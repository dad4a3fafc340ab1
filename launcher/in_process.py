"""The bridge's backend inside `tokenservice serve`: the TokenService calls made in the same
process, with no network hop and no gRPC context (server/servicer.py TokenCalls, which the gRPC
servicer runs too; the HTTP client's address is passed as it is), and domain errors
turned into the failure the gRPC error interceptor would send, with their HTTP status
(http_bridge/errors.py's `failure_of`). It lives here, not in http_bridge/, because it is the
one piece of the bridge that needs the whole core (store, passwords, keys): the bridge itself
reaches the core only through a TokenBackend, so the standalone bridge loads none of it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

from http_bridge.errors import failure_of
from server.account_servicer import AccountCalls
from server.core import Core
from server.errors import ServerError, TokenServiceError
from server.servicer import TokenCalls
from tokenservice.v1 import account_service_pb2 as account_pb
from tokenservice.v1 import token_service_pb2 as pb

log = logging.getLogger("tokenservice.http")
Response = TypeVar("Response")


class InProcessBackend:
    def __init__(self, core: Core) -> None:
        self._core = core
        self._calls = TokenCalls(core)
        self._accounts = AccountCalls(core)

    async def issue_token(
        self, request: pb.IssueTokenRequest, *, client_address: str = ""
    ) -> pb.TokenResponse:
        return await _call(self._calls.issue_token(request, client_address=client_address))

    async def refresh_token(self, request: pb.RefreshTokenRequest) -> pb.TokenResponse:
        return await _call(self._calls.refresh_token(request))

    async def introspect_token(
        self, request: pb.IntrospectTokenRequest
    ) -> pb.IntrospectTokenResponse:
        return await _call(self._calls.introspect_token(request))

    async def revoke_token(self, request: pb.RevokeTokenRequest) -> pb.RevokeTokenResponse:
        return await _call(self._calls.revoke_token(request))

    async def get_jwks(self, request: pb.GetJwksRequest) -> pb.GetJwksResponse:
        return await _call(self._calls.get_jwks(request))

    async def get_allowed_origins(
        self, request: pb.GetAllowedOriginsRequest
    ) -> pb.GetAllowedOriginsResponse:
        return await _call(self._calls.get_allowed_origins(request))

    async def list_own_sessions(
        self, request: pb.ListOwnSessionsRequest
    ) -> pb.ListSessionsResponse:
        return await _call(self._calls.list_own_sessions(request))

    async def end_own_session(self, request: pb.EndOwnSessionRequest) -> pb.EndSessionsResponse:
        return await _call(self._calls.end_own_session(request))

    async def end_own_sessions(self, request: pb.EndOwnSessionsRequest) -> pb.EndSessionsResponse:
        return await _call(self._calls.end_own_sessions(request))

    async def watch_revocations(
        self, request: pb.WatchRevocationsRequest
    ) -> AsyncIterator[pb.RevocationEvent]:
        try:
            async for event in await self._calls.watch_revocations(request):
                yield event
        except TokenServiceError as error:
            raise failure_of(error) from None

    # --- AccountService ---------------------------------------------------------------------
    async def sign_up(
        self, request: account_pb.SignUpRequest, *, client_address: str = ""
    ) -> account_pb.SignUpResponse:
        return await _call(self._accounts.sign_up(request, client_address=client_address))

    async def confirm_sign_up(self, request: account_pb.ConfirmSignUpRequest) -> pb.TokenResponse:
        return await _call(self._accounts.confirm_sign_up(request))

    async def resend_sign_up_link(
        self, request: account_pb.ResendSignUpLinkRequest, *, client_address: str = ""
    ) -> account_pb.AccountAccepted:
        return await _call(
            self._accounts.resend_sign_up_link(request, client_address=client_address)
        )

    async def change_password(
        self, request: account_pb.ChangePasswordRequest, *, client_address: str = ""
    ) -> account_pb.SessionsEnded:
        return await _call(self._accounts.change_password(request, client_address=client_address))

    async def request_password_reset(
        self, request: account_pb.RequestPasswordResetRequest, *, client_address: str = ""
    ) -> account_pb.AccountAccepted:
        return await _call(
            self._accounts.request_password_reset(request, client_address=client_address)
        )

    async def reset_password(
        self, request: account_pb.ResetPasswordRequest
    ) -> account_pb.SessionsEnded:
        return await _call(self._accounts.reset_password(request))

    async def request_email_change(
        self, request: account_pb.RequestEmailChangeRequest, *, client_address: str = ""
    ) -> account_pb.AccountAccepted:
        return await _call(
            self._accounts.request_email_change(request, client_address=client_address)
        )

    async def confirm_email_change(
        self, request: account_pb.ConfirmEmailChangeRequest
    ) -> account_pb.AccountAccepted:
        return await _call(self._accounts.confirm_email_change(request))

    async def ready(self) -> bool:
        try:
            await self._core.store.ping()
        except TokenServiceError:
            return False
        return True

    async def close(self) -> None:
        return None


async def _call(call: Awaitable[Response]) -> Response:
    try:
        return await call
    except TokenServiceError as error:
        raise failure_of(error) from None
    except Exception as error:
        log.error("in-process call failed with %s", type(error).__name__, exc_info=True)
        raise failure_of(ServerError("internal error")) from None
