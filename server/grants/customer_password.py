"""Customer login with email and password, `POST /customer/{tenant}/login`.

Authorised by an anonymous access token of the same tenant, whose session the customer's session
continues (the storefront keeps its cart). Returns access and refresh tokens and the SaaS token.
The session's anonymous tokens keep working (the storefront SDK goes on refreshing them; they
never carry customer rights) unless `strict_customer_sessions` revokes its anonymous refresh
tokens here.
Passwords are argon2id; a wrong email and a wrong password get the same answer in the same time,
and a hash made with outdated parameters is rehashed after a successful login (server/passwords.py).

Brute force (server/abuse.py): failures are counted per account (in the store, so every replica
sees the lock; unknown emails too, by a keyed digest of the email) and per client address (in
this process). A locked account answers exactly as a wrong password does, after the same
argon2 verification, whether or not the password is right; a locked address is told to retry
later (429 / RESOURCE_EXHAUSTED), which says nothing about any account, and costs no argon2.
"""

from __future__ import annotations

from server import metrics, validation
from server.core import Core
from server.errors import (
    AccessDenied,
    AccountNotConfirmed,
    InvalidCredentials,
    InvalidGrant,
    InvalidToken,
    RateLimited,
)
from server.grants.common import (
    is_live,
    minted_pair,
    refused_bearer,
    saas_token,
    scope_string,
    session_client,
    session_lifetimes,
    stored_token,
)
from server.records import (
    CustomerRecord,
    IssuedTokens,
    LoginFailures,
    TokenKind,
    TokenRecord,
    TokenUse,
)

WRONG_CREDENTIALS = "wrong email or password"
ADDRESS_THROTTLED = "too many failed logins from this address; retry later"
NOT_ANONYMOUS = "anonymous_token is not an active anonymous access token"
NOT_CONFIRMED = "this account waits for the confirmation link sent by e-mail"


async def issue(
    core: Core,
    tenant: str,
    email: str,
    password: str,
    anonymous_token: str,
    *,
    client_address: str = "",
) -> IssuedTokens:
    """`client_address`: the caller's address for the per-address throttle ("" skips it)."""
    validation.tenant(tenant)
    email = validation.email(email)
    validation.password(password)
    validation.token(anonymous_token, "anonymous_token")
    now = core.now()
    anonymous = await anonymous_access_token(core, anonymous_token, tenant, now)
    customer = await verified_customer(core, tenant, email, password, client_address, now)
    return await continue_as_customer(core, anonymous, customer, now)


async def verified_customer(
    core: Core, tenant: str, email: str, password: str, client_address: str, now: int
) -> CustomerRecord:
    """The customer whose password this is, or the refusal: a throttled address is told to
    wait; a wrong password and a locked account answer alike, after the same argon2 work."""
    wait = core.abuse.addresses.locked_for(client_address, now)
    if wait > 0:
        metrics.record_abuse("login_address_refused")
        raise RateLimited(ADDRESS_THROTTLED, retry_after=wait)
    policy = core.abuse.account
    subject = core.digests.login_subject(tenant, email)
    stored = await core.store.get_login_failures(tenant, subject) if policy.enabled else None
    customer = await core.store.find_customer(tenant, email)
    # Verified whatever the lock says, so that a locked account costs the same time.
    verified = await core.passwords.verify_login(tenant, customer, password)
    locked = policy.locked_for(policy.current(stored, now), now) > 0
    if verified and not locked and policy.enabled:
        # Failures of concurrent attempts may have locked the account since the read above.
        stored = await core.store.get_login_failures(tenant, subject)
        locked = policy.locked_for(policy.current(stored, now), now) > 0
    if not verified or locked:
        await _failed(core, tenant, subject, client_address, now, locked=locked)
        raise InvalidCredentials(WRONG_CREDENTIALS)
    assert customer is not None
    if not customer.active:  # told only to whoever knows the password
        raise AccountNotConfirmed(NOT_CONFIRMED)
    core.passwords.rehash_if_outdated(customer, password)
    if stored is not None:
        await core.store.clear_login_failures(tenant, subject)
    return customer


async def continue_as_customer(
    core: Core, anonymous: TokenRecord, customer: CustomerRecord, now: int
) -> IssuedTokens:
    """The customer's tokens on the anonymous session, saved with the session's new owner in
    one store transaction. Shared with the logins by an external identity provider
    (grants/token_exchange.py, grants/social_login.py) and with a confirmed sign-up
    (server/accounts/signup.py)."""
    assert anonymous.session_id is not None
    client = await session_client(core, anonymous.client_id)
    ttls = session_lifetimes(core, client, TokenKind.CUSTOMER)
    legal_entity_id = customer.legal_entity_ids[0] if len(customer.legal_entity_ids) == 1 else None
    access_token, access, refresh_token, refresh = minted_pair(
        core,
        kind=TokenKind.CUSTOMER,
        client=client,
        scope=scope_string(customer.scopes, customer.tenant),
        now=now,
        ttls=ttls,
        session_id=anonymous.session_id,
        customer_id=customer.id,
        legal_entity_id=legal_entity_id,
    )
    jwt = await saas_token(
        core,
        customer_id=customer.id,
        tenant=customer.tenant,
        session_id=anonymous.session_id,
        now=now,
        ttl=ttls[0],
    )
    started = await core.store.start_customer_session(
        anonymous.session_id,
        customer.id,
        legal_entity_id,
        now,
        [access, refresh],
        revoke_anonymous_refresh=core.settings.strict_customer_sessions,
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


async def anonymous_access_token(core: Core, token: str, tenant: str, now: int) -> TokenRecord:
    """The live anonymous access token of `tenant` that authorises a login (and the account
    calls: server/accounts/bearers.py), or the refusal."""
    record = await stored_token(
        core, token, TokenUse.ACCESS, kind=TokenKind.ANONYMOUS, in_session=True
    )
    if record is None:
        raise InvalidToken(NOT_ANONYMOUS)
    if record.tenant != tenant:  # before expiry: "refresh and retry" would not help here
        raise AccessDenied("anonymous_token belongs to another tenant")
    if not is_live(record, now):
        raise refused_bearer(record, now, NOT_ANONYMOUS)  # expired: refresh it and retry
    return record


async def _failed(
    core: Core, tenant: str, subject: str, client_address: str, now: int, *, locked: bool
) -> None:
    """Counts a refused password attempt against the address and the account. While the
    account is locked its counter stays as it is (LockPolicy.after_failure), but it is still
    written, so that a locked account answers in the time a wrong password takes."""
    policy = core.abuse.account
    address = core.abuse.addresses.failed(client_address, now)
    if address is not None and address.locked_until > now and address.last_failure_at == now:
        metrics.record_abuse("login_address_locked")
    if locked:
        metrics.record_abuse("login_account_refused")
    if not policy.enabled:
        return

    def next_state(current: LoginFailures | None) -> LoginFailures:
        return policy.after_failure(current, now)

    state = await core.store.record_login_failure(tenant, subject, next_state)
    if not locked and state.locked_until > now and state.last_failure_at == now:
        metrics.record_abuse("login_account_locked")
