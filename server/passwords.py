"""Customer passwords with argon2id (RFC 9106), off the event loop.

A login must cost the same whether the email is unknown, the account is locked or the password
is wrong, or accounts can be told apart by timing. What an argon2 verification costs is set by
the parameters of the hash verified, and stored hashes keep the parameters they were made with
while the settings move on. So:

- Every login verifies exactly one hash: the customer's own, or, for an unknown email, a dummy
  hash made with the parameters the tenant's stored hashes have, not the current settings.
  Those are the most common parameter set among a sample of the tenant's hashes (up to
  `SAMPLE_SIZE`, the first by email: one index range read), re-read every `TENANT_MAX_AGE`
  seconds; with no customer, the current settings. The sample read and the dummy's creation
  happen on every login path, known email or not, so neither is a tell either.
  Trade-off: while hashes of two parameter sets coexist (after a settings change, until the
  customers have logged in again), accounts with the minority's parameters can be told from
  unknown emails; a mode follows the majority, where "the newest customer's hash" would flip to
  the new parameters at the first sign-up or rehash and expose the whole majority. Scanning
  every hash would be exact but costs a full read of the tenant's customers; a sample by email
  order is unrelated to who logs in, and needs no new column (customers have no updated_at).
- A successful login whose hash was made with other parameters (argon2's check_needs_rehash)
  rehashes the password with the current settings and stores it only if the stored hash is
  still the one verified (`replace_password_hash`), so a concurrent password change wins. This
  runs in the background, after the answer: it is one more full argon2 run (the expensive one,
  when the cost was raised), which the customer should not wait for. A rehash that fails or is
  cancelled (shutdown) is logged as a warning, never with a secret, and changes nothing: the
  hash is still outdated, so the next successful login tries again. At most one rehash per
  customer and `MAX_REHASHES` in all run at once; beyond that the next login retries too.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
from collections.abc import Callable

from argon2 import Parameters, PasswordHasher, Type, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from argon2.low_level import ARGON2_VERSION

from server.clock import Clock, SystemClock
from server.records import CustomerRecord
from server.settings import Settings
from server.store.protocol import CustomerPasswordHashes

log = logging.getLogger("tokenservice.passwords")
SAMPLE_SIZE = 32
TENANT_MAX_AGE = 60.0  # seconds a tenant's parameters are reused before they are read again
MAX_TENANTS = 1024  # tenants whose parameters are kept (least recently used out first)
MAX_DUMMY_HASHES = 8  # parameter sets with a dummy hash kept
MAX_REHASHES = 64
DUMMY_PASSWORD = "dummy password for unknown accounts"  # noqa: S105 - hashed, never accepted
ParameterKey = tuple[object, ...]


class Passwords:
    """`on_verify` (tests) is called with the parameters of every hash about to be verified."""

    def __init__(
        self,
        settings: Settings,
        store: CustomerPasswordHashes,
        *,
        clock: Clock | None = None,
        on_verify: Callable[[Parameters], None] | None = None,
    ) -> None:
        self._hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
            type=Type.ID,
        )
        self._current = Parameters(
            type=Type.ID,
            version=ARGON2_VERSION,
            salt_len=self._hasher.salt_len,
            hash_len=self._hasher.hash_len,
            time_cost=self._hasher.time_cost,
            memory_cost=self._hasher.memory_cost,
            parallelism=self._hasher.parallelism,
        )
        self._store = store
        self._clock = clock or SystemClock()
        self._on_verify = on_verify
        self._tenants: collections.OrderedDict[str, tuple[Parameters, float]] = (
            collections.OrderedDict()
        )
        self._dummies: collections.OrderedDict[ParameterKey, str] = collections.OrderedDict()
        self._rehashing: dict[str, asyncio.Task[None]] = {}

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored_hash: str, password: str) -> bool:
        """True when `password` matches `stored_hash`."""
        parameters = _parameters(stored_hash) if self._on_verify is not None else None
        if self._on_verify is not None and parameters is not None:
            self._on_verify(parameters)
        return await asyncio.to_thread(self._verify_sync, stored_hash, password)

    async def verify_login(
        self, tenant: str, customer: CustomerRecord | None, password: str
    ) -> bool:
        """True when `customer` exists and `password` is its password. Without a customer, a
        dummy hash with the parameters of the tenant's stored hashes is verified instead, so
        that both cost the same (see the module docstring)."""
        dummy = await self._dummy_hash(await self._tenant_parameters(tenant))
        stored_hash = customer.password_hash if customer is not None else dummy
        return await self.verify(stored_hash, password) and customer is not None

    def rehash_if_outdated(self, customer: CustomerRecord, password: str) -> None:
        """After a successful login: starts rehashing `password` in the background when the
        customer's hash was made with other parameters than the current settings."""
        if not self._needs_rehash(customer.password_hash) or customer.id in self._rehashing:
            return
        if len(self._rehashing) >= MAX_REHASHES:
            log.warning(
                "password rehash of customer %s skipped: %d rehashes running; the next login "
                "retries",
                customer.id,
                len(self._rehashing),
            )
            return
        task = asyncio.create_task(self._rehash(customer, password))
        self._rehashing[customer.id] = task
        task.add_done_callback(lambda _: self._rehashing.pop(customer.id, None))

    async def settled(self) -> None:
        """Returns when no rehash is running (tests, and a shutdown that wants them done)."""
        while self._rehashing:
            await asyncio.wait(list(self._rehashing.values()))

    async def _rehash(self, customer: CustomerRecord, password: str) -> None:
        try:
            new_hash = await self.hash(password)
            replaced = await self._store.replace_password_hash(
                customer.id, customer.password_hash, new_hash
            )
        except asyncio.CancelledError:
            log.warning(
                "password rehash of customer %s cancelled; the next login retries", customer.id
            )
            raise
        except Exception as error:  # reported, and the next login retries
            log.warning(
                "password rehash of customer %s failed (%s); the next login retries",
                customer.id,
                type(error).__name__,
            )
            return
        if not replaced:
            log.info("password of customer %s changed during its rehash: kept", customer.id)

    async def _tenant_parameters(self, tenant: str) -> Parameters:
        now = self._clock.now()
        known = self._tenants.get(tenant)
        if known is not None and known[1] > now:
            self._tenants.move_to_end(tenant)
            return known[0]
        sample = await self._store.password_hash_sample(tenant, SAMPLE_SIZE)
        parameters = most_common_parameters(sample) or self._current
        self._tenants[tenant] = (parameters, now + TENANT_MAX_AGE)
        self._tenants.move_to_end(tenant)
        while len(self._tenants) > MAX_TENANTS:
            self._tenants.popitem(last=False)
        return parameters

    async def _dummy_hash(self, parameters: Parameters) -> str:
        key = dataclasses.astuple(parameters)
        dummy = self._dummies.get(key)
        if dummy is None:
            hasher = PasswordHasher.from_parameters(parameters)
            dummy = await asyncio.to_thread(hasher.hash, DUMMY_PASSWORD)
            self._dummies[key] = dummy
            while len(self._dummies) > MAX_DUMMY_HASHES:
                self._dummies.popitem(last=False)
        self._dummies.move_to_end(key)
        return dummy

    def _needs_rehash(self, stored_hash: str) -> bool:
        try:
            return self._hasher.check_needs_rehash(stored_hash)
        except InvalidHashError:
            return False  # it did not verify either

    def _verify_sync(self, stored_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False


def most_common_parameters(hashes: list[str]) -> Parameters | None:
    """The parameter set most of `hashes` were made with (the first seen of equally common
    ones); None when none of them is an argon2 hash."""
    counts: collections.Counter[ParameterKey] = collections.Counter()
    found: dict[ParameterKey, Parameters] = {}
    for stored_hash in hashes:
        parameters = _parameters(stored_hash)
        if parameters is not None:
            key = dataclasses.astuple(parameters)
            counts[key] += 1
            found.setdefault(key, parameters)
    if not counts:
        return None
    return found[counts.most_common(1)[0][0]]


def _parameters(stored_hash: str) -> Parameters | None:
    try:
        return extract_parameters(stored_hash)
    except (InvalidHashError, ValueError):
        return None
