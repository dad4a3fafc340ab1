"""The databases tests run on, as fixtures (registered once, in tests/conftest.py): a migrated
SQLite template copied per test, the PostgreSQL server, and `database_kind` / `database_url`,
which run a test on a real SQLite file and on a fresh PostgreSQL database (skipped, with a
notice, where no PostgreSQL server is reachable; a failure where CI requires one). A test that
is about SQLite itself says so by parametrizing `database_kind` with "sqlite" alone."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from server.store.listener import asyncpg_dsn
from server.store.migrate import upgrade
from tests.support import postgres


# --- SQLite ------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to the newest schema once per session (per xdist worker), for
    `copy_sqlite_template`: an Alembic run per test costs 30 to 200 ms, a copy well under 1 ms.
    Tests about migrating or starting on an empty file do not use it."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    postgres.run_apart(lambda: upgrade(f"sqlite+aiosqlite:///{path}"))
    return path


def copy_sqlite_template(template: Path, destination: Path) -> None:
    """Puts a migrated, empty database at `destination`, private (0600) as the service creates
    its own file (server/store/sqlite_file.py)."""
    shutil.copyfile(template, destination)
    os.chmod(destination, 0o600)


# --- PostgreSQL ----------------------------------------------------------------------------------
POSTGRES_SKIPPED: list[str] = []


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[postgres.PostgresServer]:
    """The test PostgreSQL server, or a skip (a failure when CI requires it) saying why not."""
    reason = postgres.unreachable_reason()
    if reason is not None:
        if postgres.REQUIRED:
            pytest.fail(f"{reason}; TOKENSERVICE_TEST_REQUIRE_POSTGRES=1 requires it")
        POSTGRES_SKIPPED.append(reason)
        pytest.skip(reason)
    server = postgres.start_server_session()
    try:
        yield server
    finally:
        postgres.end_server_session(server)


@pytest.fixture
async def postgres_url(postgres_server: postgres.PostgresServer) -> AsyncIterator[str]:
    """A fresh migrated PostgreSQL database alone, with no SQLite twin: for tests of replicas
    sharing one database, which only PostgreSQL serves."""
    url = await postgres_server.create()
    try:
        yield url
    finally:
        await postgres_server.drop(url)


@pytest.fixture
async def postgres_admin(postgres_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain asyncpg connection to `postgres_url`'s database, beside the service's pool: to
    hold locks, terminate backends and read what the service wrote."""
    connection = await asyncpg.connect(asyncpg_dsn(postgres_url))
    try:
        yield connection
    finally:
        await connection.close()


# --- Both ----------------------------------------------------------------------------------------
@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
async def database_url(
    database_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[str]:
    """The URL of a SQLite file in the test's folder (not created: the harness copies the
    template there, other tests let the service migrate it), or of a fresh migrated PostgreSQL
    database dropped after the test."""
    if database_kind == "sqlite":
        yield sqlite_url(tmp_path / "tokens.db")
        return
    server: postgres.PostgresServer = request.getfixturevalue("postgres_server")
    url = await server.create()
    try:
        yield url
    finally:
        await server.drop(url)
