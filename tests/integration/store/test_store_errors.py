"""How the SQL store reports what the database says: conflicts are run again a bounded number of
times and then reported as unavailable; values the database refuses are the caller's mistake
(a 400), never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from server.errors import InvalidRequest, StoreUnavailable
from server.records import SessionContext, SessionRecord
from server.store.errors import Conflict
from server.store.runners import ServerRunner
from server.store.sql import SqlStore, retried
from tests.support.postgres import PostgresServer


class FlakyStore(SqlStore):
    """A SqlStore whose one write loses `conflicts` races before it succeeds."""

    def __init__(self, conflicts: int, retries: int) -> None:
        engine = create_async_engine("sqlite+aiosqlite:///:memory:")
        super().__init__(ServerRunner(engine), conflict_retries=retries)
        self.conflicts = conflicts
        self.calls = 0

    @retried
    async def write(self, value: str) -> str:
        self.calls += 1
        if self.calls <= self.conflicts:
            raise Conflict
        return value


async def test_a_conflict_is_run_again_until_it_succeeds() -> None:
    store = FlakyStore(conflicts=3, retries=5)
    assert await store.write("done") == "done"
    assert store.calls == 4


async def test_conflicts_beyond_the_retries_are_unavailable_not_an_error() -> None:
    store = FlakyStore(conflicts=100, retries=2)
    with pytest.raises(StoreUnavailable):
        await store.write("never")
    assert store.calls == 3  # the first try and two more


@pytest.fixture
async def postgres_store(postgres_server: PostgresServer) -> AsyncIterator[SqlStore]:
    url = await postgres_server.create()
    store = await SqlStore.open(url)
    try:
        yield store
    finally:
        await store.close()
        await postgres_server.drop(url)


@pytest.mark.postgres
async def test_a_value_postgresql_refuses_is_invalid_request(postgres_store: SqlStore) -> None:
    session = SessionRecord(
        session_id="s1",
        tenant="demo",
        client_id="web",
        created_at=1,
        updated_at=1,
        context=SessionContext(currency="C" * 40),  # the column holds 16
    )
    with pytest.raises(InvalidRequest):
        await postgres_store.save_tokens([], session)
    assert await postgres_store.get_session("s1") is None
