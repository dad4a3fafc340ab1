"""One session's refreshes share transactions on PostgreSQL (server/store/runners.py,
ServerRunner, the `session_group(id)` group key): while a refresh of a session waits for that
session's row lock, the refreshes of the same session that arrive wait beside it in the
service and go together as one transaction after it, instead of each queueing on the lock
for a commit of its own; a refresh of another session goes on meanwhile. Told on real
PostgreSQL by the inserting transaction of each new token (the xmin of its row); together
they read, insert and update once (store/kept_refresh.py). And a group
in which one refresh rolls itself back (a retry inside the grace window) is run again one
refresh at a time: the first rotates, the retry stores nothing. A refresh whose caller left
while it waited is dropped from its group."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from server.records import RefreshOutcome, SessionUpdate
from server.store.listener import asyncpg_dsn
from server.store.runners import session_group
from server.store.sql import SqlStore
from tests.support.records import ACCESS, NOW, session, token
from tests.support.statements_sent import rows_sent
from tests.support.waiting import eventually

pytestmark = pytest.mark.postgres
S1 = session_group("s1")


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[SqlStore]:
    store = await SqlStore.open(postgres_url)
    await store.save_tokens([token("a1", use=ACCESS), token("r1")], session())
    await store.save_tokens([token("r2", session="s2")], session("s2"))
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def holder(postgres_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection holding session s1's row lock in an open transaction."""
    connection = await asyncpg.connect(asyncpg_dsn(postgres_url))
    await connection.execute("BEGIN")
    await connection.execute("SELECT 1 FROM sessions WHERE session_id = 's1' FOR UPDATE")
    try:
        yield connection
    finally:
        await connection.close()


def refresh(
    store: SqlStore, presented: str, new: str, *, sid: str = "s1", rotate: bool = False
) -> asyncio.Task[RefreshOutcome]:
    issued = [token(new, use=ACCESS, session=sid)]
    if rotate:
        issued.append(token(f"{new}-refresh", session=sid))
    return asyncio.create_task(
        store.refresh(
            presented,
            sid,
            issued,
            SessionUpdate(updated_at=NOW),
            now=NOW,
            grace_seconds=10,
            rotate=rotate,
        )
    )


async def first_waiting_on_the_lock(
    store: SqlStore, holder: asyncpg.Connection
) -> asyncio.Task[RefreshOutcome]:
    first = refresh(store, "r1", "a-first")

    async def waiting() -> bool:
        return bool(
            await holder.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
        )

    await eventually(waiting, "the first refresh waiting for the session's row lock")
    return first


async def queued(store: SqlStore, count: int) -> None:
    """Until `count` refreshes of s1 wait in the runner for s1's next group."""

    async def there() -> bool:
        return len(store._runner._waiting.get(S1, [])) == count  # type: ignore[union-attr]

    await eventually(there, f"{count} refreshes of s1 waiting for its next group")


async def inserted_by(holder: asyncpg.Connection, digests: list[str]) -> list[int]:
    """The transaction that inserted each token's row, in the order given."""
    found = dict(
        await holder.fetch(
            "SELECT digest, xmin::text::bigint FROM tokens WHERE digest = ANY($1::text[])", digests
        )
    )
    return [found[digest] for digest in digests]


async def test_refreshes_of_one_session_waiting_together_share_a_transaction(
    store: SqlStore, holder: asyncpg.Connection
) -> None:
    first = await first_waiting_on_the_lock(store, holder)
    later = [refresh(store, "r1", f"a-later-{n}") for n in range(4)]
    await queued(store, 4)
    # Another session's refresh is not held behind s1's: it goes through meanwhile.
    other = refresh(store, "r2", "a-other", sid="s2")
    assert await asyncio.wait_for(other, 30) == RefreshOutcome.KEPT
    assert not first.done() and not any(task.done() for task in later)

    with (
        rows_sent("SELECT tokens.rotated_at") as reads,
        rows_sent("INSERT INTO tokens") as inserts,
        rows_sent("UPDATE sessions") as updates,
    ):
        await holder.execute("ROLLBACK")
        assert await first == RefreshOutcome.KEPT
        assert await asyncio.gather(*later) == [RefreshOutcome.KEPT] * 4
    # The first had sent all its statements already (it waited in its UPDATE); the four,
    # together, read the refresh token once, insert their four tokens in one statement and
    # update the session once.
    assert (reads, inserts, updates) == ([1], [4], [1])
    later_digests = [f"a-later-{n}" for n in range(4)]
    first_tx, *later_tx = await inserted_by(holder, ["a-first", *later_digests])
    assert len(set(later_tx)) == 1, f"the four later refreshes in {len(set(later_tx))} transactions"
    assert first_tx not in later_tx
    for digest in later_digests:
        found = await store.find_token(digest)
        assert found is not None and found.token.session_id == "s1"


async def test_a_group_with_a_retry_in_it_runs_again_one_refresh_at_a_time(
    store: SqlStore, holder: asyncpg.Connection
) -> None:
    first = await first_waiting_on_the_lock(store, holder)
    rotating = refresh(store, "r1", "a-rotated", rotate=True)
    retry = refresh(store, "r1", "a-retried", rotate=True)  # the same refresh token again
    await queued(store, 2)

    with rows_sent("UPDATE sessions") as updates:
        await holder.execute("ROLLBACK")
        assert await first == RefreshOutcome.KEPT
        assert await rotating == RefreshOutcome.ROTATED
        assert await retry == RefreshOutcome.GRACE
    # Each updated its session in the group, which the retry rolled back, then again alone.
    assert updates == [1, 1, 1, 1]
    assert await store.find_token("a-rotated") is not None
    assert await store.find_token("a-rotated-refresh") is not None
    # The retry stored nothing (its answer is derived, not stored); the rotation, whose group
    # the retry rolled back, was run again and kept.
    assert await store.find_token("a-retried") is None
    assert await store.find_token("a-retried-refresh") is None


async def test_a_refresh_whose_caller_left_while_it_waited_writes_nothing(
    store: SqlStore, holder: asyncpg.Connection
) -> None:
    """A refresh cancelled (a deadline, a client gone) while it waits for its session's next
    group is dropped from it, as its own transaction would have been rolled back: it must not
    rotate a refresh token whose successor nobody received."""
    first = await first_waiting_on_the_lock(store, holder)
    gone = refresh(store, "r1", "a-gone", rotate=True)
    staying = refresh(store, "r1", "a-staying")
    await queued(store, 2)
    gone.cancel()
    await holder.execute("ROLLBACK")
    assert await first == RefreshOutcome.KEPT
    assert await staying == RefreshOutcome.KEPT
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert await store.find_token("a-gone") is None
    assert await store.find_token("a-gone-refresh") is None
    rotated = await holder.fetchval("SELECT rotated_at FROM tokens WHERE digest = 'r1'")
    assert rotated is None  # r1 was not rotated: it still refreshes
    assert await refresh(store, "r1", "a-after") == RefreshOutcome.KEPT
