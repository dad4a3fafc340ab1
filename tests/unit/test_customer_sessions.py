"""A customer's sessions (server/customer_sessions.py) against the in-memory store, with real
logins: the customer's own listing, pages and current flag; ending one, all, all but the current
one; another customer's session answered like an unknown one; the bearer checks; an admin's view
by email or id; a legal entity's sessions; and introspection seeing every ending at once."""

from __future__ import annotations

import dataclasses

import pytest

from server import admin, customer_sessions, introspection
from server.clock import ManualClock
from server.core import Core
from server.customer_sessions import SessionPage
from server.errors import AccessDenied, ExpiredToken, InvalidRequest, InvalidToken, NotFound
from server.grants import anonymous, customer_password, refresh
from server.records import ClientKind, IssuedTokens, SessionCursor
from server.settings import ConfigError, Settings
from tests.support.cores import START, memory_core

TENANT = "shop"
PASSWORD = "a long customer password"
ANN, BOB = "ann@shop.example", "bob@shop.example"


@dataclasses.dataclass
class Shop:
    core: Core
    storefront: str


@pytest.fixture
async def shop() -> Shop:
    core = await memory_core(sessions_page_size=3)
    await admin.create_tenant(core, TENANT)
    await admin.create_tenant(core, "other")
    client, _ = await admin.create_client(core, TENANT, ClientKind.STOREFRONT, ())
    await admin.create_customer(core, TENANT, ANN, PASSWORD, (), ("le-1",))
    await admin.create_customer(core, TENANT, BOB, PASSWORD, (), ("le-1", "le-2"))
    return Shop(core, client.client_id)


async def login(shop: Shop, email: str = ANN) -> IssuedTokens:
    """A new session: an anonymous login, then the customer's, one second later."""
    visitor = await anonymous.issue(shop.core, TENANT, shop.storefront)
    clock(shop).advance(1)
    return await customer_password.issue(shop.core, TENANT, email, PASSWORD, visitor.access_token)


def clock(shop: Shop) -> ManualClock:
    assert isinstance(shop.core.clock, ManualClock)
    return shop.core.clock


async def active(shop: Shop, token: str) -> bool:
    return (await introspection.introspect(shop.core, token)).active


async def own_ids(shop: Shop, token: str) -> list[str]:
    page = await customer_sessions.list_own(shop.core, TENANT, token, page_size=100)
    return [s.session_id for s in page.sessions]


async def test_a_customer_lists_its_own_sessions_newest_first_a_page_at_a_time(
    shop: Shop,
) -> None:
    mine = [await login(shop) for _ in range(4)]
    theirs = await login(shop, BOB)
    me = mine[1]
    first = await customer_sessions.list_own(shop.core, TENANT, me.access_token)
    assert [s.session_id for s in first.sessions] == [t.session_id for t in mine[::-1][:3]]
    assert first.current_session_id == me.session_id and first.next_page_token
    newest = first.sessions[0]
    assert newest.created_at == START + 3  # its anonymous login, continued by the customer's
    assert newest.updated_at == START + 4
    assert newest.expires_at == START + 4 + shop.core.settings.customer_refresh_ttl
    assert newest.legal_entity_id == "le-1"  # Ann's only one
    assert newest.client_id == shop.storefront
    rest = await customer_sessions.list_own(
        shop.core, TENANT, me.access_token, page_token=first.next_page_token
    )
    assert [s.session_id for s in rest.sessions] == [mine[0].session_id]
    assert rest.next_page_token == ""
    assert theirs.session_id not in await own_ids(shop, me.access_token)
    two = await customer_sessions.list_own(shop.core, TENANT, me.access_token, page_size=2)
    assert len(two.sessions) == 2
    many = await customer_sessions.list_own(shop.core, TENANT, me.access_token, page_size=1000)
    assert len(many.sessions) == 3  # the setting is the most a page holds


async def test_a_refresh_is_the_sessions_last_refresh(shop: Shop) -> None:
    tokens = await login(shop)
    clock(shop).advance(100)
    renewed = await refresh.refresh(
        shop.core, TENANT, tokens.refresh_token, access_token=tokens.access_token
    )
    (listed,) = (await customer_sessions.list_own(shop.core, TENANT, renewed.access_token)).sessions
    assert listed.updated_at == clock(shop).now()
    assert listed.expires_at == int(clock(shop).now()) + shop.core.settings.customer_refresh_ttl


