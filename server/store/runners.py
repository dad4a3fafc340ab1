"""Where SqlStore's transactions run. Every store method is a plain function of a synchronous
SQLAlchemy Connection; a runner decides how it reaches the database.

- PostgreSQL (`ServerRunner`): the async engine's pool; each unit runs in `run_sync`, its own
  transaction.
- SQLite (`SqliteRunner`): SQLite has one writer, and every round trip between the event loop
  and a driver thread costs more than the statement itself. So all writes go to one writer
  thread that owns the one write connection and commits them in groups: it takes every unit
  waiting (up to MAX_GROUP), runs them in one BEGIN IMMEDIATE transaction, commits once, and
  only then answers each caller; should one unit fail (or roll itself back), the group is
  rolled back and every unit runs again in a transaction of its own. Durability per call is
  unchanged (no caller hears "done" before its commit); the cost of BEGIN/COMMIT and of waking
  the event loop is shared by the group. Reads run beside the writer (WAL): a point read on
  the event loop itself over a connection of its own, a scan of many rows in a small thread
  pool.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine

R = TypeVar("R")
Unit = Callable[[Connection], Any]

# Units per group commit: enough to amortise BEGIN/COMMIT, few enough that the first caller
# of a group does not wait long for the last.
MAX_GROUP = 64
READ_THREADS = 4


class ServerRunner:
    """A server database (PostgreSQL) through its async engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def write(self, unit: Callable[[Connection], R]) -> R:
        async with self._engine.begin() as conn:
            return await conn.run_sync(unit)

    async def read(self, unit: Callable[[Connection], R]) -> R:
        async with self._engine.connect() as conn:
            return await conn.run_sync(unit)

    scan = read

    async def close(self) -> None:
        await self._engine.dispose()


@dataclasses.dataclass
class _Pending:
    unit: Unit
    future: asyncio.Future[Any]


_STOP = object()


class SqliteRunner:
    """The writer thread with group commit, and the read pool (see the module docstring).

    `reader` None: reads go through the writer thread too (an in-memory database, whose one
    connection both must share)."""

    def __init__(self, writer: Engine, reader: Engine | None) -> None:
        self._writer = writer
        self._reader = reader
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._write_loop, name="sqlite-writer", daemon=True)
        self._thread.start()
        self._inline: Connection | None = None
        self._read_pool = (
            concurrent.futures.ThreadPoolExecutor(READ_THREADS, thread_name_prefix="sqlite-read")
            if reader is not None
            else None
        )

    async def write(self, unit: Callable[[Connection], R]) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.put(_Pending(unit, future))
        return await future

    async def read(self, unit: Callable[[Connection], R]) -> R:
        """A point read (one row by key), run right here on the event loop: from SQLite's page
        cache it takes a few microseconds, less than the hand-off to a thread would, and in
        WAL mode a reader never waits for the writer."""
        if self._reader is None:
            return await self.write(unit)
        conn = self._inline
        if conn is None or conn.invalidated or conn.closed:
            conn = self._inline = self._reader.connect()
        try:
            return unit(conn)
        finally:
            conn.rollback()  # ends SQLAlchemy's autobegun (empty) transaction: a fresh snapshot

    async def scan(self, unit: Callable[[Connection], R]) -> R:
        """A read of many rows (lists, the janitor's pages), in the read threads."""
        if self._read_pool is None or self._reader is None:
            return await self.write(unit)
        reader = self._reader

        def run() -> R:
            with reader.connect() as conn:
                return unit(conn)

        return await asyncio.get_running_loop().run_in_executor(self._read_pool, run)

    async def close(self) -> None:
        self._queue.put(_STOP)
        await asyncio.to_thread(self._thread.join)
        if self._inline is not None:
            self._inline.close()
        if self._read_pool is not None:
            self._read_pool.shutdown(wait=True)
        self._writer.dispose()
        if self._reader is not None:
            self._reader.dispose()

    # --- the writer thread ----------------------------------------------------------------
    def _write_loop(self) -> None:
        conn: Connection | None = None
        try:
            while True:
                first = self._queue.get()
                if first is _STOP:
                    return
                group = [first]
                stopping = False
                while len(group) < MAX_GROUP:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stopping = True
                        break
                    group.append(item)
                if conn is None or conn.invalidated or conn.closed:
                    conn = self._connect(group)
                if conn is not None:
                    _answer(group, _run_group(conn, group))
                if stopping:
                    return
        finally:
            if conn is not None:
                conn.close()

    def _connect(self, group: list[_Pending]) -> Connection | None:
        try:
            return self._writer.connect()
        except Exception as exc:  # the database cannot be opened: every caller hears why
            _answer(group, [(False, exc)] * len(group))
            return None


def _run_group(conn: Connection, group: list[_Pending]) -> list[tuple[bool, Any]]:
    """(ok, value or exception) per unit, once its transaction has ended.

    Optimistically, the whole group in one transaction with no savepoints (each costs two
    statements). A unit that raises (a duplicate, a refresh that rolls itself back) may have
    written part of itself, so then the group is rolled back and each unit runs again alone:
    units are functions of what the database holds, so running one again is safe."""
    if len(group) > 1:
        try:
            with conn.begin():
                values = [pending.unit(conn) for pending in group]
            return [(True, value) for value in values]
        except Exception:
            if conn.in_transaction():
                conn.rollback()
    return [_run_alone(conn, pending.unit) for pending in group]


def _run_alone(conn: Connection, unit: Unit) -> tuple[bool, Any]:
    try:
        with conn.begin():
            return True, unit(conn)
    except Exception as exc:
        if conn.in_transaction():
            conn.rollback()
        return False, exc


def _answer(group: list[_Pending], outcomes: list[tuple[bool, Any]]) -> None:
    """Settles the futures on their loops: one wake-up per loop, not one per caller."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Pending, tuple[bool, Any]]]] = {}
    for pending, outcome in zip(group, outcomes, strict=True):
        by_loop.setdefault(pending.future.get_loop(), []).append((pending, outcome))
    for loop, settled in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            loop.call_soon_threadsafe(_settle, settled)


def _settle(settled: list[tuple[_Pending, tuple[bool, Any]]]) -> None:
    for pending, (ok, value) in settled:
        if pending.future.done():  # the caller was cancelled
            continue
        if ok:
            pending.future.set_result(value)
        else:
            pending.future.set_exception(value)
