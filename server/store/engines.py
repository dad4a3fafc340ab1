"""Engines for the store's URL: PostgreSQL's pool and connection options; SQLite's PRAGMAs,
BEGIN IMMEDIATE for writers, and the writer/reader pair of a file (or the one shared connection
of an in-memory database)."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine, create_engine, make_url
from sqlalchemy.exc import DisconnectionError, InvalidatePoolError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from server.store.runners import READ_THREADS
from server.store.sqlite_file import ensure_sqlite_file


@dataclasses.dataclass(frozen=True)
class PoolOptions:
    """The connection pool of a server database (PostgreSQL); SQLite has its own scheme."""

    size: int = 10
    max_overflow: int = 10
    # How long a call waits for a free connection before it is told to retry (503).
    timeout_seconds: float = 5.0
    connect_timeout_seconds: float = 5.0
    statement_timeout_seconds: float = 10.0
    # How often a write transaction that lost a serialization conflict or deadlock runs again.
    conflict_retries: int = 5
    # A connection idle at least this long is pinged before use (`_ping_when_idle`).
    ping_idle_seconds: float = 1.0


def create_server_engine(database_url: str, pool: PoolOptions) -> AsyncEngine:
    """PostgreSQL (or another server database): a pool that checks a connection idle for a
    while before use, so connections broken while the database was away are replaced, not
    handed out (`_ping_when_idle`)."""
    connect_args: dict[str, Any] = {}
    if make_url(database_url).get_driver_name() == "asyncpg":
        connect_args = {
            "timeout": pool.connect_timeout_seconds,
            "command_timeout": pool.statement_timeout_seconds,
        }
    engine = create_async_engine(
        database_url,
        pool_size=pool.size,
        max_overflow=pool.max_overflow,
        pool_timeout=pool.timeout_seconds,
        hide_parameters=True,
        connect_args=connect_args,
    )
    _ping_when_idle(engine.sync_engine, pool.ping_idle_seconds)
    return engine


def _ping_when_idle(engine: Engine, idle_seconds: float) -> None:
    """SQLAlchemy's `pool_pre_ping`, for connections idle `idle_seconds` or more only.

    pre_ping checks every connection at every checkout, and on asyncpg its ping is BEGIN, an
    empty statement and ROLLBACK: three round trips before each transaction and each read,
    which on the hot paths cost more than the work (a refresh's group is five). Instead:
    - a connection the driver has seen closed (asyncpg's `is_closed()`: the server ended it,
      a restart, pg_terminate_backend, a failover) is replaced at once, with no round trip;
    - a connection idle `idle_seconds` or more, which may have been cut without the driver
      hearing of it, is pinged; a failed ping invalidates the pool (as pre_ping's does), and
      the call gets a new connection;
    - one checked in moments ago was working then. Should it have broken unheard since, its
      statement fails as a disconnect, which invalidates it and every connection the pool held
      before (SQLAlchemy's disconnect handling). A read then runs again on a new connection
      (runners.ServerRunner.read); a write is told to retry (UNAVAILABLE / 503), as every
      write is while the database is away."""

    @event.listens_for(engine.pool, "checkin")
    def checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.pool, "checkout")
    def checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        is_closed = getattr(getattr(dbapi_connection, "driver_connection", None), "is_closed", None)
        if is_closed is not None and is_closed():
            raise DisconnectionError("the connection was closed")
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < idle_seconds:
            return  # new, or in use moments ago
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # as pre_ping: the pool's other connections are suspect too
            raise InvalidatePoolError("the idle connection did not answer its ping") from exc


def is_sqlite(database_url: str) -> bool:
    return make_url(database_url).get_backend_name() == "sqlite"


def is_sqlite_memory(database_url: str) -> bool:
    url = make_url(database_url)
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def install_sqlite_hooks(engine: Engine, busy_timeout_ms: int, *, immediate: bool) -> None:
    """PRAGMAs on every new connection; with `immediate`, every transaction is BEGIN IMMEDIATE
    (SQLAlchemy's documented recipe: the driver stops emitting BEGIN, we emit our own)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        if immediate:
            dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    if immediate:

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Any) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_sqlite_engine(
    database_url: str, busy_timeout_ms: int, *, immediate: bool, **kwargs: Any
) -> AsyncEngine:
    engine = create_async_engine(database_url, hide_parameters=True, **kwargs)
    install_sqlite_hooks(engine.sync_engine, busy_timeout_ms, immediate=immediate)
    return engine


def create_sqlite_memory_engine(database_url: str, busy_timeout_ms: int) -> Engine:
    """An in-memory database lives and dies with its one connection, shared by every thread."""
    engine = create_engine(
        _sync_url(database_url),
        hide_parameters=True,
        poolclass=StaticPool,
        connect_args={"check_same_thread": False},
    )
    install_sqlite_hooks(engine, busy_timeout_ms, immediate=True)
    return engine


def create_sqlite_file_engines(database_url: str, busy_timeout_ms: int) -> tuple[Engine, Engine]:
    """The writer (one connection, every transaction BEGIN IMMEDIATE) and the reader pool (one
    connection per read thread) of a SQLite file, created first if missing."""
    sync_url = _sync_url(database_url)
    ensure_sqlite_file(database_url)
    writer = create_engine(sync_url, hide_parameters=True, poolclass=StaticPool)
    install_sqlite_hooks(writer, busy_timeout_ms, immediate=True)
    reader = create_engine(
        sync_url,
        hide_parameters=True,
        pool_size=READ_THREADS,
        max_overflow=0,
        connect_args={"check_same_thread": False},
    )
    install_sqlite_hooks(reader, busy_timeout_ms, immediate=False)
    return writer, reader


def _sync_url(database_url: str) -> Any:
    """The stdlib driver's URL: the runners call SQLite from their own threads."""
    return make_url(database_url).set(drivername="sqlite")