async def test_ending_one_of_its_own_sessions_is_seen_by_introspection_at_once(
    shop: Shop,
) -> None:
    here, there = await login(shop), await login(shop)
    await customer_sessions.end_own(shop.core, TENANT, here.access_token, there.session_id)
    for token in (there.access_token, there.refresh_token, there.saas_token):
        assert not await active(shop, token)
    assert await active(shop, here.access_token)
    assert await own_ids(shop, here.access_token) == [here.session_id]
    with pytest.raises(NotFound):  # ended already: no longer an active session
        await customer_sessions.end_own(shop.core, TENANT, here.access_token, there.session_id)
    # Its own current session too: that is a logout.
    await customer_sessions.end_own(shop.core, TENANT, here.access_token, here.session_id)
    assert not await active(shop, here.access_token)


async def test_another_customers_session_is_answered_like_an_unknown_one(shop: Shop) -> None:
    ann, bob = await login(shop), await login(shop, BOB)
    refusals = []
    for session_id in (bob.session_id, "no-such-session"):
        with pytest.raises(NotFound) as refused:
            await customer_sessions.end_own(shop.core, TENANT, ann.access_token, session_id)
        refusals.append((refused.value.description, refused.value.field))
    assert refusals[0] == refusals[1] == (customer_sessions.NO_SUCH_SESSION, "session_id")
    assert await active(shop, bob.access_token)
    assert await own_ids(shop, bob.access_token) == [bob.session_id]


async def test_log_out_everywhere_else_then_everywhere(shop: Shop) -> None:
    sessions = [await login(shop) for _ in range(3)]
    bob = await login(shop, BOB)
    me = sessions[0]
    ended = await customer_sessions.end_all_own(
        shop.core, TENANT, me.access_token, keep_current=True
    )
    assert ended == 2
    assert [await active(shop, s.access_token) for s in sessions] == [True, False, False]
    assert await own_ids(shop, me.access_token) == [me.session_id]
    assert await customer_sessions.end_all_own(shop.core, TENANT, me.access_token) == 1
    assert not await active(shop, me.access_token)
    with pytest.raises(InvalidToken):
        await customer_sessions.list_own(shop.core, TENANT, me.access_token)
    assert await active(shop, bob.access_token)


async def test_only_an_active_customer_access_token_of_the_tenant_is_a_bearer(
    shop: Shop,
) -> None:
    customer = await login(shop)
    visitor = await anonymous.issue(shop.core, TENANT, shop.storefront)
    with pytest.raises(AccessDenied):
        await customer_sessions.list_own(shop.core, TENANT, visitor.access_token)
    for token in ("", "not-a-token", customer.refresh_token, customer.saas_token):
        with pytest.raises(InvalidToken) as refused:
            await customer_sessions.end_all_own(shop.core, TENANT, token)
        assert not isinstance(refused.value, ExpiredToken)
    with pytest.raises(InvalidToken):  # another tenant's path
        await customer_sessions.end_own(
            shop.core, "other", customer.access_token, customer.session_id
        )
    with pytest.raises(InvalidRequest):
        await customer_sessions.list_own(shop.core, "Not A Tenant", customer.access_token)
    assert await active(shop, customer.access_token)  # no refusal changed anything
    clock(shop).advance(shop.core.settings.customer_access_ttl)
    with pytest.raises(ExpiredToken):
        await customer_sessions.list_own(shop.core, TENANT, customer.access_token)
    clock(shop).advance(-1)
    assert await own_ids(shop, customer.access_token) == [customer.session_id]


@pytest.mark.parametrize(
    ("page_size", "page_token", "field"),
    [
        (-1, "", "page_size"),
        (0, "%%%", "page_token"),
        (0, "x" * 300, "page_token"),
        (0, "bm90LWEtY3Vyc29y", "page_token"),  # "not-a-cursor"
        (0, "MTIuYS9i", "page_token"),  # "12.a/b"
    ],
)
async def test_a_bad_page_is_a_clear_refusal(
    shop: Shop, page_size: int, page_token: str, field: str
) -> None:
    customer = await login(shop)
    with pytest.raises(InvalidRequest) as refused:
        await customer_sessions.list_own(
            shop.core, TENANT, customer.access_token, page_size=page_size, page_token=page_token
        )
    assert refused.value.field == field
    assert page_token[:20] not in refused.value.description or not page_token


