"""Token exchange (RFC 8693), `POST /customer/{tenant}/exchangeauthtoken`: a JWT from an
external identity provider the tenant trusts (the subject token) becomes a customer token, with
SaaS token, refresh token and session id, continuing the anonymous session whose access token
authorises the call, as a password login does (grants/customer_password.py mints it).

Over gRPC it is IssueToken's `token_exchange` grant (grant_type
urn:ietf:params:oauth:grant-type:token-exchange): one more way to obtain the same customer
token, so it sits beside the other grants rather than in an RPC of its own.

The anonymous token is checked first, so that no unauthorised caller can make the service
fetch a provider's JWKS. A subject token that is not acceptable is `invalid_request` (RFC 8693
section 2.2.2), saying which check failed (server/identity_providers.py, server/jwt_checks.py);
a provider that cannot be reached is a 503 (IdentityProviderUnavailable).
"""

from __future__ import annotations

import dataclasses

from server import identity_providers, validation
from server.core import Core
from server.errors import InvalidRequest
from server.grants.customer_password import anonymous_access_token, continue_as_customer
from server.jwt_checks import JwtRejected
from server.records import IssuedTokens

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"  # noqa: S105 - a URN
# RFC 8693 section 3: what a JWT subject token may be called ("" means JWT).
SUBJECT_TOKEN_TYPES = frozenset(
    {
        JWT_TOKEN_TYPE,
        "urn:ietf:params:oauth:token-type:access_token",
        "urn:ietf:params:oauth:token-type:id_token",
    }
)


async def issue(
    core: Core,
    tenant: str,
    subject_token: str,
    anonymous_token: str,
    *,
    subject_token_type: str = "",
    config: str = "",
) -> IssuedTokens:
    """`config`: the provider's name ("" for the tenant's default provider)."""
    validation.tenant(tenant)
    validation.token(subject_token, "subject_token", max_length=core.settings.idp_max_token_bytes)
    if subject_token_type and subject_token_type not in SUBJECT_TOKEN_TYPES:
        raise InvalidRequest(
            "subject_token_type must name a JWT (urn:ietf:params:oauth:token-type:jwt)",
            field="subject_token_type",
        )
    validation.token(anonymous_token, "anonymous_token")
    now = core.now()
    anonymous = await anonymous_access_token(core, anonymous_token, tenant, now)
    provider = await identity_providers.provider_for(core, tenant, config)
    try:
        claims = await identity_providers.verified_claims(core, provider, subject_token)
        email = identity_providers.customer_email(provider, claims)
    except JwtRejected as rejected:
        raise InvalidRequest(
            f"subject_token is not acceptable: {rejected}", field="subject_token"
        ) from None
    customer = await identity_providers.customer_for(core, provider, email)
    issued = await continue_as_customer(core, anonymous, customer, now)
    return dataclasses.replace(issued, session_idle_time=core.settings.session_idle_time)
