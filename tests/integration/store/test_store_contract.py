"""One contract suite for every TokenStore: MemoryStore, SqlStore on a SQLite file (migrated by
alembic), SqlStore on in-memory SQLite, SqlStore on a SQLite file behind the in-process caches, and
SqlStore on a fresh PostgreSQL database (marked
postgres). Then SQLite-only tests: concurrency, WAL, migrations, and a locked database reported as
StoreUnavailable. Last, the janitor's purge of expired rows, on every store."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, insert, update
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from server.errors import AlreadyExists, InvalidRequest, NotFound, StoreUnavailable
from server.records import (
    AccountLink,
    AccountPolicy,
    ClientKind,
    ClientRecord,
    CustomerRecord,
    CustomerSession,
    FeedBounds,
    IdentityProviderRecord,
    KeyStatus,
    LinkPurpose,
    LoginFailures,
    PurgeReport,
    RefreshOutcome,
    SessionContext,
    SessionCursor,
    SessionUpdate,
    SigningKeyRecord,
    TenantRecord,
    TokenKind,
    TokenRecord,
    TokenView,
)
from server.settings import Settings
from server.store import statements
from server.store.cached import cached
from server.store.factory import open_store
from server.store.memory import MemoryStore
from server.store.migrate import upgrade
from server.store.outcomes import MAX_PURGE_BATCH
from server.store.protocol import TokenStore
from server.store.schema import metadata, sessions, tokens
from server.store.sql import SqlStore
from tests.support.databases import sqlite_url
from tests.support.narrow import not_none
from tests.support.postgres import PostgresServer
from tests.support.records import ACCESS, ANON, CUST, NOW, session, token

GRACE = 10


@pytest.fixture(
    params=[
        "memory",
        "sqlite-file",
        "sqlite-memory",
        "cached-sqlite-file",
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TokenStore]:
    s: TokenStore
    postgres_url = None
    if request.param == "memory":
        s = MemoryStore()
    elif request.param in ("sqlite-file", "cached-sqlite-file"):
        url = sqlite_url(tmp_path / "store.db")
        await upgrade(url)
        s = await SqlStore.open(url)
        if request.param == "cached-sqlite-file":  # the caches must keep the whole contract
            s = cached(s, token_capacity=1000, max_age=60, client_capacity=100)
    elif request.param == "postgres":
        server: PostgresServer = request.getfixturevalue("postgres_server")
        postgres_url = await server.create()
        s = await SqlStore.open(postgres_url)
    else:
        s = await SqlStore.open("sqlite+aiosqlite:///:memory:")
    try:
        yield s
    finally:
        await s.close()
        if postgres_url is not None:
            await server.drop(postgres_url)


async def start_session(store: TokenStore, *extra: TokenRecord) -> None:
    """Session s1 with an anonymous access token `a1` and refresh token `r1`."""
    await store.save_tokens([token("a1", use=ACCESS), token("r1"), *extra], session())


async def snapshot(store: TokenStore, digests: list[str]) -> tuple[object, ...]:
    views = [await store.find_token(d) for d in digests]
    return (await store.get_session("s1"), *views)


async def do_refresh(
    store: TokenStore,
    new: list[TokenRecord],
    *,
    presented: str = "r1",
    now: int = NOW,
    rotate: bool = True,
    update: SessionUpdate | None = None,
) -> RefreshOutcome:
    return await store.refresh(
        presented,
        "s1",
        new,
        update or SessionUpdate(updated_at=now),
        now=now,
        grace_seconds=GRACE,
        rotate=rotate,
    )


def new_pair(tag: str) -> list[TokenRecord]:
    return [token(f"a-{tag}", use=ACCESS), token(f"r-{tag}")]


# --- provisioning -------------------------------------------------------------------------------
async def test_tenants(store: TokenStore) -> None:
    await store.create_tenant(TenantRecord("zeta", NOW))
    await store.create_tenant(TenantRecord("demo", NOW + 1))
    assert await store.get_tenant("demo") == TenantRecord("demo", NOW + 1)
    assert await store.get_tenant("nope") is None
    assert [t.name for t in await store.list_tenants()] == ["demo", "zeta"]
    with pytest.raises(AlreadyExists, match="tenant 'demo' already exists"):
        await store.create_tenant(TenantRecord("demo", NOW + 2))
    assert await store.get_tenant("demo") == TenantRecord("demo", NOW + 1)


async def test_tenant_allowed_origins_are_replaced_whole(store: TokenStore) -> None:
    shop = ("https://shop.example", "http://127.0.0.1:8081")
    await store.create_tenant(TenantRecord("demo", NOW, allowed_origins=shop[:1]))
    await store.create_tenant(TenantRecord("zeta", NOW))
    assert (await store.get_tenant("demo")) == TenantRecord("demo", NOW, shop[:1])
    assert await store.set_allowed_origins("demo", shop) == TenantRecord("demo", NOW, shop)
    assert await store.get_tenant("demo") == TenantRecord("demo", NOW, shop)
    assert [t.allowed_origins for t in await store.list_tenants()] == [shop, ()]
    assert await store.set_allowed_origins("demo", ()) == TenantRecord("demo", NOW)
    assert await store.get_tenant("demo") == TenantRecord("demo", NOW)
    assert await store.set_allowed_origins("nope", shop) is None
    assert await store.get_tenant("nope") is None


async def test_identity_providers_are_replaced_whole_and_deleted(store: TokenStore) -> None:
    keycloak = IdentityProviderRecord(
        tenant="demo",
        name="default",
        issuer="https://idp.example/realms/shop",
        jwks_uri="https://idp.example/realms/shop/certs",
        audience="storefront",
        created_at=NOW,
        customer_claim="sub",
        create_customers=True,
        customer_scopes=("customer.read", "order.read"),
        algorithms=("RS256",),
        client_id="shop",
        client_secret="s3cret value",
        token_endpoint="https://idp.example/realms/shop/token",
    )
    with pytest.raises(NotFound, match="tenant 'demo' does not exist"):
        await store.put_identity_provider(keycloak)
    assert await store.get_identity_provider("demo", "default") is None
    await store.create_tenant(TenantRecord("demo", NOW))
    await store.create_tenant(TenantRecord("other", NOW))
    await store.put_identity_provider(keycloak)
    site = dataclasses.replace(keycloak, name="site_PL", client_id="", client_secret="")
    await store.put_identity_provider(site)
    await store.put_identity_provider(dataclasses.replace(keycloak, tenant="other"))
    assert await store.get_identity_provider("demo", "default") == keycloak
    changed = dataclasses.replace(
        keycloak, audience="shop", create_customers=False, created_at=NOW + 5
    )
    await store.put_identity_provider(changed)
    assert await store.get_identity_provider("demo", "default") == changed
    assert await store.list_identity_providers("demo") == [changed, site]
    assert await store.delete_identity_provider("demo", "default") is True
    assert await store.delete_identity_provider("demo", "default") is False
    assert await store.list_identity_providers("demo") == [site]
    assert await store.get_identity_provider("other", "default") == dataclasses.replace(
        keycloak, tenant="other"
    )
    assert "s3cret" not in repr(keycloak)


async def test_clients(store: TokenStore) -> None:
    service = ClientRecord(
        client_id="svc",
        tenant="demo",
        kind=ClientKind.SERVICE,
        name="Back office",
        scopes=("orders.read", "orders.write"),
        secret_digest="d" * 64,
        created_at=NOW,
        access_token_ttl=600,
        refresh_token_ttl=None,
        refresh_rotation_disabled=True,
    )
    with pytest.raises(NotFound, match="tenant 'demo' does not exist"):
        await store.create_client(service)
    await store.create_tenant(TenantRecord("demo", NOW))
    await store.create_tenant(TenantRecord("other", NOW))
    web = ClientRecord("web", "demo", ClientKind.STOREFRONT, "Shop", (), None, NOW)
    elsewhere = dataclasses.replace(web, client_id="web2", tenant="other")
    for client in (web, service, elsewhere):
        await store.create_client(client)
    assert await store.get_client("svc") == service
    assert await store.get_client("web") == web
    assert await store.get_client("nope") is None
    assert await store.list_clients("demo") == [service, web]
    with pytest.raises(AlreadyExists, match="client 'svc' already exists") as caught:
        await store.create_client(dataclasses.replace(service, secret_digest="e" * 64))
    assert "e" * 64 not in str(caught.value)
    assert await store.get_client("svc") == service


async def test_customers(store: TokenStore) -> None:
    for name in ("demo", "other"):
        await store.create_tenant(TenantRecord(name, NOW))
    alice = CustomerRecord(
        "c1", "demo", "alice@example.com", "$argon2id$secret", ("orders",), ("le1", "le2"), NOW
    )
    await store.create_customer(alice)
    assert await store.get_customer("c1") == alice
    assert await store.find_customer("demo", "Alice@Example.COM") == alice
    assert await store.find_customer("other", "alice@example.com") is None
    assert await store.get_customer("c2") is None
    duplicate = dataclasses.replace(alice, id="c2", email="ALICE@example.com")
    message = "customer with this email already exists in tenant 'demo'"
    with pytest.raises(AlreadyExists, match=message) as caught:
        await store.create_customer(duplicate)
    assert "argon2" not in str(caught.value)
    assert await store.get_customer("c2") is None
    await store.create_customer(dataclasses.replace(alice, id="c3", tenant="other"))
    assert not_none(await store.find_customer("other", "alice@example.com")).id == "c3"
    with pytest.raises(NotFound):
        await store.create_customer(dataclasses.replace(alice, id="c4", tenant="ghost"))


# --- customer accounts (server/accounts/) ------------------------------------------------------
OPT_IN, RESET, EMAIL = LinkPurpose.OPT_IN, LinkPurpose.PASSWORD_RESET, LinkPurpose.EMAIL_CHANGE


def link(
    digest: str, purpose: LinkPurpose, customer_id: str = "c1", **extra: object
) -> AccountLink:
    fields: dict[str, object] = {"tenant": "demo", "created_at": NOW, "expires_at": NOW + 600}
    fields.update(extra)
    return AccountLink(digest, purpose, customer_id=customer_id, **fields)  # type: ignore[arg-type]


async def account_store(store: TokenStore, *, active: bool = True) -> CustomerRecord:
    """Tenants demo and other, customer c1 (alice@example.com, hash h1) of demo."""
    for name in ("demo", "other"):
        await store.create_tenant(TenantRecord(name, NOW))
    alice = dataclasses.replace(customer("c1", "demo", "alice@example.com", "h1"), active=active)
    await store.create_customer(alice)
    return alice


async def account_session(store: TokenStore, session_id: str, customer_id: str = "c1") -> None:
    """A session of the customer with an access and a refresh token named after it."""
    await store.save_tokens(
        [
            token(
                f"{session_id}-a", session=session_id, kind=CUST, use=ACCESS, customer=customer_id
            ),
            token(f"{session_id}-r", session=session_id, kind=CUST, customer=customer_id),
        ],
        session(session_id, customer_id=customer_id),
    )


async def revoked(store: TokenStore, *digests: str) -> list[bool]:
    views = [await store.find_token(d) for d in digests]
    return [view is not None and view.token.revoked_at is not None for view in views]


async def test_account_policy_is_replaced_whole(store: TokenStore) -> None:
    await account_store(store)
    assert await store.get_account_policy("demo") is None
    strict = AccountPolicy("demo", double_opt_in=True, password_min_length=12)
    await store.set_account_policy(strict)
    assert await store.get_account_policy("demo") == strict
    await store.set_account_policy(AccountPolicy("demo", reject_common_passwords=False))
    assert await store.get_account_policy("demo") == AccountPolicy(
        "demo", reject_common_passwords=False
    )
    assert await store.get_account_policy("other") is None
    with pytest.raises(NotFound):
        await store.set_account_policy(AccountPolicy("ghost"))


async def test_an_opt_in_link_activates_once_and_a_new_link_replaces_the_old(
    store: TokenStore,
) -> None:
    await account_store(store, active=False)
    await store.save_account_link(link("l1", OPT_IN))
    await store.save_account_link(link("l2", OPT_IN))  # a resend: l1 stops working
    await store.save_account_link(link("r1", RESET))  # another purpose stays
    assert await store.activate_customer("demo", "l1", NOW) is None
    assert not (await store.get_customer("c1")).active  # type: ignore[union-attr]
    activated = await store.activate_customer("demo", "l2", NOW)
    assert activated is not None and activated.active
    assert (await store.get_customer("c1")).active  # type: ignore[union-attr]
    assert await store.activate_customer("demo", "l2", NOW) is None  # used
    assert await store.purge_account_links(NOW + 601) == 1  # r1 was still there


@pytest.mark.parametrize("case", ["other tenant", "other purpose", "expired", "unknown"])
async def test_a_link_that_does_not_fit_changes_nothing(store: TokenStore, case: str) -> None:
    await account_store(store, active=False)
    await account_session(store, "s1")
    await store.save_account_link(link("l1", OPT_IN))
    await store.save_account_link(link("r1", RESET))
    await store.save_account_link(link("e1", EMAIL, new_email="new@example.com"))
    tenant, now = "demo", NOW
    digests = {"l1": "l1", "r1": "r1", "e1": "e1"}
    if case == "other tenant":
        tenant = "other"
    elif case == "other purpose":
        digests = {"l1": "r1", "r1": "e1", "e1": "l1"}
    elif case == "expired":
        now = NOW + 600
    else:
        digests = {"l1": "x", "r1": "y", "e1": "z"}
    before = (await store.get_customer("c1"), await revoked(store, "s1-a", "s1-r"))
    assert await store.activate_customer(tenant, digests["l1"], now) is None
    assert await store.reset_password(tenant, digests["r1"], "h2", now) is None
    assert await store.change_email(tenant, digests["e1"], now) is None
    assert (await store.get_customer("c1"), await revoked(store, "s1-a", "s1-r")) == before
    # Every link is still there, usable once as what it is.
    assert await store.activate_customer("demo", "l1", NOW) is not None
    assert await store.reset_password("demo", "r1", "h2", NOW) == ["s1"]
    assert await store.change_email("demo", "e1", NOW) is not None


async def test_reset_password_sets_the_hash_and_ends_every_session(store: TokenStore) -> None:
    await account_store(store)
    await store.create_customer(customer("c2", "demo", "bob@example.com", "hb"))
    for session_id in ("s1", "s2"):
        await account_session(store, session_id)
    await account_session(store, "s3", "c2")
    await store.save_account_link(link("r1", RESET))
    ended = await store.reset_password("demo", "r1", "h2", NOW)
    assert sorted(ended or []) == ["s1", "s2"]
    assert (await store.get_customer("c1")).password_hash == "h2"  # type: ignore[union-attr]
    assert await revoked(store, "s1-a", "s1-r", "s2-a", "s2-r") == [True] * 4
    assert await revoked(store, "s3-a", "s3-r") == [False, False]  # another customer's
    assert (await store.get_session("s1")).revoked_at == NOW  # type: ignore[union-attr]
    assert await store.reset_password("demo", "r1", "h3", NOW) is None  # used


async def test_change_password_keeps_one_session_and_needs_the_expected_hash(
    store: TokenStore,
) -> None:
    await account_store(store)
    for session_id in ("s1", "s2", "s3"):
        await account_session(store, session_id)
    before = await revoked(store, "s1-a", "s2-a", "s3-a")
    assert await store.change_password("c1", "not-h1", "h2", "s1", NOW) is None
    assert (await store.get_customer("c1")).password_hash == "h1"  # type: ignore[union-attr]
    assert await revoked(store, "s1-a", "s2-a", "s3-a") == before
    ended = await store.change_password("c1", "h1", "h2", "s1", NOW)
    assert sorted(ended or []) == ["s2", "s3"]
    assert await revoked(store, "s1-a", "s1-r") == [False, False]
    assert await revoked(store, "s2-a", "s2-r", "s3-a", "s3-r") == [True] * 4
    assert (await store.get_customer("c1")).password_hash == "h2"  # type: ignore[union-attr]
    assert await store.change_password("ghost", "h1", "h2", "s1", NOW) is None


async def test_change_email_moves_the_login_and_a_taken_email_keeps_the_link(
    store: TokenStore,
) -> None:
    await account_store(store)
    await store.create_customer(customer("c2", "demo", "bob@example.com", "hb"))
    await store.save_account_link(link("e1", EMAIL, new_email="bob@example.com"))
    with pytest.raises(AlreadyExists):
        await store.change_email("demo", "e1", NOW)
    assert (await store.get_customer("c1")).email == "alice@example.com"  # type: ignore[union-attr]
    await store.save_account_link(link("e2", EMAIL, new_email="alice.new@example.com"))
    moved = await store.change_email("demo", "e2", NOW)
    assert moved is not None and moved.email == "alice.new@example.com"
    assert await store.find_customer("demo", "alice@example.com") is None
    assert (await store.find_customer("demo", "Alice.New@example.com")) == moved
    assert await store.change_email("demo", "e2", NOW) is None


async def test_concurrent_uses_of_one_link_have_one_winner(store: TokenStore) -> None:
    await account_store(store)
    await account_session(store, "s1")
    await store.save_account_link(link("r1", RESET))
    results = await asyncio.gather(
        *(store.reset_password("demo", "r1", f"h-{i}", NOW) for i in range(4))
    )
    assert sorted(r is None for r in results) == [False, True, True, True]


async def test_a_link_of_no_customer_is_never_used(store: TokenStore) -> None:
    """What a reset for an unknown e-mail stores (password_reset.NO_CUSTOMER)."""
    await account_store(store)
    await store.save_account_link(link("d1", RESET, customer_id=""))
    await store.save_account_link(link("d2", RESET, customer_id=""))  # replaces d1
    assert await store.reset_password("demo", "d2", "h2", NOW) is None
    assert await store.purge_account_links(NOW + 601) == 1  # d2 alone, still there


async def test_purge_account_links_deletes_only_expired_ones(store: TokenStore) -> None:
    await account_store(store)
    await store.save_account_link(link("l1", OPT_IN, expires_at=NOW))
    await store.save_account_link(link("r1", RESET, expires_at=NOW + 1))
    assert await store.purge_account_links(NOW) == 1
    assert await store.purge_account_links(NOW) == 0
    assert await store.reset_password("demo", "r1", "h2", NOW) == []


# --- customer password hashes (server/passwords.py) --------------------------------------------
def customer(customer_id: str, tenant: str, email: str, password_hash: str) -> CustomerRecord:
    return CustomerRecord(customer_id, tenant, email, password_hash, (), (), NOW)


async def test_password_hash_sample(store: TokenStore) -> None:
    for name in ("demo", "other", "empty"):
        await store.create_tenant(TenantRecord(name, NOW))
    for number, email in enumerate(["carol@x.example", "alice@x.example", "bob@x.example"]):
        await store.create_customer(customer(f"c{number}", "demo", email, f"hash-{email[0]}"))
    await store.create_customer(customer("c9", "other", "aaron@x.example", "hash-other"))
    assert await store.password_hash_sample("demo", 10) == ["hash-a", "hash-b", "hash-c"]
    assert await store.password_hash_sample("demo", 2) == ["hash-a", "hash-b"]
    assert await store.password_hash_sample("empty", 10) == []
    assert await store.password_hash_sample("ghost", 10) == []


async def test_replace_password_hash_only_replaces_the_expected_hash(store: TokenStore) -> None:
    await store.create_tenant(TenantRecord("demo", NOW))
    await store.create_customer(customer("c1", "demo", "ann@x.example", "old"))
    await store.create_customer(customer("c2", "demo", "bob@x.example", "old"))
    assert not await store.replace_password_hash("c1", "something else", "new")
    assert not await store.replace_password_hash("ghost", "old", "new")
    assert not_none(await store.get_customer("c1")).password_hash == "old"
    assert await store.replace_password_hash("c1", "old", "new")
    assert not_none(await store.get_customer("c1")).password_hash == "new"
    assert not_none(await store.get_customer("c2")).password_hash == "old"
    found = await store.find_customer("demo", "ann@x.example")
    assert found is not None and found.password_hash == "new"


async def test_concurrent_password_hash_replacements_have_one_winner(store: TokenStore) -> None:
    await store.create_tenant(TenantRecord("demo", NOW))
    await store.create_customer(customer("c1", "demo", "ann@x.example", "old"))
    results = await asyncio.gather(
        *(store.replace_password_hash("c1", "old", f"new-{n}") for n in range(8))
    )
    assert sorted(results) == [False] * 7 + [True]
    winner = f"new-{results.index(True)}"
    assert not_none(await store.get_customer("c1")).password_hash == winner


# --- tokens and sessions ------------------------------------------------------------------------
async def test_lookups_at_once_each_get_their_own_token(store: TokenStore) -> None:
    """Many lookups in flight together (on PostgreSQL they share statements: coalesced_reads.py)
    each answer for their own digest: found, missing, or asked twice."""
    saved = [token(f"t{n}", kind=TokenKind.SERVICE, use=ACCESS, session=None) for n in range(20)]
    await store.save_tokens(saved)
    digests = [f"t{n}" for n in range(20)] + ["missing", "t3", "t3", "also-missing"]
    views = await asyncio.gather(*(store.find_token(digest) for digest in digests))
    expected = [TokenView(record) for record in saved]
    assert views == [*expected, None, expected[3], expected[3], None]


async def test_save_and_find_tokens(store: TokenStore) -> None:
    await store.create_tenant(TenantRecord("demo", NOW))
    await store.create_customer(
        CustomerRecord("c1", "demo", "bob@example.com", "h", (), ("le1",), NOW)
    )
    await start_session(store)
    assert await store.get_session("s1") == session()
    assert await store.find_token("r1") == TokenView(token("r1"))
    assert await store.find_token("nope") is None
    customer_token = token("c-a", kind=CUST, use=ACCESS, customer="c1", legal_entity_id="le1")
    service_token = token("svc", kind=TokenKind.SERVICE, use=ACCESS, session=None)
    await store.save_tokens([customer_token, service_token])
    assert await store.find_token("c-a") == TokenView(customer_token, "bob@example.com")
    assert await store.find_token("svc") == TokenView(service_token, None)
    # One transaction: a duplicate token leaves the new session unsaved too.
    with pytest.raises(AlreadyExists):
        await store.save_tokens([token("fresh", session="s2"), token("r1")], session("s2"))
    assert await store.get_session("s2") is None
    assert await store.find_token("fresh") is None
    with pytest.raises(AlreadyExists):
        await store.save_tokens([], session("s1"))


async def test_refresh_rotated_updates_session(store: TokenStore) -> None:
    await start_session(store)
    change = SessionUpdate(
        updated_at=NOW, context=SessionContext(currency="USD"), legal_entity_id="le9"
    )
    assert await do_refresh(store, new_pair("1"), update=change) is RefreshOutcome.ROTATED
    presented = not_none(await store.find_token("r1")).token
    assert presented.rotated_at == NOW
    assert presented.revoked_at is None
    assert await store.find_token("r-1") == TokenView(token("r-1"))
    assert await store.find_token("a-1") == TokenView(token("a-1", use=ACCESS))
    after = await store.get_session("s1")
    assert after == dataclasses.replace(
        session(),
        updated_at=NOW,
        context=SessionContext(currency="USD", site_code="main", language="de"),
        legal_entity_id="le9",
    )


async def test_refresh_grace_then_reuse(store: TokenStore) -> None:
    await start_session(store)
    assert await do_refresh(store, new_pair("1")) is RefreshOutcome.ROTATED
    # Exactly grace_seconds later the rotated token still works, and changes nothing: neither
    # tokens (the winner saved the successors; the grant answers with them) nor the session.
    digests = ["a1", "r1", "a-1", "r-1"]
    before = await snapshot(store, digests)
    change = SessionUpdate(NOW + GRACE, SessionContext(currency="USD"), legal_entity_id="le9")
    outcome = await do_refresh(store, new_pair("2"), now=NOW + GRACE, update=change)
    assert outcome is RefreshOutcome.GRACE
    assert await snapshot(store, digests) == before
    assert await store.find_token("r-2") is None and await store.find_token("a-2") is None
    # The winner's very records again (what a rotating grant passes): no duplicate refused.
    outcome = await do_refresh(store, new_pair("1"), now=NOW + GRACE, update=change)
    assert outcome is RefreshOutcome.GRACE
    assert await snapshot(store, digests) == before
    # ... one second after that it is reuse: the whole session is revoked.
    assert await do_refresh(store, new_pair("3"), now=NOW + GRACE + 1) is RefreshOutcome.REUSED
    assert await store.find_token("r-3") is None
    assert await store.find_token("a-3") is None
    for digest in ("a1", "r1", "a-1", "r-1"):
        view = await store.find_token(digest)
        assert view is not None
        assert view.token.revoked_at == NOW + GRACE + 1, digest
    assert not_none(await store.get_session("s1")).revoked_at == NOW + GRACE + 1
    # Afterwards every token of the session is dead, the newest included.
    assert await do_refresh(store, new_pair("4"), presented="r-1") is RefreshOutcome.INVALID


async def test_refresh_kept(store: TokenStore) -> None:
    await start_session(store)
    assert await do_refresh(store, new_pair("1"), rotate=False) is RefreshOutcome.KEPT
    assert await do_refresh(store, new_pair("2"), rotate=False) is RefreshOutcome.KEPT
    presented = not_none(await store.find_token("r1")).token
    assert presented.rotated_at is None
    assert presented.revoked_at is None
    assert await store.find_token("r-2") is not None


@pytest.mark.parametrize("rotate", [True, False])
@pytest.mark.parametrize(
    "case", ["revoked-token", "expired-token", "revoked-session", "unknown", "access", "other"]
)
async def test_refresh_invalid_changes_nothing(store: TokenStore, case: str, rotate: bool) -> None:
    extra = [
        token("r-revoked", revoked_at=NOW - 1),
        token("r-expired", expires_at=NOW),
        token("r-foreign", session="s2"),
    ]
    await start_session(store, *extra)
    await store.save_tokens([token("r-s2", session="s2")], session("s2"))
    presented = {
        "revoked-token": "r-revoked",
        "expired-token": "r-expired",
        "revoked-session": "r1",
        "unknown": "nope",
        "access": "a1",
        "other": "r-foreign",  # a refresh token of another session
    }[case]
    if case == "revoked-session":
        await store.revoke_session("s1", NOW - 1)
    digests = ["a1", "r1", "r-revoked", "r-expired", "r-foreign", "r-s2"]
    before = await snapshot(store, digests)
    change = SessionUpdate(updated_at=NOW, context=SessionContext(currency="USD"))
    outcome = await do_refresh(
        store, new_pair("1"), presented=presented, rotate=rotate, update=change
    )
    assert outcome is RefreshOutcome.INVALID
    assert await snapshot(store, digests) == before
    assert await store.find_token("r-1") is None


async def test_start_customer_session(store: TokenStore) -> None:
    await start_session(store, token("r-old", revoked_at=NOW - 5))
    customer_tokens = [
        token("ca", kind=CUST, use=ACCESS, customer="c1"),
        token("cr", kind=CUST, customer="c1"),
    ]
    assert await store.start_customer_session("s1", "c1", "le1", NOW, customer_tokens)
    bound = await store.get_session("s1")
    assert bound is not None
    assert (bound.customer_id, bound.legal_entity_id, bound.updated_at) == ("c1", "le1", NOW)
    assert bound.context == session().context
    # The anonymous tokens keep working (the storefront SDK refreshes its pre-login ones).
    assert not_none(await store.find_token("r1")).token.revoked_at is None
    assert not_none(await store.find_token("r-old")).token.revoked_at == NOW - 5
    assert not_none(await store.find_token("a1")).token.revoked_at is None
    assert await store.find_token("cr") == TokenView(customer_tokens[1])
    # The same customer may log in again; another customer may not take the session over.
    assert await store.start_customer_session("s1", "c1", None, NOW + 1, [token("ca2")])
    before = await snapshot(store, ["a1", "r1", "ca", "cr", "ca2"])
    assert not await store.start_customer_session("s1", "c2", None, NOW + 2, [token("x")])
    assert await store.find_token("x") is None
    assert await snapshot(store, ["a1", "r1", "ca", "cr", "ca2"]) == before
    assert not await store.start_customer_session("nope", "c1", None, NOW, [token("y")])
    await store.revoke_session("s1", NOW + 3)
    assert not await store.start_customer_session("s1", "c1", None, NOW + 4, [token("z")])
    assert await store.find_token("z") is None


async def test_start_customer_session_then_refresh_with_the_anonymous_refresh_token(
    store: TokenStore,
) -> None:
    """After login the pre-login anonymous refresh token still rotates on the session, with the
    grace window and reuse detection as before: its reuse revokes the customer's tokens too."""
    await start_session(store)
    customer_tokens = [
        token("ca", kind=CUST, use=ACCESS, customer="c1"),
        token("cr", kind=CUST, customer="c1"),
    ]
    assert await store.start_customer_session("s1", "c1", "le1", NOW, customer_tokens)
    assert await do_refresh(store, new_pair("1")) is RefreshOutcome.ROTATED
    bound = await store.get_session("s1")
    assert bound is not None and (bound.customer_id, bound.legal_entity_id) == ("c1", "le1")
    assert await do_refresh(store, new_pair("2"), now=NOW + GRACE) is RefreshOutcome.GRACE
    assert await store.find_token("r-2") is None
    assert await do_refresh(store, new_pair("3"), now=NOW + GRACE + 1) is RefreshOutcome.REUSED
    for digest in ("ca", "cr", "a-1", "r-1"):
        view = await store.find_token(digest)
        assert view is not None and view.token.revoked_at == NOW + GRACE + 1, digest
    assert not_none(await store.get_session("s1")).revoked_at == NOW + GRACE + 1


