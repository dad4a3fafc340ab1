"""E-mail change: `POST /customer/{tenant}/me/accounts/internal/email/change` mails a one-time
token to the NEW address, and `POST .../email/change/confirm` moves the login to it.

The request is authorised by the customer's own access token and proves the current e-mail
and password as a login does (argon2; the login throttle counts a wrong one), against the
token's own account only; the e-mail in the body must be that account's. A new address that
another customer of the tenant has is refused at the confirm (409), not at the request, so the
request cannot be used to find out who has an account. The confirm (authorised by an anonymous
token of the tenant, as the reference says) consumes the token and changes the e-mail in one
store transaction; from then on only the new address logs in. Sessions stay: they belong to
the same customer, and its tokens report the new e-mail (this replica at once, others within
the token cache's bound).
"""

from __future__ import annotations

from server import validation
from server.accounts import bearers, links
from server.core import Core
from server.errors import (
    AlreadyExists,
    InvalidCredentials,
    InvalidGrant,
    InvalidRequest,
    InvalidToken,
)
from server.grants import customer_password
from server.records import LinkPurpose

BAD_LINK = "the e-mail change token is invalid, expired or used already"
SAME_EMAIL = "newEmail is the current email"
EXISTS = "a customer with this email already exists"


async def request(
    core: Core,
    tenant: str,
    access_token: str,
    email: str,
    password: str,
    new_email: str,
    *,
    client_address: str = "",
) -> None:
    validation.tenant(tenant)
    email = validation.email(email)
    validation.password(password)
    new_email = validation.email(new_email, "newEmail")
    now = core.now()
    bearer = await bearers.customer(core, access_token, tenant, now)
    if new_email == email:
        raise InvalidRequest(SAME_EMAIL, field="newEmail")
    assert bearer.customer_id is not None
    own = await core.store.get_customer(bearer.customer_id)
    if own is None:
        raise InvalidToken(bearers.NOT_CUSTOMER)
    # The password is checked against the token's own account only (never another's), and the
    # e-mail given must be that account's: a wrong one answers as a wrong password does.
    customer = await customer_password.verified_customer(
        core, tenant, own.email, password, client_address, now
    )
    if email != customer.email:
        raise InvalidCredentials(customer_password.WRONG_CREDENTIALS)
    token, link = links.new_link(
        core, LinkPurpose.EMAIL_CHANGE, tenant, customer.id, now, new_email=new_email
    )
    await core.store.save_account_link(link)
    core.mail.deliver(links.message(core, LinkPurpose.EMAIL_CHANGE, tenant, new_email, token))


async def confirm(core: Core, tenant: str, token: str, anonymous_token: str) -> None:
    validation.tenant(tenant)
    digest = links.presented_digest(core, token)
    now = core.now()
    await bearers.anonymous(core, anonymous_token, tenant, now)
    try:
        customer = await core.store.change_email(tenant, digest, now)
    except AlreadyExists:
        raise AlreadyExists(EXISTS, field="token") from None
    if customer is None:
        raise InvalidGrant(BAD_LINK, field="token")
