"""AccountService: proto <-> domain conversion only (the rules are in server/accounts/).

`AccountCalls` is the transport-free entry, as servicer.TokenCalls is: the HTTP bridge's
in-process backend calls it, and `AccountServicer` serves it over gRPC, reading the caller's
address (for the throttles) from the call the way TokenServicer does.
"""

from __future__ import annotations

import grpc

from server.accounts import email_change, password_change, password_reset, signup
from server.core import Core
from server.servicer import grpc_client_address, token_response
from tokenservice.v1 import account_service_pb2 as pb
from tokenservice.v1 import account_service_pb2_grpc as pb_grpc
from tokenservice.v1 import token_service_pb2 as token_pb

ACCEPTED = pb.AccountAccepted()


class AccountCalls:
    def __init__(self, core: Core) -> None:
        self._core = core

    async def sign_up(
        self, request: pb.SignUpRequest, *, client_address: str = ""
    ) -> pb.SignUpResponse:
        done = await signup.sign_up(
            self._core,
            request.tenant,
            request.email,
            request.password,
            request.anonymous_token,
            client_address=client_address,
        )
        return pb.SignUpResponse(customer_id=done.customer_id, opt_in_required=done.opt_in_required)

    async def confirm_sign_up(self, request: pb.ConfirmSignUpRequest) -> token_pb.TokenResponse:
        issued = await signup.confirm(
            self._core, request.tenant, request.token, request.anonymous_token
        )
        return token_response(issued)

    async def resend_sign_up_link(
        self, request: pb.ResendSignUpLinkRequest, *, client_address: str = ""
    ) -> pb.AccountAccepted:
        await signup.resend(
            self._core,
            request.tenant,
            request.email,
            request.anonymous_token,
            client_address=client_address,
        )
        return ACCEPTED

    async def change_password(
        self, request: pb.ChangePasswordRequest, *, client_address: str = ""
    ) -> pb.SessionsEnded:
        ended = await password_change.change(
            self._core,
            request.tenant,
            request.access_token,
            request.current_password,
            request.new_password,
            client_address=client_address,
        )
        return pb.SessionsEnded(sessions_ended=ended)

    async def request_password_reset(
        self, request: pb.RequestPasswordResetRequest, *, client_address: str = ""
    ) -> pb.AccountAccepted:
        await password_reset.request(
            self._core,
            request.tenant,
            request.email,
            request.anonymous_token,
            client_address=client_address,
        )
        return ACCEPTED

    async def reset_password(self, request: pb.ResetPasswordRequest) -> pb.SessionsEnded:
        ended = await password_reset.update(
            self._core, request.tenant, request.token, request.new_password, request.anonymous_token
        )
        return pb.SessionsEnded(sessions_ended=ended)

    async def request_email_change(
        self, request: pb.RequestEmailChangeRequest, *, client_address: str = ""
    ) -> pb.AccountAccepted:
        await email_change.request(
            self._core,
            request.tenant,
            request.access_token,
            request.email,
            request.password,
            request.new_email,
            client_address=client_address,
        )
        return ACCEPTED

    async def confirm_email_change(
        self, request: pb.ConfirmEmailChangeRequest
    ) -> pb.AccountAccepted:
        await email_change.confirm(
            self._core, request.tenant, request.token, request.anonymous_token
        )
        return ACCEPTED


class AccountServicer(pb_grpc.AccountServiceServicer):
    """AccountService over gRPC: AccountCalls, with the caller's address read from the call."""

    def __init__(self, core: Core) -> None:
        self._core = core
        self._calls = AccountCalls(core)

    def _address(self, context: grpc.aio.ServicerContext) -> str:
        return grpc_client_address(self._core, context)

    async def SignUp(
        self, request: pb.SignUpRequest, context: grpc.aio.ServicerContext
    ) -> pb.SignUpResponse:
        return await self._calls.sign_up(request, client_address=self._address(context))

    async def ConfirmSignUp(
        self, request: pb.ConfirmSignUpRequest, context: grpc.aio.ServicerContext
    ) -> token_pb.TokenResponse:
        return await self._calls.confirm_sign_up(request)

    async def ResendSignUpLink(
        self, request: pb.ResendSignUpLinkRequest, context: grpc.aio.ServicerContext
    ) -> pb.AccountAccepted:
        return await self._calls.resend_sign_up_link(request, client_address=self._address(context))

    async def ChangePassword(
        self, request: pb.ChangePasswordRequest, context: grpc.aio.ServicerContext
    ) -> pb.SessionsEnded:
        return await self._calls.change_password(request, client_address=self._address(context))

    async def RequestPasswordReset(
        self, request: pb.RequestPasswordResetRequest, context: grpc.aio.ServicerContext
    ) -> pb.AccountAccepted:
        return await self._calls.request_password_reset(
            request, client_address=self._address(context)
        )

    async def ResetPassword(
        self, request: pb.ResetPasswordRequest, context: grpc.aio.ServicerContext
    ) -> pb.SessionsEnded:
        return await self._calls.reset_password(request)

    async def RequestEmailChange(
        self, request: pb.RequestEmailChangeRequest, context: grpc.aio.ServicerContext
    ) -> pb.AccountAccepted:
        return await self._calls.request_email_change(
            request, client_address=self._address(context)
        )

    async def ConfirmEmailChange(
        self, request: pb.ConfirmEmailChangeRequest, context: grpc.aio.ServicerContext
    ) -> pb.AccountAccepted:
        return await self._calls.confirm_email_change(request)
