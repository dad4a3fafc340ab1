"""The customer API's account endpoints (`/customer/{tenant}/signup`, `.../password/*`,
`.../me/accounts/internal/email/*`): the AccountService RPCs with the reference's field names
and statuses (201 with the new customer's id, 200 with a customer token for a confirmed
sign-up, 202 for an opt-in resend, 204 for the rest).

Bodies are JSON objects, bounded like every other body (TOKENSERVICE_MAX_MESSAGE_BYTES); fields
the route does not define are ignored (the sign-up's customerDetails, customerAddress), the
ones it defines must be strings. The bearer token is an anonymous access token, or the
customer's own for password and e-mail change, as the reference says.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request
from starlette.responses import Response

from http_bridge.backend import RpcFailure
from http_bridge.context import bridge, client_address_of
from http_bridge.parsing import JSON, Params, bearer_token, body_params, required
from http_bridge.responses import answers_errors, no_store_json
from http_bridge.routes.storefront import customer_body
from tokenservice.v1 import account_service_pb2 as pb

Answer = TypeVar("Answer")
# The RPCs' bearer fields, named in details[].field as what carries them here.
BEARER_FIELDS = {"anonymous_token": "Authorization", "access_token": "Authorization"}


async def _json(request: Request, *fields: str) -> Params:
    limit = bridge(request).settings.max_message_bytes
    return await body_params(request, limit, accept=(JSON,), fields=fields)


async def _named(call: Awaitable[Answer]) -> Answer:
    try:
        return await call
    except RpcFailure as failure:
        field = BEARER_FIELDS.get(failure.field, failure.field)
        raise dataclasses.replace(failure, field=field) from None


def _no_content(status: int = 204) -> Response:
    return Response(status_code=status, headers={"Cache-Control": "no-store"})


@answers_errors
async def sign_up(request: Request) -> Response:
    """POST /customer/{tenant}/signup: 201 {"id"}; 409 for an e-mail that exists."""
    token = bearer_token(request)
    body = await _json(request, "email", "password")
    call = pb.SignUpRequest(
        tenant=request.path_params["tenant"],
        email=required(body, "email"),
        password=required(body, "password"),
        anonymous_token=token,
    )
    backend = bridge(request).backend
    done = await _named(backend.sign_up(call, client_address=client_address_of(request)))
    return no_store_json({"id": done.customer_id}, status=201)


@answers_errors
async def confirm_sign_up(request: Request) -> Response:
    """GET /customer/{tenant}/signup/optin/{token}: the customer, logged in."""
    token = bearer_token(request)
    call = pb.ConfirmSignUpRequest(
        tenant=request.path_params["tenant"],
        token=request.path_params["token"],
        anonymous_token=token,
    )
    issued = await _named(bridge(request).backend.confirm_sign_up(call))
    return no_store_json(customer_body(issued))


@answers_errors
async def resend_sign_up_link(request: Request) -> Response:
    """POST /customer/{tenant}/signup/optin/refresh_token: 202 whatever the e-mail."""
    token = bearer_token(request)
    body = await _json(request, "email")
    call = pb.ResendSignUpLinkRequest(
        tenant=request.path_params["tenant"], email=required(body, "email"), anonymous_token=token
    )
    backend = bridge(request).backend
    await _named(backend.resend_sign_up_link(call, client_address=client_address_of(request)))
    return _no_content(202)


@answers_errors
async def change_password(request: Request) -> Response:
    """POST /customer/{tenant}/password/change (customer token): 204."""
    token = bearer_token(request)
    body = await _json(request, "currentPassword", "newPassword")
    call = pb.ChangePasswordRequest(
        tenant=request.path_params["tenant"],
        access_token=token,
        current_password=required(body, "currentPassword"),
        new_password=required(body, "newPassword"),
    )
    backend = bridge(request).backend
    await _named(backend.change_password(call, client_address=client_address_of(request)))
    return _no_content()


@answers_errors
async def request_password_reset(request: Request) -> Response:
    """POST /customer/{tenant}/password/reset: 204 whatever the e-mail."""
    token = bearer_token(request)
    body = await _json(request, "email")
    call = pb.RequestPasswordResetRequest(
        tenant=request.path_params["tenant"], email=required(body, "email"), anonymous_token=token
    )
    backend = bridge(request).backend
    await _named(backend.request_password_reset(call, client_address=client_address_of(request)))
    return _no_content()


@answers_errors
async def reset_password(request: Request) -> Response:
    """POST /customer/{tenant}/password/reset/update: 204."""
    token = bearer_token(request)
    body = await _json(request, "token", "password")
    call = pb.ResetPasswordRequest(
        tenant=request.path_params["tenant"],
        token=required(body, "token"),
        new_password=required(body, "password"),
        anonymous_token=token,
    )
    await _named(bridge(request).backend.reset_password(call))
    return _no_content()


@answers_errors
async def request_email_change(request: Request) -> Response:
    """POST /customer/{tenant}/me/accounts/internal/email/change (customer token): 204."""
    token = bearer_token(request)
    body = await _json(request, "email", "password", "newEmail")
    call = pb.RequestEmailChangeRequest(
        tenant=request.path_params["tenant"],
        access_token=token,
        email=required(body, "email"),
        password=required(body, "password"),
        new_email=required(body, "newEmail"),
    )
    backend = bridge(request).backend
    await _named(backend.request_email_change(call, client_address=client_address_of(request)))
    return _no_content()


@answers_errors
async def confirm_email_change(request: Request) -> Response:
    """POST /customer/{tenant}/me/accounts/internal/email/change/confirm: 204."""
    token = bearer_token(request)
    body = await _json(request, "token")
    call = pb.ConfirmEmailChangeRequest(
        tenant=request.path_params["tenant"], token=required(body, "token"), anonymous_token=token
    )
    await _named(bridge(request).backend.confirm_email_change(call))
    return _no_content()
