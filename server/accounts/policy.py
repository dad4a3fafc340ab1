"""A tenant's account rules: whether sign-up waits for a double opt-in, and what a new password
must be (a minimum length; not one of the most common passwords, shipped as
common_passwords.txt). Set per tenant through the AdminService and the CLI; a tenant without
one has the defaults of `AccountPolicy`.

The password rules apply to every password a customer chooses (sign-up, change, reset); the
maximum is validation's MAX_PASSWORD, the bound of every password field.
"""

from __future__ import annotations

import functools
from importlib import resources

from server import validation
from server.core import Core
from server.errors import InvalidRequest, NotFound
from server.records import AccountPolicy

# The longest minimum a tenant may ask for, and the shortest (below it no policy is a policy).
MAX_MIN_LENGTH = 128
MIN_MIN_LENGTH = 6


async def of_tenant(core: Core, tenant: str) -> AccountPolicy:
    return await core.store.get_account_policy(tenant) or AccountPolicy(tenant)


async def set_policy(core: Core, policy: AccountPolicy) -> AccountPolicy:
    """Checks and stores `policy` (admin); NotFound for an unknown tenant."""
    validation.tenant(policy.tenant)
    if not MIN_MIN_LENGTH <= policy.password_min_length <= MAX_MIN_LENGTH:
        raise InvalidRequest(
            f"password_min_length must be between {MIN_MIN_LENGTH} and {MAX_MIN_LENGTH}",
            field="password_min_length",
        )
    if await core.store.get_tenant(policy.tenant) is None:
        raise NotFound(f"unknown tenant '{policy.tenant}'", field="tenant")
    await core.store.set_account_policy(policy)
    return policy


def check_new_password(policy: AccountPolicy, password: str, field: str) -> str:
    """`password` if the policy accepts it as a new password; the refusal says which rule it
    breaks, never the password."""
    validation.password(password, field)
    if len(password) < policy.password_min_length:
        raise InvalidRequest(
            f"{field} must be at least {policy.password_min_length} characters", field=field
        )
    if policy.reject_common_passwords and password.lower() in common_passwords():
        raise InvalidRequest(f"{field} is one of the most common passwords", field=field)
    return password


@functools.cache
def common_passwords() -> frozenset[str]:
    text = resources.files("server.accounts").joinpath("common_passwords.txt").read_text("utf-8")
    lines = (line.strip() for line in text.splitlines())
    return frozenset(line.lower() for line in lines if line and not line.startswith("#"))
