"""Token introspection (RFC 7662), `POST /oauth/introspect` and
`GET /customer/{tenant}/validateauthtoken`.

An unknown, expired, revoked, rotated or other-tenant token is simply inactive: never an error,
and never a hint about which of those it was.
"""

from __future__ import annotations

from server import validation
from server.core import Core
from server.grants.common import is_live
from server.model import INACTIVE, Introspection


async def introspect(core: Core, token: str, tenant: str = "") -> Introspection:
    validation.token(token)
    if tenant:
        validation.tenant(tenant)
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
