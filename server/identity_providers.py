"""The external OpenID providers a tenant trusts, and what their tokens are worth here: the
rules token exchange (server/grants/token_exchange.py) and social login
(server/grants/social_login.py) share.

- Which provider: the tenant's provider named by the reference's `config` parameter, or the
  one named "default"; an unknown name is a 400 (as the reference says).
- Whether a token is the provider's: server/jwt_checks.py, the checks the SaaS verifier
  applies (the provider's algorithm list, asymmetric only; exact issuer; the audience, a string
  or a list holding it; exp, iat and nbf with TOKENSERVICE_IDP_LEEWAY_SECONDS; no `crit`; no
  header member that would name a key), with the keys of the provider's JWKS
  (server/provider_keys.py).
- Which customer: the claim the provider's configuration names holds the customer's e-mail
  address; with `email`, an `email_verified` of false is refused (an unverified address would
  let anyone who types it at the provider take the account). The customer of that address is
  found, or, where the provider allows it, created (with an unusable random password: such a
  customer logs in through the provider, and may set a password by a reset).
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

from server import validation
from server.core import Core
from server.errors import AccessDenied, AlreadyExists, InvalidRequest
from server.jwt_checks import JwtPolicy, JwtRejected
from server.jwt_checks import verify as verify_jwt
from server.records import CustomerRecord, IdentityProviderRecord

DEFAULT_PROVIDER = "default"
# RFC 9068 access tokens say at+jwt; ID tokens and most others JWT or nothing.
ACCEPTED_TYP = frozenset({"JWT", "at+jwt", "application/at+jwt"})
NO_CUSTOMER = "no customer account matches this identity, and the provider creates none"


async def provider_for(core: Core, tenant: str, config: str) -> IdentityProviderRecord:
    """The tenant's provider named `config` ("" for the default), or InvalidRequest."""
    validation.tenant(tenant)
    name = config or DEFAULT_PROVIDER
    validation.identifier(name, "config")
    provider = await core.store.get_identity_provider(tenant, name)
    if provider is None:
        if config:
            raise InvalidRequest("config names no identity provider of this tenant", field="config")
        raise InvalidRequest("this tenant trusts no identity provider", field="config")
    return provider


def policy(core: Core, provider: IdentityProviderRecord) -> JwtPolicy:
    required = tuple(dict.fromkeys(("iss", "aud", "exp", "sub", provider.customer_claim)))
    return JwtPolicy(
        algorithms=provider.algorithms,
        issuer=provider.issuer,
        audience=provider.audience,
        required=required,
        max_length=core.settings.idp_max_token_bytes,
        allowed_typ=ACCEPTED_TYP,
        audience_list_allowed=True,
        leeway=core.settings.idp_leeway_seconds,
        issuer_name="the identity provider's",
        audience_name="the one configured for the identity provider",
    )


async def verified_claims(
    core: Core, provider: IdentityProviderRecord, token: str, jwt_policy: JwtPolicy | None = None
) -> dict[str, Any]:
    """The claims of a token the provider signed, or JwtRejected saying which check failed."""

    async def key_for(kid: str) -> Any:
        return await core.provider_keys.key(provider, kid)

    _, claims = await verify_jwt(token, jwt_policy or policy(core, provider), key_for, core.now())
    return claims


def customer_email(provider: IdentityProviderRecord, claims: dict[str, Any]) -> str:
    """The customer's e-mail address the claims name, or JwtRejected."""
    value = claims.get(provider.customer_claim)
    if not isinstance(value, str):
        raise JwtRejected(f"the {provider.customer_claim} claim is not a string")
    if provider.customer_claim == "email" and claims.get("email_verified") is False:
        raise JwtRejected("the email claim is not verified by the identity provider")
    try:
        return validation.email(value, provider.customer_claim)
    except InvalidRequest:
        raise JwtRejected(f"the {provider.customer_claim} claim is not an e-mail address") from None


async def customer_for(core: Core, provider: IdentityProviderRecord, email: str) -> CustomerRecord:
    """The customer with this address, created if the provider allows it; AccessDenied if not."""
    customer = await core.store.find_customer(provider.tenant, email)
    if customer is not None:
        return customer
    if not provider.create_customers:
        raise AccessDenied(NO_CUSTOMER)
    record = CustomerRecord(
        id=str(uuid.uuid4()),
        tenant=provider.tenant,
        email=email,
        password_hash=await core.passwords.hash(secrets.token_urlsafe(32)),
        scopes=provider.customer_scopes,
        legal_entity_ids=(),
        created_at=core.now(),
    )
    try:
        await core.store.create_customer(record)
    except AlreadyExists:  # a concurrent first login of the same customer won
        found = await core.store.find_customer(provider.tenant, email)
        if found is None:
            raise
        return found
    return record
