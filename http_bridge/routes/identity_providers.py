"""The customer endpoints that log in through a tenant's external identity provider: token
exchange (`POST /customer/{tenant}/exchangeauthtoken`, RFC 8693) and social login
(`POST /customer/{tenant}/socialLogin`, an OpenID Connect authorization code). Both are
authorised by an anonymous access token whose session the customer's continues, as the
password login is, and map onto IssueToken's token_exchange and social_login grants.

The reference sends their parameters in the query string; a form or JSON body with the same
names (and RFC 8693's subject_token and subject_token_type) is read too, bounded by
TOKENSERVICE_MAX_MESSAGE_BYTES. A parameter given in both is refused.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from http_bridge.backend import RpcFailure
from http_bridge.context import bridge
from http_bridge.parsing import FORM, JSON, Params, bearer_token, body_params, query_params
from http_bridge.responses import answers_errors, no_store_json
from server.errors import InvalidRequest
from tokenservice.v1 import token_service_pb2 as pb

EXCHANGE_FIELDS = ("subjectAccessToken", "subject_token", "subject_token_type", "config")
SOCIAL_FIELDS = ("code", "redirect_uri", "code_verifier", "nonce", "config")
# The grants' field names as these routes' parameters, for details[].field.
EXCHANGE_PARAMETERS = {"subject_token": "subjectAccessToken", "anonymous_token": "Authorization"}
SOCIAL_PARAMETERS = {"anonymous_token": "Authorization"}


@answers_errors
async def exchange_auth_token(request: Request) -> Response:
    """POST /customer/{tenant}/exchangeauthtoken: the provider's JWT becomes a customer token."""
    anonymous_token = bearer_token(request)
    params = await _params(request, EXCHANGE_FIELDS)
    subject_token = params.get("subjectAccessToken") or params.get("subject_token", "")
    if "subjectAccessToken" in params and "subject_token" in params:
        raise InvalidRequest(
            "subjectAccessToken is given more than once", field="subjectAccessToken"
        )
    if not subject_token:
        raise InvalidRequest("subjectAccessToken is required", field="subjectAccessToken")
    grant = pb.TokenExchangeGrant(
        tenant=request.path_params["tenant"],
        subject_token=subject_token,
        subject_token_type=params.get("subject_token_type", ""),
        anonymous_token=anonymous_token,
        config=params.get("config", ""),
    )
    with _named(EXCHANGE_PARAMETERS):
        issued = await bridge(request).backend.issue_token(
            pb.IssueTokenRequest(token_exchange=grant)
        )
    return no_store_json({"subject_access_token": subject_token, **_customer_token(issued)})


@answers_errors
async def social_login(request: Request) -> Response:
    """POST /customer/{tenant}/socialLogin: an authorization code of the tenant's provider
    becomes a customer token, answered with the provider's own tokens."""
    anonymous_token = bearer_token(request)
    params = await _params(request, SOCIAL_FIELDS)
    for name in ("code", "redirect_uri"):
        if not params.get(name):
            raise InvalidRequest(f"{name} is required", field=name)
    grant = pb.SocialLoginGrant(
        tenant=request.path_params["tenant"],
        code=params["code"],
        redirect_uri=params["redirect_uri"],
        code_verifier=params.get("code_verifier", ""),
        nonce=params.get("nonce", ""),
        anonymous_token=anonymous_token,
        config=params.get("config", ""),
    )
    with _named(SOCIAL_PARAMETERS):
        issued = await bridge(request).backend.issue_token(pb.IssueTokenRequest(social_login=grant))
    return no_store_json(
        {
            "social_access_token": issued.external_access_token,
            "social_id_token": issued.external_id_token,
            **_customer_token(issued),
        }
    )


async def _params(request: Request, fields: tuple[str, ...]) -> Params:
    """The query's parameters, and the body's when there is one (bounded)."""
    params = query_params(request, fields)
    declared = request.headers.get("content-length", "")
    chunked = "chunked" in request.headers.get("transfer-encoding", "").lower()
    if (declared and declared != "0") or chunked:
        limit = bridge(request).settings.max_message_bytes
        body = await body_params(request, limit, accept=(JSON, FORM), fields=fields)
        for name, value in body.items():
            if name in params:
                raise InvalidRequest(f"{name} is given more than once", field=name)
            params[name] = value
    return params


def _customer_token(issued: pb.TokenResponse) -> dict[str, Any]:
    return {
        "access_token": issued.access_token,
        "saas_token": issued.saas_token,
        "refresh_token": issued.refresh_token,
        "refresh_token_expires_in": issued.refresh_token_expires_in,
        "session_idle_time": issued.session_idle_time,
        "token_type": issued.token_type,
        "expires_in": issued.expires_in,
        "scope": issued.scope,
        "session_id": issued.session_id,
    }


class _named:
    """A refused field is named as the route's parameter, not as the grant's field."""

    def __init__(self, names: dict[str, str]) -> None:
        self._names = names

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, error: BaseException | None, trace: object) -> None:
        if isinstance(error, RpcFailure) and error.field in self._names:
            raise dataclasses.replace(error, field=self._names[error.field]) from None
