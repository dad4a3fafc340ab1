"""Token introspection (RFC 7662), `POST /oauth/introspect` and
`GET /customer/{tenant}/validateauthtoken`.

An unknown, expired, revoked, rotated or other-tenant token is simply inactive: never an error,
and never a hint about which of those it was.

Except for `GET /customer/{tenant}/validateauthtoken` (`bearer`), where the caller presents the
token as its own bearer and the reference answers 401 with a reason a storefront acts on:
expired (refresh it) or invalid (start a new session).

Opaque tokens are found by their keyed digest. A SaaS token (a JWT, which the store does not
keep) is verified by its signature and claims (server.saas_verifier) and is then active only
while its session is: not revoked (logout, refresh-token reuse), not purged, and still the
customer's and the tenant's the token names. Revoking one access token does not end the session
and so leaves the session's SaaS tokens active; ending the session does not.
"""

from __future__ import annotations

from server import client_auth, saas_verifier, validation
from server.core import Core
from server.errors import AccessDenied, InvalidRequest, InvalidToken
from server.grants.common import is_live, refused_bearer, stored_token
from server.records import INACTIVE, ClientCredentials, Introspection, TokenKind, TokenUse
from server.scopes import PLATFORM_ADMIN_SCOPE

NOT_ACTIVE = "the token is not an active access token of this tenant"


async def introspect(
    core: Core, token: str, tenant: str = "", caller: ClientCredentials | None = None
) -> Introspection:
    """`caller`, when given, must authenticate; it then sees only its own tenant's tokens (a
    service client with the platform-admin scope sees every tenant's)."""
    is_jwt = saas_verifier.looks_like_jwt(token)
    validation.token(
        token, max_length=saas_verifier.MAX_SAAS_TOKEN if is_jwt else validation.MAX_TOKEN
    )
    if tenant:
        validation.tenant(tenant)
    if caller is not None:
        tenant = await caller_tenant(core, caller, tenant)
    if is_jwt:
        return await introspect_saas_token(core, token, tenant)
    view = await core.store.find_token(core.digests.token(token))
    now = core.now()
    if view is None:
        return INACTIVE
    record = view.token
    if not is_live(record, now) or (tenant and record.tenant != tenant):
        return INACTIVE
    return Introspection(
        active=True,
        kind=record.kind,
        use=record.use,
        tenant=record.tenant,
        client_id=record.client_id,
        scope=record.scope,
        expires_in=record.expires_at - now,
        exp=record.expires_at,
        iat=record.issued_at,
        session_id=record.session_id or "",
        customer_id=record.customer_id or "",
        email=view.email or "",
        legal_entity_id=record.legal_entity_id or "",
        cache_seconds=cache_hint(core, record.expires_at - now),
    )


def cache_hint(core: Core, remaining_seconds: int) -> int:
    """How long a resource server may keep an active answer: the setting, never past expiry."""
    return max(0, min(core.settings.introspection_cache_hint_seconds, remaining_seconds))


async def bearer(
    core: Core, token: str, tenant: str, caller: ClientCredentials | None = None
) -> Introspection:
    """IntrospectToken with `as_bearer` (validateauthtoken): the introspection of an active
    access token of `tenant`, or the 401 that says why not, ExpiredToken for an access token of
    `tenant` that has only expired.

    Why a request flag, and not a richer inactive answer: RFC 7662 section 2.2 lets an inactive
    answer say only `{"active": false}`, so that a resource server (or whoever holds a guessed
    or stolen value) learns nothing of what the token was. Introspection without the flag, over
    gRPC and `POST /oauth/introspect` alike, stays exactly that. The flag tells the holder of a
    token what validateauthtoken tells any HTTP caller who presents it, and no more: the same
    answer is a plain HTTP request away, so gRPC reveals nothing new. The bridge checks the
    answer too, so a server that ignores the flag still makes a 401 (an invalid one)."""
    if caller is not None:
        raise InvalidRequest("as_bearer is for the token's own holder: it takes no caller")
    validation.tenant(tenant)
    result = await introspect(core, token, tenant)
    if result.active and result.use is TokenUse.ACCESS:
        return result
    raise await _bearer_refusal(core, token, tenant)


async def _bearer_refusal(core: Core, token: str, tenant: str) -> InvalidToken:
    """Looked up again, on the failure path only: is it an access token of `tenant` whose time
    ran out? A SaaS token is never an access token, so never "expired"."""
    if saas_verifier.looks_like_jwt(token):
        return InvalidToken(NOT_ACTIVE)
    record = await stored_token(core, token, TokenUse.ACCESS)
    if record is None or record.tenant != tenant:
        return InvalidToken(NOT_ACTIVE)
    return refused_bearer(record, core.now(), NOT_ACTIVE)


async def introspect_saas_token(core: Core, token: str, tenant: str = "") -> Introspection:
    """A SaaS token: active with its claims while it verifies and its session is live. It
    carries no scope, so none is reported; client_id is the session's storefront client."""
    now = core.now()
    settings = core.settings
    try:
        claims = saas_verifier.verify(
            token,
            await core.keys.verification_keys(),
            issuer=settings.issuer,
            audience=settings.saas_audience,
            now=now,
        )
    except saas_verifier.SaasTokenRejected:
        return INACTIVE
    if tenant and claims.tenant != tenant:
        return INACTIVE
    session = await core.store.get_session(claims.session_id)
    if (
        session is None
        or session.revoked_at is not None
        or session.tenant != claims.tenant
        or session.customer_id != claims.customer_id
    ):
        return INACTIVE
    customer = await core.store.get_customer(claims.customer_id)
    if customer is None or customer.tenant != claims.tenant:
        return INACTIVE
    return Introspection(
        active=True,
        kind=TokenKind.CUSTOMER,
        use=TokenUse.SAAS,
        tenant=claims.tenant,
        client_id=session.client_id,
        cache_seconds=cache_hint(core, claims.expires_at - now),
        expires_in=claims.expires_at - now,
        exp=claims.expires_at,
        iat=claims.issued_at,
        session_id=claims.session_id,
        customer_id=claims.customer_id,
        email=customer.email,
        legal_entity_id=session.legal_entity_id or "",
    )


async def caller_tenant(core: Core, caller: ClientCredentials, tenant: str) -> str:
    """The tenant whose tokens an authenticated caller may see ("" for every tenant)."""
    client = await client_auth.authenticate(core, caller)
    if PLATFORM_ADMIN_SCOPE in client.scopes:
        return tenant
    if tenant and tenant != client.tenant:
        raise AccessDenied("this client may only see its own tenant's tokens", field="tenant")
    return client.tenant
