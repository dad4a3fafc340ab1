"""Password change, `POST /customer/{tenant}/password/change`: the customer, logged in, proves
the current password and chooses a new one (the tenant's account policy applies).

Authorised by the customer's own access token. The current password is verified as a login
verifies it (argon2, and the login throttle per account and address counts a wrong one, so
this is no way around the lockout). The new hash is stored only if the hash verified is still
the stored one, and in the same transaction every OTHER session of the customer is revoked with
all its tokens: whoever else held the old password is logged out, the session that changed it
goes on.
"""

from __future__ import annotations

from server import validation
from server.accounts import bearers, policy
from server.core import Core
from server.errors import InvalidCredentials, InvalidRequest, InvalidToken
from server.grants import customer_password

CHANGED_MEANWHILE = "the password was changed meanwhile; log in again"
SAME_PASSWORD = "newPassword must differ from currentPassword"  # noqa: S105 - a message


async def change(
    core: Core,
    tenant: str,
    access_token: str,
    current_password: str,
    new_password: str,
    *,
    client_address: str = "",
) -> int:
    """Returns how many other sessions were ended."""
    validation.tenant(tenant)
    validation.password(current_password, "currentPassword")
    now = core.now()
    bearer = await bearers.customer(core, access_token, tenant, now)
    rules = await policy.of_tenant(core, tenant)
    policy.check_new_password(rules, new_password, "newPassword")
    if new_password == current_password:
        raise InvalidRequest(SAME_PASSWORD, field="newPassword")
    assert bearer.customer_id is not None and bearer.session_id is not None
    customer = await core.store.get_customer(bearer.customer_id)
    if customer is None:
        raise InvalidToken(bearers.NOT_CUSTOMER)
    verified = await customer_password.verified_customer(
        core, tenant, customer.email, current_password, client_address, now
    )
    new_hash = await core.passwords.hash(new_password)
    ended = await core.store.change_password(
        verified.id, verified.password_hash, new_hash, bearer.session_id, now
    )
    if ended is None:
        raise InvalidCredentials(CHANGED_MEANWHILE)
    return len(ended)