async def test_an_admin_lists_and_ends_a_customers_sessions_by_email_or_id(shop: Shop) -> None:
    sessions = [await login(shop) for _ in range(2)]
    bob = await login(shop, BOB)
    ann = await shop.core.store.find_customer(TENANT, ANN)
    assert ann is not None
    by_email = await customer_sessions.list_of_customer(shop.core, TENANT, email=ANN.upper())
    by_id = await customer_sessions.list_of_customer(shop.core, TENANT, customer_id=ann.id)
    assert by_email == by_id and by_email.current_session_id == ""
    assert {s.session_id for s in by_id.sessions} == {s.session_id for s in sessions}

    with pytest.raises(NotFound):
        await customer_sessions.end_of_customer(shop.core, TENANT, bob.session_id, email=ANN)
    await customer_sessions.end_of_customer(shop.core, TENANT, sessions[0].session_id, email=ANN)
    assert not await active(shop, sessions[0].access_token)
    ended = await customer_sessions.end_all_of_customer(
        shop.core, TENANT, customer_id=ann.id, except_session_id=sessions[1].session_id
    )
    assert ended == 0
    assert await customer_sessions.end_all_of_customer(shop.core, TENANT, email=ANN) == 1
    assert not await active(shop, sessions[1].access_token)
    assert await active(shop, bob.access_token)


async def test_an_admin_names_a_customer_of_the_tenant_exactly_once(shop: Shop) -> None:
    ann = await shop.core.store.find_customer(TENANT, ANN)
    assert ann is not None
    with pytest.raises(InvalidRequest):
        await customer_sessions.list_of_customer(shop.core, TENANT)
    with pytest.raises(InvalidRequest):
        await customer_sessions.list_of_customer(shop.core, TENANT, email=ANN, customer_id=ann.id)
    for tenant, email, customer_id in (
        (TENANT, "nobody@shop.example", ""),
        ("other", ANN, ""),
        ("other", "", ann.id),
    ):
        with pytest.raises(NotFound):
            await customer_sessions.end_all_of_customer(
                shop.core, tenant, email=email, customer_id=customer_id
            )


async def test_ending_a_legal_entitys_sessions(shop: Shop) -> None:
    ann = await login(shop)  # le-1, her only one
    bob = await login(shop, BOB)  # two entities: none chosen at login
    switched = await refresh.refresh(
        shop.core, TENANT, bob.refresh_token, access_token=bob.access_token, legal_entity_id="le-2"
    )
    assert await customer_sessions.end_all_of_legal_entity(shop.core, TENANT, "le-1") == 1
    assert not await active(shop, ann.access_token)
    assert await active(shop, switched.access_token)
    assert await customer_sessions.end_all_of_legal_entity(shop.core, TENANT, "le-2") == 1
    assert not await active(shop, switched.saas_token)
    assert await customer_sessions.end_all_of_legal_entity(shop.core, TENANT, "le-9") == 0
    with pytest.raises(NotFound):
        await customer_sessions.end_all_of_legal_entity(shop.core, "nosuch", "le-1")
    with pytest.raises(InvalidRequest):
        await customer_sessions.end_all_of_legal_entity(shop.core, TENANT, "le 1")


@pytest.mark.parametrize("size", [0, -1, customer_sessions.MAX_PAGE_SIZE + 1])
def test_a_page_size_setting_out_of_range_is_refused_at_start(size: int) -> None:
    with pytest.raises(ConfigError, match="TOKENSERVICE_SESSIONS_PAGE_SIZE"):
        customer_sessions.check_settings(Settings(sessions_page_size=size))


def test_page_tokens_round_trip() -> None:
    page = SessionPage(())
    assert page.next_page_token == ""
    cursor = SessionCursor(START, "0b9c-uuid")
    token = customer_sessions.encode_page_token(cursor)
    assert customer_sessions.decode_page_token(token) == cursor
    assert customer_sessions.decode_page_token("") is None