async def test_start_customer_session_strict_revokes_the_anonymous_refresh_tokens(
    store: TokenStore,
) -> None:
    await start_session(store, token("r-old", revoked_at=NOW - 5))
    customer_tokens = [token("cr", kind=CUST, customer="c1")]
    assert await store.start_customer_session(
        "s1", "c1", None, NOW, customer_tokens, revoke_anonymous_refresh=True
    )
    assert not_none(await store.find_token("r1")).token.revoked_at == NOW
    assert not_none(await store.find_token("r-old")).token.revoked_at == NOW - 5
    assert not_none(await store.find_token("a1")).token.revoked_at is None
    assert not_none(await store.find_token("cr")).token.revoked_at is None
    assert await do_refresh(store, new_pair("1")) is RefreshOutcome.INVALID


async def test_continue_anonymous_session_after_login(store: TokenStore) -> None:
    await start_session(store)
    assert await store.start_customer_session("s1", "c1", "le1", NOW - 1, [])
    change = SessionUpdate(updated_at=NOW, context=SessionContext(currency="USD"))
    new = token("a-new", use=ACCESS)
    assert await store.continue_anonymous_session("a1", "s1", [new], change, now=NOW)
    assert await store.find_token("a-new") == TokenView(new)
    after = await store.get_session("s1")
    assert after is not None and (after.customer_id, after.legal_entity_id) == ("c1", "le1")
    assert after.context.currency == "USD"


