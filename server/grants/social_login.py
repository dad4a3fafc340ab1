"""Social login, `POST /customer/{tenant}/socialLogin`: an OpenID Connect authorization code
(OpenID Connect Core section 3.1.3, with the PKCE code_verifier of RFC 7636 and the
redirect_uri of the authorization request) is exchanged at the token endpoint of the tenant's
configured provider, and the ID token it answers with becomes a customer token continuing the
anonymous session, as a password login does (grants/customer_password.py mints it). The
provider's access and ID tokens are answered beside it, as the reference shows.

- The anonymous token is checked first: no unauthorised caller can make the service call the
  provider.
- The code goes only to the configured token endpoint (server/outbound_http.py), with the
  provider's client id and, when configured, its secret (HTTP Basic, RFC 6749 section 2.3.1).
- The ID token passes the checks of every external token (server/identity_providers.py), with
  the client id as its audience (OpenID Connect Core section 3.1.3.7: `azp`, when present,
  must be the client id too), and its `nonce` must equal the one the storefront sent, when it
  sent one.
- The provider refusing the code (invalid_grant) is a 400 invalid_grant; any other refusal is
  the configuration's fault and a 503, as is a provider that cannot be reached.
"""

from __future__ import annotations

import dataclasses
import hmac
from typing import Any

from server import identity_providers, validation
from server.core import Core
from server.errors import IdentityProviderUnavailable, InvalidGrant, InvalidRequest
from server.grants.customer_password import anonymous_access_token, continue_as_customer
from server.jwt_checks import JwtRejected
from server.records import IdentityProviderRecord, IssuedTokens

MAX_CODE = 2048
MAX_REDIRECT_URI = 2048
MAX_VERIFIER = 128  # RFC 7636 section 4.1
ID_TOKEN_CLAIMS = ("iss", "aud", "exp", "iat", "sub")


@dataclasses.dataclass(frozen=True, slots=True)
class AuthorizationCode:
    code: str
    redirect_uri: str
    code_verifier: str = ""
    nonce: str = ""

    def __repr__(self) -> str:  # never show the code, not even in a traceback
        return "AuthorizationCode(...)"


async def issue(
    core: Core,
    tenant: str,
    grant: AuthorizationCode,
    anonymous_token: str,
    *,
    config: str = "",
) -> IssuedTokens:
    """`config`: the provider's name ("" for the tenant's default provider)."""
    validation.tenant(tenant)
    _check(grant)
    validation.token(anonymous_token, "anonymous_token")
    now = core.now()
    anonymous = await anonymous_access_token(core, anonymous_token, tenant, now)
    provider = await identity_providers.provider_for(core, tenant, config)
    if not provider.token_endpoint or not provider.client_id:
        raise InvalidRequest(
            "the identity provider is not configured for social login", field="config"
        )
    answer = await _redeemed(core, provider, grant)
    id_token = answer.get("id_token")
    if not isinstance(id_token, str) or not id_token:
        raise IdentityProviderUnavailable("the identity provider answered without an ID token")
    try:
        email = await _verified_email(core, provider, id_token, grant.nonce)
    except JwtRejected as rejected:
        raise InvalidGrant(
            f"the identity provider's ID token is not acceptable: {rejected}"
        ) from None
    customer = await identity_providers.customer_for(core, provider, email)
    issued = await continue_as_customer(core, anonymous, customer, now)
    access = answer.get("access_token")
    return dataclasses.replace(
        issued,
        session_idle_time=core.settings.session_idle_time,
        external_access_token=access if isinstance(access, str) else "",
        external_id_token=id_token,
    )


def _check(grant: AuthorizationCode) -> None:
    validation.token(grant.code, "code", max_length=MAX_CODE)
    validation.token(grant.redirect_uri, "redirect_uri", max_length=MAX_REDIRECT_URI)
    if not grant.redirect_uri.startswith(("https://", "http://")):
        raise InvalidRequest("redirect_uri must be an http(s) URL", field="redirect_uri")
    if grant.code_verifier:
        validation.token(grant.code_verifier, "code_verifier", max_length=MAX_VERIFIER)
    if grant.nonce:
        validation.token(grant.nonce, "nonce", max_length=validation.MAX_TOKEN)


async def _redeemed(
    core: Core, provider: IdentityProviderRecord, grant: AuthorizationCode
) -> dict[str, Any]:
    form = {
        "grant_type": "authorization_code",
        "code": grant.code,
        "redirect_uri": grant.redirect_uri,
    }
    if grant.code_verifier:
        form["code_verifier"] = grant.code_verifier
    auth = None
    if provider.client_secret:
        auth = (provider.client_id, provider.client_secret)
    else:
        form["client_id"] = provider.client_id  # a public client (PKCE)
    status, body = await core.outbound.post_form(provider, provider.token_endpoint, form, auth)
    if status == 200 and isinstance(body, dict):
        return body
    error = body.get("error") if isinstance(body, dict) else None
    if status in (400, 401) and error == "invalid_grant":
        raise InvalidGrant("the identity provider refused the authorization code", field="code")
    raise IdentityProviderUnavailable(
        f"the identity provider refused the code exchange with status {status}"
    )


async def _verified_email(
    core: Core, provider: IdentityProviderRecord, id_token: str, nonce: str
) -> str:
    base = identity_providers.policy(core, provider)
    required = tuple(dict.fromkeys((*ID_TOKEN_CLAIMS, provider.customer_claim)))
    policy = dataclasses.replace(base, audience=provider.client_id, required=required)
    claims = await identity_providers.verified_claims(core, provider, id_token, policy)
    azp = claims.get("azp")
    if azp is not None and azp != provider.client_id:
        raise JwtRejected("the azp claim is not this service's client id")
    if nonce:
        sent = claims.get("nonce")
        if not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), nonce.encode()):
            raise JwtRejected("the nonce claim is not the one sent")
    return identity_providers.customer_email(provider, claims)
