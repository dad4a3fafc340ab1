"""A refresh with rotation off takes its session's row lock last (server/store/kept_refresh.py):
it reads the refresh token and inserts the new tokens first, so that the refreshes of one
session queue on the lock for the UPDATE and the COMMIT only (seen in pg_locks: the refresh
waits for the lock holding the INSERT's lock on tokens already). What must still hold, on real
PostgreSQL with the session's row held by another transaction: the refresh waits for that
transaction, and if it revoked the session, the refresh is refused and its inserted tokens
are gone; if it rolled back, the refresh goes through."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from server.records import RefreshOutcome, SessionUpdate
from server.store.listener import asyncpg_dsn
from server.store.sql import SqlStore
from tests.support.records import ACCESS, NOW, session, token
from tests.support.waiting import eventually

pytestmark = pytest.mark.postgres


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[SqlStore]:
    store = await SqlStore.open(postgres_url)
    await store.save_tokens([token("a1", use=ACCESS), token("r1")], session())
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def holder(postgres_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection holding session s1's row lock in an open transaction that revoked it."""
    connection = await asyncpg.connect(asyncpg_dsn(postgres_url))
    await connection.execute("BEGIN")
    await connection.execute("UPDATE sessions SET revoked_at = $1 WHERE session_id = 's1'", NOW)
    try:
        yield connection
    finally:
        await connection.close()


async def refresh_waiting_on_the_lock(
    store: SqlStore, holder: asyncpg.Connection
) -> asyncio.Task[RefreshOutcome]:
    refresh = asyncio.create_task(
        store.refresh(
            "r1",
            "s1",
            [token("a-new", use=ACCESS)],
            SessionUpdate(updated_at=NOW),
            now=NOW,
            grace_seconds=10,
            rotate=False,
        )
    )

    async def waiting() -> bool:
        waiters = await holder.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        return bool(waiters)

    await eventually(waiting, "the refresh waiting for the session's row lock")
    assert not refresh.done()
    # It waits having inserted already: its transaction holds the INSERT's lock on tokens.
    inserted = await holder.fetchval(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE a.wait_event_type = 'Lock' AND l.granted AND a.datname = current_database()"
        " AND l.relation = 'tokens'::regclass AND l.mode = 'RowExclusiveLock'"
    )
    assert inserted == 1
    return refresh


async def test_a_session_revoked_while_the_refresh_waits_refuses_it_and_keeps_nothing(
    store: SqlStore, holder: asyncpg.Connection
) -> None:
    refresh = await refresh_waiting_on_the_lock(store, holder)
    await holder.execute("COMMIT")
    assert await refresh == RefreshOutcome.INVALID
    assert await store.find_token("a-new") is None


async def test_when_the_holder_rolls_back_the_refresh_goes_through(
    store: SqlStore, holder: asyncpg.Connection
) -> None:
    refresh = await refresh_waiting_on_the_lock(store, holder)
    await holder.execute("ROLLBACK")
    assert await refresh == RefreshOutcome.KEPT
    found = await store.find_token("a-new")
    assert found is not None and found.token.session_id == "s1"
