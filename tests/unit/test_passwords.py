"""Login cost and rehash on login (server/passwords.py), proven by the work done, not by timing:
a Passwords with an `on_verify` hook records the argon2 parameters of every hash it verifies.

The tenant's customers were created with OLD parameters; the service now runs with NEW ones.
"""

from __future__ import annotations

import dataclasses
import logging

import pytest
from argon2 import Parameters, PasswordHasher, extract_parameters

from server import admin
from server.clock import ManualClock
from server.core import Core, build_core
from server.errors import InvalidCredentials, StoreUnavailable
from server.grants import anonymous, customer_password
from server.passwords import TENANT_MAX_AGE, Passwords, most_common_parameters
from server.records import ClientKind
from server.settings import Settings
from server.store.memory import MemoryStore
from tests.support.defaults import FAST_ARGON2, TEST_SECRET, Argon2Parameters

OLD: Argon2Parameters = {**FAST_ARGON2, "argon2_time_cost": 2}
NEW = FAST_ARGON2
PASSWORD = "pw-123456"
EMAIL = "ann@shop.example"


def parameters_of(settings: Argon2Parameters) -> Parameters:
    hasher = PasswordHasher(
        time_cost=settings["argon2_time_cost"],
        memory_cost=settings["argon2_memory_kib"],
        parallelism=settings["argon2_parallelism"],
    )
    return extract_parameters(hasher.hash("x"))


OLD_PARAMETERS, NEW_PARAMETERS = parameters_of(OLD), parameters_of(NEW)