async def test_continue_anonymous_session(store: TokenStore) -> None:
    await start_session(store)
    change = SessionUpdate(updated_at=NOW, context=SessionContext(currency="USD"))
    new = token("a-new", use=ACCESS)
    assert await store.continue_anonymous_session("a1", "s1", [new], change, now=NOW)
    assert await store.find_token("a-new") == TokenView(new)
    after = await store.get_session("s1")
    assert after is not None and after.updated_at == NOW
    assert after.context == SessionContext(currency="USD", site_code="main", language="de")
    # The presented access token stays as it was (legacy clients may present it again).
    assert not_none(await store.find_token("a1")).token.revoked_at is None


@pytest.mark.parametrize(
    "case", ["refresh-token", "expired", "revoked", "other-session", "customer", "closed"]
)
async def test_continue_anonymous_session_refusals_change_nothing(
    store: TokenStore, case: str
) -> None:
    extra = [
        token("a-expired", use=ACCESS, expires_at=NOW),
        token("a-revoked", use=ACCESS, revoked_at=NOW - 1),
    ]
    await start_session(store, *extra)
    await store.save_tokens([token("a-s2", use=ACCESS, session="s2")], session("s2"))
    presented = {
        "refresh-token": "r1",
        "expired": "a-expired",
        "revoked": "a-revoked",
        "other-session": "a-s2",
        "customer": "a1",
        "closed": "a1",
    }[case]
    if case == "customer":
        assert await store.start_customer_session("s1", "c1", None, NOW - 1, [])
    if case == "closed":
        await store.revoke_session("s1", NOW - 1)
    digests = ["a1", "r1", "a-expired", "a-revoked", "a-s2"]
    before = await snapshot(store, digests)
    change = SessionUpdate(updated_at=NOW, context=SessionContext(currency="USD"))
    new = token("a-new", use=ACCESS)
    assert not await store.continue_anonymous_session(
        presented, "s1", [new], change, now=NOW, after_login=case != "customer"
    )
    assert await store.find_token("a-new") is None
    assert await snapshot(store, digests) == before


