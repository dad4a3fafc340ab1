"""The abuse controls' bookkeeping (server/abuse.py): lock policy, address table, anonymous
token bucket, client address resolution. Pure functions of a `now` the test chooses."""

from __future__ import annotations

from typing import Any

import pytest

from server import admin
from server.abuse import AbuseControls, AddressThrottle, AnonymousQuota, LockPolicy
from server.clock import ManualClock
from server.core import Core
from server.errors import InvalidCredentials
from server.grants import anonymous, customer_password
from server.proxies import client_address, grpc_peer_host, parse_networks
from server.records import ClientKind, LoginFailures
from server.settings import ConfigError, Settings
from tests.support.cores import memory_core

POLICY = LockPolicy(max_failures=3, wait_increment=60, max_wait=150, reset_after=3600)


def failures(policy: LockPolicy, times: list[int]) -> LoginFailures | None:
    state = None
    for now in times:
        state = policy.after_failure(state, now)
    return state


def test_the_nth_failure_locks_for_one_increment() -> None:
    state = failures(POLICY, [0, 1])
    assert state is not None and POLICY.locked_for(state, 2) == 0
    state = POLICY.after_failure(state, 2)
    assert state.failures == 3
    assert POLICY.locked_for(state, 2) == 60
    assert POLICY.locked_for(state, 61) == 1
    assert POLICY.locked_for(state, 62) == 0


def test_each_further_failure_waits_one_increment_more_up_to_the_maximum() -> None:
    state = failures(POLICY, [0, 1, 2])
    assert state is not None
    state = POLICY.after_failure(state, 62)  # the lock ran out: the 4th failure
    assert POLICY.locked_for(state, 62) == 120
    state = POLICY.after_failure(state, 182)
    assert POLICY.locked_for(state, 182) == 150  # 180 capped at max_wait


def test_a_failure_while_locked_changes_nothing() -> None:
    state = failures(POLICY, [0, 1, 2])
    assert state is not None
    assert POLICY.after_failure(state, 30) == state


def test_a_quiet_period_forgets_the_count() -> None:
    state = failures(POLICY, [0, 1, 2])
    assert POLICY.current(state, 2 + 3599) == state
    assert POLICY.current(state, 2 + 3600) is None
    assert POLICY.after_failure(state, 2 + 3600).failures == 1


@pytest.mark.parametrize(
    "policy",
    [
        LockPolicy(max_failures=0, wait_increment=60, max_wait=900, reset_after=3600),
        LockPolicy(max_failures=3, wait_increment=0, max_wait=900, reset_after=3600),
    ],
)
def test_zero_failures_or_zero_wait_never_locks(policy: LockPolicy) -> None:
    state = failures(policy, list(range(50)))
    assert not policy.enabled
    assert policy.locked_for(state, 50) == 0


def test_no_maximum_and_no_reset_when_zero() -> None:
    policy = LockPolicy(max_failures=1, wait_increment=60, max_wait=0, reset_after=0)
    state = failures(policy, [0, 10_000, 100_000])
    assert state is not None and state.failures == 3
    assert policy.locked_for(state, 100_000) == 180


def test_the_address_table_is_bounded_and_per_address() -> None:
    table = AddressThrottle(POLICY, capacity=2)
    for now in range(3):
        table.failed("10.0.0.1", now)
    assert table.locked_for("10.0.0.1", 3) == 59
    assert table.locked_for("10.0.0.2", 3) == 0
    table.failed("10.0.0.2", 4)
    table.failed("10.0.0.3", 5)  # evicts 10.0.0.1, the least recently used
    assert len(table) == 2
    assert table.locked_for("10.0.0.1", 6) == 0
    assert table.failed("", 6) is None  # no address: not tracked


def test_the_anonymous_bucket_refills_at_its_rate() -> None:
    quota = AnonymousQuota(rate=2.0, burst=3)
    assert [quota.take("shop", 0.0) for _ in range(3)] == [0, 0, 0]
    assert quota.take("shop", 0.0) == 1
    assert quota.take("other", 0.0) == 0  # per client
    assert quota.take("shop", 0.5) == 0  # one token back after 1/rate seconds
    assert quota.take("shop", 0.5) == 1
    assert [quota.take("shop", 100.0) for _ in range(4)] == [0, 0, 0, 1]  # at most burst


def test_a_slow_rate_says_how_long_to_wait() -> None:
    quota = AnonymousQuota(rate=0.1, burst=1)
    assert quota.take("shop", 0.0) == 0
    assert quota.take("shop", 0.0) == 10
    assert quota.take("shop", 7.5) == 3


