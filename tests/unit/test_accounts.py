"""The account operations (server/accounts/) against the in-memory store, with a manual clock
and a mailer that keeps what it is given: sign-up and its double opt-in, password change and
reset, e-mail change, the password policy and the account-request throttle."""

from __future__ import annotations

import dataclasses

import pytest

from server import admin, introspection
from server.accounts import email_change, password_change, password_reset, policy, signup
from server.clock import ManualClock
from server.core import Core
from server.errors import (
    AccountNotConfirmed,
    AlreadyExists,
    InvalidCredentials,
    InvalidGrant,
    InvalidRequest,
    InvalidToken,
    RateLimited,
)
from server.grants import anonymous, customer_password
from server.records import ClientKind, IssuedTokens
from server.store.memory import MemoryStore
from tests.support.cores import memory_core
from tests.support.mail import RecordingMailer, token_in

T = "shop"
PASSWORD = "a long and unusual passphrase"
NEW_PASSWORD = "another long passphrase"


@dataclasses.dataclass
class Shop:
    core: Core
    mail: RecordingMailer

    @property
    def clock(self) -> ManualClock:
        assert isinstance(self.core.clock, ManualClock)
        return self.core.clock

    async def anonymous(self) -> str:
        return (await anonymous.issue(self.core, T, "front")).access_token

    async def login(self, email: str, password: str = PASSWORD) -> IssuedTokens:
        return await customer_password.issue(self.core, T, email, password, await self.anonymous())

    async def sign_up(self, email: str, password: str = PASSWORD) -> signup.SignedUp:
        return await signup.sign_up(
            self.core, T, email, password, await self.anonymous(), client_address="10.0.0.1"
        )

    async def mailed(self) -> list[str]:
        """The tokens of the messages delivered since the last call, in order."""
        await self.core.mail.settled()
        tokens = [token_in(m.body) for m in self.mail.messages]
        self.mail.messages.clear()
        return tokens

    async def active(self, token: str) -> bool:
        return (await introspection.introspect(self.core, token, T)).active


@pytest.fixture
async def shop() -> Shop:
    mail = RecordingMailer()
    core = await memory_core(mailer=mail, account_requests_per_email=3)
    await admin.create_tenant(core, T)
    await admin.create_client(core, T, ClientKind.STOREFRONT, (), client_id="front")
    return Shop(core, mail)


async def opt_in(shop: Shop) -> None:
    await admin.set_account_policy(shop.core, T, double_opt_in=True)


# --- sign-up ---------------------------------------------------------------------------------
async def test_sign_up_creates_an_active_customer_who_can_log_in(shop: Shop) -> None:
    done = await shop.sign_up("New@Shop.example")
    assert not done.opt_in_required
    customer = await shop.core.store.find_customer(T, "new@shop.example")
    assert customer is not None and customer.id == done.customer_id and customer.active
    assert customer.scopes == () and PASSWORD not in customer.password_hash
    assert (await shop.login("new@shop.example")).saas_token
    assert await shop.mailed() == []  # no opt-in: no mail


async def test_sign_up_for_an_existing_email_is_409_and_changes_nothing(shop: Shop) -> None:
    first = await shop.sign_up("ann@shop.example")
    with pytest.raises(AlreadyExists) as caught:
        await shop.sign_up("ANN@shop.example", "a different long passphrase")
    assert caught.value.field == "email" and "ann" not in str(caught.value)
    customer = await shop.core.store.find_customer(T, "ann@shop.example")
    assert customer is not None and customer.id == first.customer_id
    assert (await shop.login("ann@shop.example")).access_token


@pytest.mark.parametrize(
    ("password", "rule"),
    [("short1", "at least 8 characters"), ("Password123", "most common passwords")],
)
async def test_sign_up_refuses_a_password_the_policy_refuses(
    shop: Shop, password: str, rule: str
) -> None:
    with pytest.raises(InvalidRequest, match=rule) as caught:
        await shop.sign_up("ann@shop.example", password)
    assert password not in str(caught.value)
    assert await shop.core.store.find_customer(T, "ann@shop.example") is None


