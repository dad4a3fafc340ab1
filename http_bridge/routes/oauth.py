"""The OAuth 2.0 endpoints: token (RFC 6749 section 4.4, client_credentials), introspection
(RFC 7662) and revocation (RFC 7009). Form-encoded as the RFCs say, JSON as the reference API
documents; clients authenticate with HTTP Basic or in the body."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from http_bridge.context import bridge
from http_bridge.parsing import FORM, JSON, body_params, client_credentials, required
from http_bridge.responses import answers_errors, no_store_json
from server.errors import UnsupportedGrantType
from server.model import ClientCredentials
from tokenservice.v1 import token_service_pb2 as pb

CLIENT_CREDENTIALS = "client_credentials"
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
    """POST /oauth/token: a service access token for a back end."""
    context = bridge(request)
    params = await body_params(request, context.settings.max_message_bytes, accept=(FORM, JSON))
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
    return no_store_json(
        {
            "access_token": issued.access_token,
            "token_type": issued.token_type,
            "expires_in": issued.expires_in,
            "refresh_token": issued.refresh_token,
            "refresh_token_expires_in": issued.refresh_token_expires_in,
            "session_idle_time": issued.session_idle_time,
            "scope": issued.scope,
        }
    )


@answers_errors
async def introspect(request: Request) -> Response:
    """POST /oauth/introspect (RFC 7662): `{"active": false}` for anything not active."""
    context = bridge(request)
    params = await body_params(request, context.settings.max_message_bytes, accept=(FORM, JSON))
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
    params = await body_params(request, context.settings.max_message_bytes, accept=(FORM, JSON))
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
