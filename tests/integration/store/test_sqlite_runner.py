"""SQLite group commit (server/store/runners.py): concurrent writes share transactions, each
caller hears only its own outcome and only after its commit, and a unit that fails part-way
leaves nothing of itself while the rest of its group is stored."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

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
from server.store.runners import SqliteRunner

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
