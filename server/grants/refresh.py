"""Refresh tokens (RFC 6749 section 6), `GET /customerlogin/auth/anonymous/refresh` and
`GET /customer/{tenant}/refreshauthtoken`.

A new access token on the same session. An anonymous refresh names the storefront client the
token was issued to, and keeps working after a customer login on its session: it yields
anonymous tokens of that session, never customer rights (the storefront SDK refreshes its
pre-login anonymous token so). A customer refresh carries a bearer: an access token of the same
session, or an active anonymous access token of the tenant (`_check_customer_bearer`). The
refresh token is the credential and rotates (RFC 9700 section 4.14.2), once: the new tokens are
derived from the presented one (server/tokens.py), and presenting it again within a short grace
window answers them again, with their remaining lifetimes (`_saved`). A client whose answer was
lost retries and gets what it missed, and a storefront's parallel tabs share one new pair rather
than log each other out. Presenting it after that window revokes the whole session (reuse
detection). Clients with rotation disabled keep their first refresh token and get a random new
access token on every refresh: there is no grace window for them to retry in.
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
class _New:
    """A refresh's new tokens: their values, the access token's record (its lifetime and the
    SaaS token's), the refresh token's expiry, and the records the store is to save."""

    access_token: str
    access: TokenRecord
    refresh_token: str
    refresh_expires_at: int
    records: list[TokenRecord]
    jti: str | None  # the SaaS token's; None: a random one


async def _exchange(
    core: Core,
    presented: TokenRecord,
    refresh_token: str,
    now: int,
    legal_entity_id: str | None,
    context: SessionContext,
) -> IssuedTokens:
    """Mints the new tokens, then lets the store decide, atomically, whether the presented
    refresh token may still be exchanged (RefreshOutcome). Within the grace window the answer
    is the one the winning exchange gave (`_saved`)."""
    assert presented.session_id is not None
    client = await session_client(core, presented.client_id)
    rotate = not client.refresh_rotation_disabled
    new = _mint(core, client, presented, refresh_token, now, legal_entity_id, rotate)
    outcome = await core.store.refresh(
        presented.digest,
        presented.session_id,
        new.records,
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
    if outcome is RefreshOutcome.GRACE:
        new = await _saved(core, refresh_token, now)
    return await _answer(core, new, now)


def _mint(
    core: Core,
    client: ClientRecord,
    presented: TokenRecord,
    refresh_token: str,
    now: int,
    legal_entity_id: str | None,
    rotate: bool,
) -> _New:
    """A new access token on the presented token's session, and a new refresh token when the
    client rotates: derived from the presented refresh token (`_successors`), so that a retry
    finds them. A client without rotation keeps its refresh token and gets a random access
    token each time (it has no grace window to retry in, and is answered anew)."""
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
    if not rotate:
        access_token, access = mint(use=TokenUse.ACCESS, ttl=access_ttl)
        return _New(access_token, access, refresh_token, presented.expires_at, [access], None)
    access_value, refresh_value, jti = _successors(core, refresh_token)
    access_token, access = mint(use=TokenUse.ACCESS, ttl=access_ttl, value=access_value)
    new_refresh, refresh = mint(use=TokenUse.REFRESH, ttl=refresh_ttl, value=refresh_value)
    return _New(access_token, access, new_refresh, refresh.expires_at, [access, refresh], jti)


def _successors(core: Core, refresh_token: str) -> tuple[str, str, str]:
    """(access token, refresh token, SaaS jti) a rotating refresh of `refresh_token` hands out."""
    digests = core.digests
    return (
        digests.successor(refresh_token, "access"),
        digests.successor(refresh_token, "refresh"),
        digests.successor_jti(refresh_token),
    )


async def _saved(core: Core, refresh_token: str, now: int) -> _New:
    """The successors the winning exchange of `refresh_token` saved, as a retry within the grace
    window gets them: the same tokens, unless one has died since (revoked, expired, or the new
    refresh token rotated in its turn), which is answered as an invalid refresh token rather
    than with a dead token. What the retry itself asks for (a legal entity, session context)
    is not applied: the first exchange decided it, and the store changed nothing (GRACE)."""
    access_token, new_refresh, jti = _successors(core, refresh_token)
    access = await stored_token(core, access_token, TokenUse.ACCESS)
    refresh = await stored_token(core, new_refresh, TokenUse.REFRESH)
    if access is None or refresh is None or not (is_live(access, now) and is_live(refresh, now)):
        raise InvalidGrant(INVALID_MESSAGE, field="refresh_token")
    return _New(access_token, access, new_refresh, refresh.expires_at, [], jti)


async def _answer(core: Core, new: _New, now: int) -> IssuedTokens:
    """The answer, from the new tokens' records: lifetimes are what remains of them at `now`
    (a retry a few seconds later is told a few seconds less), and a customer's SaaS token is
    signed with the access token's issue and expiry times, so that a retry gets it again."""
    access = new.access
    assert access.session_id is not None
    jwt = ""
    if access.kind is TokenKind.CUSTOMER and access.customer_id is not None:
        jwt = await saas_token(
            core,
            customer_id=access.customer_id,
            tenant=access.tenant,
            session_id=access.session_id,
            now=access.issued_at,
            ttl=access.expires_at - access.issued_at,
            jti=new.jti,
        )
    return IssuedTokens(
        kind=access.kind,
        access_token=new.access_token,
        expires_in=access.expires_at - now,
        scope=access.scope,
        refresh_token=new.refresh_token,
        refresh_token_expires_in=max(new.refresh_expires_at - now, 0),
        session_id=access.session_id,
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
