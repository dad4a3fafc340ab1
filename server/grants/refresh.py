"""Refresh tokens (RFC 6749 section 6), `GET /customerlogin/auth/anonymous/refresh` and
`GET /customer/{tenant}/refreshauthtoken`.

A new access token on the same session. An anonymous refresh names the storefront client the
token was issued to, and keeps working after a customer login on its session: it yields
anonymous tokens of that session, never customer rights (the storefront SDK refreshes its
pre-login anonymous token so). A customer refresh carries a bearer: an access token of the same
session, or an active anonymous access token of the tenant (`_check_customer_bearer`). The
refresh token is the credential and rotates (RFC 9700 section 4.14.2): the presented
one keeps working for a short grace window, so that a storefront's parallel tabs do not log
each other out, and presenting it after that window revokes the whole session (reuse
detection). Clients with rotation disabled keep their first refresh token.
"""

from __future__ import annotations

import dataclasses
import functools

from server import metrics, validation
from server.core import Core
from server.errors import AccessDenied, InvalidGrant, InvalidRequest, InvalidToken
from server.grants.common import (
    is_live,
    minted,
    saas_token,
    session_client,
    session_lifetimes,
    stored_token,
)
from server.records import (
    ClientRecord,
    CustomerRecord,
    IssuedTokens,
    RefreshOutcome,
    SessionContext,
    SessionUpdate,
    TokenKind,
    TokenRecord,
    TokenUse,
)

INVALID_MESSAGE = "refresh_token is invalid, expired or revoked"
REUSED_MESSAGE = "refresh_token was already used; its session has been revoked"
ANOTHER_SESSION_MESSAGE = "the access token belongs to another session"
NOT_A_STOREFRONT_BEARER = (
    "the access token belongs to another session and is not an active anonymous access token"
)


async def refresh(
    core: Core,
    tenant: str,
    refresh_token: str,
    *,
    client_id: str = "",
    legal_entity_id: str = "",
    access_token: str = "",
    context: SessionContext | None = None,
    superseded_anonymous_token: str = "",
) -> IssuedTokens:
    """`superseded_anonymous_token`: the deprecated anonymous_token sent beside refresh_token
    (both reference specs mark both required, so generated clients send both). The refresh
    token wins and this value is not used; its shape is still checked, as every token
    parameter's is, so that a malformed or oversized value is the same 400 whether it comes
    alone or with a refresh token."""
    validation.tenant(tenant)
    validation.token(refresh_token, "refresh_token")
    validation.identifier(client_id, "client_id", required=False)
    validation.identifier(legal_entity_id, "legal_entity_id", required=False)
    if access_token:
        validation.token(access_token, "access_token")
    if superseded_anonymous_token:
        validation.token(superseded_anonymous_token, "anonymous_token")
    checked_context = validation.session_context(context)
    now = core.now()
    presented = await _presented(
        core, tenant, refresh_token, client_id, legal_entity_id, access_token
    )
    return await _exchange(
        core, presented, refresh_token, now, legal_entity_id or None, checked_context
    )


async def _presented(
    core: Core,
    tenant: str,
    refresh_token: str,
    client_id: str,
    legal_entity_id: str,
    access_token: str,
) -> TokenRecord:
    """The refresh token's record, once the call may exchange it: the anonymous refresh names
    its client; the customer refresh brings a bearer and may name one of its legal entities."""
    presented = await stored_token(core, refresh_token, TokenUse.REFRESH, in_session=True)
    if presented is None:
        raise InvalidGrant(INVALID_MESSAGE, field="refresh_token")
    if presented.tenant != tenant:
        raise AccessDenied("refresh_token belongs to another tenant", field="refresh_token")
    if client_id and client_id != presented.client_id:
        raise InvalidGrant("refresh_token was not issued to this client", field="client_id")
    if client_id and presented.kind is not TokenKind.ANONYMOUS:
        # client_id marks the anonymous refresh; a customer token refreshes bound to its session.
        raise InvalidGrant("refresh_token is not an anonymous refresh token", field="refresh_token")
    if presented.kind is not TokenKind.ANONYMOUS:
        await _check_customer_bearer(core, access_token, presented)
        await _check_legal_entity(core, presented, legal_entity_id)
        return presented
    if not client_id and access_token:
        # A customer refresh (refreshauthtoken) sent the anonymous refresh token.
        raise InvalidGrant(
            "refresh_token is an anonymous refresh token, not a customer's", field="refresh_token"
        )
    if not client_id:
        raise InvalidRequest("client_id is required to refresh an anonymous token")
    if legal_entity_id:
        raise InvalidRequest("legal_entity_id applies only to customer tokens")
    if access_token:
        await _check_same_session(core, access_token, presented)
    return presented


@dataclasses.dataclass(frozen=True)
class _Minted:
    """What a refresh hands out, and the records the store saves for it."""

    issued: IssuedTokens
    records: list[TokenRecord]


