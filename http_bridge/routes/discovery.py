"""What resource servers and gateways discover: the JWKS that verifies SaaS tokens, the RFC 8414
authorization server metadata, and this bridge's OpenAPI document."""

from __future__ import annotations

import functools
from importlib import resources

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from http_bridge.context import bridge
from http_bridge.responses import answers_errors
from server import scopes
from tokenservice.v1 import token_service_pb2 as pb

# Verifiers may cache the key set for a minute: a rotated-in key is published for
# TOKENSERVICE_SIGNING_KEY_ACTIVATION_SECONDS (120 s) before it signs (server.signing.KeyRing),
# longer than this max-age plus PyJWT's 30 s refetch cooldown, so no verifier meets an unknown kid.
JWKS_CACHE = {"Cache-Control": "public, max-age=60"}


@answers_errors
async def jwks(request: Request) -> Response:
    """GET /.well-known/jwks.json (RFC 7517)."""
    result = await bridge(request).backend.get_jwks(pb.GetJwksRequest())
    keys = [
        {field: getattr(key, field) for field in ("kty", "crv", "x", "y", "kid", "use", "alg")}
        for key in result.keys
    ]
    return JSONResponse({"keys": keys}, headers=JWKS_CACHE)


# RFC 8414 section 2 makes response_types_supported REQUIRED even for a server with no
# authorization endpoint, and validators (authlib's) refuse the honest empty list. The one value
# that claims no front-channel capability is "none" (OAuth 2.0 Multiple Response Type Encoding
# Practices, section 4: a request with it gets none of code, access token or ID token back).
# It grants nothing, and the document says plainly that there is nowhere to send one: no
# authorization_endpoint, and grant_types_supported is client_credentials alone, which RFC 7591
# section 2.1 pairs with no response type. "code" or "token" would claim an authorization
# endpoint that does not exist.
RESPONSE_TYPES = ["none"]


@answers_errors
async def metadata(request: Request) -> Response:
    """GET /.well-known/oauth-authorization-server (RFC 8414)."""
    issuer = bridge(request).settings.issuer  # exactly the tokens' iss (RFC 8414 section 3.3)
    base = issuer.rstrip("/")
    auth_methods = ["client_secret_basic", "client_secret_post"]
    return JSONResponse(
        {
            "issuer": issuer,
            # The RFC 6749 answers (routes/oauth.py); Emporix clients keep /oauth/token.
            "token_endpoint": f"{base}/oauth2/token",
            "introspection_endpoint": f"{base}/oauth/introspect",
            "revocation_endpoint": f"{base}/oauth/revoke",
            "jwks_uri": f"{base}/.well-known/jwks.json",
            "grant_types_supported": ["client_credentials"],
            "response_types_supported": RESPONSE_TYPES,
            "scopes_supported": list(scopes.PUBLISHED_SCOPES),
            # client_credentials is for confidential clients only (RFC 6749 section 4.4), so
            # "none" is not offered here: a request without a secret is invalid_client.
            "token_endpoint_auth_methods_supported": auth_methods,
            # Public storefront clients authenticate by client_id alone.
            "introspection_endpoint_auth_methods_supported": [*auth_methods, "none"],
            "revocation_endpoint_auth_methods_supported": [*auth_methods, "none"],
            "service_documentation": f"{base}/openapi.json",
        },
        headers={"Cache-Control": "public, max-age=300"},
    )


async def openapi(request: Request) -> Response:
    """GET /openapi.json: the checked-in description of every route."""
    return Response(openapi_document(), media_type="application/json")


@functools.cache
def openapi_document() -> bytes:
    return resources.files("http_bridge").joinpath("openapi.json").read_bytes()
