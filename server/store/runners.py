"""Where SqlStore's transactions run. Every store method is a plain function of a synchronous
SQLAlchemy Connection; a runner decides how it reaches the database.

- PostgreSQL (`ServerRunner`): the async engine's pool; each unit runs in `run_sync`, its own
  transaction. Units given the same group key (`write(unit, group=key)`) share transactions
  instead, as SQLite's writer does: while one group of a key is being written, the units of
  that key that arrive wait, and go together as its next group on one connection, BEGIN and
  COMMIT (and the commit's WAL flush) paid once. A key may only be shared by units that
  together take no lock one of them alone would not, so a group can deadlock with nothing a
  single unit could not:
  - `INSERTS`, units that only insert rows of their own (the tokens and sessions an
    IssueToken mints): they take no lock another unit could hold (new random keys; the
    foreign-key check's KEY SHARE lock on an existing session conflicts with no update a
    refresh or a revocation makes), so such a group cannot make a refresh wait either;
  - one session's refreshes (`session_group(id)`): each takes that session's row lock, then
    at most its own refresh token's and its tokens' rows, in that order; a group of them
    holds the same locks in the same order, and instead of queueing one commit after another
    on the session's row lock, the refreshes waiting on it share one.
  A unit that raises rolls its group back and every unit runs again alone; a
  COMMIT that fails is answered to every unit of the group as its error, and none runs again,
  since whether it committed cannot be told. Units given as data (a `Batch`: `Inserts`,
  statements and their rows; store.kept_refresh's refreshes) go further: a run of them in a
  group goes as one (a group of Inserts is one executemany per statement), not one statement
  per unit each paying SQLAlchemy's execution and a round trip; should it fail, each unit
  runs alone as above. Reads run outside transactions (AUTOCOMMIT):
  no BEGIN or ROLLBACK round trip for a statement that takes no lock.
- SQLite (`SqliteRunner`): SQLite has one writer, and every round trip between the event loop
  and a driver thread costs more than the statement itself. So all writes go to one writer
  thread that owns the one write connection and commits them in groups: it takes every unit
  waiting (up to MAX_GROUP), runs them in one BEGIN IMMEDIATE transaction, commits once, and
  only then answers each caller; should one unit fail (or roll itself back), the group is
  rolled back and every unit runs again in a transaction of its own (consecutive `Inserts`
  and other Batch units in a group go as one, as on PostgreSQL). Durability per call is
  unchanged (no caller hears "done" before its commit); the cost of BEGIN/COMMIT and of waking
  the event loop is shared by the group. Reads run beside the writer (WAL): a point read on
  the event loop itself over a connection of its own, a scan of many rows in a small thread
  pool. Between groups and when idle, the writer thread can also watch for commits by other
  processes on the file (`watch_other_writers`), which the caches in front have not heard of.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import queue
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, Protocol, TypeVar, cast

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

R = TypeVar("R")
Unit = Callable[[Connection], Any]

# Units per group commit: enough to amortise BEGIN/COMMIT, few enough that the first caller
# of a group does not wait long for the last.
MAX_GROUP = 64
READ_THREADS = 4
# The group key of units that only insert rows of their own (ServerRunner.write).
INSERTS = "inserts"


def session_group(session_id: str) -> Hashable:
    """The group key of one session's refreshes (ServerRunner.write)."""
    return ("session", session_id)