async def _exchange(
    core: Core,
    presented: TokenRecord,
    refresh_token: str,
    now: int,
    legal_entity_id: str | None,
    context: SessionContext,
) -> IssuedTokens:
    """Mints the new tokens, then lets the store decide, atomically, whether the presented
    refresh token may still be exchanged (RefreshOutcome)."""
    assert presented.session_id is not None
    client = await session_client(core, presented.client_id)
    rotate = not client.refresh_rotation_disabled
    minted_now = await _mint(core, client, presented, refresh_token, now, legal_entity_id, rotate)
    outcome = await core.store.refresh(
        presented.digest,
        presented.session_id,
        minted_now.records,
        SessionUpdate(updated_at=now, context=context, legal_entity_id=legal_entity_id),
        now=now,
        grace_seconds=core.settings.refresh_grace_seconds,
        rotate=rotate,
    )
    if outcome is RefreshOutcome.REUSED:
        # A stolen copy, or a storefront that keeps its first refresh token against a rotating
        # client (README "Refresh-token rotation and legacy storefronts"): the operator's signal.
        metrics.record_abuse("refresh_token_reused")
        raise InvalidGrant(REUSED_MESSAGE, field="refresh_token")
    if outcome is RefreshOutcome.INVALID:
        raise InvalidGrant(INVALID_MESSAGE, field="refresh_token")
    return minted_now.issued


async def _mint(
    core: Core,
    client: ClientRecord,
    presented: TokenRecord,
    refresh_token: str,
    now: int,
    legal_entity_id: str | None,
    rotate: bool,
) -> _Minted:
    """A new access token (and SaaS token for a customer) on the presented token's session; a
    new refresh token when the client rotates, else the presented one again."""
    assert presented.session_id is not None
    access_ttl, refresh_ttl = session_lifetimes(core, client, presented.kind)
    mint = functools.partial(
        minted,
        core,
        kind=presented.kind,
        client=client,
        scope=presented.scope,
        now=now,
        session_id=presented.session_id,
        customer_id=presented.customer_id,
        legal_entity_id=legal_entity_id or presented.legal_entity_id,
    )
    new_access, access_record = mint(use=TokenUse.ACCESS, ttl=access_ttl)
    records = [access_record]
    new_refresh, refresh_expires_in = refresh_token, presented.expires_at - now
    if rotate:
        new_refresh, refresh_record = mint(use=TokenUse.REFRESH, ttl=refresh_ttl)
        records.append(refresh_record)
        refresh_expires_in = refresh_ttl
    jwt = ""
    if presented.kind is TokenKind.CUSTOMER and presented.customer_id is not None:
        jwt = await saas_token(
            core,
            customer_id=presented.customer_id,
            tenant=presented.tenant,
            session_id=presented.session_id,
            now=now,
            ttl=access_ttl,
        )
    issued = IssuedTokens(
        kind=presented.kind,
        access_token=new_access,
        expires_in=access_ttl,
        scope=presented.scope,
        refresh_token=new_refresh,
        refresh_token_expires_in=max(refresh_expires_in, 0),
        session_id=presented.session_id,
        saas_token=jwt,
    )
    return _Minted(issued, records)


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
    decides which bearer tokens it accepts. The refresh token stays the credential; the bearer
    binds the call to a storefront of the tenant:

    - an access token of the same session that was not revoked, even expired: refreshing is
      what a client does once its token has expired;
    - an active (live, not revoked, not expired) anonymous access token of the same tenant, of
      any session: what the storefront SDK sends, its current anonymous token, which after a
      page reload is of a new anonymous session.

    Anything else is refused: a customer token of another session (401), a token of another
    tenant (403), an anonymous token of another session that is revoked or expired (401). With
    `strict_customer_sessions` only the first kind is accepted."""
    if not access_token:
        raise InvalidToken(
            "access_token is required to refresh a customer token: an access token of the same "
            "session or an active anonymous access token of the tenant",
            field="access_token",
        )
    bearer = await _bearer_record(core, access_token)
    if bearer.session_id == presented.session_id:
        return
    if bearer.tenant != presented.tenant:
        raise AccessDenied("the access token belongs to another tenant", field="access_token")
    if core.settings.strict_customer_sessions:
        raise InvalidToken(ANOTHER_SESSION_MESSAGE, field="access_token")
    if bearer.kind is not TokenKind.ANONYMOUS or not is_live(bearer, core.now()):
        raise InvalidToken(NOT_A_STOREFRONT_BEARER, field="access_token")


async def _check_same_session(core: Core, access_token: str, presented: TokenRecord) -> None:
    """The bearer of an anonymous refresh over gRPC, where one is sent: an access token of the
    same session that was not revoked. It may have expired: the refresh token is the
    credential, the bearer only binds the call to the session."""
    bearer = await _bearer_record(core, access_token)
    if bearer.session_id != presented.session_id:
        raise InvalidToken(ANOTHER_SESSION_MESSAGE, field="access_token")


async def _bearer_record(core: Core, access_token: str) -> TokenRecord:
    """The stored access token a bearer names, unless unknown, not an access token, or revoked."""
    record = await stored_token(core, access_token, TokenUse.ACCESS)
    if record is None or record.revoked_at is not None:
        raise InvalidToken("the access token is unknown or revoked", field="access_token")
    return record
