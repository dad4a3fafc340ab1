"""A store that cannot be written answers UNAVAILABLE, never a credentials error, and recovers."""

from __future__ import annotations

import sqlite3

import grpc
import pytest

from tests.support.harness import Harness, error_reason


@pytest.mark.parametrize("database_kind", ["sqlite"])  # locks the SQLite file itself
@pytest.mark.parametrize("settings_overrides", [{"sqlite_busy_timeout_ms": 200}])
async def test_locked_database_is_unavailable_then_recovers(harness: Harness) -> None:
    shop = await harness.shop("acme")
    locker = sqlite3.connect(harness.db_path, timeout=5, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    try:
        for call in (harness.anonymous(shop), harness.service(shop)):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            assert error_reason(caught.value) == "temporarily_unavailable"
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    issued = await harness.service(shop)
    assert (await harness.introspect(issued.access_token)).active
