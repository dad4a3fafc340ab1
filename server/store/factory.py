"""Builds the store the settings name: migrates the database, opens a SqlStore on it and puts
the in-process caches in front."""

from __future__ import annotations

from server import metrics
from server.settings import Settings
from server.store.cached import CachedStore, cached
from server.store.engines import PoolOptions
from server.store.listener import RevocationListener
from server.store.migrate import upgrade
from server.store.protocol import TokenStore
from server.store.sql import SqlStore


def pool_options(settings: Settings) -> PoolOptions:
    return PoolOptions(
        size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        timeout_seconds=settings.db_pool_timeout_seconds,
        connect_timeout_seconds=settings.db_connect_timeout_seconds,
        statement_timeout_seconds=settings.db_statement_timeout_seconds,
        conflict_retries=settings.db_conflict_retries,
        ping_idle_seconds=settings.db_ping_idle_seconds,
    )


async def open_store(settings: Settings, *, migrate: bool = True) -> TokenStore:
    """Migrates the database (unless told not to) and opens a SqlStore on it, behind the
    in-process caches."""
    timeout = settings.sqlite_busy_timeout_ms
    if migrate:
        await upgrade(settings.database_url, busy_timeout_ms=timeout)
    store = await SqlStore.open(
        settings.database_url, busy_timeout_ms=timeout, pool=pool_options(settings)
    )
    front = cached(
        store,
        token_capacity=settings.token_cache_size,
        max_age=settings.token_cache_seconds,
        client_capacity=settings.client_cache_size,
        on_lookup=_count_cache_lookup,
    )
    if not isinstance(front, CachedStore) or front.tokens.capacity <= 0:
        return front
    if settings.is_sqlite:
        # One serving process on the file, but the CLI may revoke on it meanwhile: a commit by
        # another process empties the token cache (server/store/runners.py) and wakes the feed:
        # which rows it changed, and whether it revoked anything, cannot be told.
        store.watch_other_writers(front.tokens.revoked_unknown)
    else:
        # Several replicas share this database: hear their revocations (server/store/listener.py).
        front.listener = RevocationListener(
            settings.revocation_listener_url or settings.database_url,
            front.tokens,
            probe_seconds=settings.revocation_listener_probe_seconds,
            max_lag_seconds=settings.revocation_max_lag_seconds,
            connect_timeout_seconds=settings.db_connect_timeout_seconds,
        )
        await front.listener.start()
    return front


def _count_cache_lookup(result: str) -> None:
    metrics.record_cache_lookup(result)
