"""The token store: `open_store` prepares and opens the implementation for the settings."""

from __future__ import annotations

from server.settings import Settings
from server.store.migrate import upgrade
from server.store.protocol import TokenStore
from server.store.sql import SqlStore


async def open_store(settings: Settings, *, migrate: bool = True) -> TokenStore:
    """Migrates the database (unless told not to) and opens a SqlStore on it."""
    timeout = settings.sqlite_busy_timeout_ms
    if migrate:
        await upgrade(settings.database_url, busy_timeout_ms=timeout)
    return await SqlStore.open(settings.database_url, busy_timeout_ms=timeout)
