"""PostgreSQL for the tests: one migrated template database per test session, and a fresh copy
of it (CREATE DATABASE ... TEMPLATE, fast) for every test that asks, dropped afterwards.

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


@dataclasses.dataclass
class PostgresServer:
    """Hands out fresh, migrated databases on the test server."""

    template: str
    prefix: str
    _counter: itertools.count[int] = dataclasses.field(default_factory=itertools.count)

    async def create(self, *, empty: bool = False) -> str:
        """A migrated copy of the template; with `empty`, a database with no schema at all."""
        name = f"{self.prefix}_{next(self._counter)}"
        template = "template0" if empty else self.template
        admin = await _admin()
        try:
            await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        finally:
            await admin.close()
        return with_database(SERVER_URL, name)

    async def drop(self, url: str) -> None:
        name = make_url(url).database
        admin = await _admin()
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


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
