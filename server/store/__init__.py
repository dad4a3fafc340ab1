"""The token store: `open_store` prepares and opens the implementation for the settings.

SQLAlchemy and Alembic are imported only when a store is opened: importing a record type
(server/store/records.py) runs this module, and the standalone bridge, which needs the records
but no database, must not load them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from server import metrics
from server.settings import Settings

if TYPE_CHECKING:
    from server.store.protocol import TokenStore
    from server.store.sql import PoolOptions


def pool_options(settings: Settings) -> PoolOptions:
    from server.store.sql import PoolOptions

    return PoolOptions(
        size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        timeout_seconds=settings.db_pool_timeout_seconds,
        connect_timeout_seconds=settings.db_connect_timeout_seconds,
        statement_timeout_seconds=settings.db_statement_timeout_seconds,
        conflict_retries=settings.db_conflict_retries,
    )


async def open_store(settings: Settings, *, migrate: bool = True) -> TokenStore:
    """Migrates the database (unless told not to) and opens a SqlStore on it, behind the
    in-process caches."""
    from server.store.cached import cached
    from server.store.migrate import upgrade
    from server.store.sql import SqlStore

    timeout = settings.sqlite_busy_timeout_ms
    if migrate:
        await upgrade(settings.database_url, busy_timeout_ms=timeout)
    store = await SqlStore.open(
        settings.database_url, busy_timeout_ms=timeout, pool=pool_options(settings)
    )
    return cached(
        store,
        token_capacity=settings.token_cache_size,
        max_age=settings.token_cache_seconds,
        client_capacity=settings.client_cache_size,
        on_lookup=_count_cache_lookup,
    )


def _count_cache_lookup(hit: bool) -> None:
    if hit:
        metrics.record_cache_hit()
    else:
        metrics.record_cache_miss()
