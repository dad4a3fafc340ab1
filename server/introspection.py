"""Token introspection (RFC 7662), `POST /oauth/introspect` and
`GET /customer/{tenant}/validateauthtoken`.

An unknown, expired, revoked, rotated or other-tenant token is simply inactive: never an error,
and never a hint about which of those it was.
"""

from __future__ import annotations

from server import client_auth, validation
from server.core import Core
from server.errors import AccessDenied
from server.grants.common import is_live
from server.model import INACTIVE, ClientCredentials, Introspection
from server.scopes import PLATFORM_ADMIN_SCOPE


async def introspect(
    core: Core, token: str, tenant: str = "", caller: ClientCredentials | None = None
) -> Introspection:
    """`caller`, when given, must authenticate; it then sees only its own tenant's tokens (a
    service client with the platform-admin scope sees every tenant's)."""
    validation.token(token)
    if tenant:
        validation.tenant(tenant)
    if caller is not None:
        tenant = await caller_tenant(core, caller, tenant)
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
    )


async def caller_tenant(core: Core, caller: ClientCredentials, tenant: str) -> str:
    """The tenant whose tokens an authenticated caller may see ("" for every tenant)."""
    client = await client_auth.authenticate(core, caller)
    if PLATFORM_ADMIN_SCOPE in client.scopes:
        return tenant
    if tenant and tenant != client.tenant:
        raise AccessDenied("this client may only see its own tenant's tokens", field="tenant")
    return client.tenant