class ServerRunner:
    """A server database (PostgreSQL) through its async engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        # Reads without BEGIN and ROLLBACK, two round trips a read saved: under READ COMMITTED
        # every statement reads its own snapshot inside a transaction too, and a read takes
        # no lock, so a transaction gave a read nothing. The pool's connections are shared.
        self._reads = engine.execution_options(isolation_level="AUTOCOMMIT")
        # Per group key: the units waiting for its next group, and the task writing its groups
        # (both gone when the key has nothing left to write).
        self._waiting: dict[Hashable, list[_Pending]] = {}
        self._writing: dict[Hashable, asyncio.Task[None]] = {}

    async def write(self, unit: Callable[[Connection], R], *, group: Hashable | None = None) -> R:
        """`unit` in a transaction of its own, or (`group`) in one shared with the other units
        of that key that wait meanwhile (see the module docstring for what may share one)."""
        if group is None:
            async with self._engine.begin() as conn:
                return await conn.run_sync(unit)
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(group, []).append(_Pending(unit, future))
        if group not in self._writing:
            self._writing[group] = asyncio.create_task(
                self._write_groups(group), name="grouped-writes"
            )
        return await future

    async def read(self, unit: Callable[[Connection], R]) -> R:
        """`unit` outside a transaction; run again, once, when the connection it got turns out
        broken (engines._ping_when_idle hands out a connection used moments ago unpinged): a
        read changes nothing, and the failure has invalidated the pool's older connections."""
        try:
            async with self._reads.connect() as conn:
                return await conn.run_sync(unit)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
        async with self._reads.connect() as conn:
            return await conn.run_sync(unit)

    scan = read

    async def close(self) -> None:
        while self._writing:  # what was accepted is written and answered
            await asyncio.shield(next(iter(self._writing.values())))
        await self._engine.dispose()

    async def _write_groups(self, key: Hashable) -> None:
        try:
            while waiting := self._waiting.get(key):
                group, rest = waiting[:MAX_GROUP], waiting[MAX_GROUP:]
                if rest:
                    self._waiting[key] = rest
                else:
                    del self._waiting[key]
                # A caller gone while it waited (a deadline, a cancelled call) has its write
                # dropped, as a transaction of its own would have been rolled back: a refresh
                # nobody hears of must not rotate its token.
                group = [pending for pending in group if not pending.future.done()]
                if not group:
                    continue
                units = [pending.unit for pending in group]
                try:
                    async with self._engine.connect() as conn:
                        outcomes = await conn.run_sync(_run_server_group, units)
                except Exception as exc:  # no connection: every caller hears why
                    outcomes = [(False, exc)] * len(group)
                _settle(list(zip(group, outcomes, strict=True)))
        finally:
            del self._writing[key]


class Batch(Protocol):
    """A unit whose consecutive run in a group can go as one (`_run_units`): `run_many` runs
    units of its own class on `conn` and returns one value per unit, as if each had run in
    turn, raising, as any unit may, to have the group rolled back and each run alone."""

    def __call__(self, conn: Connection) -> Any: ...

    @staticmethod
    def run_many(conn: Connection, units: list[Any]) -> list[Any]: ...


@dataclasses.dataclass(frozen=True)
class Inserts:
    """A unit that only inserts, as data: INSERT statements, each with its rows (every row of
    a statement with the same keys), so that a group of such units can send each statement
    once with all their rows (a Batch). Called, it is an ordinary unit."""

    rows: tuple[tuple[Any, list[dict[str, Any]]], ...]

    def __call__(self, conn: Connection) -> None:
        for statement, rows in self.rows:
            conn.execute(statement, rows)

    @staticmethod
    def run_many(conn: Connection, units: list[Inserts]) -> list[None]:
        """Each statement once with every unit's rows, in the order first met (they only add
        rows of their own, so their order among themselves changes nothing)."""
        by_statement: dict[int, tuple[Any, list[dict[str, Any]]]] = {}
        for unit in units:
            for statement, rows in unit.rows:
                by_statement.setdefault(id(statement), (statement, []))[1].extend(rows)
        Inserts(tuple(by_statement.values()))(conn)
        return [None] * len(units)


def _run_units(conn: Connection, units: list[Unit]) -> list[Any]:
    """Each unit run on `conn`, in order, its value in a list; consecutive Batch units of one
    class go as one (`run_many`)."""
    values: list[Any] = []
    start = 0
    while start < len(units):
        kind = type(units[start])
        end = start + 1
        if hasattr(kind, "run_many"):
            while end < len(units) and type(units[end]) is kind:
                end += 1
        if end - start > 1:
            values += cast("type[Batch]", kind).run_many(conn, units[start:end])
        else:
            values.append(units[start](conn))
        start = end
    return values


@dataclasses.dataclass
class _Pending:
    unit: Unit
    future: asyncio.Future[Any]


_STOP = object()
_IDLE = object()  # no write arrived within the watch interval
# How often the writer thread looks for commits by other connections (`watch_other_writers`).
WATCH_SECONDS = 0.1


@dataclasses.dataclass(frozen=True)
class _Watch:
    changed: Callable[[], None]
    interval: float


