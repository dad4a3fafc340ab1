"""Customer login with email and password, `POST /customer/{tenant}/login`.

Authorised by an anonymous access token of the same tenant, whose session the customer's session
continues (the storefront keeps its cart). Returns access and refresh tokens and the SaaS token.
Passwords are argon2id; a wrong email and a wrong password get the same answer in the same time.
"""

from __future__ import annotations

from server import validation
from server.core import Core
from server.errors import AccessDenied, InvalidCredentials, InvalidGrant, InvalidToken
from server.grants.common import is_live, minted_pair, saas_token, scope_string, session_client
from server.model import IssuedTokens
from server.store.records import TokenKind, TokenRecord, TokenUse


async def issue(
    core: Core, tenant: str, email: str, password: str, anonymous_token: str
) -> IssuedTokens:
    validation.tenant(tenant)
    email = validation.email(email)
    validation.password(password)
    validation.token(anonymous_token, "anonymous_token")
    now = core.now()
    anonymous = await _anonymous_access_token(core, anonymous_token, tenant, now)
    customer = await core.store.find_customer(tenant, email)
    stored_hash = customer.password_hash if customer is not None else None
    if not await core.passwords.verify(stored_hash, password) or customer is None:
        raise InvalidCredentials("wrong email or password")
    assert anonymous.session_id is not None
    client = await session_client(core, anonymous.client_id)
    settings = core.settings
    ttls = (
        client.access_token_ttl or settings.customer_access_ttl,
        client.refresh_token_ttl or settings.customer_refresh_ttl,
    )
    legal_entity_id = customer.legal_entity_ids[0] if len(customer.legal_entity_ids) == 1 else None
    access_token, access, refresh_token, refresh = minted_pair(
        core,
        kind=TokenKind.CUSTOMER,
        client=client,
        scope=scope_string(customer.scopes, tenant),
        now=now,
        ttls=ttls,
        session_id=anonymous.session_id,
        customer_id=customer.id,
        legal_entity_id=legal_entity_id,
    )
    jwt = await saas_token(
        core,
        customer_id=customer.id,
        tenant=tenant,
        session_id=anonymous.session_id,
        now=now,
        ttl=ttls[0],
    )
    started = await core.store.start_customer_session(
        anonymous.session_id, customer.id, legal_entity_id, now, [access, refresh]
    )
    if not started:
        raise InvalidGrant("this session is closed or belongs to another customer")
    return IssuedTokens(
        kind=TokenKind.CUSTOMER,
        access_token=access_token,
        expires_in=ttls[0],
        scope=access.scope,
        refresh_token=refresh_token,
        refresh_token_expires_in=ttls[1],
        session_id=anonymous.session_id,
        saas_token=jwt,
    )


async def _anonymous_access_token(core: Core, token: str, tenant: str, now: int) -> TokenRecord:
    view = await core.store.find_token(core.digests.token(token))
    record = view.token if view is not None else None
    if (
        record is None
        or not is_live(record, now)
        or record.use is not TokenUse.ACCESS
        or record.kind is not TokenKind.ANONYMOUS
        or record.session_id is None
    ):
        raise InvalidToken("anonymous_token is not an active anonymous access token")
    if record.tenant != tenant:
        raise AccessDenied("anonymous_token belongs to another tenant")
    return record
