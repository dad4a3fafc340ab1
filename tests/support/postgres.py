"""PostgreSQL for the tests: one migrated template database per test session (per xdist
worker), copied (CREATE DATABASE ... TEMPLATE) for a test that asks for a database. A database
a test is done with is emptied and kept for the next test rather than dropped: on a busy
machine a CREATE and a DROP DATABASE cost about a second per test (a third of the whole suite's
time), emptying its few rows a few milliseconds. It is kept only when it is provably as the
template left it but for rows: no connection left to it (any is ended first), the same tables,
columns and indexes (a fingerprint of the catalog), the same migration; else it is dropped.

The server is `TOKENSERVICE_TEST_POSTGRES_URL` (default: the machine's own, trust auth). When it
cannot be reached the PostgreSQL tests are skipped with a notice, unless
`TOKENSERVICE_TEST_REQUIRE_POSTGRES=1` (set by CI), which turns that into a failure.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import itertools
import os
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
from sqlalchemy.engine import make_url

from server.store.migrate import upgrade

DEFAULT_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
SERVER_URL = os.environ.get("TOKENSERVICE_TEST_POSTGRES_URL", DEFAULT_URL)
REQUIRED = os.environ.get("TOKENSERVICE_TEST_REQUIRE_POSTGRES") == "1"


def with_database(url: str, database: str) -> str:
    return make_url(url).set(database=database).render_as_string(hide_password=False)


def asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


T = TypeVar("T")


def run_apart(make: Callable[[], Awaitable[T]]) -> T:
    """Runs a coroutine to completion on a loop of its own, in a thread: session set-up may be
    asked for from inside a test's running event loop."""

    async def main() -> T:
        return await make()

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, main()).result()


async def _admin() -> asyncpg.Connection:
    return await asyncpg.connect(asyncpg_dsn(SERVER_URL), timeout=5)


# What must be as the template has it for a used database to be handed out again: every
# table's columns and every index of the public schema, and the migration.
_FINGERPRINT = """
SELECT md5(
  coalesce((SELECT string_agg(table_name || '.' || column_name || ':' || data_type || ':'
                              || is_nullable || ':' || coalesce(column_default, ''),
                              ',' ORDER BY table_name, column_name)
            FROM information_schema.columns WHERE table_schema = 'public'), '')
  || '|' ||
  coalesce((SELECT string_agg(indexdef, ',' ORDER BY indexdef)
            FROM pg_indexes WHERE schemaname = 'public'), '')
  || '|' ||
  coalesce((SELECT string_agg(version_num, ',') FROM alembic_version), '')
)
"""
_TABLES = (
    "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
)


@dataclasses.dataclass
class PostgresServer:
    """Hands out migrated databases on the test server, each empty of rows: a copy of the
    template, or one a previous test used and gave back (`drop`)."""

    template: str
    prefix: str
    _counter: itertools.count[int] = dataclasses.field(default_factory=itertools.count)
    _fingerprint: str = ""
    _reusable: set[str] = dataclasses.field(default_factory=set)  # made from the template
    _free: list[str] = dataclasses.field(default_factory=list)  # given back, emptied

    async def create(self, *, empty: bool = False) -> str:
        """A migrated database with no rows; with `empty`, a database with no schema at all."""
        if not empty and self._free:
            return with_database(SERVER_URL, self._free.pop())
        name = f"{self.prefix}_{next(self._counter)}"
        template = "template0" if empty else self.template
        admin = await _admin()
        try:
            await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        finally:
            await admin.close()
        if not empty:
            self._reusable.add(name)
        return with_database(SERVER_URL, name)

    async def drop(self, url: str) -> None:
        """Done with the database: emptied and kept for the next test when it was made from
        the template and its schema is still the template's; dropped otherwise."""
        name = make_url(url).database
        assert name is not None
        admin = await _admin()
        try:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()",
                name,
            )
            if name in self._reusable and await self._emptied(name):
                self._free.append(name)
                return
            self._reusable.discard(name)
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    async def _emptied(self, name: str) -> bool:
        """Deletes every row of the database, if its schema is the template's: True when done."""
        if not self._fingerprint:
            self._fingerprint = await _fingerprint_of(self.template)
        connection = await asyncpg.connect(asyncpg_dsn(with_database(SERVER_URL, name)), timeout=5)
        try:
            if await connection.fetchval(_FINGERPRINT) != self._fingerprint:
                return False
            tables = [row["tablename"] for row in await connection.fetch(_TABLES)]
            async with connection.transaction():
                # Rows in any order: no foreign key is checked while they go.
                await connection.execute("SET LOCAL session_replication_role = replica")
                for table in tables:
                    await connection.execute(f'DELETE FROM "{table}"')  # noqa: S608
        except asyncpg.PostgresError:
            return False
        finally:
            await connection.close()
        return True


async def _fingerprint_of(database: str) -> str:
    connection = await asyncpg.connect(asyncpg_dsn(with_database(SERVER_URL, database)), timeout=5)
    try:
        fingerprint: str = await connection.fetchval(_FINGERPRINT)
        return fingerprint
    finally:
        await connection.close()


def unreachable_reason() -> str | None:
    """Why the test server cannot be used, or None when it can."""

    async def probe() -> None:
        connection = await _admin()
        await connection.close()

    try:
        run_apart(probe)
    except (TimeoutError, OSError, asyncpg.PostgresError) as error:
        return f"PostgreSQL at {make_url(SERVER_URL).render_as_string()} is not reachable ({error})"
    return None


def start_server_session() -> PostgresServer:
    """Creates the migrated template for this test session (synchronously: its own loop)."""
    prefix = f"tokenservice_test_{uuid.uuid4().hex[:8]}"
    template = f"{prefix}_template"

    async def create_template() -> None:
        admin = await _admin()
        try:
            await admin.execute(f'CREATE DATABASE "{template}"')
        finally:
            await admin.close()
        await upgrade(with_database(SERVER_URL, template))

    run_apart(create_template)
    return PostgresServer(template=template, prefix=prefix)


def end_server_session(server: PostgresServer) -> None:
    """Drops the template and anything a crashed test left behind."""

    async def drop_all() -> None:
        admin = await _admin()
        try:
            names = await admin.fetch(
                "SELECT datname FROM pg_database WHERE datname LIKE $1", f"{server.prefix}%"
            )
            for row in names:
                await admin.execute(f'DROP DATABASE IF EXISTS "{row["datname"]}" WITH (FORCE)')
        finally:
            await admin.close()

    run_apart(drop_all)
