"""SQLite group commit (server/store/runners.py): concurrent writes share transactions, each
caller hears only its own outcome and only after its commit, and a unit that fails part-way
leaves nothing of itself while the rest of its group is stored; consecutive units given as data
(Inserts) go as one statement."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    event,
    insert,
    select,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from server.store.engines import install_sqlite_hooks
from server.store.runners import Inserts, SqliteRunner
from tests.support.statements_sent import rows_sent

metadata = MetaData()
items = Table("items", metadata, Column("id", Integer, primary_key=True), Column("name", String))


class Boom(Exception):
    pass


@pytest.fixture
async def runner(tmp_path: Path) -> AsyncIterator[tuple[SqliteRunner, list[int]]]:
    url = f"sqlite:///{tmp_path / 'runner.db'}"
    writer: Engine = create_engine(url, poolclass=StaticPool)
    install_sqlite_hooks(writer, 5000, immediate=True)
    reader = create_engine(url, connect_args={"check_same_thread": False})
    install_sqlite_hooks(reader, 5000, immediate=False)
    with writer.begin() as conn:
        metadata.create_all(conn)
    commits: list[int] = []
    event.listen(writer, "commit", lambda _conn: commits.append(1))
    commits.clear()
    r = SqliteRunner(writer, reader)
    yield r, commits
    await r.close()


def add(item_id: int, *, fail_after_insert: bool = False) -> Callable[[Connection], int]:
    def unit(conn: Connection) -> int:
        conn.execute(insert(items), {"id": item_id, "name": f"item {item_id}"})
        if fail_after_insert:
            raise Boom(item_id)
        return item_id

    return unit


def stored(conn: Connection) -> set[int]:
    return set(conn.execute(select(items.c.id)).scalars())


async def test_concurrent_writes_are_committed_in_groups(
    runner: tuple[SqliteRunner, list[int]],
) -> None:
    r, commits = runner
    results = await asyncio.gather(*(r.write(add(i)) for i in range(200)))
    assert results == list(range(200))
    assert await r.read(stored) == set(range(200))
    assert len(commits) < 200 / 4, f"{len(commits)} commits for 200 writes: not grouped"


async def test_a_failing_unit_leaves_nothing_and_its_group_is_stored(
    runner: tuple[SqliteRunner, list[int]],
) -> None:
    r, _ = runner
    calls = [r.write(add(i, fail_after_insert=(i == 7))) for i in range(20)]
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(outcomes[7], Boom)
    assert [o for i, o in enumerate(outcomes) if i != 7] == [i for i in range(20) if i != 7]
    assert await r.read(stored) == set(range(20)) - {7}


async def test_a_duplicate_fails_only_its_own_caller(
    runner: tuple[SqliteRunner, list[int]],
) -> None:
    r, _ = runner
    await r.write(add(1))
    outcomes = await asyncio.gather(r.write(add(1)), r.write(add(2)), return_exceptions=True)
    assert "UNIQUE" in str(outcomes[0]) and outcomes[1] == 2
    assert await r.read(stored) == {1, 2}


async def test_an_answer_comes_after_its_commit(
    runner: tuple[SqliteRunner, list[int]],
) -> None:
    """What a caller was told is stored is visible to a new connection at once."""
    r, _ = runner
    for i in range(20):
        await r.write(add(i))
        assert i in await r.read(stored)


def item_inserts(*ids: int) -> Inserts:
    return Inserts(((ITEM_INSERT, [{"id": i, "name": f"item {i}"} for i in ids]),))


ITEM_INSERT = insert(items)


async def writer_held(r: SqliteRunner) -> tuple[asyncio.Task[None], threading.Event]:
    """A write that keeps the writer thread busy until the returned event is set, so that the
    writes queued meanwhile make up the next group, whatever the machine's speed."""
    entered, release = threading.Event(), threading.Event()

    def unit(_conn: Connection) -> None:
        entered.set()
        release.wait(30)

    held = asyncio.create_task(r.write(unit))
    await asyncio.to_thread(entered.wait, 30)
    return held, release


async def test_consecutive_inserts_given_as_data_go_as_one_statement(
    runner: tuple[SqliteRunner, list[int]],
) -> None:
    r, commits = runner
    held, release = await writer_held(r)
    units: list[Callable[[Connection], Any]] = [
        item_inserts(1),
        item_inserts(2, 3),
        add(4),
        item_inserts(5),
        item_inserts(6),
    ]
    with rows_sent("INSERT INTO items") as sent:
        writes = [asyncio.create_task(r.write(unit)) for unit in units]
        await asyncio.sleep(0)  # all queued behind the held write
        release.set()
        await held
        assert await asyncio.gather(*writes) == [None, None, 4, None, None]
    assert sent == [3, 1, 2]  # 1-3 in one statement, the ordinary unit, then 5-6
    assert len(commits) == 2  # the held write's, then one for the five
    assert await r.read(stored) == {1, 2, 3, 4, 5, 6}


async def test_merged_inserts_with_a_duplicate_fail_only_its_caller(
    runner: tuple[SqliteRunner, list[int]],
) -> None:
    r, _ = runner
    await r.write(item_inserts(2))
    held, release = await writer_held(r)
    writes = [asyncio.create_task(r.write(item_inserts(i))) for i in (1, 2, 3)]
    await asyncio.sleep(0)
    release.set()
    await held
    outcomes = await asyncio.gather(*writes, return_exceptions=True)
    assert outcomes[0] is None and outcomes[2] is None and "UNIQUE" in str(outcomes[1])
    assert await r.read(stored) == {1, 2, 3}