async def test_the_policy_is_per_tenant_and_can_be_relaxed_or_tightened(shop: Shop) -> None:
    await admin.set_account_policy(shop.core, T, password_min_length=20)
    with pytest.raises(InvalidRequest, match="at least 20"):
        await shop.sign_up("ann@shop.example", "nineteen characters")
    await admin.set_account_policy(shop.core, T, reject_common_passwords=False)
    rules = await policy.of_tenant(shop.core, T)
    assert (rules.password_min_length, rules.reject_common_passwords) == (20, False)
    assert policy.check_new_password(rules, "password1234567890abc", "password")
    with pytest.raises(InvalidRequest, match="between 6 and 128"):
        await admin.set_account_policy(shop.core, T, password_min_length=3)
    assert "123456" in policy.common_passwords() and len(policy.common_passwords()) > 400


async def test_double_opt_in_waits_for_the_link_which_logs_the_customer_in(shop: Shop) -> None:
    await opt_in(shop)
    done = await shop.sign_up("ann@shop.example")
    assert done.opt_in_required
    [link] = await shop.mailed()
    assert shop.mail.messages == []
    # Not active yet: the right password is told so, a wrong one is a wrong password.
    with pytest.raises(AccountNotConfirmed):
        await shop.login("ann@shop.example")
    with pytest.raises(InvalidCredentials):
        await shop.login("ann@shop.example", "wrong password entirely")
    anon = await anonymous.issue(shop.core, T, "front")
    issued = await signup.confirm(shop.core, T, link, anon.access_token)
    assert issued.session_id == anon.session_id and issued.saas_token
    info = await introspection.introspect(shop.core, issued.access_token, T)
    assert info.active and info.customer_id == done.customer_id
    assert (await shop.login("ann@shop.example")).access_token
    with pytest.raises(InvalidGrant, match="invalid, expired or used"):  # single use
        await signup.confirm(shop.core, T, link, await shop.anonymous())


async def test_an_opt_in_link_expires_and_a_resend_replaces_it(shop: Shop) -> None:
    await opt_in(shop)
    await shop.sign_up("ann@shop.example")
    [first] = await shop.mailed()
    shop.clock.advance(shop.core.settings.signup_link_ttl_seconds)
    with pytest.raises(InvalidGrant):
        await signup.confirm(shop.core, T, first, await shop.anonymous())
    await signup.resend(shop.core, T, "ann@shop.example", await shop.anonymous())
    [second] = await shop.mailed()
    await signup.resend(shop.core, T, "ann@shop.example", await shop.anonymous())
    [third] = await shop.mailed()
    with pytest.raises(InvalidGrant):  # superseded by the third
        await signup.confirm(shop.core, T, second, await shop.anonymous())
    assert (await signup.confirm(shop.core, T, third, await shop.anonymous())).access_token


async def test_a_resend_answers_the_same_for_unknown_and_active_accounts(shop: Shop) -> None:
    await shop.sign_up("active@shop.example")
    for email in ("active@shop.example", "nobody@shop.example"):
        await signup.resend(shop.core, T, email, await shop.anonymous())  # no answer at all
    assert await shop.mailed() == []


async def test_sign_up_is_throttled_per_email_and_a_refusal_stores_nothing(shop: Shop) -> None:
    for n in range(3):  # account_requests_per_email=3
        await shop.sign_up(f"ann{n}@shop.example")
    for _ in range(2):
        with pytest.raises(AlreadyExists):
            await shop.sign_up("ann0@shop.example")
    with pytest.raises(RateLimited) as caught:
        await shop.sign_up("ann0@shop.example")
    assert caught.value.retry_after == shop.core.settings.account_throttle_wait_seconds
    # Another e-mail from the same address still goes through.
    await shop.sign_up("ann9@shop.example")


async def test_the_throttle_per_address_covers_every_e_mail() -> None:
    mail = RecordingMailer()
    core = await memory_core(mailer=mail, account_requests_per_address=2)
    await admin.create_tenant(core, T)
    await admin.create_client(core, T, ClientKind.STOREFRONT, (), client_id="front")
    token = (await anonymous.issue(core, T, "front")).access_token
    for n in range(2):
        await password_reset.request(core, T, f"x{n}@shop.example", token, client_address="1.2.3.4")
    with pytest.raises(RateLimited):
        await password_reset.request(core, T, "x9@shop.example", token, client_address="1.2.3.4")
    await password_reset.request(core, T, "x9@shop.example", token, client_address="1.2.3.5")


