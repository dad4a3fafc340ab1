"""Abuse controls: customer-login lockout (per account, per client address), anonymous-token
quotas (per storefront client), and the throttle of the account requests that send mail or
create accounts (sign-up, password reset, opt-in resend: the same LockPolicy, counting every
request instead of failures; server/accounts/throttle.py applies it).

The lockout follows Keycloak's brute-force detection in spirit: no permanent lockout; the
`max_failures`-th failure locks for `wait_increment` seconds, every further failure (after the
lock has run out) locks for one increment more, up to `max_wait`; a quiet period of
`reset_after` seconds since the last failure starts the count again, and so does a successful
login (per account only). Failures while locked are not counted: they change nothing.

Per account, the counters live in the store, so that every replica sees the same lock
(`TokenStore.record_login_failure`); per client address they live in this process
(`AddressThrottle`), bounded, least recently used out first; the anonymous quota is a token
bucket per storefront client, in this process (`AnonymousQuota`).

Everything here is pure bookkeeping over a `now` the caller passes in: no clock, no I/O.
"""

from __future__ import annotations

import collections
import dataclasses
import math

from server.proxies import Networks, client_address, parse_networks
from server.records import LoginFailures
from server.settings import Settings

# How many entries the per-process tables keep before they evict the least recently used.
DEFAULT_CAPACITY = 100_000


@dataclasses.dataclass(frozen=True)
class LockPolicy:
    """When failures lock. `max_failures` 0: never; `max_wait` 0: no cap on the wait;
    `reset_after` 0: the count is never forgotten by time (only by a successful login)."""

    max_failures: int
    wait_increment: int
    max_wait: int
    reset_after: int

    @property
    def enabled(self) -> bool:
        return self.max_failures > 0 and self.wait_increment > 0

    def current(self, state: LoginFailures | None, now: int) -> LoginFailures | None:
        """`state` as it stands at `now`: None once the quiet period has passed."""
        if state is None or state.failures <= 0:
            return None
        if self.reset_after > 0 and now - state.last_failure_at >= self.reset_after:
            return None
        return state

    def locked_for(self, state: LoginFailures | None, now: int) -> int:
        """Whole seconds the lock has left at `now`; 0 when not locked."""
        if not self.enabled or state is None:
            return 0
        return max(state.locked_until - now, 0)

    def after_failure(self, state: LoginFailures | None, now: int) -> LoginFailures:
        """The state after one more failure at `now` (a failure while locked is not one)."""
        current = self.current(state, now)
        if current is not None and self.locked_for(current, now) > 0:
            return current
        failures = 1 if current is None else current.failures + 1
        locked_until = 0
        if self.enabled and failures >= self.max_failures:
            wait = self.wait_increment * (failures - self.max_failures + 1)
            if self.max_wait > 0:
                wait = min(wait, self.max_wait)
            locked_until = now + wait
        return LoginFailures(failures=failures, last_failure_at=now, locked_until=locked_until)


class AddressThrottle:
    """Failed logins per client address, in this process: the LockPolicy over a bounded LRU
    table. Unlike the per-account counter, a successful login does not reset it (one valid
    account must not buy an address unlimited guesses at others)."""

    def __init__(self, policy: LockPolicy, capacity: int = DEFAULT_CAPACITY) -> None:
        self.policy = policy
        self.capacity = capacity
        self._entries: collections.OrderedDict[str, LoginFailures] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def locked_for(self, address: str, now: int) -> int:
        if not self.policy.enabled or not address:
            return 0
        state = self.policy.current(self._entries.get(address), now)
        return self.policy.locked_for(state, now)

    def failed(self, address: str, now: int) -> LoginFailures | None:
        if not self.policy.enabled or not address:
            return None
        state = self.policy.after_failure(self._entries.get(address), now)
        self._entries[address] = state
        self._entries.move_to_end(address)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
        return state


class AnonymousQuota:
    """A token bucket per storefront client, in this process: `rate` tokens a second, at most
    `burst` saved up. `rate` 0 turns it off."""

    def __init__(self, rate: float, burst: int, capacity: int = DEFAULT_CAPACITY) -> None:
        self.rate = rate
        self.burst = max(burst, 1)
        self.capacity = capacity
        # client_id -> (tokens left, when they were counted)
        self._buckets: collections.OrderedDict[str, tuple[float, float]] = collections.OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, client_id: str, now: float) -> int:
        """Takes one token for `client_id`: 0 when granted, else whole seconds until one is."""
        if not self.enabled:
            return 0
        tokens, counted_at = self._buckets.get(client_id, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + max(now - counted_at, 0.0) * self.rate)
        if tokens >= 1.0:
            self._buckets[client_id] = (tokens - 1.0, now)
            self._buckets.move_to_end(client_id)
            while len(self._buckets) > self.capacity:
                self._buckets.popitem(last=False)
            return 0
        self._buckets[client_id] = (tokens, now)
        self._buckets.move_to_end(client_id)
        return max(math.ceil((1.0 - tokens) / self.rate), 1)


@dataclasses.dataclass
class AbuseControls:
    """The controls one process applies, built from Settings."""

    account: LockPolicy
    addresses: AddressThrottle
    anonymous: AnonymousQuota
    trusted_proxies: Networks = ()
    # Account requests (server/accounts/throttle.py): per e-mail in the store (the policy
    # here), per client address in this process.
    account_requests: LockPolicy = LockPolicy(0, 0, 0, 0)
    account_addresses: AddressThrottle = dataclasses.field(
        default_factory=lambda: AddressThrottle(LockPolicy(0, 0, 0, 0))
    )

    @classmethod
    def from_settings(cls, settings: Settings) -> AbuseControls:
        common = {
            "wait_increment": settings.login_lock_wait_increment_seconds,
            "max_wait": settings.login_lock_max_wait_seconds,
            "reset_after": settings.login_failure_reset_seconds,
        }
        return cls(
            account=LockPolicy(max_failures=settings.login_max_failures_per_account, **common),
            addresses=AddressThrottle(
                LockPolicy(max_failures=settings.login_max_failures_per_address, **common),
                capacity=settings.login_address_table_size,
            ),
            anonymous=AnonymousQuota(
                settings.anonymous_tokens_per_second,
                settings.anonymous_tokens_burst,
                capacity=settings.login_address_table_size,
            ),
            trusted_proxies=parse_networks(settings.trusted_proxies),
            account_requests=_account_policy(settings, settings.account_requests_per_email),
            account_addresses=AddressThrottle(
                _account_policy(settings, settings.account_requests_per_address),
                capacity=settings.login_address_table_size,
            ),
        )

    def client_address(self, peer: str, forwarded_for: str = "") -> str:
        return client_address(peer, forwarded_for, self.trusted_proxies)


def _account_policy(settings: Settings, max_requests: int) -> LockPolicy:
    return LockPolicy(
        max_failures=max_requests,
        wait_increment=settings.account_throttle_wait_seconds,
        max_wait=settings.account_throttle_max_wait_seconds,
        reset_after=settings.account_throttle_reset_seconds,
    )
