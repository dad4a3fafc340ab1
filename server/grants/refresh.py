"""Refresh tokens (RFC 6749 section 6), `GET /customerlogin/auth/anonymous/refresh` and
`GET /customer/{tenant}/refreshauthtoken`.

A new access token on the same session. An anonymous refresh names the storefront client the
token was issued to; a customer refresh carries a bearer access token of the same session
(`_check_customer_bearer`). The refresh token rotates (RFC 9700 section 4.14.2): the presented
one keeps working for a short grace window, so that a storefront's parallel tabs do not log
each other out, and presenting it after that window revokes the whole session (reuse
detection). Clients with rotation disabled keep their first refresh token.
"""

from __future__ import annotations

import functools

from server import validation
from server.core import Core
from server.errors import AccessDenied, InvalidGrant, InvalidRequest, InvalidToken
from server.grants.common import minted, saas_token, session_client
from server.model import IssuedTokens
from server.store.records import (
    CustomerRecord,
    RefreshOutcome,
    SessionContext,
    SessionUpdate,
    TokenKind,
    TokenRecord,
    TokenUse,
)

INVALID_MESSAGE = "refresh_token is invalid, expired or revoked"
REUSED_MESSAGE = "refresh_token was already used; its session has been revoked"


async def refresh(
    core: Core,
    tenant: str,
    refresh_token: str,
    *,
    client_id: str = "",
    legal_entity_id: str = "",
    access_token: str = "",
    context: SessionContext | None = None,
) -> IssuedTokens:
    validation.tenant(tenant)
    validation.token(refresh_token, "refresh_token")
    validation.identifier(client_id, "client_id", required=False)
    validation.identifier(legal_entity_id, "legal_entity_id", required=False)
    if access_token:
        validation.token(access_token, "access_token")
    now = core.now()
    digest = core.digests.token(refresh_token)
    view = await core.store.find_token(digest)
    presented = view.token if view is not None else None
    if presented is None or presented.use is not TokenUse.REFRESH or presented.session_id is None:
        raise InvalidGrant(INVALID_MESSAGE, field="refresh_token")
    if presented.tenant != tenant:
        raise AccessDenied("refresh_token belongs to another tenant", field="refresh_token")
    if client_id and client_id != presented.client_id:
        raise InvalidGrant("refresh_token was not issued to this client", field="client_id")
    if client_id and presented.kind is not TokenKind.ANONYMOUS:
        # client_id marks the anonymous refresh; a customer token refreshes bound to its session.
        raise InvalidGrant("refresh_token is not an anonymous refresh token", field="refresh_token")
    if presented.kind is TokenKind.ANONYMOUS:
        if not client_id:
            raise InvalidRequest("client_id is required to refresh an anonymous token")
        if legal_entity_id:
            raise InvalidRequest("legal_entity_id applies only to customer tokens")
        if access_token:
            await _check_same_session(core, access_token, presented)
    else:
        await _check_customer_bearer(core, access_token, presented)
        await _check_legal_entity(core, presented, legal_entity_id)
    return await _exchange(
        core, presented, refresh_token, now, legal_entity_id or None, context or SessionContext()
    )


async def _exchange(
    core: Core,
    presented: TokenRecord,
    refresh_token: str,
    now: int,
    legal_entity_id: str | None,
    context: SessionContext,
) -> IssuedTokens:
    assert presented.session_id is not None
    client = await session_client(core, presented.client_id)
    settings = core.settings
    customer = presented.kind is TokenKind.CUSTOMER
    access_ttl = client.access_token_ttl or (
        settings.customer_access_ttl if customer else settings.anonymous_access_ttl
    )
    refresh_ttl = client.refresh_token_ttl or (
        settings.customer_refresh_ttl if customer else settings.anonymous_refresh_ttl
    )
    rotate = not client.refresh_rotation_disabled
    entity = legal_entity_id or presented.legal_entity_id
    mint = functools.partial(
        minted,
        core,
        kind=presented.kind,
        client=client,
        scope=presented.scope,
        now=now,
        session_id=presented.session_id,
        customer_id=presented.customer_id,
        legal_entity_id=entity,
    )
    new_access, access_record = mint(use=TokenUse.ACCESS, ttl=access_ttl)
    records = [access_record]
    new_refresh, refresh_expires_in = refresh_token, presented.expires_at - now
    if rotate:
        new_refresh, refresh_record = mint(use=TokenUse.REFRESH, ttl=refresh_ttl)
        records.append(refresh_record)
        refresh_expires_in = refresh_ttl
    jwt = ""
    if customer and presented.customer_id is not None:
        jwt = await saas_token(
            core,
            customer_id=presented.customer_id,
            tenant=presented.tenant,
            session_id=presented.session_id,
            now=now,
            ttl=access_ttl,
        )
    outcome = await core.store.refresh(
        presented.digest,
        presented.session_id,
        records,
        SessionUpdate(updated_at=now, context=context, legal_entity_id=legal_entity_id),
        now=now,
        grace_seconds=settings.refresh_grace_seconds,
        rotate=rotate,
    )
    if outcome is RefreshOutcome.REUSED:
        raise InvalidGrant(REUSED_MESSAGE, field="refresh_token")
    if outcome is RefreshOutcome.INVALID:
        raise InvalidGrant(INVALID_MESSAGE, field="refresh_token")
    return IssuedTokens(
        kind=presented.kind,
        access_token=new_access,
        expires_in=access_ttl,
        scope=presented.scope,
        refresh_token=new_refresh,
        refresh_token_expires_in=max(refresh_expires_in, 0),
        session_id=presented.session_id,
        saas_token=jwt,
    )


async def _check_legal_entity(core: Core, presented: TokenRecord, legal_entity_id: str) -> None:
    if not legal_entity_id:
        return
    customer: CustomerRecord | None = None
    if presented.customer_id is not None:
        customer = await core.store.get_customer(presented.customer_id)
    if customer is None or legal_entity_id not in customer.legal_entity_ids:
        raise AccessDenied(
            "legal_entity_id is not one of the customer's legal entities", field="legal_entity_id"
        )


async def _check_customer_bearer(core: Core, access_token: str, presented: TokenRecord) -> None:
    """The bearer a customer refresh requires, over gRPC and HTTP alike; the one place that
    decides which bearer tokens it accepts: today an access token of the same session
    (`_check_same_session`). The refresh token stays the credential."""
    if not access_token:
        raise InvalidToken(
            "access_token is required to refresh a customer token: an access token of the same "
            "session",
            field="access_token",
        )
    await _check_same_session(core, access_token, presented)


async def _check_same_session(core: Core, access_token: str, presented: TokenRecord) -> None:
    """The bearer token of a customer refresh: an access token of the same session that was not
    revoked. It may have expired: refreshing is what a client does when its access token has
    expired; the refresh token is the credential, the bearer only binds the call to the session."""
    view = await core.store.find_token(core.digests.token(access_token))
    record = view.token if view is not None else None
    if record is None or record.use is not TokenUse.ACCESS or record.revoked_at is not None:
        raise InvalidToken("the access token is unknown or revoked", field="access_token")
    if record.session_id != presented.session_id:
        raise InvalidToken("the access token belongs to another session", field="access_token")