# --- passwords -------------------------------------------------------------------------------
async def test_password_change_ends_the_other_sessions_only(shop: Shop) -> None:
    await shop.sign_up("ann@shop.example")
    here, other, third = [await shop.login("ann@shop.example") for _ in range(3)]
    ended = await password_change.change(shop.core, T, here.access_token, PASSWORD, NEW_PASSWORD)
    assert ended == 2
    assert await shop.active(here.access_token) and await shop.active(here.refresh_token)
    for gone in (other, third):
        assert not await shop.active(gone.access_token)
        assert not await shop.active(gone.refresh_token)
    with pytest.raises(InvalidCredentials):
        await shop.login("ann@shop.example")
    assert (await shop.login("ann@shop.example", NEW_PASSWORD)).access_token


async def test_password_change_with_a_wrong_current_password_changes_nothing(
    shop: Shop,
) -> None:
    await shop.sign_up("ann@shop.example")
    here, other = [await shop.login("ann@shop.example") for _ in range(2)]
    with pytest.raises(InvalidCredentials):
        await password_change.change(shop.core, T, here.access_token, "wrong guess!", NEW_PASSWORD)
    with pytest.raises(InvalidRequest, match="most common"):
        await password_change.change(shop.core, T, here.access_token, PASSWORD, "qwerty123")
    with pytest.raises(InvalidRequest, match="differ"):
        await password_change.change(shop.core, T, here.access_token, PASSWORD, PASSWORD)
    assert await shop.active(other.access_token)
    assert (await shop.login("ann@shop.example")).access_token


async def test_password_change_needs_a_customer_token(shop: Shop) -> None:
    with pytest.raises(InvalidToken):
        await password_change.change(shop.core, T, await shop.anonymous(), PASSWORD, NEW_PASSWORD)


async def test_a_reset_mails_a_token_that_sets_the_password_and_ends_every_session(
    shop: Shop,
) -> None:
    await shop.sign_up("ann@shop.example")
    sessions = [await shop.login("ann@shop.example") for _ in range(2)]
    await password_reset.request(shop.core, T, "Ann@shop.example", await shop.anonymous())
    await shop.core.mail.settled()
    [message] = shop.mail.messages
    assert message.to == "ann@shop.example" and message.kind == "password-reset"
    [token] = await shop.mailed()
    stored = shop.core.store
    assert isinstance(stored, MemoryStore)
    assert token not in repr(vars(stored))  # only its digest is kept
    ended = await password_reset.update(shop.core, T, token, NEW_PASSWORD, await shop.anonymous())
    assert ended == 2
    for issued in sessions:
        assert not await shop.active(issued.access_token)
        assert not await shop.active(issued.refresh_token)
    with pytest.raises(InvalidCredentials):
        await shop.login("ann@shop.example")
    assert (await shop.login("ann@shop.example", NEW_PASSWORD)).access_token
    with pytest.raises(InvalidGrant):  # single use
        await password_reset.update(
            shop.core, T, token, "yet another passphrase", await shop.anonymous()
        )


async def test_a_reset_for_an_unknown_email_answers_alike_and_sends_nothing(shop: Shop) -> None:
    await password_reset.request(shop.core, T, "nobody@shop.example", await shop.anonymous())
    assert await shop.mailed() == []


async def test_a_reset_token_expires_and_a_refused_update_changes_nothing(shop: Shop) -> None:
    await shop.sign_up("ann@shop.example")
    session = await shop.login("ann@shop.example")
    await password_reset.request(shop.core, T, "ann@shop.example", await shop.anonymous())
    [token] = await shop.mailed()
    with pytest.raises(InvalidRequest, match="at least 8"):
        await password_reset.update(shop.core, T, token, "short", await shop.anonymous())
    shop.clock.advance(shop.core.settings.password_reset_ttl_seconds)
    with pytest.raises(InvalidGrant):
        await password_reset.update(shop.core, T, token, NEW_PASSWORD, await shop.anonymous())
    assert await shop.active(session.access_token)
    assert (await shop.login("ann@shop.example")).access_token


