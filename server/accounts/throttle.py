"""The throttle of the account requests a caller can repeat to send mail or probe e-mails:
sign-up, password reset and opt-in resend.

The login lockout's mechanisms (server/abuse.py), counting every request rather than failures:
per e-mail and action in the store, so every replica sees it (the failed-login counters, keyed
by a keyed digest of action, tenant and e-mail: unknown e-mails are counted alike, and no
address typed is stored), and per client address in this process (AddressThrottle, shared by
the three actions). A throttled request is told to retry later (429 / RESOURCE_EXHAUSTED); it
changes no counter, and says nothing about any account.
"""

from __future__ import annotations

from server import metrics
from server.core import Core
from server.errors import RateLimited
from server.records import LoginFailures

THROTTLED = "too many requests of this kind; retry later"


async def admit(core: Core, action: str, tenant: str, email: str, address: str, now: int) -> None:
    """Counts one `action` request for `email` and `address`, or raises RateLimited."""
    addresses = core.abuse.account_addresses
    wait = addresses.locked_for(address, now)
    policy = core.abuse.account_requests
    subject = core.digests.request_subject(action, tenant, email)
    if policy.enabled and wait == 0:
        stored = await core.store.get_login_failures(tenant, subject)
        wait = policy.locked_for(policy.current(stored, now), now)
    if wait > 0:
        metrics.record_abuse(f"{action}_refused")
        raise RateLimited(THROTTLED, retry_after=wait)
    addresses.failed(address, now)
    if policy.enabled:

        def next_state(current: LoginFailures | None) -> LoginFailures:
            return policy.after_failure(current, now)

        await core.store.record_login_failure(tenant, subject, next_state)
