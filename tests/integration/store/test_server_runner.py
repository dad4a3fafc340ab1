"""PostgreSQL's grouped writes (server/store/runners.py, ServerRunner): units that only insert
rows of their own share a transaction when they arrive while a group is being written; a unit
that raises leaves nothing of itself while the rest of its group is stored, each alone; and a
COMMIT that fails is every unit's error, none run again (it may have committed). Against a
real PostgreSQL database, with the transaction each unit ran in told by txid_current(); units
given as data (Inserts) send each statement once for their whole group.
Last, token lookups in flight together going as one SELECT."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from server.records import TokenKind
from server.store.engines import PoolOptions, create_server_engine
from server.store.migrate import upgrade
from server.store.runners import INSERTS, Inserts, ServerRunner
from server.store.sql import SqlStore
from tests.support.records import ACCESS, token
from tests.support.statements_sent import rows_sent
from tests.support.waiting import eventually

pytestmark = pytest.mark.postgres
LOCK = 4242  # an advisory lock the test holds to keep the first group waiting


@pytest.fixture
async def runner(postgres_url: str) -> AsyncIterator[ServerRunner]:
    engine = create_server_engine(postgres_url, PoolOptions())
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "CREATE TABLE items (id int PRIMARY KEY,"
                " parent int REFERENCES items (id) DEFERRABLE INITIALLY DEFERRED)"
            )
        )
    runner = ServerRunner(engine)
    try:
        yield runner
    finally:
        await runner.close()


def inserting(item: int, parent: int | None = None) -> Callable[[Connection], int]:
    """A unit inserting one row; returns the id of the transaction it ran in."""

    def unit(conn: Connection) -> int:
        conn.execute(
            text("INSERT INTO items VALUES (:id, :parent)"), {"id": item, "parent": parent}
        )
        return int(conn.execute(text("SELECT txid_current()")).scalar_one())

    return unit


def waiting_for_the_lock(item: int) -> Callable[[Connection], int]:
    def unit(conn: Connection) -> int:
        conn.execute(text("SELECT pg_advisory_xact_lock_shared(:lock)"), {"lock": LOCK})
        return inserting(item)(conn)

    return unit


async def rows(admin: asyncpg.Connection) -> list[int]:
    return [row["id"] for row in await admin.fetch("SELECT id FROM items ORDER BY id")]


async def held_up_group(runner: ServerRunner, admin: asyncpg.Connection) -> asyncio.Task[int]:
    """A first grouped write, waiting on the advisory lock `admin` holds (released by the
    caller), so that the writes started meanwhile wait for the next group."""
    await admin.execute("SELECT pg_advisory_lock($1)", LOCK)
    first = asyncio.create_task(runner.write(waiting_for_the_lock(1), group=INSERTS))

    async def blocked() -> bool:
        return bool(
            await admin.fetchval(
                # this database's only: other tests run beside this one on their own
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
        )

    await eventually(blocked, "the first group waits for the lock")
    return first


async def test_writes_arriving_during_a_group_share_the_next_transaction(
    runner: ServerRunner, postgres_admin: asyncpg.Connection
) -> None:
    first = await held_up_group(runner, postgres_admin)
    later = [asyncio.create_task(runner.write(inserting(n), group=INSERTS)) for n in (2, 3, 4, 5)]
    await asyncio.sleep(0)  # every one of them queued behind the first group
    await postgres_admin.execute("SELECT pg_advisory_unlock($1)", LOCK)

    first_txid = await first
    txids = await asyncio.gather(*later)
    assert len(set(txids)) == 1 and first_txid not in txids  # one transaction for the four
    assert await rows(postgres_admin) == [1, 2, 3, 4, 5]


async def test_ungrouped_writes_each_have_a_transaction_of_their_own(
    runner: ServerRunner,
) -> None:
    txids = await asyncio.gather(*(runner.write(inserting(n)) for n in (1, 2, 3)))
    assert len(set(txids)) == 3


async def test_a_unit_that_raises_leaves_nothing_and_the_rest_run_alone(
    runner: ServerRunner, postgres_admin: asyncpg.Connection
) -> None:
    await runner.write(inserting(3))  # the row the duplicate below collides with
    first = await held_up_group(runner, postgres_admin)
    later = [asyncio.create_task(runner.write(inserting(n), group=INSERTS)) for n in (2, 3, 4)]
    await asyncio.sleep(0)
    await postgres_admin.execute("SELECT pg_advisory_unlock($1)", LOCK)

    await first
    outcomes = await asyncio.gather(*later, return_exceptions=True)
    assert isinstance(outcomes[1], IntegrityError)
    assert isinstance(outcomes[0], int) and isinstance(outcomes[2], int)
    assert outcomes[0] != outcomes[2]  # run again, each in a transaction of its own
    assert await rows(postgres_admin) == [1, 2, 3, 4]


async def test_a_failed_commit_is_every_units_error_and_none_runs_again(
    runner: ServerRunner, postgres_admin: asyncpg.Connection
) -> None:
    """The foreign key is checked at COMMIT (deferred): the group's COMMIT fails. Whether a
    COMMIT that fails committed cannot be told in general (the connection may have been lost
    after the server committed), so the good unit must not be run again: once could be twice."""
    first = await held_up_group(runner, postgres_admin)
    good = asyncio.create_task(runner.write(inserting(2), group=INSERTS))
    bad = asyncio.create_task(runner.write(inserting(3, parent=999), group=INSERTS))
    await asyncio.sleep(0)
    await postgres_admin.execute("SELECT pg_advisory_unlock($1)", LOCK)

    await first
    outcomes = await asyncio.gather(good, bad, return_exceptions=True)
    assert all(isinstance(outcome, IntegrityError) for outcome in outcomes), outcomes
    assert await rows(postgres_admin) == [1]


async def test_close_waits_for_the_group_being_written(
    runner: ServerRunner, postgres_admin: asyncpg.Connection
) -> None:
    first = await held_up_group(runner, postgres_admin)
    closing = asyncio.create_task(runner.close())
    await asyncio.sleep(0)
    assert not closing.done()
    await postgres_admin.execute("SELECT pg_advisory_unlock($1)", LOCK)
    await closing
    assert isinstance(await first, int)
    assert await rows(postgres_admin) == [1]


ITEM = text("INSERT INTO items VALUES (:id, :parent)")


def item_inserts(*items: int) -> Inserts:
    return Inserts(((ITEM, [{"id": item, "parent": None} for item in items]),))


async def test_inserts_given_as_data_go_as_one_statement_for_their_group(
    runner: ServerRunner, postgres_admin: asyncpg.Connection
) -> None:
    first = await held_up_group(runner, postgres_admin)
    with rows_sent("INSERT INTO items") as sent:
        later = [
            asyncio.create_task(runner.write(inserts, group=INSERTS))
            for inserts in (item_inserts(2), item_inserts(3, 4), item_inserts(5))
        ]
        await asyncio.sleep(0)
        await postgres_admin.execute("SELECT pg_advisory_unlock($1)", LOCK)
        await first
        assert await asyncio.gather(*later) == [None, None, None]
    assert sent == [1, 4]  # the first group's own row, then the four in one executemany
    assert await rows(postgres_admin) == [1, 2, 3, 4, 5]


async def test_merged_inserts_that_fail_run_again_each_alone(
    runner: ServerRunner, postgres_admin: asyncpg.Connection
) -> None:
    await runner.write(item_inserts(3))
    first = await held_up_group(runner, postgres_admin)
    later = [
        asyncio.create_task(runner.write(item_inserts(item), group=INSERTS)) for item in (2, 3, 4)
    ]
    await asyncio.sleep(0)
    await postgres_admin.execute("SELECT pg_advisory_unlock($1)", LOCK)
    await first
    outcomes = await asyncio.gather(*later, return_exceptions=True)
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], IntegrityError)
    assert await rows(postgres_admin) == [1, 2, 3, 4]


async def test_first_lookups_in_flight_together_share_one_statement(postgres_url: str) -> None:
    """SqlStore on PostgreSQL: token lookups that arrive together go to the database as one
    SELECT (server/store/coalesced_reads.py), each still answered for its own digest."""
    await upgrade(postgres_url)
    engine = create_server_engine(postgres_url, PoolOptions())
    store = SqlStore(ServerRunner(engine))
    saved = [token(f"t{n}", kind=TokenKind.SERVICE, use=ACCESS, session=None) for n in range(30)]
    try:
        await store.save_tokens(saved)
        selects: list[str] = []

        def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
            if statement.lstrip().upper().startswith("SELECT") and "tokens" in statement:
                selects.append(statement)

        event.listen(engine.sync_engine, "before_cursor_execute", count)
        digests = [f"t{n}" for n in range(30)] + ["missing"]
        views = await asyncio.gather(*(store.find_token(digest) for digest in digests))
        assert [view.token if view else None for view in views] == [*saved, None]
        # All 31 were queued before the fetching task (started by the first) ran: one SELECT.
        assert len(selects) == 1
    finally:
        await store.close()