class SqliteRunner:
    """The writer thread with group commit, and the read pool (see the module docstring).

    `reader` None: reads go through the writer thread too (an in-memory database, whose one
    connection both must share)."""

    def __init__(self, writer: Engine, reader: Engine | None) -> None:
        self._writer = writer
        self._reader = reader
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._watch: _Watch | None = None
        self.looks = 0  # how often the writer thread has looked for other writers' commits
        self._thread = threading.Thread(target=self._write_loop, name="sqlite-writer", daemon=True)
        self._thread.start()
        self._inline: Connection | None = None
        self._read_pool = (
            concurrent.futures.ThreadPoolExecutor(READ_THREADS, thread_name_prefix="sqlite-read")
            if reader is not None
            else None
        )

    @property
    def has_reader(self) -> bool:
        """A file (reads beside the writer), not an in-memory database."""
        return self._reader is not None

    def watch_other_writers(
        self, changed: Callable[[], None], *, interval: float = WATCH_SECONDS
    ) -> None:
        """From now on, `changed` is called on this event loop within about `interval` of a
        commit to the file by any connection but this runner's writer: another process (the
        CLI revoking sessions while `serve` runs) whose changes this process's caches have not
        heard of. The writer connection's `PRAGMA data_version` moves on every commit but its
        own, which is what tells the two apart; the writer thread looks between groups and
        when idle. At the first look, and after the writer connection is opened again,
        `changed` is called too: what was committed before is not known."""
        loop = asyncio.get_running_loop()

        def tell() -> None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody to tell
                loop.call_soon_threadsafe(changed)

        self._watch = _Watch(tell, interval)
        self._queue.put(_IDLE)  # wakes the writer thread, which waited without a timeout

    async def write(self, unit: Callable[[Connection], R], *, group: Hashable | None = None) -> R:
        """`unit` in the writer thread's next group: every write is grouped here (`group` is
        for server databases)."""
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
        seen: int | None = None  # the writer connection's data_version at the last look
        next_look = 0.0
        try:
            while True:
                watch = self._watch
                try:
                    first = self._queue.get(timeout=watch.interval) if watch else self._queue.get()
                except queue.Empty:
                    first = _IDLE
                watch = self._watch  # set meanwhile, it woke this thread with _IDLE
                if first is _STOP:
                    return
                stopping = False
                if first is not _IDLE:
                    group = [first]
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
                        conn, seen = self._connect(group), None
                    if conn is not None:
                        _answer(group, _run_group(conn, group))
                if watch is not None and not stopping and time.monotonic() >= next_look:
                    if conn is None or conn.invalidated or conn.closed:
                        conn, seen = self._connect([]), None
                    if conn is not None:
                        seen = self._look(conn, seen, watch)
                    next_look = time.monotonic() + watch.interval
                if stopping:
                    return
        finally:
            if conn is not None:
                conn.close()

    def _look(self, conn: Connection, seen: int | None, watch: _Watch) -> int | None:
        """One look for other writers' commits: tells `watch` when the data version is not
        known, has moved since `seen`, or is seen for the first time (what was cached before
        may be stale; after a reconnect `seen` is None); returns the version now."""
        try:
            version: int | None = _data_version(conn)
        except Exception:  # the writes report database errors; here: not known
            version = None
        if version is None or self.looks == 0 or version != seen:
            watch.changed()
        self.looks += 1
        return version

    def _connect(self, group: list[_Pending]) -> Connection | None:
        try:
            return self._writer.connect()
        except Exception as exc:  # the database cannot be opened: every caller hears why
            _answer(group, [(False, exc)] * len(group))
            return None


def _data_version(conn: Connection) -> int:
    """SQLite's count of commits by other connections, read on the driver's connection (a
    PRAGMA opens no transaction there, so SQLAlchemy's bookkeeping is left alone)."""
    driver = conn.connection.driver_connection
    assert driver is not None
    return int(driver.execute("PRAGMA data_version").fetchone()[0])


def _run_group(conn: Connection, group: list[_Pending]) -> list[tuple[bool, Any]]:
    """(ok, value or exception) per unit, once its transaction has ended.

    Optimistically, the whole group in one transaction with no savepoints (each costs two
    statements). A unit that raises (a duplicate, a refresh that rolls itself back) may have
    written part of itself, so then the group is rolled back and each unit runs again alone:
    units are functions of what the database holds, so running one again is safe."""
    if len(group) > 1:
        try:
            with conn.begin():
                values = _run_units(conn, [pending.unit for pending in group])
            return [(True, value) for value in values]
        except Exception:
            if conn.in_transaction():
                conn.rollback()
    return [_run_alone(conn, pending.unit) for pending in group]


def _run_server_group(conn: Connection, units: list[Unit]) -> list[tuple[bool, Any]]:
    """(ok, value or exception) per unit, on a server database: as `_run_group`, but a failed
    COMMIT is every unit's error, with none run again (it may have committed)."""
    if len(units) > 1:
        transaction = conn.begin()
        try:
            values = _run_units(conn, units)
        except Exception:
            with contextlib.suppress(Exception):  # a connection lost mid-group: nothing committed
                transaction.rollback()
        else:
            try:
                transaction.commit()
            except Exception as exc:
                return [(False, exc)] * len(units)
            return [(True, value) for value in values]
    return [_run_alone(conn, unit) for unit in units]


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
