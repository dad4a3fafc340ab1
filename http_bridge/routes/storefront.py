"""The storefront endpoints of the reference API: anonymous login and refresh
(`/customerlogin/auth/anonymous/*`, query string) and the customer token endpoints
(`/customer/{tenant}/*`, bearer-authorised), with the reference's exact parameter and field
names, deprecated camelCase twins included."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from http_bridge.backend import RpcFailure
from http_bridge.context import bridge, client_address_of
from http_bridge.parsing import JSON, Params, bearer_token, body_params, query_params, required
from http_bridge.responses import answers_errors, no_store_json
from server.errors import InvalidRequest, InvalidToken
from tokenservice.v1 import token_service_pb2 as pb

# Each route's parameters; others (a storefront's "rememberMe", a tracking parameter) are ignored.
LOGIN_FIELDS = ("email", "password")
CONTEXT_FIELDS = ("currency", "siteCode", "language", "targetLocation")
# The SessionContext fields whose parameter names differ.
CONTEXT_PARAMETERS = {"site_code": "siteCode", "target_location": "targetLocation"}
ANONYMOUS_LOGIN_FIELDS = ("tenant", "client_id", *CONTEXT_FIELDS)
ANONYMOUS_REFRESH_FIELDS = (*ANONYMOUS_LOGIN_FIELDS, "refresh_token", "anonymous_token")
CUSTOMER_REFRESH_QUERY = ("refreshToken", "legalEntityId")
LOGOUT_QUERY = ("accessToken",)
NOT_ACTIVE = "the token is not an active access token of this tenant"
# The RefreshToken RPC's field names as this route's parameters, for details[].field.
CUSTOMER_REFRESH_FIELDS = {
    "refresh_token": "refreshToken",
    "legal_entity_id": "legalEntityId",
    "access_token": "Authorization",
}


@answers_errors
async def anonymous_login(request: Request) -> Response:
    """GET /customerlogin/auth/anonymous/login: a new storefront session."""
    query = query_params(request, ANONYMOUS_LOGIN_FIELDS)
    grant = pb.AnonymousGrant(
        tenant=required(query, "tenant"),
        client_id=required(query, "client_id"),
        context=session_context(query),
    )
    with context_parameter_names():
        issued = await bridge(request).backend.issue_token(pb.IssueTokenRequest(anonymous=grant))
    return no_store_json(anonymous_body(issued))


@answers_errors
async def anonymous_refresh(request: Request) -> Response:
    """GET /customerlogin/auth/anonymous/refresh: a new access token, same sessionId."""
    query = query_params(request, ANONYMOUS_REFRESH_FIELDS)
    tenant, client_id = required(query, "tenant"), required(query, "client_id")
    refresh_token = query.get("refresh_token", "")
    anonymous_token = query.get("anonymous_token", "")
    if not refresh_token and not anonymous_token:
        raise InvalidRequest("refresh_token is required", field="refresh_token")
    with context_parameter_names():
        issued = await bridge(request).backend.refresh_token(
            pb.RefreshTokenRequest(
                tenant=tenant,
                client_id=client_id,
                refresh_token=refresh_token,
                anonymous_token=anonymous_token,
                context=session_context(query),
            )
        )
    return no_store_json(anonymous_body(issued))


@answers_errors
async def customer_login(request: Request) -> Response:
    """POST /customer/{tenant}/login: email and password, authorised by an anonymous token whose
    session the customer's continues."""
    context = bridge(request)
    anonymous_token = bearer_token(request)
    body = await body_params(
        request, context.settings.max_message_bytes, accept=(JSON,), fields=LOGIN_FIELDS
    )
    grant = pb.CustomerPasswordGrant(
        tenant=request.path_params["tenant"],
        email=required(body, "email"),
        password=required(body, "password"),
        anonymous_token=anonymous_token,
    )
    issued = await context.backend.issue_token(
        pb.IssueTokenRequest(customer_password=grant), client_address=client_address_of(request)
    )
    return no_store_json(customer_body(issued))