# --- e-mail change ---------------------------------------------------------------------------
async def test_an_email_change_mails_the_new_address_and_moves_the_login(shop: Shop) -> None:
    await shop.sign_up("ann@shop.example")
    session = await shop.login("ann@shop.example")
    await email_change.request(
        shop.core, T, session.access_token, "ann@shop.example", PASSWORD, "Ann.New@shop.example"
    )
    await shop.core.mail.settled()
    [message] = shop.mail.messages
    assert message.to == "ann.new@shop.example"
    [token] = await shop.mailed()
    assert (await shop.login("ann@shop.example")).access_token  # not yet
    await email_change.confirm(shop.core, T, token, await shop.anonymous())
    with pytest.raises(InvalidCredentials):
        await shop.login("ann@shop.example")
    assert (await shop.login("ann.new@shop.example")).access_token
    info = await introspection.introspect(shop.core, session.access_token, T)
    assert info.active and info.email == "ann.new@shop.example"
    with pytest.raises(InvalidGrant):
        await email_change.confirm(shop.core, T, token, await shop.anonymous())


async def test_an_email_change_needs_the_right_password_and_a_free_address(shop: Shop) -> None:
    await shop.sign_up("ann@shop.example")
    await shop.sign_up("bob@shop.example")
    ann = await shop.login("ann@shop.example")
    with pytest.raises(InvalidCredentials):
        await email_change.request(
            shop.core, T, ann.access_token, "ann@shop.example", "wrong guess!", "x@shop.example"
        )
    with pytest.raises(InvalidCredentials):  # bob's right credentials on ann's token
        await email_change.request(
            shop.core, T, ann.access_token, "bob@shop.example", PASSWORD, "x@shop.example"
        )
    assert await shop.mailed() == []
    await email_change.request(
        shop.core, T, ann.access_token, "ann@shop.example", PASSWORD, "bob@shop.example"
    )
    [token] = await shop.mailed()
    with pytest.raises(AlreadyExists):
        await email_change.confirm(shop.core, T, token, await shop.anonymous())
    assert (await shop.login("ann@shop.example")).access_token


async def test_a_reset_takes_the_same_store_steps_for_known_and_unknown_emails(
    shop: Shop,
) -> None:
    """Before the answer: the same store calls in the same order (the mail alone differs, and
    it is sent after the answer)."""
    await shop.sign_up("ann@shop.example")
    calls: list[str] = []
    store = shop.core.store

    class Recording:
        def __getattr__(self, name: str) -> object:
            calls.append(name)
            return getattr(store, name)

    recording = dataclasses.replace(shop.core, store=Recording())  # type: ignore[arg-type]
    seen = []
    for email in ("ann@shop.example", "nobody@shop.example"):
        token = await shop.anonymous()
        calls.clear()
        await password_reset.request(recording, T, email, token, client_address="10.0.0.2")
        seen.append(list(calls))
    assert seen[0] == seen[1]
    assert "save_account_link" in seen[0] and "find_customer" in seen[0]
    assert len(await shop.mailed()) == 1


async def test_an_opt_in_on_a_customers_session_is_refused_and_keeps_the_link(
    shop: Shop,
) -> None:
    await shop.sign_up("bob@shop.example")
    await opt_in(shop)
    await shop.sign_up("ann@shop.example")
    [link] = await shop.mailed()
    anon = await anonymous.issue(shop.core, T, "front")
    await customer_password.issue(shop.core, T, "bob@shop.example", PASSWORD, anon.access_token)
    with pytest.raises(InvalidGrant, match="belongs to a customer"):
        await signup.confirm(shop.core, T, link, anon.access_token)
    customer = await shop.core.store.find_customer(T, "ann@shop.example")
    assert customer is not None and not customer.active
    assert (await signup.confirm(shop.core, T, link, await shop.anonymous())).access_token