async def test_ping_answers(store: TokenStore) -> None:
    await store.ping()


async def test_revoke_token_and_session(store: TokenStore) -> None:
    await start_session(store, token("r-old", revoked_at=NOW - 5))
    await store.save_tokens([token("other", session="s2")], session("s2"))
    assert await store.revoke_token("a1", NOW) == 1
    assert await store.revoke_token("a1", NOW + 1) == 0
    assert await store.revoke_token("nope", NOW) == 0
    assert not_none(await store.find_token("a1")).token.revoked_at == NOW
    assert await store.revoke_session("s1", NOW + 2) == 1  # only r1 was still live
    assert not_none(await store.get_session("s1")).revoked_at == NOW + 2
    assert not_none(await store.find_token("r1")).token.revoked_at == NOW + 2
    assert not_none(await store.find_token("r-old")).token.revoked_at == NOW - 5
    assert await store.revoke_session("s1", NOW + 3) == 0
    assert not_none(await store.get_session("s1")).revoked_at == NOW + 2
    assert not_none(await store.find_token("other")).token.revoked_at is None
    assert not_none(await store.get_session("s2")).revoked_at is None


# --- a customer's sessions ----------------------------------------------------------------------
async def customer_session(
    store: TokenStore,
    sid: str,
    customer: str | None,
    *,
    created_at: int = NOW - 60,
    legal_entity: str | None = None,
    tenant: str = "demo",
    expires_at: int = NOW + 3600,
) -> None:
    """Session `sid` of `customer`, with an access token `a-{sid}` (ending first) and a refresh
    token `r-{sid}` expiring at `expires_at`."""
    kind = CUST if customer else ANON
    await store.save_tokens(
        [
            token(
                f"a-{sid}", session=sid, kind=kind, use=ACCESS, expires_at=min(NOW + 60, expires_at)
            ),
            token(f"r-{sid}", session=sid, kind=kind, expires_at=expires_at),
        ],
        dataclasses.replace(
            session(sid, customer_id=customer, legal_entity_id=legal_entity),
            tenant=tenant,
            created_at=created_at,
            updated_at=created_at + 5,
        ),
    )


