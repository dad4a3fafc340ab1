"""Pieces every grant shares: client look-up, scope strings, token records."""

from __future__ import annotations

import functools
import uuid

from server.core import Core
from server.errors import (
    AccessDenied,
    ExpiredToken,
    InvalidClient,
    InvalidRequest,
    InvalidToken,
    UnauthorizedClient,
)
from server.records import ClientKind, ClientRecord, TokenRecord, TokenUse
from server.records import TokenKind as Kind
from server.tokens import mint_token


def scope_string(scopes: tuple[str, ...], tenant: str) -> str:
    """The contract's scope string: the granted scopes, then `tenant={tenant}`."""
    return " ".join((*scopes, f"tenant={tenant}"))


def new_session_id() -> str:
    return str(uuid.uuid4())


async def storefront_client(core: Core, tenant: str, client_id: str) -> ClientRecord:
    """The storefront client `client_id` of `tenant`, or the error that says why not."""
    client = await core.store.get_client(client_id)
    if client is None or client.tenant != tenant:
        # Only on the error path: say which of the two is wrong.
        if await core.store.get_tenant(tenant) is None:
            raise InvalidRequest(f"unknown tenant '{tenant}'", field="tenant")
        if client is None:
            raise InvalidClient("unknown client_id", field="client_id")
        raise AccessDenied("client_id does not belong to this tenant", field="client_id")
    if client.kind is not ClientKind.STOREFRONT:
        raise UnauthorizedClient("only a storefront client may request anonymous tokens")
    return client


def minted(
    core: Core,
    *,
    kind: Kind,
    use: TokenUse,
    client: ClientRecord,
    scope: str,
    now: int,
    ttl: int,
    session_id: str | None = None,
    customer_id: str | None = None,
    legal_entity_id: str | None = None,
    value: str | None = None,
) -> tuple[str, TokenRecord]:
    """A new opaque token and the record (holding only its digest) that the store keeps: a
    random one, or `value` (a rotating refresh's successor, server/tokens.py), recorded alike."""
    value = value or mint_token()
    record = TokenRecord(
        digest=core.digests.token(value),
        kind=kind,
        use=use,
        tenant=client.tenant,
        client_id=client.client_id,
        scope=scope,
        issued_at=now,
        expires_at=now + ttl,
        session_id=session_id,
        customer_id=customer_id,
        legal_entity_id=legal_entity_id,
    )
    return value, record


def minted_pair(
    core: Core,
    *,
    kind: Kind,
    client: ClientRecord,
    scope: str,
    now: int,
    ttls: tuple[int, int],
    session_id: str,
    customer_id: str | None = None,
    legal_entity_id: str | None = None,
) -> tuple[str, TokenRecord, str, TokenRecord]:
    """An access token and a refresh token of one session: (access, its record, refresh, its
    record)."""
    mint = functools.partial(
        minted,
        core,
        kind=kind,
        client=client,
        scope=scope,
        now=now,
        session_id=session_id,
        customer_id=customer_id,
        legal_entity_id=legal_entity_id,
    )
    access_token, access = mint(use=TokenUse.ACCESS, ttl=ttls[0])
    refresh_token, refresh = mint(use=TokenUse.REFRESH, ttl=ttls[1])
    return access_token, access, refresh_token, refresh


def is_live(token: TokenRecord, now: int) -> bool:
    """Not revoked, not expired, not superseded by a rotation."""
    return token.revoked_at is None and token.rotated_at is None and token.expires_at > now


def session_lifetimes(core: Core, client: ClientRecord, kind: Kind) -> tuple[int, int]:
    """(access, refresh) token lifetimes of a session token of `kind`: the client's own, else
    the service's defaults for anonymous or customer tokens."""
    settings = core.settings
    customer = kind is Kind.CUSTOMER
    access_default = settings.customer_access_ttl if customer else settings.anonymous_access_ttl
    refresh_default = settings.customer_refresh_ttl if customer else settings.anonymous_refresh_ttl
    return (
        client.access_token_ttl or access_default,
        client.refresh_token_ttl or refresh_default,
    )


async def stored_token(
    core: Core,
    token: str,
    use: TokenUse,
    *,
    kind: Kind | None = None,
    in_session: bool = False,
) -> TokenRecord | None:
    """The stored record of a presented `token` when it has this use (and `kind`, and a session
    when `in_session`), else None: the first check of every presented token. Liveness and
    tenant stay with each caller, which answers them in its own words (a customer refresh takes
    an expired bearer of its session; a login refuses one)."""
    view = await core.store.find_token(core.digests.token(token))
    record = view.token if view is not None else None
    if record is None or record.use is not use:
        return None
    if (kind is not None and record.kind is not kind) or (in_session and record.session_id is None):
        return None
    return record


def refused_bearer(token: TokenRecord, now: int, description: str) -> InvalidToken:
    """The error for a bearer token that is of the kind, use and tenant the call needs but not
    live: ExpiredToken when it has only run out of time, InvalidToken when it was revoked or
    superseded (then refreshing cannot help). Call it only once every other check has passed, so
    that "expired" never describes a token the call would refuse anyway. A token the janitor has
    purged is not found at all, and so is simply invalid."""
    if token.revoked_at is None and token.rotated_at is None and token.expires_at <= now:
        return ExpiredToken(description)
    return InvalidToken(description)


async def session_client(core: Core, client_id: str) -> ClientRecord:
    """The client a session's tokens were issued to (gone only if deprovisioned)."""
    client = await core.store.get_client(client_id)
    if client is None:
        raise InvalidClient("the client of this session no longer exists")
    return client


async def saas_token(
    core: Core,
    *,
    customer_id: str,
    tenant: str,
    session_id: str,
    now: int,
    ttl: int,
    jti: str | None = None,
) -> str:
    """The customer's SaaS token: an ES256 JWT that expires with the access token. Its `jti` is
    random unless given (a rotating refresh derives it, so that a retry signs the same claims,
    and signing is deterministic: the same token again)."""
    claims = {
        "iss": core.settings.issuer,
        "aud": core.settings.saas_audience,
        "sub": customer_id,
        "tenant": tenant,
        "sid": session_id,
        "iat": now,
        "exp": now + ttl,
        "jti": jti or str(uuid.uuid4()),
    }
    return await core.keys.sign(claims)
