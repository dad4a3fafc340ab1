"""The deprecated anonymous refresh by access token,
`GET /customerlogin/auth/anonymous/refresh?anonymous_token=...`.

Legacy storefronts refresh with the anonymous access token itself instead of a refresh token.
The token must still be active and its session open; the answer is a new anonymous access token
on the same session and, as in the reference API, no refresh token. New clients use the refresh
token (`grants.refresh`).

After a customer login on the session this keeps working, as the anonymous refresh token does:
the anonymous tokens a storefront holds stay anonymous tokens (no customer, legal entity or
customer scopes), so the page's anonymous calls go on while the customer is logged in, and the
two anonymous forms behave alike. `strict_customer_sessions` stops both at login.
"""

from __future__ import annotations

from server import validation
from server.core import Core
from server.errors import AccessDenied, InvalidGrant
from server.grants.common import minted, session_client, stored_token
from server.records import IssuedTokens, SessionContext, SessionUpdate, TokenKind, TokenUse

INVALID_MESSAGE = "anonymous_token is not an active anonymous access token of an open session"


async def refresh(
    core: Core,
    tenant: str,
    client_id: str,
    anonymous_token: str,
    context: SessionContext | None = None,
) -> IssuedTokens:
    validation.tenant(tenant)
    validation.identifier(client_id, "client_id")
    validation.token(anonymous_token, "anonymous_token")
    context = validation.session_context(context)
    now = core.now()
    presented = await stored_token(
        core, anonymous_token, TokenUse.ACCESS, kind=TokenKind.ANONYMOUS, in_session=True
    )
    if presented is None:
        raise InvalidGrant(INVALID_MESSAGE, field="anonymous_token")
    assert presented.session_id is not None  # stored_token(in_session=True)
    if presented.tenant != tenant:
        raise AccessDenied("anonymous_token belongs to another tenant", field="anonymous_token")
    if presented.client_id != client_id:
        raise InvalidGrant("anonymous_token was not issued to this client", field="client_id")
    client = await session_client(core, client_id)
    ttl = client.access_token_ttl or core.settings.anonymous_access_ttl
    access_token, record = minted(
        core,
        kind=TokenKind.ANONYMOUS,
        use=TokenUse.ACCESS,
        client=client,
        scope=presented.scope,
        now=now,
        ttl=ttl,
        session_id=presented.session_id,
    )
    update = SessionUpdate(updated_at=now, context=context)
    continued = await core.store.continue_anonymous_session(
        presented.digest,
        presented.session_id,
        [record],
        update,
        now=now,
        after_login=not core.settings.strict_customer_sessions,
    )
    if not continued:
        raise InvalidGrant(INVALID_MESSAGE, field="anonymous_token")
    return IssuedTokens(
        kind=TokenKind.ANONYMOUS,
        access_token=access_token,
        expires_in=ttl,
        scope=presented.scope,
        session_id=presented.session_id,
    )