async def live_digests(store: TokenStore, *digests: str) -> set[str]:
    found = [await store.find_token(d) for d in digests]
    return {v.token.digest for v in found if v is not None and v.token.revoked_at is None}


async def test_a_customers_active_sessions_are_listed_newest_first_a_page_at_a_time(
    store: TokenStore,
) -> None:
    for n in range(5):
        await customer_session(store, f"c1-{n}", "c1", created_at=NOW - 100 + n)
    await customer_session(store, "c1-same-time", "c1", created_at=NOW - 100 + 4)
    await customer_session(store, "c1-expired", "c1", expires_at=NOW)
    await customer_session(store, "c1-revoked", "c1")
    await store.revoke_session("c1-revoked", NOW - 1)
    await customer_session(store, "c2-0", "c2")
    await customer_session(store, "anonymous", None)

    first = await store.list_customer_sessions("c1", now=NOW, limit=3)
    assert [s.session_id for s in first] == ["c1-same-time", "c1-4", "c1-3"]
    assert first[1] == CustomerSession(
        session_id="c1-4",
        tenant="demo",
        client_id="web",
        created_at=NOW - 96,
        updated_at=NOW - 91,
        expires_at=NOW + 3600,  # the refresh token's, the last to end
    )
    cursor = SessionCursor(first[-1].created_at, first[-1].session_id)
    rest = await store.list_customer_sessions("c1", now=NOW, limit=3, after=cursor)
    assert [s.session_id for s in rest] == ["c1-2", "c1-1", "c1-0"]
    cursor = SessionCursor(rest[-1].created_at, rest[-1].session_id)
    assert await store.list_customer_sessions("c1", now=NOW, limit=3, after=cursor) == []
    assert await store.list_customer_sessions("nobody", now=NOW, limit=3) == []
    # The refresh token still unrevoked is what keeps a session listed.
    await store.revoke_token("r-c1-0", NOW)
    listed = await store.list_customer_sessions("c1", now=NOW, limit=10)
    assert "c1-0" in {s.session_id for s in listed}  # its access token lives a minute more
    later = await store.list_customer_sessions("c1", now=NOW + 60, limit=10)
    assert "c1-0" not in {s.session_id for s in later}


async def test_ending_one_session_of_a_customer(store: TokenStore) -> None:
    await customer_session(store, "mine", "c1", legal_entity="le1")
    await customer_session(store, "other", "c1")
    await customer_session(store, "theirs", "c2")
    await customer_session(store, "dead", "c1", expires_at=NOW)
    theirs = await snapshot_of(store, "theirs")
    assert not await store.revoke_customer_session("c1", "theirs", now=NOW)
    assert not await store.revoke_customer_session("c1", "unknown", now=NOW)
    assert not await store.revoke_customer_session("c1", "dead", now=NOW)
    assert await snapshot_of(store, "theirs") == theirs
    assert (await store.get_session("dead")).revoked_at is None  # type: ignore[union-attr]

    assert await store.revoke_customer_session("c1", "mine", now=NOW)
    assert (await store.get_session("mine")).revoked_at == NOW  # type: ignore[union-attr]
    assert await live_digests(store, "a-mine", "r-mine", "a-other", "r-other") == {
        "a-other",
        "r-other",
    }
    assert not await store.revoke_customer_session("c1", "mine", now=NOW + 1)  # once only


async def snapshot_of(store: TokenStore, sid: str) -> tuple[object, ...]:
    return (
        await store.get_session(sid),
        await store.find_token(f"a-{sid}"),
        await store.find_token(f"r-{sid}"),
    )


async def test_ending_every_session_of_a_customer_but_one(store: TokenStore) -> None:
    for sid in ("one", "two", "three"):
        await customer_session(store, sid, "c1")
    await customer_session(store, "theirs", "c2")
    theirs = await snapshot_of(store, "theirs")
    ended = await store.revoke_customer_sessions("c1", except_session_id="two", now=NOW)
    assert sorted(ended) == ["one", "three"]
    for sid in ("one", "three"):
        assert (await store.get_session(sid)).revoked_at == NOW  # type: ignore[union-attr]
        assert await live_digests(store, f"a-{sid}", f"r-{sid}") == set()
    assert await live_digests(store, "a-two", "r-two") == {"a-two", "r-two"}
    assert await snapshot_of(store, "theirs") == theirs
    # Their refresh tokens are no good any more; a second call has nothing left to end.
    outcome = await store.refresh(
        "r-one",
        "one",
        [token("a-new", session="one", use=ACCESS)],
        SessionUpdate(updated_at=NOW),
        now=NOW,
        grace_seconds=GRACE,
        rotate=True,
    )
    assert outcome is RefreshOutcome.INVALID
    assert await store.find_token("a-new") is None
    assert await store.revoke_customer_sessions("c1", except_session_id="two", now=NOW) == []
    assert await store.revoke_customer_sessions("c1", now=NOW + 1) == ["two"]
    assert await store.list_customer_sessions("c1", now=NOW + 1, limit=10) == []


async def test_ending_every_session_of_a_legal_entity(store: TokenStore) -> None:
    await customer_session(store, "le1-a", "c1", legal_entity="le1")
    await customer_session(store, "le1-b", "c2", legal_entity="le1")
    await customer_session(store, "le2", "c1", legal_entity="le2")
    await customer_session(store, "other-tenant", "c3", legal_entity="le1", tenant="zeta")
    ended = await store.revoke_legal_entity_sessions("demo", "le1", now=NOW)
    assert sorted(ended) == ["le1-a", "le1-b"]
    assert await live_digests(store, "r-le1-a", "r-le1-b") == set()
    assert await live_digests(store, "r-le2", "r-other-tenant") == {"r-le2", "r-other-tenant"}
    assert await store.revoke_legal_entity_sessions("demo", "le1", now=NOW) == []
    assert await store.revoke_legal_entity_sessions("demo", "nope", now=NOW) == []


async def test_ending_more_sessions_than_one_statement_names(store: TokenStore) -> None:
    count = statements.SESSION_IDS_PER_STATEMENT + 3
    await asyncio.gather(
        *(
            store.save_tokens(
                [token(f"r{n}", session=f"s{n}", kind=CUST)], session(f"s{n}", customer_id="c1")
            )
            for n in range(count)
        )
    )
    ended = await store.revoke_customer_sessions("c1", now=NOW)
    assert sorted(ended) == sorted(f"s{n}" for n in range(count))
    assert await live_digests(store, *(f"r{n}" for n in range(count))) == set()


