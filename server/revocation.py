"""Token revocation (RFC 7009), `POST /oauth/revoke`, and logout, `GET /customer/{tenant}/logout`.

Revoking an access token revokes that token; revoking a refresh token, or asking to end the
session, revokes every token of the session (RFC 7009 section 2.1). Unknown or other-tenant
tokens change nothing and are not an error.
"""

from __future__ import annotations

from server import validation
from server.core import Core
from server.model import Revocation
from server.store.records import TokenUse


async def revoke(core: Core, token: str, tenant: str = "", end_session: bool = False) -> Revocation:
    validation.token(token)
    if tenant:
        validation.tenant(tenant)
    view = await core.store.find_token(core.digests.token(token))
    if view is None or (tenant and view.token.tenant != tenant):
        return Revocation(revoked_count=0)
    record = view.token
    now = core.now()
    if record.session_id is not None and (end_session or record.use is TokenUse.REFRESH):
        return Revocation(revoked_count=await core.store.revoke_session(record.session_id, now))
    return Revocation(revoked_count=await core.store.revoke_token(record.digest, now))
