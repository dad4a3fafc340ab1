"""The bridge in front of a remote TokenService: the same calls over a grpc.aio channel, with the
server's rich status (ErrorInfo reason, field and cause, RetryInfo) read back into an RpcFailure."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from http_bridge.backend import RpcFailure
from tokenservice.v1 import account_service_pb2 as account_pb
from tokenservice.v1 import account_service_pb2_grpc as account_grpc
from tokenservice.v1 import token_service_pb2 as pb
from tokenservice.v1 import token_service_pb2_grpc as pb_grpc

Response = TypeVar("Response")
STATUS_DETAILS_KEY = "grpc-status-details-bin"
UNREACHABLE = "the token service cannot be reached; retry later"
# Its health answers for the store too (the overall "" is liveness only).
TOKEN_SERVICE = pb.DESCRIPTOR.services_by_name["TokenService"].full_name


class ChannelBackend:
    def __init__(self, target: str, *, timeout_seconds: float = 10.0) -> None:
        self._channel = grpc.aio.insecure_channel(target)
        self._stub = pb_grpc.TokenServiceStub(self._channel)
        self._accounts = account_grpc.AccountServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self._timeout = timeout_seconds
        self._streams: set[Any] = set()  # the open WatchRevocations calls
        self._ending = False

    async def issue_token(
        self, request: pb.IssueTokenRequest, *, client_address: str = ""
    ) -> pb.TokenResponse:
        """The HTTP client's address travels as x-forwarded-for metadata; the server believes
        it only when this bridge's address is in its TOKENSERVICE_TRUSTED_PROXIES, and
        otherwise throttles this bridge's own address."""
        return await self._call(
            self._stub.IssueToken, request, metadata=forwarded_for(client_address)
        )

    async def refresh_token(self, request: pb.RefreshTokenRequest) -> pb.TokenResponse:
        return await self._call(self._stub.RefreshToken, request)

    async def introspect_token(
        self, request: pb.IntrospectTokenRequest
    ) -> pb.IntrospectTokenResponse:
        return await self._call(self._stub.IntrospectToken, request)

    async def revoke_token(self, request: pb.RevokeTokenRequest) -> pb.RevokeTokenResponse:
        return await self._call(self._stub.RevokeToken, request)

    async def get_jwks(self, request: pb.GetJwksRequest) -> pb.GetJwksResponse:
        return await self._call(self._stub.GetJwks, request)

    async def get_allowed_origins(
        self, request: pb.GetAllowedOriginsRequest
    ) -> pb.GetAllowedOriginsResponse:
        return await self._call(self._stub.GetAllowedOrigins, request)

    async def list_own_sessions(
        self, request: pb.ListOwnSessionsRequest
    ) -> pb.ListSessionsResponse:
        return await self._call(self._stub.ListOwnSessions, request)

    async def end_own_session(self, request: pb.EndOwnSessionRequest) -> pb.EndSessionsResponse:
        return await self._call(self._stub.EndOwnSession, request)

    async def end_own_sessions(self, request: pb.EndOwnSessionsRequest) -> pb.EndSessionsResponse:
        return await self._call(self._stub.EndOwnSessions, request)

    # --- AccountService (the client's address travels as for IssueToken) ----------------------
    async def sign_up(
        self, request: account_pb.SignUpRequest, *, client_address: str = ""
    ) -> account_pb.SignUpResponse:
        return await self._call(
            self._accounts.SignUp, request, metadata=forwarded_for(client_address)
        )

    async def confirm_sign_up(self, request: account_pb.ConfirmSignUpRequest) -> pb.TokenResponse:
        return await self._call(self._accounts.ConfirmSignUp, request)

    async def resend_sign_up_link(
        self, request: account_pb.ResendSignUpLinkRequest, *, client_address: str = ""
    ) -> account_pb.AccountAccepted:
        return await self._call(
            self._accounts.ResendSignUpLink, request, metadata=forwarded_for(client_address)
        )

    async def change_password(
        self, request: account_pb.ChangePasswordRequest, *, client_address: str = ""
    ) -> account_pb.SessionsEnded:
        return await self._call(
            self._accounts.ChangePassword, request, metadata=forwarded_for(client_address)
        )

    async def request_password_reset(
        self, request: account_pb.RequestPasswordResetRequest, *, client_address: str = ""
    ) -> account_pb.AccountAccepted:
        return await self._call(
            self._accounts.RequestPasswordReset, request, metadata=forwarded_for(client_address)
        )

    async def reset_password(
        self, request: account_pb.ResetPasswordRequest
    ) -> account_pb.SessionsEnded:
        return await self._call(self._accounts.ResetPassword, request)

    async def request_email_change(
        self, request: account_pb.RequestEmailChangeRequest, *, client_address: str = ""
    ) -> account_pb.AccountAccepted:
        return await self._call(
            self._accounts.RequestEmailChange, request, metadata=forwarded_for(client_address)
        )

    async def confirm_email_change(
        self, request: account_pb.ConfirmEmailChangeRequest
    ) -> account_pb.AccountAccepted:
        return await self._call(self._accounts.ConfirmEmailChange, request)

    async def watch_revocations(
        self, request: pb.WatchRevocationsRequest
    ) -> AsyncIterator[pb.RevocationEvent]:
        """No deadline: the stream lasts until either side ends it, or `end_streams`."""
        if self._ending:
            return
        call = self._stub.WatchRevocations(request)
        self._streams.add(call)
        try:
            async for event in call:
                yield event
        except grpc.aio.AioRpcError as error:
            raise failure_of_call(error) from None
        except asyncio.CancelledError:
            # grpc.aio reports a call this process cancelled as CancelledError: one that
            # end_streams cancelled simply ends; this task being cancelled is passed on.
            task = asyncio.current_task()
            if not self._ending or (task is not None and task.cancelling()):
                raise
        finally:
            self._streams.discard(call)
            call.cancel()

    def end_streams(self) -> None:
        """Ends every revocation stream, now and from now on: a bridge that drains would
        otherwise wait its whole grace period for streams that never end by themselves. Their
        clients resume from their last position elsewhere, as after a draining server."""
        self._ending = True
        for call in list(self._streams):
            call.cancel()

    async def ready(self) -> bool:
        try:
            answer = await self._health.Check(
                health_pb2.HealthCheckRequest(service=TOKEN_SERVICE),
                timeout=min(self._timeout, 2.0),
            )
        except grpc.aio.AioRpcError:
            return False
        return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)

    async def close(self) -> None:
        await self._channel.close()

    async def _call(
        self,
        method: Callable[..., Awaitable[Response]],
        request: Any,
        metadata: tuple[tuple[str, str], ...] | None = None,
    ) -> Response:
        try:
            return await method(request, timeout=self._timeout, metadata=metadata)
        except grpc.aio.AioRpcError as error:
            raise failure_of_call(error) from None


def forwarded_for(client_address: str) -> tuple[tuple[str, str], ...] | None:
    return (("x-forwarded-for", client_address),) if client_address else None


def failure_of_call(error: grpc.aio.AioRpcError) -> RpcFailure:
    """Reads the google.rpc.Status the server attached, if any."""
    code = error.code()
    failure = RpcFailure(code=code, reason="", message=error.details() or "")
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        failure.message = UNREACHABLE  # grpc's own text names addresses and internals
    for key, value in error.trailing_metadata() or ():
        if key != STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        status = status_pb2.Status.FromString(value)
        failure.message = status.message
        for detail in status.details:
            _read_detail(detail, failure)
    return failure


def _read_detail(detail: Any, failure: RpcFailure) -> None:
    info = error_details_pb2.ErrorInfo()
    retry = error_details_pb2.RetryInfo()
    if detail.Is(info.DESCRIPTOR):
        detail.Unpack(info)
        failure.reason = info.reason
        failure.field = info.metadata.get("field", "")
        failure.cause = info.metadata.get("cause", "")
    elif detail.Is(retry.DESCRIPTOR):
        detail.Unpack(retry)
        failure.retry_after = max(int(retry.retry_delay.seconds), 1)