# --- signing keys -------------------------------------------------------------------------------
def key(kid: str, created_at: int) -> SigningKeyRecord:
    return SigningKeyRecord(
        kid, "ES256", b"\x00encrypted\xff", '{"kty":"EC"}', KeyStatus.VERIFYING, created_at
    )


def _one_more(now: int) -> Callable[[LoginFailures | None], LoginFailures]:
    def next_state(current: LoginFailures | None) -> LoginFailures:
        failures = 1 if current is None else current.failures + 1
        return LoginFailures(failures, now, now + 60 if failures >= 3 else 0)

    return next_state


async def test_login_failures_count_clear_and_purge(store: TokenStore) -> None:
    assert await store.get_login_failures("acme", "a" * 64) is None
    for i in range(3):
        state = await store.record_login_failure("acme", "a" * 64, _one_more(NOW + i))
    assert state == LoginFailures(3, NOW + 2, NOW + 62)
    assert await store.get_login_failures("acme", "a" * 64) == state
    assert await store.get_login_failures("globex", "a" * 64) is None  # per tenant
    await store.record_login_failure("acme", "b" * 64, _one_more(NOW))
    await store.clear_login_failures("acme", "b" * 64)
    assert await store.get_login_failures("acme", "b" * 64) is None
    await store.record_login_failure("acme", "c" * 64, _one_more(NOW))
    # Quiet since before NOW + 1 and not locked then: forgotten; the locked one stays.
    assert await store.purge_login_failures(NOW + 1) == 1
    assert await store.get_login_failures("acme", "c" * 64) is None
    assert await store.purge_login_failures(NOW + 62) == 0
    assert await store.purge_login_failures(NOW + 63) == 1


async def test_concurrent_login_failures_are_all_counted(store: TokenStore) -> None:
    await asyncio.gather(
        *(store.record_login_failure("acme", "d" * 64, _one_more(NOW)) for _ in range(20))
    )
    state = await store.get_login_failures("acme", "d" * 64)
    assert state is not None and state.failures == 20


async def test_signing_keys(store: TokenStore) -> None:
    assert await store.list_signing_keys() == []
    await store.rotate_signing_key(key("k1", NOW))
    await store.rotate_signing_key(key("k2", NOW + 10))
    await store.rotate_signing_key(key("k0", NOW + 10))
    listed = await store.list_signing_keys()
    assert [(k.kid, k.status) for k in listed] == [
        ("k0", KeyStatus.ACTIVE),
        ("k2", KeyStatus.VERIFYING),
        ("k1", KeyStatus.VERIFYING),
    ]
    assert listed[0] == dataclasses.replace(key("k0", NOW + 10), status=KeyStatus.ACTIVE)
    # A duplicate kid changes nothing: the active key is not demoted.
    with pytest.raises(AlreadyExists, match="signing key 'k1' already exists"):
        await store.rotate_signing_key(key("k1", NOW + 20))
    assert await store.list_signing_keys() == listed
    with pytest.raises(InvalidRequest, match="rotate first"):
        await store.retire_signing_key("k0", NOW + 30, check=allow)
    assert await store.retire_signing_key("nope", NOW + 30, check=allow) is None
    retired = await store.retire_signing_key("k1", NOW + 30, check=allow)
    assert retired == dataclasses.replace(
        key("k1", NOW), status=KeyStatus.RETIRED, retired_at=NOW + 30
    )
    assert await store.retire_signing_key("k1", NOW + 40, check=allow) == retired
    assert [(k.kid, k.status) for k in await store.list_signing_keys()] == [
        ("k0", KeyStatus.ACTIVE),
        ("k2", KeyStatus.VERIFYING),
        ("k1", KeyStatus.RETIRED),
    ]


def allow(keys: Sequence[SigningKeyRecord]) -> None:
    return None


async def test_retiring_asks_the_check_with_every_key_and_a_refusal_changes_nothing(
    store: TokenStore,
) -> None:
    await store.rotate_signing_key(key("k1", NOW))
    await store.rotate_signing_key(key("k2", NOW + 10))
    before = await store.list_signing_keys()
    seen: list[list[tuple[str, KeyStatus]]] = []

    def refuse(keys: Sequence[SigningKeyRecord]) -> None:
        seen.append([(k.kid, k.status) for k in keys])
        raise InvalidRequest("k1 still signs")

    with pytest.raises(InvalidRequest, match="k1 still signs"):
        await store.retire_signing_key("k1", NOW + 20, check=refuse)
    assert seen and seen[-1] == [("k2", KeyStatus.ACTIVE), ("k1", KeyStatus.VERIFYING)]
    assert await store.list_signing_keys() == before


# --- service metadata ---------------------------------------------------------------------------
async def test_meta_is_added_once_and_data_is_noticed(store: TokenStore) -> None:
    assert await store.holds_data() is False
    assert await store.get_meta("canary") is None
    assert await store.add_meta_if_absent("canary", "first") == "first"
    assert await store.add_meta_if_absent("canary", "second") == "first"
    assert await store.get_meta("canary") == "first"
    assert await store.holds_data() is True


@pytest.mark.parametrize("what", ["tenant", "signing key", "token"])
async def test_holds_data_sees_tenants_keys_and_tokens(store: TokenStore, what: str) -> None:
    if what == "tenant":
        await store.create_tenant(TenantRecord("demo", NOW))
    elif what == "signing key":
        await store.add_first_signing_key(key("k1", NOW))
    else:
        await store.save_tokens([token("t1", session=None, kind=TokenKind.SERVICE)])
    assert await store.holds_data() is True


async def test_replicas_adding_meta_together_agree_on_one_value(store: TokenStore) -> None:
    values = await asyncio.gather(*(store.add_meta_if_absent("canary", f"v{i}") for i in range(8)))
    assert len(set(values)) == 1
    assert await store.get_meta("canary") == values[0]


# --- SQLite only --------------------------------------------------------------------------------
@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    url = sqlite_url(tmp_path / "store.db")
    await upgrade(url)
    s = await SqlStore.open(url)
    yield s
    await s.close()


async def test_concurrent_refresh_has_one_winner(sqlite_store: SqlStore) -> None:
    await start_session(sqlite_store)

    async def one(i: int) -> RefreshOutcome:
        return await sqlite_store.refresh(
            "r1", "s1", new_pair(str(i)), SessionUpdate(NOW), now=NOW, grace_seconds=0, rotate=True
        )

    outcomes = await asyncio.gather(*(one(i) for i in range(50)), return_exceptions=True)
    assert outcomes.count(RefreshOutcome.ROTATED) == 1
    assert outcomes.count(RefreshOutcome.GRACE) == 49
    # Only the winner saved its tokens: the others are answered with them.
    winner = outcomes.index(RefreshOutcome.ROTATED)
    saved = [i for i in range(50) if await sqlite_store.find_token(f"r-{i}") is not None]
    assert saved == [winner]


async def test_two_stores_on_one_file_agree_on_one_winner(tmp_path: Path) -> None:
    """Two stores (as two server processes would) contend through SQLite's own file lock."""
    url = sqlite_url(tmp_path / "store.db")
    await upgrade(url)
    stores = [await SqlStore.open(url), await SqlStore.open(url)]
    try:
        await start_session(stores[0])
        calls = [
            stores[i % 2].refresh(
                "r1",
                "s1",
                new_pair(str(i)),
                SessionUpdate(NOW),
                now=NOW,
                grace_seconds=0,
                rotate=True,
            )
            for i in range(40)
        ]
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
    finally:
        for s in stores:
            await s.close()
    assert outcomes.count(RefreshOutcome.ROTATED) == 1
    assert outcomes.count(RefreshOutcome.GRACE) == 39


async def test_concurrent_new_sessions_all_succeed(sqlite_store: SqlStore) -> None:
    async def one(i: int) -> None:
        sid = f"s-{i}"
        await sqlite_store.save_tokens(
            [token(f"a-{i}", session=sid, use=ACCESS), token(f"r-{i}", session=sid)], session(sid)
        )

    results = await asyncio.gather(*(one(i) for i in range(200)), return_exceptions=True)
    assert results == [None] * 200
    for i in range(200):
        assert await sqlite_store.get_session(f"s-{i}") is not None