class Service:
    """A tenant provisioned under OLD settings, and a core running NEW ones on its store."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.clock = ManualClock(1_800_000_000)
        self.verified: list[Parameters] = []
        settings = Settings(login_max_failures_per_account=2, **NEW)
        core = build_core(settings, store, clock=self.clock, secret=TEST_SECRET)
        passwords = Passwords(settings, store, clock=self.clock, on_verify=self.verified.append)
        self.core: Core = dataclasses.replace(core, passwords=passwords)

    async def login(self, email: str, password: str, tenant: str = "shop") -> str:
        token = (await anonymous.issue(self.core, tenant, "front")).access_token
        try:
            await customer_password.issue(self.core, tenant, email, password, token)
        except InvalidCredentials:
            return "refused"
        return "ok"

    async def stored_hash(self) -> str:
        customer = await self.store.find_customer("shop", EMAIL)
        assert customer is not None
        return customer.password_hash


async def provisioned(store: MemoryStore | None = None) -> Service:
    store = store or MemoryStore()
    old = build_core(Settings(**OLD), store, clock=ManualClock(), secret=TEST_SECRET)
    await old.keys.ensure_active_key()
    for tenant in ("shop", "empty"):
        await admin.create_tenant(old, tenant)
        client_id = "front" if tenant == "shop" else f"{tenant}-front"
        await admin.create_client(old, tenant, ClientKind.STOREFRONT, (), client_id=client_id)
    await admin.create_customer(old, "shop", EMAIL, PASSWORD, (), ())
    await admin.create_customer(old, "shop", "bob@shop.example", "bob-123456", (), ())
    return Service(store)


async def test_unknown_email_wrong_password_and_locked_account_verify_the_stored_cost() -> None:
    service = await provisioned()
    assert await service.login("nobody@shop.example", PASSWORD) == "refused"
    assert await service.login(EMAIL, "wrong-password") == "refused"
    assert await service.login(EMAIL, "wrong-password") == "refused"  # locks (2 failures)
    assert await service.login(EMAIL, PASSWORD) == "refused"  # locked: the right one too
    assert await service.login("nobody@shop.example", PASSWORD) == "refused"  # locked as well
    # Five logins, five verifications, each of a hash with the stored hashes' parameters.
    assert service.verified == [OLD_PARAMETERS] * 5
    assert OLD_PARAMETERS != NEW_PARAMETERS
    # Nothing rehashed: no login succeeded.
    await service.core.passwords.settled()
    assert extract_parameters(await service.stored_hash()) == OLD_PARAMETERS


async def test_a_tenant_without_customers_verifies_at_the_current_cost() -> None:
    service = await provisioned()
    token = (await anonymous.issue(service.core, "empty", "empty-front")).access_token
    with pytest.raises(InvalidCredentials):
        await customer_password.issue(service.core, "empty", EMAIL, PASSWORD, token)
    assert service.verified == [NEW_PARAMETERS]


async def test_a_successful_login_rehashes_with_the_current_settings_once() -> None:
    service = await provisioned()
    before = await service.stored_hash()
    assert await service.login("Ann@Shop.example", PASSWORD) == "ok"
    await service.core.passwords.settled()
    after = await service.stored_hash()
    assert extract_parameters(after) == NEW_PARAMETERS
    assert PasswordHasher().verify(after, PASSWORD)
    assert after != before
    # Up to date now: the next login verifies the new hash and writes nothing.
    assert await service.login(EMAIL, PASSWORD) == "ok"
    await service.core.passwords.settled()
    assert await service.stored_hash() == after
    assert service.verified == [OLD_PARAMETERS, NEW_PARAMETERS]
    # The other customer's hash was not touched.
    bob = await service.store.find_customer("shop", "bob@shop.example")
    assert bob is not None and extract_parameters(bob.password_hash) == OLD_PARAMETERS


async def test_unknown_emails_follow_the_stored_hashes_once_they_are_rehashed() -> None:
    service = await provisioned()
    for email, password in ((EMAIL, PASSWORD), ("bob@shop.example", "bob-123456")):
        assert await service.login(email, password) == "ok"
    await service.core.passwords.settled()
    assert await service.login("nobody@shop.example", PASSWORD) == "refused"
    service.clock.advance(TENANT_MAX_AGE)  # the tenant's parameters are read again
    assert await service.login("nobody@shop.example", PASSWORD) == "refused"
    assert service.verified == [OLD_PARAMETERS, OLD_PARAMETERS, OLD_PARAMETERS, NEW_PARAMETERS]


class ChangedMeanwhile(MemoryStore):
    """A store where the customer changes the password while the rehash is running."""

    changed_to = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash("changed")

    async def replace_password_hash(self, customer_id: str, expected: str, new: str) -> bool:
        assert await super().replace_password_hash(customer_id, expected, self.changed_to)
        return await super().replace_password_hash(customer_id, expected, new)


async def test_a_concurrent_password_change_is_not_overwritten() -> None:
    service = await provisioned(ChangedMeanwhile())
    assert await service.login(EMAIL, PASSWORD) == "ok"
    await service.core.passwords.settled()
    assert await service.stored_hash() == ChangedMeanwhile.changed_to


class FailsOnce(MemoryStore):
    failures = 1

    async def replace_password_hash(self, customer_id: str, expected: str, new: str) -> bool:
        if self.failures:
            self.failures -= 1
            raise StoreUnavailable("the token store is unavailable")
        return await super().replace_password_hash(customer_id, expected, new)


async def test_a_failed_rehash_is_logged_without_secrets_and_retried_at_the_next_login(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    service = await provisioned(FailsOnce())
    before = await service.stored_hash()
    customer = await service.store.find_customer("shop", EMAIL)
    assert customer is not None
    assert await service.login(EMAIL, PASSWORD) == "ok"  # answered although the rehash fails
    await service.core.passwords.settled()
    assert await service.stored_hash() == before
    (warning,) = [r for r in caplog.records if r.name == "tokenservice.passwords"]
    assert warning.levelno == logging.WARNING
    message = warning.getMessage()
    assert customer.id in message and "StoreUnavailable" in message and "retries" in message
    for record in caplog.records:
        assert PASSWORD not in record.getMessage() and before not in record.getMessage()
    assert await service.login(EMAIL, PASSWORD) == "ok"
    await service.core.passwords.settled()
    assert extract_parameters(await service.stored_hash()) == NEW_PARAMETERS


def test_the_most_common_parameters_of_a_sample() -> None:
    old = [PasswordHasher(time_cost=2, memory_cost=1024, parallelism=1).hash("x")] * 3
    new = [PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash("x")] * 2
    assert most_common_parameters([*new, *old, "not a hash"]) == extract_parameters(old[0])
    assert most_common_parameters([*new, old[0]]) == extract_parameters(new[0])
    assert most_common_parameters(["$argon2id$garbage", ""]) is None
    assert most_common_parameters([]) is None
