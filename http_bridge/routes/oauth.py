"""The OAuth 2.0 endpoints: token (RFC 6749 section 4.4, client_credentials), introspection
(RFC 7662) and revocation (RFC 7009). Form-encoded as the RFCs say, JSON as the reference API
documents; clients authenticate with HTTP Basic or in the body.

The token endpoint has two addresses over one grant: `/oauth/token`, which Emporix clients call
by name and which keeps the reference's answer exactly (`"refresh_token": ""`,
`"refresh_token_expires_in": 0`), and `/oauth2/token`, the one the RFC 8414 metadata names, whose
answer leaves out what RFC 6749 section 5.1 says to leave out when there is nothing to say (no
refresh token on a client_credentials grant; strict clients such as oauth4webapi refuse an empty
one)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from http_bridge.context import bridge
from http_bridge.parsing import FORM, JSON, body_params, client_credentials, required
from http_bridge.responses import answers_errors, no_store_json
from server.errors import UnsupportedGrantType
from server.records import ClientCredentials
from tokenservice.v1 import token_service_pb2 as pb

CLIENT_CREDENTIALS = "client_credentials"
# The body fields each endpoint defines; any other is ignored (http_bridge/parsing.py).
TOKEN_FIELDS = ("grant_type", "client_id", "client_secret", "scope")
# token_type_hint is accepted and has no effect: one digest lookup finds a token of any type,
# and RFC 7009 section 2.1 / RFC 7662 section 2.1 let a server ignore the hint.
TOKEN_USE_FIELDS = ("token", "token_type_hint", "client_id", "client_secret")
KIND_NAMES = {
    pb.TOKEN_KIND_ANONYMOUS: "anonymous",
    pb.TOKEN_KIND_CUSTOMER: "customer",
    pb.TOKEN_KIND_SERVICE: "service",
}
USE_NAMES = {
    pb.TOKEN_USE_ACCESS: "access",
    pb.TOKEN_USE_REFRESH: "refresh",
    pb.TOKEN_USE_SAAS: "saas",
}


@answers_errors
async def token(request: Request) -> Response:
    """POST /oauth/token: a service access token for a back end, in the reference's shape."""
    return no_store_json(await _service_token(request))


@answers_errors
async def standard_token(request: Request) -> Response:
    """POST /oauth2/token: the same grant, answered as RFC 6749 section 5.1 says."""
    return no_store_json(rfc6749_answer(await _service_token(request)))


async def _service_token(request: Request) -> dict[str, Any]:
    """The client_credentials grant, in the reference API's answer shape."""
    context = bridge(request)
    params = await body_params(
        request, context.settings.max_message_bytes, accept=(FORM, JSON), fields=TOKEN_FIELDS
    )
    grant_type = required(params, "grant_type")
    if grant_type != CLIENT_CREDENTIALS:
        raise UnsupportedGrantType("grant_type must be client_credentials", field="grant_type")
    client = client_credentials(request, params)
    grant = pb.ClientCredentialsGrant(
        client_id=client.client_id,
        client_secret=client.client_secret,
        scope=params.get("scope", ""),
    )
    issued = await context.backend.issue_token(pb.IssueTokenRequest(client_credentials=grant))
    return {
        "access_token": issued.access_token,
        "token_type": issued.token_type,
        "expires_in": issued.expires_in,
        "refresh_token": issued.refresh_token,
        "refresh_token_expires_in": issued.refresh_token_expires_in,
        "session_idle_time": issued.session_idle_time,
        "scope": issued.scope,
    }


def rfc6749_answer(answer: dict[str, Any]) -> dict[str, Any]:
    """`answer` without the fields that carry nothing: an empty string, and the refresh token's
    lifetime when there is no refresh token. What has a value stays (session_idle_time is an
    extension parameter, which RFC 6749 section 5.1 lets a client ignore)."""
    has_refresh_token = bool(answer.get("refresh_token"))
    return {
        name: value
        for name, value in answer.items()
        if value != "" and (has_refresh_token or name != "refresh_token_expires_in")
    }


@answers_errors
async def introspect(request: Request) -> Response:
    """POST /oauth/introspect (RFC 7662): `{"active": false}` for anything not active."""
    context = bridge(request)
    params = await body_params(
        request, context.settings.max_message_bytes, accept=(FORM, JSON), fields=TOKEN_USE_FIELDS
    )
    caller = client_credentials(request, params)
    result = await context.backend.introspect_token(
        pb.IntrospectTokenRequest(
            token=required(params, "token"),
            token_type_hint=params.get("token_type_hint", ""),
            caller=_authentication(caller),
        )
    )
    return no_store_json(introspection_body(result, context.settings.issuer))


@answers_errors
async def revoke(request: Request) -> Response:
    """POST /oauth/revoke (RFC 7009): 200 whether or not the token was known."""
    context = bridge(request)
    params = await body_params(
        request, context.settings.max_message_bytes, accept=(FORM, JSON), fields=TOKEN_USE_FIELDS
    )
    caller = client_credentials(request, params)
    await context.backend.revoke_token(
        pb.RevokeTokenRequest(
            token=required(params, "token"),
            token_type_hint=params.get("token_type_hint", ""),
            caller=_authentication(caller),
        )
    )
    return Response(status_code=200, headers={"Cache-Control": "no-store"})


def introspection_body(result: pb.IntrospectTokenResponse, issuer: str) -> dict[str, Any]:
    if not result.active:
        return {"active": False}
    body: dict[str, Any] = {
        "active": True,
        "scope": result.scope,
        "client_id": result.client_id,
        "token_type": result.token_type,
        "exp": result.exp,
        "iat": result.iat,
        "iss": issuer,
        "tenant": result.tenant,
        "kind": KIND_NAMES.get(result.kind, ""),
        "token_use": USE_NAMES.get(result.token_use, ""),
        "expires_in": result.expires_in,
        "cache_seconds": result.cache_seconds,
    }
    optional = {
        "sub": result.customer_id,
        "session_id": result.session_id,
        "email": result.email,
        "legal_entity_id": result.legal_entity_id,
    }
    body.update({name: value for name, value in optional.items() if value})
    return body


def _authentication(caller: ClientCredentials) -> pb.ClientAuthentication:
    return pb.ClientAuthentication(client_id=caller.client_id, client_secret=caller.client_secret)
