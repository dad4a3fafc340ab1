"""Anonymous storefront tokens, `GET /customerlogin/auth/anonymous/login`.

A public storefront client of the tenant starts a session (a new sessionId plus the optional
currency, siteCode, language and targetLocation) and gets an access and a refresh token.
A per-client quota (a token bucket per process, server/abuse.py; off by default) answers
429 / RESOURCE_EXHAUSTED with Retry-After when spent.
"""

from __future__ import annotations

from server import metrics, validation
from server.core import Core
from server.errors import RateLimited
from server.grants.common import (
    minted_pair,
    new_session_id,
    session_lifetimes,
    storefront_client,
)
from server.records import IssuedTokens, SessionContext, SessionRecord, TokenKind

QUOTA_EXCEEDED = "this client has asked for too many anonymous tokens; retry later"


async def issue(
    core: Core, tenant: str, client_id: str, context: SessionContext | None = None
) -> IssuedTokens:
    validation.tenant(tenant)
    validation.identifier(client_id, "client_id")
    context = validation.session_context(context)
    client = await storefront_client(core, tenant, client_id)
    wait = core.abuse.anonymous.take(client_id, core.clock.now())
    if wait > 0:
        metrics.record_abuse("anonymous_refused")
        raise RateLimited(QUOTA_EXCEEDED, field="client_id", retry_after=wait)
    now = core.now()
    session_id = new_session_id()
    scope = f"tenant={tenant}"
    access_ttl, refresh_ttl = session_lifetimes(core, client, TokenKind.ANONYMOUS)
    access_token, access, refresh_token, refresh = minted_pair(
        core,
        kind=TokenKind.ANONYMOUS,
        client=client,
        scope=scope,
        now=now,
        ttls=(access_ttl, refresh_ttl),
        session_id=session_id,
    )
    session = SessionRecord(
        session_id=session_id,
        tenant=tenant,
        client_id=client_id,
        created_at=now,
        updated_at=now,
        context=context,
    )
    await core.store.save_tokens([access, refresh], new_session=session)
    return IssuedTokens(
        kind=TokenKind.ANONYMOUS,
        access_token=access_token,
        expires_in=access_ttl,
        scope=scope,
        refresh_token=refresh_token,
        refresh_token_expires_in=refresh_ttl,
        session_id=session_id,
    )