@answers_errors
async def customer_refresh(request: Request) -> Response:
    """GET /customer/{tenant}/refreshauthtoken: a new customer access token (and SaaS token) on
    the same session, optionally switching the legal entity."""
    access_token = bearer_token(request)
    query = query_params(request, CUSTOMER_REFRESH_QUERY)
    try:
        issued = await bridge(request).backend.refresh_token(
            pb.RefreshTokenRequest(
                tenant=request.path_params["tenant"],
                refresh_token=required(query, "refreshToken"),
                legal_entity_id=query.get("legalEntityId", ""),
                access_token=access_token,
            )
        )
    except RpcFailure as failure:
        field = CUSTOMER_REFRESH_FIELDS.get(failure.field, failure.field)
        raise dataclasses.replace(failure, field=field) from None
    return no_store_json(customer_body(issued))


@answers_errors
async def validate(request: Request) -> Response:
    """GET /customer/{tenant}/validateauthtoken: the token's details, or 401 when it is not an
    active access token of this tenant. `as_bearer` has the core say why (expired, or invalid:
    server/introspection.py `bearer`), which plain introspection must not; a server that does
    not know the flag answers `active: false`, still a 401 here."""
    token = bearer_token(request)
    result = await bridge(request).backend.introspect_token(
        pb.IntrospectTokenRequest(token=token, tenant=request.path_params["tenant"], as_bearer=True)
    )
    if not result.active or result.token_use != pb.TOKEN_USE_ACCESS:
        raise InvalidToken(NOT_ACTIVE)
    body: dict[str, Any] = {
        "token_type": result.token_type,
        "expires_in": result.expires_in,
        "scope": result.scope,
    }
    optional = {
        "sessionId": result.session_id,
        "email": result.email,
        "legalEntityId": result.legal_entity_id,
    }
    body.update({name: value for name, value in optional.items() if value})
    return no_store_json(body)


@answers_errors
async def logout(request: Request) -> Response:
    """GET /customer/{tenant}/logout: revokes every token of the session; 204."""
    bearer = bearer_token(request)
    query = query_params(request, LOGOUT_QUERY)
    await bridge(request).backend.revoke_token(
        pb.RevokeTokenRequest(
            token=query.get("accessToken") or bearer,
            tenant=request.path_params["tenant"],
            end_session=True,
            bearer_token=bearer,
        )
    )
    return Response(status_code=204, headers={"Cache-Control": "no-store"})


@contextlib.contextmanager
def context_parameter_names() -> Iterator[None]:
    """A refused session-context field is named as these routes' parameter (`siteCode`), not
    as the RPC's field (`site_code`): in details[].field and in the message, which starts with
    the field's name."""
    try:
        yield
    except RpcFailure as failure:
        name = CONTEXT_PARAMETERS.get(failure.field)
        if name is None:
            raise
        message = failure.message.removeprefix(failure.field)
        raise dataclasses.replace(failure, field=name, message=name + message) from None


def session_context(query: Params) -> pb.SessionContext:
    return pb.SessionContext(
        currency=query.get("currency", ""),
        site_code=query.get("siteCode", ""),
        language=query.get("language", ""),
        target_location=query.get("targetLocation", ""),
    )


def anonymous_body(issued: pb.TokenResponse) -> dict[str, Any]:
    body: dict[str, Any] = {
        "token_type": issued.token_type,
        "access_token": issued.access_token,
        "expires_in": issued.expires_in,
    }
    if issued.refresh_token:  # not after the deprecated refresh by anonymous_token
        body["refresh_token"] = issued.refresh_token
        body["refresh_token_expires_in"] = issued.refresh_token_expires_in
    body["sessionId"] = issued.session_id
    body["scope"] = issued.scope
    return body


def customer_body(issued: pb.TokenResponse) -> dict[str, Any]:
    return {
        "access_token": issued.access_token,
        "saas_token": issued.saas_token,
        "expires_in": issued.expires_in,
        "refresh_token": issued.refresh_token,
        "refresh_token_expires_in": issued.refresh_token_expires_in,
        "token_type": issued.token_type,
        "session_id": issued.session_id,
        "scope": issued.scope,
        # Deprecated twins that older storefront clients still read.
        "accessToken": issued.access_token,
        "saasToken": issued.saas_token,
        "expiresIn": issued.expires_in,
        "refreshToken": issued.refresh_token,
        "refreshTokenExpiresIn": issued.refresh_token_expires_in,
    }