async def test_upgrade_twice_is_a_noop_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "store.db"  # directories are created
    await upgrade(sqlite_url(path))
    await upgrade(sqlite_url(path))
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [("0009",)]
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    # sqlite_sequence: SQLite's own, for revocation_events' AUTOINCREMENT.
    assert names == {*metadata.tables, "alembic_version", "sqlite_sequence"}
    db.close()


@pytest.mark.postgres
async def test_replicas_migrating_an_empty_postgres_database_together_all_succeed(
    postgres_server: PostgresServer,
) -> None:
    """Replicas that start together each run the migrations: one creates the schema, the others
    wait for it and find it current (without the advisory lock, all but one fail with
    duplicate tables)."""
    url = await postgres_server.create(empty=True)
    try:
        results = await asyncio.gather(*(upgrade(url) for _ in range(4)), return_exceptions=True)
        assert results == [None] * 4
        engine = create_async_engine(url, poolclass=NullPool)
        try:
            async with engine.connect() as conn:
                version = await conn.exec_driver_sql("SELECT version_num FROM alembic_version")
                assert version.all() == [("0009",)]
                diff = await conn.run_sync(
                    lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
                )
        finally:
            await engine.dispose()
        assert diff == []
    finally:
        await postgres_server.drop(url)


async def test_migrations_match_the_metadata(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    await upgrade(sqlite_url(path))
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        engine.dispose()
    assert diff == []


async def test_open_store_migrates(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "opened.db")
    store = await open_store(Settings(database_url=url))
    try:
        await store.create_tenant(TenantRecord("demo", NOW))
        assert await store.list_tenants() == [TenantRecord("demo", NOW)]
    finally:
        await store.close()


async def test_locked_database_is_unavailable_then_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "store.db"
    await upgrade(sqlite_url(path))
    store = await SqlStore.open(sqlite_url(path), busy_timeout_ms=200)
    try:
        await store.create_tenant(TenantRecord("first", NOW))
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        with caplog.at_level(logging.WARNING), pytest.raises(StoreUnavailable) as caught:
            await store.create_tenant(TenantRecord("second", NOW))
        assert time.monotonic() - started < 5
        assert str(caught.value) == "the token store is unavailable; retry later"
        assert "OperationalError" in caplog.text
        assert "second" not in caplog.text  # no SQL parameters in the log
        assert await store.get_tenant("first") is not None  # WAL: readers are not blocked
        other.execute("ROLLBACK")
        other.close()
        await store.create_tenant(TenantRecord("second", NOW))
        assert [t.name for t in await store.list_tenants()] == ["first", "second"]
    finally:
        await store.close()


# --- the janitor: purge_expired, on every store -------------------------------------------------
def svc(digest: str, expires_at: int) -> TokenRecord:
    return token(digest, session=None, kind=TokenKind.SERVICE, use=ACCESS, expires_at=expires_at)


async def build_purge_mix(store: TokenStore) -> tuple[set[str], set[str], set[str], set[str]]:
    """Rows the janitor must remove and rows it must keep, session ids chosen so that the dead
    and the live interleave in key order. Returns (kept digests, removed digests, kept sessions,
    removed sessions)."""
    kept: set[str] = set()
    removed: set[str] = set()
    # Service tokens: expired (expires_at <= now) and live.
    for i in range(5):
        await store.save_tokens([svc(f"svc-old-{i}", NOW - 100 + i)])
        removed.add(f"svc-old-{i}")
    await store.save_tokens([svc("svc-now", NOW), svc("svc-live", NOW + 1)])
    removed.add("svc-now")
    kept.add("svc-live")
    # A live customer session: its first refresh token rotated 100 s ago (outside the grace
    # window, not expired), its first access token expired, its current refresh token live.
    sid = "s3-live"
    first = [
        token("live-a0", session=sid, kind=CUST, use=ACCESS, expires_at=NOW - 10),
        token("live-r0", session=sid, kind=CUST),
        token("live-r-expired", session=sid, kind=CUST, expires_at=NOW - 5),
    ]
    await store.save_tokens(first, session(sid))
    current = [
        token("live-a1", session=sid, kind=CUST, use=ACCESS, expires_at=NOW - 1),
        token("live-r1", session=sid, kind=CUST),
    ]
    rotated = await store.refresh(
        "live-r0",
        sid,
        current,
        SessionUpdate(NOW - 100),
        now=NOW - 100,
        grace_seconds=GRACE,
        rotate=True,
    )
    assert rotated is RefreshOutcome.ROTATED
    kept |= {"live-a0", "live-r0", "live-r-expired", "live-a1", "live-r1"}
    # A session alive only through an access token that expires one second after now.
    sid = "s5-access"
    await store.save_tokens(
        [
            token("acc-a", session=sid, use=ACCESS, expires_at=NOW + 1),
            token("acc-r", session=sid, expires_at=NOW - 1),
        ],
        session(sid),
    )
    kept |= {"acc-a", "acc-r"}
    # Sessions whose tokens have all expired (the last exactly at now).
    for i in (0, 2, 4, 6):
        sid = f"s{i}-gone"
        digests = [f"gone-{i}-{n}" for n in range(3)]
        await store.save_tokens(
            [token(d, session=sid, expires_at=NOW - n) for n, d in enumerate(digests)], session(sid)
        )
        removed |= set(digests)
    # Revoked sessions whose tokens have not expired.
    for i in (1, 7):
        sid = f"s{i}-revoked"
        digests = [f"rev-{i}-{n}" for n in range(3)]
        await store.save_tokens([token(d, session=sid) for d in digests], session(sid))
        await store.revoke_session(sid, NOW - 50)
        removed |= set(digests)
    # A session without any token.
    await store.save_tokens([], session("s8-empty"))
    kept_sessions = {"s3-live", "s5-access"}
    removed_sessions = {"s0-gone", "s2-gone", "s4-gone", "s6-gone", "s1-revoked", "s7-revoked"}
    removed_sessions.add("s8-empty")
    return kept, removed, kept_sessions, removed_sessions


async def present(store: TokenStore, digests: set[str]) -> set[str]:
    return {d for d in digests if await store.find_token(d) is not None}


async def sessions_present(store: TokenStore, session_ids: set[str]) -> set[str]:
    return {s for s in session_ids if await store.get_session(s) is not None}


@pytest.mark.parametrize("batch_size", [500, 2, 1])
async def test_purge_removes_exactly_the_expired_rows_and_nothing_a_live_token_needs(
    store: TokenStore, batch_size: int
) -> None:
    kept, removed, kept_sessions, removed_sessions = await build_purge_mix(store)
    before = {d: await store.find_token(d) for d in kept}
    sessions_before = {s: await store.get_session(s) for s in kept_sessions}

    report = await store.purge_expired(NOW, batch_size=batch_size)

    assert await present(store, kept | removed) == kept
    assert await sessions_present(store, kept_sessions | removed_sessions) == kept_sessions
    assert report == PurgeReport(tokens_removed=len(removed), sessions_removed=7)
    # What stays is untouched: no live session is left revoked, no token changed.
    assert {d: await store.find_token(d) for d in kept} == before
    assert {s: await store.get_session(s) for s in kept_sessions} == sessions_before
    # A second purge finds nothing.
    assert await store.purge_expired(NOW, batch_size=batch_size) == PurgeReport(0, 0)
    assert await present(store, kept) == kept


async def test_reuse_detection_still_fires_after_the_purge(store: TokenStore) -> None:
    await build_purge_mix(store)
    await store.purge_expired(NOW, batch_size=2)
    # live-r0 was rotated at NOW - 100: presenting it again is reuse, and ends the session.
    outcome = await store.refresh(
        "live-r0",
        "s3-live",
        [token("x-a", session="s3-live", use=ACCESS), token("x-r", session="s3-live")],
        SessionUpdate(NOW),
        now=NOW,
        grace_seconds=GRACE,
        rotate=True,
    )
    assert outcome is RefreshOutcome.REUSED
    assert not_none(await store.get_session("s3-live")).revoked_at == NOW
    assert not_none(await store.find_token("live-r1")).token.revoked_at == NOW
    # The next sweep removes the session it revoked, with all its tokens.
    report = await store.purge_expired(NOW, batch_size=2)
    assert report == PurgeReport(tokens_removed=5, sessions_removed=1)
    assert await store.get_session("s3-live") is None
    assert await store.find_token("live-r1") is None


async def test_the_live_session_keeps_refreshing_after_the_purge(store: TokenStore) -> None:
    await build_purge_mix(store)
    await store.purge_expired(NOW, batch_size=2)
    new = [token("y-a", session="s3-live", use=ACCESS), token("y-r", session="s3-live")]
    outcome = await store.refresh(
        "live-r1", "s3-live", new, SessionUpdate(NOW), now=NOW, grace_seconds=GRACE, rotate=True
    )
    assert outcome is RefreshOutcome.ROTATED
    assert await present(store, {"y-a", "y-r"}) == {"y-a", "y-r"}


async def test_purge_later_removes_what_has_expired_since(store: TokenStore) -> None:
    kept, _, kept_sessions, _ = await build_purge_mix(store)
    await store.purge_expired(NOW, batch_size=3)
    # One second later acc-a and svc-live have expired; an hour later everything has.
    assert await store.purge_expired(NOW + 1, batch_size=3) == PurgeReport(3, 1)
    assert await sessions_present(store, kept_sessions) == {"s3-live"}
    assert await store.purge_expired(NOW + 3600, batch_size=3) == PurgeReport(5, 1)
    assert await present(store, kept) == set()


async def test_two_purges_at_once_remove_everything_exactly_once(store: TokenStore) -> None:
    kept, removed, kept_sessions, removed_sessions = await build_purge_mix(store)
    reports = await asyncio.gather(
        store.purge_expired(NOW, batch_size=2), store.purge_expired(NOW, batch_size=3)
    )
    assert reports[0] + reports[1] == PurgeReport(len(removed), len(removed_sessions))
    assert await present(store, kept | removed) == kept
    assert await sessions_present(store, kept_sessions | removed_sessions) == kept_sessions


@pytest.mark.parametrize("batch_size", [0, -1, MAX_PURGE_BATCH + 1])
async def test_purge_refuses_a_batch_size_out_of_range(store: TokenStore, batch_size: int) -> None:
    await store.save_tokens([svc("svc-old", NOW - 1)])
    with pytest.raises(InvalidRequest, match="batch_size must be between 1 and"):
        await store.purge_expired(NOW, batch_size=batch_size)
    assert await store.find_token("svc-old") is not None


async def test_closing_checks_again_that_the_session_is_dead(store: TokenStore) -> None:
    """SqlStore closes the dead sessions a read found in a transaction that checks again: a
    session that got a live token since (a refresh racing the sweep) stays open."""
    if not isinstance(store, SqlStore):
        pytest.skip("SqlStore's closing step")
    await store.save_tokens([token("old", expires_at=NOW - 1)], session("s1"))
    await store.save_tokens([token("dead", session="s2", expires_at=NOW)], session("s2"))
    await store.save_tokens([token("fresh", expires_at=NOW + 60)])  # s1 came back to life
    assert await store._close_sessions(["s1", "s2"], NOW) == 1
    assert not_none(await store.get_session("s1")).revoked_at is None
    assert not_none(await store.get_session("s2")).revoked_at == NOW


@pytest.mark.postgres
async def test_postgres_purge_skips_a_session_a_refresh_is_writing(
    postgres_server: PostgresServer,
) -> None:
    """A refresh in flight holds its session's row: the purge neither waits for it nor closes
    the session under it, although every token the purge can see has expired."""
    url = await postgres_server.create()
    store = await SqlStore.open(url)
    other = create_async_engine(url, poolclass=NullPool)
    try:
        await store.save_tokens([token("old-r", expires_at=NOW)], session("s1"))
        async with other.connect() as refresh:
            await refresh.execute(
                update(sessions).where(sessions.c.session_id == "s1").values(updated_at=NOW)
            )
            await refresh.execute(
                insert(tokens).values(
                    digest="new-r",
                    kind="anonymous",
                    use="refresh",
                    tenant="demo",
                    client_id="web",
                    session_id="s1",
                    scope="tenant=demo",
                    issued_at=NOW,
                    expires_at=NOW + 3600,
                )
            )
            report = await asyncio.wait_for(store.purge_expired(NOW, batch_size=10), timeout=20)
            await refresh.commit()
        assert report == PurgeReport(0, 0)
        assert not_none(await store.get_session("s1")).revoked_at is None
        assert await present(store, {"old-r", "new-r"}) == {"old-r", "new-r"}
        # Committed, the refresh made the session live: the next purge keeps it too.
        assert await store.purge_expired(NOW, batch_size=10) == PurgeReport(0, 0)
    finally:
        await other.dispose()
        await store.close()
        await postgres_server.drop(url)


# --- the revocation feed's events ---------------------------------------------------------------
async def feed_events(
    store: TokenStore, after: int = 0
) -> list[tuple[str, tuple[str, ...], tuple[str, ...]]]:
    """(tenant, fingerprints, sessions) of every event after `after`, in position order."""
    events = await store.revocation_events(after, limit=100)
    positions = [e.position for e in events]
    assert positions == sorted(set(positions)), "positions strictly increase"
    return [(e.tenant, e.fingerprints, e.sessions) for e in events]


async def test_each_revocation_records_one_event_and_a_no_op_none(store: TokenStore) -> None:
    await start_session(store)
    await store.save_tokens([token("svc", session=None, kind=TokenKind.SERVICE, use=ACCESS)])
    assert await store.revocation_feed_bounds() == FeedBounds(pruned_through=0, head=0)

    assert await store.revoke_token("svc", NOW, fingerprint="fp-svc") == 1
    assert await store.revoke_token("svc", NOW, fingerprint="fp-svc") == 0  # already: nothing
    assert await store.revoke_token("nope", NOW, fingerprint="fp-nope") == 0
    await store.revoke_session("s1", NOW)
    await store.revoke_session("s1", NOW)  # already ended: nothing
    await customer_session(store, "le1-a", "c1", legal_entity="le1")
    await customer_session(store, "le1-b", "c2", legal_entity="le1")
    await customer_session(store, "zeta-1", "c3", legal_entity="le1", tenant="zeta")
    ended = await store.revoke_legal_entity_sessions("demo", "le1", now=NOW)
    await store.revoke_legal_entity_sessions("zeta", "le1", now=NOW)

    recorded = await feed_events(store)
    assert recorded[:2] == [("demo", ("fp-svc",), ()), ("demo", (), ("s1",))]
    assert recorded[2][0] == "demo" and sorted(recorded[2][2]) == sorted(ended)  # one event
    assert recorded[3:] == [("zeta", (), ("zeta-1",))]
    events = await store.revocation_events(0, tenant="zeta", limit=100)
    assert [e.sessions for e in events] == [("zeta-1",)]
    bounds = await store.revocation_feed_bounds()
    assert bounds.head == events[0].position and bounds.pruned_through == 0
    first_two = await store.revocation_events(0, limit=2)
    assert (
        await store.revocation_events(first_two[-1].position, limit=100)
        == (await store.revocation_events(0, limit=100))[2:]
    )


async def test_a_reuse_is_recorded_and_a_rotation_is_not(store: TokenStore) -> None:
    await start_session(store)
    assert await do_refresh(store, new_pair("1")) is RefreshOutcome.ROTATED
    assert await feed_events(store) == []  # a rotation revokes nothing a resource server holds
    assert await do_refresh(store, new_pair("2"), now=NOW + GRACE + 1) is RefreshOutcome.REUSED
    assert await feed_events(store) == [("demo", (), ("s1",))]


async def test_pruning_keeps_the_later_events_and_remembers_where_it_stopped(
    store: TokenStore,
) -> None:
    for n in range(3):
        await store.save_tokens([token(f"t{n}", session=None, use=ACCESS)])
        await store.revoke_token(f"t{n}", NOW + n, fingerprint=f"fp{n}")
    events = await store.revocation_events(0, limit=100)
    assert await store.prune_revocation_events(NOW + 2) == 2  # the two recorded before NOW + 2
    assert [e.fingerprints for e in await store.revocation_events(0, limit=100)] == [("fp2",)]
    assert await store.revocation_feed_bounds() == FeedBounds(
        pruned_through=events[1].position, head=events[2].position
    )
    assert await store.prune_revocation_events(NOW) == 0
    assert await store.prune_revocation_events(NOW + 3) == 1
    after_all = await store.revocation_feed_bounds()
    assert after_all == FeedBounds(events[2].position, events[2].position)
    await store.save_tokens([token("t9", session=None, use=ACCESS)])
    await store.revoke_token("t9", NOW + 9, fingerprint="fp9")
    (later,) = await store.revocation_events(0, limit=100)
    assert later.position > events[2].position  # never handed out again, even with none left
