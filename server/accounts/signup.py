"""Sign-up, `POST /customer/{tenant}/signup`, and its double opt-in:
`GET /customer/{tenant}/signup/optin/{token}` and `POST .../signup/optin/refresh_token`.

Authorised by an anonymous access token of the tenant. The customer gets the storefront's
default rights (no scopes, no legal entity), like one the CLI creates without them. Where the
tenant's account policy asks for a double opt-in, the account is created inactive (it cannot
log in: server/grants/customer_password.py) and a one-time link is mailed; the link activates
it and answers a customer token on the anonymous session that opens it, as a login would
(customer_password.continue_as_customer). A resend mails a fresh link (the earlier ones stop
working) and answers the same for every e-mail, known, unknown or active already (it is not
timed like a password reset: the 409 of a sign-up tells as much).

An e-mail that exists answers 409 with the reference's conflict and no more (not whether the
account is active). Sign-up and resend are throttled per e-mail and per client address
(server/accounts/throttle.py).
"""

from __future__ import annotations

import dataclasses
import uuid

from server import validation
from server.accounts import bearers, links, policy, throttle
from server.core import Core
from server.errors import AlreadyExists, InvalidGrant
from server.grants.customer_password import continue_as_customer
from server.records import CustomerRecord, IssuedTokens, LinkPurpose

EXISTS = "a customer with this email already exists"
BAD_LINK = "the sign-up token is invalid, expired or used already"
TAKEN_SESSION = "this session is closed or belongs to a customer; open the link in a new one"


@dataclasses.dataclass(frozen=True)
class SignedUp:
    customer_id: str
    # True when the account waits for its opt-in link.
    opt_in_required: bool


async def sign_up(
    core: Core,
    tenant: str,
    email: str,
    password: str,
    anonymous_token: str,
    *,
    client_address: str = "",
) -> SignedUp:
    email, now = await bearers.anonymous_about(core, tenant, email, anonymous_token)
    rules = await policy.of_tenant(core, tenant)
    policy.check_new_password(rules, password, "password")
    await throttle.admit(core, "signup", tenant, email, client_address, now)
    if await core.store.find_customer(tenant, email) is not None:
        raise AlreadyExists(EXISTS, field="email")
    customer = CustomerRecord(
        id=str(uuid.uuid4()),
        tenant=tenant,
        email=email,
        password_hash=await core.passwords.hash(password),
        scopes=(),
        legal_entity_ids=(),
        created_at=now,
        active=not rules.double_opt_in,
    )
    try:
        await core.store.create_customer(customer)
    except AlreadyExists:  # a concurrent sign-up with the same e-mail won
        raise AlreadyExists(EXISTS, field="email") from None
    if rules.double_opt_in:
        await _send_link(core, customer, now)
    return SignedUp(customer.id, rules.double_opt_in)


async def confirm(core: Core, tenant: str, token: str, anonymous_token: str) -> IssuedTokens:
    """Activates the account the link belongs to and logs it in on the anonymous session."""
    validation.tenant(tenant)
    digest = links.presented_digest(core, token)
    now = core.now()
    anonymous = await bearers.anonymous(core, anonymous_token, tenant, now)
    assert anonymous.session_id is not None
    # Checked before the link is used, so that a refusal changes nothing: a waiting account
    # never logged in, so a session that has a customer is another's.
    session = await core.store.get_session(anonymous.session_id)
    if session is None or session.revoked_at is not None or session.customer_id is not None:
        raise InvalidGrant(TAKEN_SESSION, field="anonymous_token")
    customer = await core.store.activate_customer(tenant, digest, now)
    if customer is None:
        raise InvalidGrant(BAD_LINK, field="token")
    return await continue_as_customer(core, anonymous, customer, now)


async def resend(
    core: Core, tenant: str, email: str, anonymous_token: str, *, client_address: str = ""
) -> None:
    """Mails a fresh link to an account that waits for one; the same answer for any e-mail."""
    email, now = await bearers.anonymous_about(core, tenant, email, anonymous_token)
    await throttle.admit(core, "optin_resend", tenant, email, client_address, now)
    customer = await core.store.find_customer(tenant, email)
    if customer is not None and not customer.active:
        await _send_link(core, customer, now)


async def _send_link(core: Core, customer: CustomerRecord, now: int) -> None:
    """Stores the link, then mails it off the request (server/mail/delivery.py)."""
    token, link = links.new_link(core, LinkPurpose.OPT_IN, customer.tenant, customer.id, now)
    await core.store.save_account_link(link)
    core.mail.deliver(
        links.message(core, LinkPurpose.OPT_IN, customer.tenant, customer.email, token)
    )
