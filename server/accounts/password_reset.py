"""Password reset: `POST /customer/{tenant}/password/reset` mails a one-time token, and
`POST /customer/{tenant}/password/reset/update` sets the new password with it.

Both authorised by an anonymous access token of the tenant, as the reference says.

The request answers 204 for every e-mail, and in the same time: the steps on the request's
path are the same for a known and an unknown e-mail (the checks, the throttle's read and write
per e-mail and address, one customer look-up, one token minted and its link stored), and the
one thing only a known e-mail causes, sending the mail, happens after the answer (server/mail/
delivery.py). For an unknown e-mail the link stored belongs to no customer (`NO_CUSTOMER`):
nothing can use it (its token is never sent anywhere, and a link without its customer changes
nothing), and the next such request replaces it, so they never pile up. No argon2 runs on this
path for either. An account that waits for its opt-in is
sent a reset too: the mail proves the address as the opt-in would, but the reset does not
activate it (the opt-in link does).

The update checks the new password against the tenant's policy, then, in one store
transaction, consumes the token, stores the new hash and revokes EVERY session of the customer
with all its tokens (whoever knew the old password is out, the customer logs in again). A
token that is unknown, expired, used or of another tenant changes nothing.
"""

from __future__ import annotations

from server import validation
from server.accounts import bearers, links, policy, throttle
from server.core import Core
from server.errors import InvalidGrant
from server.records import LinkPurpose

BAD_LINK = "the reset token is invalid, expired or used already"
NO_CUSTOMER = ""  # the customer of an unknown e-mail's link


async def request(
    core: Core, tenant: str, email: str, anonymous_token: str, *, client_address: str = ""
) -> None:
    email, now = await bearers.anonymous_about(core, tenant, email, anonymous_token)
    await throttle.admit(core, "password_reset", tenant, email, client_address, now)
    customer = await core.store.find_customer(tenant, email)
    owner = customer.id if customer is not None else NO_CUSTOMER
    token, link = links.new_link(core, LinkPurpose.PASSWORD_RESET, tenant, owner, now)
    await core.store.save_account_link(link)
    if customer is not None:
        core.mail.deliver(
            links.message(core, LinkPurpose.PASSWORD_RESET, tenant, customer.email, token)
        )


async def update(
    core: Core, tenant: str, token: str, new_password: str, anonymous_token: str
) -> int:
    """Returns how many sessions were ended."""
    validation.tenant(tenant)
    digest = links.presented_digest(core, token)
    now = core.now()
    await bearers.anonymous(core, anonymous_token, tenant, now)
    rules = await policy.of_tenant(core, tenant)
    policy.check_new_password(rules, new_password, "password")
    new_hash = await core.passwords.hash(new_password)
    ended = await core.store.reset_password(tenant, digest, new_hash, now)
    if ended is None:
        raise InvalidGrant(BAD_LINK, field="token")
    return len(ended)
