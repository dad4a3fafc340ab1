"""Token revocation (RFC 7009), `POST /oauth/revoke`, and logout, `GET /customer/{tenant}/logout`.

Revoking an access token revokes that token; revoking a refresh token, or asking to end the
session, revokes every token of the session (RFC 7009 section 2.1). Unknown or other-tenant
tokens change nothing and are not an error. An authenticated client caller may revoke only what
is its own (RFC 7009 section 2.1): a storefront client the tokens issued to it, a service client
its tenant's; anything else is left alone exactly as an unknown token would be. A logout is
authorised by a bearer token of the same session.

A SaaS token (a JWT) is not stored, so it cannot be revoked by itself: it is answered like an
unknown token, and it stops introspecting as active when its session ends (logout, or revoking
the session's refresh token).
"""

from __future__ import annotations

from server import client_auth, saas_verifier, validation
from server.core import Core
from server.errors import AccessDenied, InvalidToken
from server.grants.common import is_live, refused_bearer, stored_token
from server.records import (
    ClientCredentials,
    ClientKind,
    ClientRecord,
    Revocation,
    TokenRecord,
    TokenUse,
)
from server.scopes import PLATFORM_ADMIN_SCOPE
from server.tokens import fingerprint

NOTHING = Revocation(revoked_count=0)
NOT_ACTIVE_BEARER = "the bearer token is not an active access token of this tenant"


async def revoke(
    core: Core,
    token: str,
    tenant: str = "",
    end_session: bool = False,
    *,
    caller: ClientCredentials | None = None,
    bearer_token: str = "",
) -> Revocation:
    is_jwt = saas_verifier.looks_like_jwt(token)
    validation.token(
        token, max_length=saas_verifier.MAX_SAAS_TOKEN if is_jwt else validation.MAX_TOKEN
    )
    if tenant:
        validation.tenant(tenant)
    now = core.now()
    client = await client_auth.authenticate(core, caller) if caller is not None else None
    bearer = await _bearer(core, bearer_token, tenant, now) if bearer_token else None
    if is_jwt and bearer is None:
        return NOTHING
    view = await core.store.find_token(core.digests.token(token))
    if bearer is not None and (view is None or view.token.session_id != bearer.session_id):
        # A logout names a token of the bearer's own session; answering "done" for anything
        # else would tell the storefront it logged out while its session stays active.
        raise AccessDenied("the token to revoke is not of the bearer's session")
    if view is None or (tenant and view.token.tenant != tenant):
        return NOTHING
    record = view.token
    if client is not None and not _may_revoke(client, record):
        return NOTHING
    if bearer is not None:
        end_session = True
    if record.session_id is not None and (end_session or record.use is TokenUse.REFRESH):
        return Revocation(revoked_count=await core.store.revoke_session(record.session_id, now))
    revoked = await core.store.revoke_token(record.digest, now, fingerprint=fingerprint(token))
    return Revocation(revoked_count=revoked)


async def _bearer(core: Core, bearer_token: str, tenant: str, now: int) -> TokenRecord:
    """The logout's authorisation: an active access token of `tenant`."""
    validation.token(bearer_token, "bearer_token")
    validation.tenant(tenant)
    record = await stored_token(core, bearer_token, TokenUse.ACCESS)
    if record is None or record.tenant != tenant:
        raise InvalidToken(NOT_ACTIVE_BEARER)
    if not is_live(record, now):
        raise refused_bearer(record, now, NOT_ACTIVE_BEARER)
    return record


def _may_revoke(client: ClientRecord, record: TokenRecord) -> bool:
    if client.kind is ClientKind.STOREFRONT:
        return record.client_id == client.client_id
    return record.tenant == client.tenant or PLATFORM_ADMIN_SCOPE in client.scopes
