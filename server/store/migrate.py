"""Schema migrations (alembic): run in-process at start-up, or by
`alembic -c server/store/alembic.ini upgrade head`.

The Config is built in code with an absolute script_location, so it works from any working
directory and from an installed package.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from server.store.engines import create_sqlite_engine, is_sqlite
from server.store.errors import store_errors
from server.store.sqlite_file import ensure_sqlite_file

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# The newest migration, from the file names: each migration is `NNNN_what.py` with revision
# "NNNN", one after the other (tests/integration/store/test_migrations.py checks both against
# alembic's own head). A database already there is recognised with one query, so a start on a
# current schema loads no alembic (0.2 s of imports) and parses no migration (15 ms).
HEAD_REVISION = max(path.name[:4] for path in (MIGRATIONS_DIR / "versions").glob("[0-9]*_*.py"))


def alembic_config(
    database_url: str | None = None, *, connection: Connection | None = None
) -> Config:
    """A Config for our migrations; `connection`, when given, is the one env.py migrates."""
    from alembic.config import Config  # only where something is migrated

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    if database_url is not None:
        cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


# pg_advisory_xact_lock key for migrations: any constant no other code uses ("tokn").
MIGRATION_LOCK_KEY = 0x746F6B6E


def upgrade_connection(connection: Connection, revision: str = "head") -> None:
    """Upgrades through an open (sync-facing) connection, inside the caller's transaction.

    Replicas starting together on PostgreSQL would otherwise race to create the same tables:
    there, a transaction-scoped advisory lock makes them migrate one after the other (the later
    ones find the schema current). SQLite's BEGIN IMMEDIATE does the same; other engines go
    without, so run `tokenservice db upgrade` once before starting them."""
    if revision == "head" and revisions_of(connection) == [HEAD_REVISION]:
        return  # current: nothing to migrate, nothing to lock
    from alembic import command  # only where something is migrated

    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
    command.upgrade(alembic_config(connection=connection), revision)


def revisions_of(connection: Connection) -> list[str]:
    """The revisions alembic recorded in the database (none for a database it never saw)."""
    if not inspect(connection).has_table("alembic_version"):
        return []
    return list(connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalars())


def _engine(database_url: str, busy_timeout_ms: int) -> AsyncEngine:
    if is_sqlite(database_url):
        ensure_sqlite_file(database_url)
        # BEGIN IMMEDIATE: concurrent start-ups migrate one after the other, not half-way.
        return create_sqlite_engine(
            database_url, busy_timeout_ms, immediate=True, poolclass=NullPool
        )
    return create_async_engine(database_url, poolclass=NullPool, hide_parameters=True)


async def run_on_url(
    database_url: str, fn: Callable[[Connection], None], *, busy_timeout_ms: int = 5000
) -> None:
    """Runs `fn` on a fresh connection to `database_url`, in one transaction."""
    engine = _engine(database_url, busy_timeout_ms)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(fn)
    finally:
        await engine.dispose()


async def upgrade(database_url: str, *, busy_timeout_ms: int = 5000) -> None:
    """Brings the database to the newest schema; a no-op when it is already there."""
    with store_errors():
        await run_on_url(database_url, upgrade_connection, busy_timeout_ms=busy_timeout_ms)