def test_a_zero_rate_is_no_quota() -> None:
    quota = AnonymousQuota(rate=0.0, burst=1)
    assert all(quota.take("shop", 0.0) == 0 for _ in range(1000))


def test_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    trusted = parse_networks("10.1.0.0/16, 192.0.2.7")
    spoofed = "203.0.113.9, 198.51.100.4"
    assert client_address("198.51.100.1", spoofed, trusted) == "198.51.100.1"
    assert client_address("192.0.2.7", spoofed, trusted) == "198.51.100.4"
    # The right-most untrusted hop: a client cannot pick its address by writing more hops.
    assert client_address("10.1.2.3", f"{spoofed}, 10.1.9.9", trusted) == "198.51.100.4"
    assert client_address("192.0.2.7", "not-an-address", trusted) == "192.0.2.7"
    assert client_address("192.0.2.7", "", trusted) == "192.0.2.7"
    assert client_address("192.0.2.7", spoofed, ()) == "192.0.2.7"


def test_a_bad_trusted_proxies_setting_is_refused() -> None:
    with pytest.raises(ConfigError):
        parse_networks("10.0.0.0/8, localhost")


def test_grpc_peer_strings() -> None:
    assert grpc_peer_host("ipv4:127.0.0.1:50051") == "127.0.0.1"
    assert grpc_peer_host("ipv6:[::1]:50051") == "::1"
    assert grpc_peer_host("unix:/tmp/socket") == "unix:/tmp/socket"


def test_controls_from_settings() -> None:
    controls = AbuseControls.from_settings(Settings())
    assert controls.account.max_failures == 5
    assert controls.addresses.policy.max_failures == 100
    assert controls.account.wait_increment == 60
    assert controls.account.max_wait == 900
    assert controls.account.reset_after == 43200
    assert not controls.anonymous.enabled
    assert controls.trusted_proxies == ()
    env = {
        "TOKENSERVICE_LOGIN_MAX_FAILURES_PER_ACCOUNT": "0",
        "TOKENSERVICE_ANONYMOUS_TOKENS_PER_SECOND": "2.5",
        "TOKENSERVICE_TRUSTED_PROXIES": "127.0.0.1",
    }
    controls = AbuseControls.from_settings(Settings.from_env(env))
    assert not controls.account.enabled
    assert controls.anonymous.rate == 2.5
    assert len(controls.trusted_proxies) == 1


# --- the customer grant against the in-memory store: what a locked login does -------------------
@pytest.fixture
async def core() -> Core:
    core = await memory_core(login_max_failures_per_account=2)
    await admin.create_tenant(core, "shop")
    await admin.create_client(core, "shop", ClientKind.STOREFRONT, (), client_id="front")
    await admin.create_customer(core, "shop", "ann@shop.example", "pw-123456", (), ())
    return core


async def attempt(core: Core, password: str) -> str:
    token = (await anonymous.issue(core, "shop", "front")).access_token
    try:
        await customer_password.issue(
            core, "shop", "Ann@Shop.example", password, token, client_address="192.0.2.1"
        )
    except InvalidCredentials as error:
        return f"{type(error).__name__}: {error.description}"
    return "ok"


async def test_a_locked_login_verifies_and_writes_as_a_wrong_one_does(
    core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    verified: list[bool] = []
    written: list[int] = []
    verify, record = core.passwords.verify, core.store.record_login_failure

    async def counting_verify(stored_hash: str, password: str) -> bool:
        verified.append(await verify(stored_hash, password))
        return verified[-1]

    async def counting_record(*args: Any) -> LoginFailures:
        state = await record(*args)
        written.append(state.failures)
        return state

    monkeypatch.setattr(core.passwords, "verify", counting_verify)
    monkeypatch.setattr(core.store, "record_login_failure", counting_record)
    wrong = [await attempt(core, "wrong-password") for _ in range(2)]
    assert wrong == ["InvalidCredentials: wrong email or password"] * 2
    assert await attempt(core, "pw-123456") == wrong[0]  # locked: the right password too
    assert await attempt(core, "wrong-password") == wrong[0]
    # Every attempt ran argon2 (the right password was right), and every refusal wrote its
    # counter, the two while locked without counting them.
    assert verified == [False, False, True, False]
    assert written == [1, 2, 2, 2]
    assert isinstance(core.clock, ManualClock)  # memory_core() builds it on a ManualClock
    core.clock.advance(60)
    assert await attempt(core, "pw-123456") == "ok"  # the email's case does not matter
    assert (
        await core.store.get_login_failures(
            "shop", core.digests.login_subject("shop", "ann@shop.example")
        )
        is None
    )
