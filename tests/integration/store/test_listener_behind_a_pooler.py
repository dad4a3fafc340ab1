"""A replica whose listener goes through a connection pooler in transaction mode: a real
PgBouncer (Debian's) in front of the test PostgreSQL. LISTEN through it is accepted, and the
notices then go to whichever client holds the server connection when they arrive, so the
listener must not take itself for listening: its cache stays suspended (every token is read
from the database) and the log says why and what to set. The store's own queries go to
PostgreSQL directly here: only the listener's connection is under test
(TOKENSERVICE_REVOCATION_LISTENER_URL points it at the pooler)."""

from __future__ import annotations

import pytest

from server.records import TenantRecord, TokenUse
from server.store.cached import CachedStore
from server.store.factory import open_store
from server.store.listener import NOT_HEARING
from tests.support.harness import harness_settings
from tests.support.narrow import not_none
from tests.support.pgbouncer import pgbouncer, through
from tests.support.records import NOW, session, token
from tests.support.waiting import eventually

pytestmark = pytest.mark.postgres


async def test_a_listener_behind_a_transaction_pooler_does_not_pass_for_listening(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with pgbouncer(postgres_url) as port:
        settings = harness_settings(
            postgres_url,
            revocation_listener_url=through(postgres_url, port),
            db_connect_timeout_seconds=1.0,
        )
        store = await open_store(settings, migrate=False)
        try:
            assert isinstance(store, CachedStore)
            await eventually(lambda: NOT_HEARING in caplog.text, "the listener says why")
            assert not not_none(store.listener).listening.is_set()
            # Suspended: a token is read from the database every time, never kept.
            await store.create_tenant(TenantRecord("demo", NOW))
            await store.save_tokens([token("t1", use=TokenUse.ACCESS)], session())
            assert not_none(await store.find_token("t1")).token.revoked_at is None
            assert store.tokens.suspended and len(store.tokens) == 0
        finally:
            await store.close()


async def test_the_same_listener_pointed_at_postgresql_itself_listens(postgres_url: str) -> None:
    store = await open_store(
        harness_settings(postgres_url, revocation_listener_url=postgres_url), migrate=False
    )
    try:
        assert isinstance(store, CachedStore)
        await eventually(lambda: not_none(store.listener).listening.is_set(), "listening")
        assert not store.tokens.suspended
    finally:
        await store.close()
