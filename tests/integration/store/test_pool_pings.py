"""The PostgreSQL pool pings only connections that have been idle (server/store/engines.py,
`_ping_when_idle`), on real PostgreSQL: a connection checked out again within the setting
costs no ping, one idle past it is pinged; and a pooled connection whose backend was ended
(pg_terminate_backend) is replaced before its next use, pinged or not, so no call fails."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from server.store.engines import PoolOptions, create_server_engine
from server.store.runners import ServerRunner
from tests.support.waiting import eventually

pytestmark = pytest.mark.postgres


async def backend_of_a_call(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(text("SELECT pg_backend_pid()")))


async def driver_of_the_pooled(engine: AsyncEngine) -> asyncpg.Connection:
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert isinstance(driver, asyncpg.Connection)
        return driver


async def pooled_then_terminated(engine: AsyncEngine, admin: asyncpg.Connection) -> int:
    """The backend of the pool's one connection, terminated while the connection is idle, once
    the driver has seen its end (not a call racing the backend's exit)."""
    pid = await backend_of_a_call(engine)
    driver = await driver_of_the_pooled(engine)
    assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)

    async def seen_closed() -> bool:
        return bool(driver.is_closed())

    await eventually(seen_closed, "the driver seeing its connection closed")
    return pid


def counting_pings(engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    pings: list[int] = []
    ping = engine.sync_engine.dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        pings.append(1)
        return bool(ping(dbapi_connection))

    monkeypatch.setattr(engine.sync_engine.dialect, "do_ping", counted)
    return pings


@pytest.mark.parametrize(("idle_seconds", "pinged"), [(0.0, 3), (3600.0, 0)])
async def test_only_connections_idle_past_the_setting_are_pinged(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, idle_seconds: float, pinged: int
) -> None:
    engine = create_server_engine(postgres_url, PoolOptions(size=1, ping_idle_seconds=idle_seconds))
    pings = counting_pings(engine, monkeypatch)
    try:
        backends = {await backend_of_a_call(engine) for _ in range(4)}
        assert len(backends) == 1  # one pooled connection, reused
        assert len(pings) == pinged  # the first checkout opened it: no ping
    finally:
        await engine.dispose()


@pytest.mark.parametrize("idle_seconds", [0.0, 3600.0])
async def test_a_connection_the_server_ended_is_replaced_before_use(
    postgres_url: str, postgres_admin: asyncpg.Connection, idle_seconds: float
) -> None:
    engine = create_server_engine(postgres_url, PoolOptions(size=1, ping_idle_seconds=idle_seconds))
    try:
        terminated = await pooled_then_terminated(engine, postgres_admin)
        assert await backend_of_a_call(engine) != terminated  # no call failed
    finally:
        await engine.dispose()


async def test_a_read_on_a_connection_broken_unseen_runs_again_on_a_new_one(
    postgres_url: str,
) -> None:
    """Not pinged (used moments ago) and broken before the driver could hear of it: the read
    fails as a disconnect, and the runner runs it again, once, on a new connection."""
    engine = create_server_engine(postgres_url, PoolOptions(size=1, ping_idle_seconds=3600.0))
    runner = ServerRunner(engine)
    try:
        first = await backend_of_a_call(engine)
        driver = await driver_of_the_pooled(engine)
        # Cut under the driver: it hears of it only on a later turn of the loop, after the
        # checkout below (which does not wait) has handed the connection out.
        driver._transport.abort()
        pid = await runner.read(lambda conn: conn.execute(text("SELECT pg_backend_pid()")).scalar())
        assert pid != first
    finally:
        await runner.close()
