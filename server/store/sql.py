"""The TokenStore on SQLAlchemy Core: SQLite (the stdlib driver, in threads) and PostgreSQL
(asyncpg).

Every method's transaction is a plain function of a synchronous Connection, handed to a runner
(server/store/runners.py). SQLite lets one connection write at a time, so every write goes to
one writer thread that begins with BEGIN IMMEDIATE (taking the write lock up front, waiting up
to busy_timeout) and commits concurrent writes as a group; reads use a separate pool, which WAL
lets run beside the writer. PostgreSQL needs none of this: one pool, row locks; a write
transaction that loses a serialization conflict or a deadlock is run again, a bounded number of
times, and then reported as unavailable (never as a wrong answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import random
import secrets
import sqlite3
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import (
    Integer,
    Row,
    bindparam,
    delete,
    event,
    exists,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, Engine, create_engine, make_url
from sqlalchemy.exc import (
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from server.errors import AlreadyExists, InvalidRequest, NotFound, StoreUnavailable
from server.store.records import (
    ClientKind,
    ClientRecord,
    CustomerRecord,
    KeyStatus,
    LoginFailures,
    PurgeReport,
    RefreshOutcome,
    SessionContext,
    SessionRecord,
    SessionUpdate,
    SigningKeyRecord,
    TenantRecord,
    TokenKind,
    TokenRecord,
    TokenUse,
    TokenView,
)
from server.store.runners import READ_THREADS, ServerRunner, SqliteRunner
from server.store.schema import (
    clients,
    customers,
    login_failures,
    service_meta,
    sessions,
    signing_keys,
    tenants,
    tokens,
)
from server.store.sqlite_file import ensure_sqlite_file

log = logging.getLogger(__name__)

# --- messages (shared with MemoryStore so both stores say the same thing) ----------------------
UNAVAILABLE = "the token store is unavailable; retry later"
ACTIVE_KEY_RETIRE = "the active signing key cannot be retired; rotate first"
IDENTIFIER_EXISTS = "a token or session with this identifier already exists"
# purge_expired: at most this many sessions or tokens per transaction (and per IN list).
MAX_PURGE_BATCH = 10_000


def check_purge_batch(batch_size: int) -> None:
    if not 1 <= batch_size <= MAX_PURGE_BATCH:
        raise InvalidRequest(f"batch_size must be between 1 and {MAX_PURGE_BATCH}")


def tenant_exists(name: str) -> str:
    return f"tenant '{name}' already exists"


def tenant_missing(name: str) -> str:
    return f"tenant '{name}' does not exist"


def client_exists(client_id: str) -> str:
    return f"client '{client_id}' already exists"


def customer_exists(tenant: str) -> str:
    return f"customer with this email already exists in tenant '{tenant}'"


def key_exists(kid: str) -> str:
    return f"signing key '{kid}' already exists"


# --- error mapping: the one place driver errors become service errors ---------------------------
# SQLSTATEs after which the same transaction, run again, may well succeed.
_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected


# SQLSTATE class 22, data exception: a value too long, out of range, or badly encoded.
_DATA_EXCEPTION_CLASS = "22"
VALUE_REFUSED = "a value in the request is too long or not acceptable to the store"
# SQLSTATE classes of a database that cannot serve now but will again: connection exception
# (08), insufficient resources (53), and operator intervention (57P: shutting down, starting
# up, "cannot connect now").
_UNAVAILABLE_SQLSTATE_PREFIXES = ("08", "53", "57P")
# read_only_sql_transaction: a write reached a standby (a failover in progress) or a database
# made read-only; reads still work, so readiness probes a write (SqlStore.ping).
_UNAVAILABLE_SQLSTATES = frozenset({"25006"})


class Conflict(Exception):
    """A write transaction lost a serialization conflict or a deadlock: run it again."""


_UNAVAILABLE_ERRORS = (
    OperationalError,
    InterfaceError,
    PoolTimeoutError,
    sqlite3.OperationalError,
    ConnectionError,
    TimeoutError,
    OSError,
)


@contextlib.contextmanager
def store_errors(*, duplicate: str | None = None, missing: str | None = None) -> Iterator[None]:
    """Maps driver errors: a unique violation to AlreadyExists(duplicate), a foreign-key
    violation to NotFound(missing), a serialization conflict or deadlock to Conflict (run the
    transaction again), an unreachable or locked database to StoreUnavailable."""
    try:
        yield
    except IntegrityError as exc:
        if _is_unique_violation(exc):
            if duplicate is not None:
                raise AlreadyExists(duplicate) from None
        elif missing is not None:
            raise NotFound(missing) from None
        raise
    except DBAPIError as exc:
        state = _sqlstate(exc) or ""
        if state in _RETRYABLE_SQLSTATES:
            raise Conflict from None
        if state.startswith(_DATA_EXCEPTION_CLASS):
            # Input that validation let through but the database refuses (too long, bad
            # encoding): the caller's mistake, so a 400, never a 500. Validation should catch
            # it first; the warning says where it did not.
            log.warning("token store refused a value: SQLSTATE %s", state)
            raise InvalidRequest(VALUE_REFUSED) from None
        unavailable = (
            isinstance(exc, _UNAVAILABLE_ERRORS)
            or exc.connection_invalidated
            or state.startswith(_UNAVAILABLE_SQLSTATE_PREFIXES)
            or state in _UNAVAILABLE_SQLSTATES
        )
        if not unavailable:
            raise
        _log_unavailable(exc)
        raise StoreUnavailable(UNAVAILABLE) from exc
    except _UNAVAILABLE_ERRORS as exc:
        _log_unavailable(exc)
        raise StoreUnavailable(UNAVAILABLE) from exc


def _sqlstate(exc: DBAPIError) -> str | None:
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return str(code) if code else None


def _is_unique_violation(exc: IntegrityError) -> bool:
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    if code:
        return bool(code == "23505")
    text = str(exc.orig).lower()
    return "unique" in text or "duplicate" in text


def _log_unavailable(exc: BaseException) -> None:
    """Class names and the driver's own message only: engines hide SQL parameters."""
    orig = getattr(exc, "orig", None) or exc
    detail = str(orig).splitlines()[0][:200] if str(orig) else ""
    log.warning(
        "token store unavailable: %s (%s.%s: %s)",
        type(exc).__name__,
        type(orig).__module__,
        type(orig).__name__,
        detail,
    )


# --- engines ------------------------------------------------------------------------------------
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


def create_server_engine(database_url: str, pool: PoolOptions) -> AsyncEngine:
    """PostgreSQL (or another server database): a pool that checks each connection before use,
    so connections broken while the database was away are replaced, not handed out."""
    connect_args: dict[str, Any] = {}
    if make_url(database_url).get_driver_name() == "asyncpg":
        connect_args = {
            "timeout": pool.connect_timeout_seconds,
            "command_timeout": pool.statement_timeout_seconds,
        }
    return create_async_engine(
        database_url,
        pool_pre_ping=True,
        pool_size=pool.size,
        max_overflow=pool.max_overflow,
        pool_timeout=pool.timeout_seconds,
        hide_parameters=True,
        connect_args=connect_args,
    )


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


# --- statements, built once ---------------------------------------------------------------------
_REFRESH = TokenUse.REFRESH.value
_PING = select(literal(1))
_INSERT_TENANT = insert(tenants)
_INSERT_CLIENT = insert(clients)
_INSERT_CUSTOMER = insert(customers)
_INSERT_SESSION = insert(sessions)
_INSERT_TOKEN = insert(tokens)
_INSERT_KEY = insert(signing_keys)

_TENANT = select(tenants).where(tenants.c.name == bindparam("name"))
_TENANTS = select(tenants).order_by(tenants.c.name)
_SET_ALLOWED_ORIGINS = (
    update(tenants)
    .where(tenants.c.name == bindparam("ao_name"))
    .values(allowed_origins=bindparam("ao_origins"))
)
_CLIENT = select(clients).where(clients.c.client_id == bindparam("client_id"))
_CLIENTS = (
    select(clients).where(clients.c.tenant == bindparam("tenant")).order_by(clients.c.client_id)
)
_CUSTOMER = select(customers).where(customers.c.id == bindparam("id"))
_CUSTOMER_BY_EMAIL = select(customers).where(
    customers.c.tenant == bindparam("tenant"), customers.c.email == bindparam("email")
)
# customer password hashes (server/passwords.py)
_PASSWORD_HASH_SAMPLE = (
    select(customers.c.password_hash)
    .where(customers.c.tenant == bindparam("ph_tenant"))
    .order_by(customers.c.email)
    .limit(bindparam("ph_limit", type_=Integer))
)
_REPLACE_PASSWORD_HASH = (
    update(customers)
    .where(customers.c.id == bindparam("ph_id"))
    .where(customers.c.password_hash == bindparam("ph_expected"))
    .values(password_hash=bindparam("ph_new"))
)
_SESSION = select(sessions).where(sessions.c.session_id == bindparam("sid"))
_TOKEN_VIEW = (
    select(tokens, customers.c.email)
    .select_from(tokens.outerjoin(customers, customers.c.id == tokens.c.customer_id))
    .where(tokens.c.digest == bindparam("token_digest"))
)
_KEYS = select(signing_keys).order_by(signing_keys.c.created_at.desc(), signing_keys.c.kid)
_KEY = select(signing_keys).where(signing_keys.c.kid == bindparam("key_id"))
_DEMOTE_ACTIVE_KEY = (
    update(signing_keys)
    .where(signing_keys.c.status == KeyStatus.ACTIVE.value)
    .values(status=KeyStatus.VERIFYING.value)
)
_ANY_PUBLISHED_KEY = (
    select(signing_keys.c.kid)
    .where(signing_keys.c.status.in_([KeyStatus.ACTIVE.value, KeyStatus.VERIFYING.value]))
    .limit(1)
)
_RETIRE_KEY = (
    update(signing_keys)
    .where(signing_keys.c.kid == bindparam("key_id"))
    .values(status=KeyStatus.RETIRED.value, retired_at=bindparam("now"))
)

_live_refresh = (
    tokens.c.digest == bindparam("token_digest"),
    tokens.c.session_id == bindparam("sid"),
    tokens.c.use == _REFRESH,
    tokens.c.revoked_at.is_(None),
    tokens.c.expires_at > bindparam("now"),
)
# The single-winner rotation (as in ory/hydra): the row count says who rotated.
_ROTATE = (
    update(tokens)
    .where(*_live_refresh, tokens.c.rotated_at.is_(None))
    .values(rotated_at=bindparam("now"))
)
_LIVE_REFRESH = select(tokens.c.rotated_at).where(*_live_refresh)
_LIVE_ANONYMOUS_ACCESS = select(tokens.c.digest).where(
    tokens.c.digest == bindparam("token_digest"),
    tokens.c.session_id == bindparam("sid"),
    tokens.c.use == TokenUse.ACCESS.value,
    tokens.c.kind == TokenKind.ANONYMOUS.value,
    tokens.c.revoked_at.is_(None),
    tokens.c.expires_at > bindparam("now"),
)

_REVOKE_TOKEN = (
    update(tokens)
    .where(tokens.c.digest == bindparam("token_digest"), tokens.c.revoked_at.is_(None))
    .values(revoked_at=bindparam("now"))
)
_REVOKE_SESSION_TOKENS = (
    update(tokens)
    .where(tokens.c.session_id == bindparam("sid"), tokens.c.revoked_at.is_(None))
    .values(revoked_at=bindparam("now"))
)
_REVOKE_ANONYMOUS_REFRESH = (
    update(tokens)
    .where(
        tokens.c.session_id == bindparam("sid"),
        tokens.c.kind == TokenKind.ANONYMOUS.value,
        tokens.c.use == _REFRESH,
        tokens.c.revoked_at.is_(None),
    )
    .values(revoked_at=bindparam("now"))
)
_REVOKE_SESSION = (
    update(sessions)
    .where(sessions.c.session_id == bindparam("sid"), sessions.c.revoked_at.is_(None))
    .values(revoked_at=bindparam("now"))
)
_BIND_CUSTOMER = (
    update(sessions)
    .where(
        sessions.c.session_id == bindparam("sid"),
        sessions.c.revoked_at.is_(None),
        or_(sessions.c.customer_id.is_(None), sessions.c.customer_id == bindparam("cid")),
    )
    .values(
        customer_id=bindparam("cid"), legal_entity_id=bindparam("le"), updated_at=bindparam("now")
    )
)

# --- login failures: see TokenStore.record_login_failure ---------------------------------------
_login_key = (
    login_failures.c.tenant == bindparam("lf_tenant"),
    login_failures.c.subject == bindparam("lf_subject"),
)
_LOGIN_FAILURES = select(login_failures).where(*_login_key)
# The row is created (as an empty counter) if missing and then locked, so that concurrent
# failures on any replica queue up on it and each one is counted.
_LOGIN_FAILURES_LOCKED = _LOGIN_FAILURES.with_for_update()
_login_row = {
    "tenant": bindparam("lf_tenant"),
    "subject": bindparam("lf_subject"),
    "failures": 0,
    "last_failure_at": 0,
    "locked_until": 0,
}
_ADD_LOGIN_FAILURES = {
    "postgresql": pg_dialect.insert(login_failures).values(_login_row).on_conflict_do_nothing(),
    "sqlite": sqlite_dialect.insert(login_failures).values(_login_row).on_conflict_do_nothing(),
}
_SET_LOGIN_FAILURES = (
    update(login_failures)
    .where(*_login_key)
    .values(
        failures=bindparam("new_failures"),
        last_failure_at=bindparam("new_last_failure_at"),
        locked_until=bindparam("new_locked_until"),
    )
)
_CLEAR_LOGIN_FAILURES = delete(login_failures).where(*_login_key)
_PURGE_LOGIN_FAILURES = delete(login_failures).where(
    login_failures.c.last_failure_at < bindparam("before"),
    login_failures.c.locked_until < bindparam("before"),
)


def _login_failures(row: Any) -> LoginFailures | None:
    if row is None or row.failures <= 0:
        return None
    return LoginFailures(row.failures, row.last_failure_at, row.locked_until)


# --- service metadata and the write probe: see TokenStore.add_meta_if_absent, SqlStore.ping ---
_META = select(service_meta.c.value).where(service_meta.c.name == bindparam("meta_name"))
_meta_row: dict[str, Any] = {"name": bindparam("meta_name"), "value": bindparam("meta_value")}
_ADD_META = {
    "postgresql": pg_dialect.insert(service_meta).values(_meta_row).on_conflict_do_nothing(),
    "sqlite": sqlite_dialect.insert(service_meta).values(_meta_row).on_conflict_do_nothing(),
}


def _upsert_meta(dialect_insert: Any) -> Any:
    statement = dialect_insert(service_meta).values(_meta_row)
    return statement.on_conflict_do_update(
        index_elements=[service_meta.c.name], set_={"value": statement.excluded.value}
    )


_SET_META = {
    "postgresql": _upsert_meta(pg_dialect.insert),
    "sqlite": _upsert_meta(sqlite_dialect.insert),
}
_HOLDS_DATA = select(
    or_(
        select(service_meta.c.name).exists(),
        select(tenants.c.name).exists(),
        select(signing_keys.c.kid).exists(),
        select(tokens.c.digest).exists(),
    )
)
# The row a readiness probe rewrites. Its value is new random bytes each time, larger than what
# one grant writes, so that the write needs new space: in WAL mode SQLite appends every changed
# page to the WAL file; PostgreSQL writes a new row version and its WAL.
WRITE_PROBE = "write_probe"
WRITE_PROBE_BYTES = 8192


# --- purge_expired: see TokenStore.purge_expired -----------------------------------------------
# Subqueries name their tables by alias, so that none correlates with the statement around it.
# FOR UPDATE ... SKIP LOCKED (PostgreSQL; SQLite, whose writer is alone, renders nothing): rows
# another transaction holds are left for the next batch, so the janitor never waits on a grant
# or on another janitor.
_t = tokens.alias("t")
_s = sessions.alias("s")
_BATCH = bindparam("batch", type_=Integer)


def _revoked(table: Any) -> Any:
    """A range, not IS NOT NULL: SQLite uses ix_sessions_revoked_at only for a range (revocation
    times are epoch seconds, never negative)."""
    return table.c.revoked_at >= 0


def _has_live_token(table: Any) -> Any:
    return exists().where(_t.c.session_id == table.c.session_id, _t.c.expires_at > bindparam("now"))


# Service tokens (no session) that have expired. The ORDER BY is the order of
# ix_tokens_session_id_expires_at, which keeps the planners on that index (the matching rows
# are one range of it): a scan of the table, or of ix_tokens_expires_at, would walk over rows
# earlier batches deleted, or over the expired tokens of live sessions, in every batch.
_PURGE_SESSIONLESS = delete(tokens).where(
    tokens.c.digest.in_(
        select(_t.c.digest)
        .where(_t.c.session_id.is_(None), _t.c.expires_at <= bindparam("now"))
        .order_by(_t.c.session_id, _t.c.expires_at)
        .limit(_BATCH)
        .with_for_update(skip_locked=True)
    )
)
# One page of sessions in key order (a read): whether each is open and has a live token.
_page = (
    select(sessions.c.session_id, sessions.c.revoked_at)
    .where(sessions.c.session_id > bindparam("after"))
    .order_by(sessions.c.session_id)
    .limit(_BATCH)
    .subquery("page")
)
_SESSION_PAGE = select(
    _page.c.session_id, _page.c.revoked_at, _has_live_token(_page).label("live")
).order_by(_page.c.session_id)
# Closing dead sessions: lock the open ones named, then (a new statement, so a new snapshot on
# PostgreSQL: it sees the tokens of every refresh that committed before the lock) revoke those
# that still have no live token. Every write that adds tokens to a session updates its row
# first, so none can add any between the two statements.
_LOCK_OPEN_SESSIONS = (
    select(sessions.c.session_id)
    .where(sessions.c.session_id.in_(bindparam("ids", expanding=True)))
    .where(sessions.c.revoked_at.is_(None))
    .with_for_update(skip_locked=True)
)
_CLOSE_DEAD_SESSIONS = (
    update(sessions)
    .where(
        sessions.c.session_id.in_(bindparam("ids", expanding=True)),
        sessions.c.revoked_at.is_(None),
        ~_has_live_token(sessions),
    )
    .values(revoked_at=bindparam("now"))
)
# Revoked sessions, a batch of them in revocation order (ix_sessions_revoked_at): up to a batch
# of their tokens, then those of them left without tokens. Each by its key or index: no
# statement scans a table.
_CLOSED_SESSIONS = (
    select(sessions.c.session_id)
    .where(_revoked(sessions))
    .order_by(sessions.c.revoked_at)
    .limit(_BATCH)
    .with_for_update(skip_locked=True)
)
_PURGE_TOKENS_OF_SESSIONS = delete(tokens).where(
    tokens.c.digest.in_(
        select(_t.c.digest)
        .where(_t.c.session_id.in_(bindparam("ids", expanding=True)))
        .limit(_BATCH)
        .with_for_update(skip_locked=True)
    )
)
_PURGE_SESSIONS_WITHOUT_TOKENS = delete(sessions).where(
    sessions.c.session_id.in_(bindparam("ids", expanding=True)),
    ~exists().where(_t.c.session_id == sessions.c.session_id),
)


def _update_session(session_id: str, change: SessionUpdate) -> Any:
    """The refresh's session UPDATE: only the fields the caller set."""
    context = change.context
    values: dict[str, Any] = {
        name: value
        for name, value in (
            ("currency", context.currency),
            ("site_code", context.site_code),
            ("language", context.language),
            ("target_location", context.target_location),
        )
        if value is not None
    }
    values["updated_at"] = change.updated_at
    if change.legal_entity_id is not None:
        values["legal_entity_id"] = change.legal_entity_id
    return (
        update(sessions)
        .where(sessions.c.session_id == session_id, sessions.c.revoked_at.is_(None))
        .values(**values)
    )


class _RollBack(Exception):
    """Leaves a write transaction, undoing it, with an outcome."""

    def __init__(self, outcome: RefreshOutcome) -> None:
        self.outcome = outcome


P = ParamSpec("P")
R = TypeVar("R")


def retried(
    method: Callable[Concatenate[SqlStore, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[SqlStore, P], Coroutine[Any, Any, R]]:
    """Runs a write unit of work again when it lost a serialization conflict or a deadlock
    (PostgreSQL), with a short random back-off; after the last try the store is unavailable."""

    @functools.wraps(method)
    async def call(self: SqlStore, *args: P.args, **kwargs: P.kwargs) -> R:
        for attempt in range(self.conflict_retries + 1):
            try:
                return await method(self, *args, **kwargs)
            except Conflict:
                await asyncio.sleep(random.uniform(0, 0.005 * 2**attempt))
        log.warning("token store: %s kept conflicting; giving up", method.__name__)
        raise StoreUnavailable(UNAVAILABLE)

    return call


def _lock_signing_keys(conn: Connection) -> None:
    """Makes check-then-write on signing keys atomic across processes. SQLite needs nothing
    (BEGIN IMMEDIATE already holds the database's one write lock); on PostgreSQL a self-exclusive
    table lock, which readers do not wait for. Other engines go without: there, replicas
    starting together may at worst each publish a first key, which verifies but is not needed."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("LOCK TABLE signing_keys IN SHARE ROW EXCLUSIVE MODE")


class SqlStore:
    """TokenStore over SQLAlchemy Core. Each method is a function of a synchronous Connection,
    run as one transaction by the runner (server/store/runners.py): the async engine's pool on
    PostgreSQL, a group-committing writer thread and a read pool on SQLite."""

    def __init__(
        self,
        runner: ServerRunner | SqliteRunner,
        *,
        conflict_retries: int = PoolOptions.conflict_retries,
    ) -> None:
        self._runner = runner
        self.conflict_retries = conflict_retries
        # Set when a write failed for want of the store (StoreUnavailable), cleared by a write
        # probe that succeeds: while set, readiness (ping) probes a write instead of a read.
        # A real write that commits does not clear it: many commit having changed nothing
        # (revoking an unknown token, a refused refresh), and an empty commit needs no space.
        self._writes_failing = False

    @classmethod
    async def open(
        cls, database_url: str, *, busy_timeout_ms: int = 5000, pool: PoolOptions | None = None
    ) -> SqlStore:
        """Engines for the URL. An in-memory SQLite database lives and dies with its one shared
        connection, so it gets its schema here; file and server databases are migrated first
        (`migrate.upgrade`)."""
        pool = pool or PoolOptions()
        if make_url(database_url).get_backend_name() != "sqlite":
            server = create_server_engine(database_url, pool)
            return cls(ServerRunner(server), conflict_retries=pool.conflict_retries)
        sync_url = make_url(database_url).set(drivername="sqlite")
        if is_sqlite_memory(database_url):
            engine = create_engine(
                sync_url,
                hide_parameters=True,
                poolclass=StaticPool,
                connect_args={"check_same_thread": False},
            )
            install_sqlite_hooks(engine, busy_timeout_ms, immediate=True)
            store = cls(SqliteRunner(engine, None))
            await store._create_schema()
            return store
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
        return cls(SqliteRunner(writer, reader))

    async def ping(self) -> None:
        """A trivial read; while the last write failed for want of the store (a full disk, a
        database turned read-only), a real write (`_probe_write`) instead, so that readiness
        says whether writes succeed, not only reads."""
        if self._writes_failing:
            await self._probe_write()
            return
        await self._query(lambda conn: conn.execute(_PING).first())

    async def close(self) -> None:
        await self._runner.close()

    async def _create_schema(self) -> None:
        from server.store.migrate import upgrade_connection  # migrate imports this module

        await self._tx(upgrade_connection)

    # --- units of work ----------------------------------------------------------------------
    async def _tx(
        self,
        unit: Callable[[Connection], R],
        *,
        duplicate: str | None = None,
        missing: str | None = None,
    ) -> R:
        """`unit` in one write transaction: committed when it returns, rolled back if it
        raises. A write the store could not take turns readiness to probing writes."""
        try:
            with store_errors(duplicate=duplicate, missing=missing):
                return await self._runner.write(unit)
        except StoreUnavailable:
            self._note_write_failed()
            raise

    async def _query(self, unit: Callable[[Connection], R]) -> R:
        with store_errors():
            return await self._runner.read(unit)

    async def _first(self, statement: Any, params: Mapping[str, Any]) -> Row[Any] | None:
        return await self._query(lambda conn: conn.execute(statement, params).first())

    async def _all(self, statement: Any, params: Mapping[str, Any] | None = None) -> list[Any]:
        with store_errors():
            return await self._runner.scan(
                lambda conn: list(conn.execute(statement, params or {}).all())
            )

    # --- service metadata and the write probe -------------------------------------------------
    async def get_meta(self, name: str) -> str | None:
        row = await self._first(_META, {"meta_name": name})
        return None if row is None else str(row.value)

    @retried
    async def add_meta_if_absent(self, name: str, value: str) -> str:
        params = {"meta_name": name, "meta_value": value}

        def unit(conn: Connection) -> str:
            conn.execute(_ADD_META[conn.dialect.name], params)
            return str(conn.execute(_META, params).scalar_one())

        return await self._tx(unit)

    async def holds_data(self) -> bool:
        return bool(await self._query(lambda conn: conn.execute(_HOLDS_DATA).scalar()))

    def _note_write_failed(self) -> None:
        if not self._writes_failing:
            log.warning("token store: a write failed; not ready until a probe write succeeds")
        self._writes_failing = True

    @retried
    async def _probe_write(self) -> None:
        """Rewrites the probe row (WRITE_PROBE) in a committed transaction of its own."""
        params = {"meta_name": WRITE_PROBE, "meta_value": secrets.token_hex(WRITE_PROBE_BYTES // 2)}
        with store_errors():
            await self._runner.write(
                lambda conn: conn.execute(_SET_META[conn.dialect.name], params)
            )
        if self._writes_failing:
            log.warning("token store: a probe write succeeded; ready again")
        self._writes_failing = False

    # --- provisioning -----------------------------------------------------------------------
    @retried
    async def create_tenant(self, tenant: TenantRecord) -> None:
        row = {**dataclasses.asdict(tenant), "allowed_origins": " ".join(tenant.allowed_origins)}
        await self._tx(
            lambda conn: conn.execute(_INSERT_TENANT, row), duplicate=tenant_exists(tenant.name)
        )

    async def get_tenant(self, name: str) -> TenantRecord | None:
        row = await self._first(_TENANT, {"name": name})
        return None if row is None else _tenant(row)

    async def list_tenants(self) -> list[TenantRecord]:
        return [_tenant(r) for r in await self._all(_TENANTS)]

    @retried
    async def set_allowed_origins(self, name: str, origins: Sequence[str]) -> TenantRecord | None:
        params = {"ao_name": name, "ao_origins": " ".join(origins)}

        def unit(conn: Connection) -> Row[Any] | None:
            if conn.execute(_SET_ALLOWED_ORIGINS, params).rowcount == 0:
                return None
            return conn.execute(_TENANT, {"name": name}).first()

        row = await self._tx(unit)
        return None if row is None else _tenant(row)

    @retried
    async def create_client(self, client: ClientRecord) -> None:
        row = _client_row(client)
        await self._tx(
            lambda conn: conn.execute(_INSERT_CLIENT, row),
            duplicate=client_exists(client.client_id),
            missing=tenant_missing(client.tenant),
        )

    async def get_client(self, client_id: str) -> ClientRecord | None:
        row = await self._first(_CLIENT, {"client_id": client_id})
        return None if row is None else _client(row)

    async def list_clients(self, tenant: str) -> list[ClientRecord]:
        return [_client(r) for r in await self._all(_CLIENTS, {"tenant": tenant})]

    @retried
    async def create_customer(self, customer: CustomerRecord) -> None:
        row = _customer_row(customer)
        await self._tx(
            lambda conn: conn.execute(_INSERT_CUSTOMER, row),
            duplicate=customer_exists(customer.tenant),
            missing=tenant_missing(customer.tenant),
        )

    async def find_customer(self, tenant: str, email: str) -> CustomerRecord | None:
        row = await self._first(_CUSTOMER_BY_EMAIL, {"tenant": tenant, "email": email.lower()})
        return None if row is None else _customer(row)

    async def get_customer(self, customer_id: str) -> CustomerRecord | None:
        row = await self._first(_CUSTOMER, {"id": customer_id})
        return None if row is None else _customer(row)

    # --- customer password hashes -----------------------------------------------------------
    async def password_hash_sample(self, tenant: str, limit: int) -> list[str]:
        rows = await self._all(_PASSWORD_HASH_SAMPLE, {"ph_tenant": tenant, "ph_limit": limit})
        return [row.password_hash for row in rows]

    @retried
    async def replace_password_hash(self, customer_id: str, expected: str, new: str) -> bool:
        params = {"ph_id": customer_id, "ph_expected": expected, "ph_new": new}
        return await self._tx(
            lambda conn: conn.execute(_REPLACE_PASSWORD_HASH, params).rowcount == 1
        )

    # --- login failures ---------------------------------------------------------------------
    async def get_login_failures(self, tenant: str, subject: str) -> LoginFailures | None:
        return _login_failures(
            await self._first(_LOGIN_FAILURES, {"lf_tenant": tenant, "lf_subject": subject})
        )

    @retried
    async def record_login_failure(
        self,
        tenant: str,
        subject: str,
        next_state: Callable[[LoginFailures | None], LoginFailures],
    ) -> LoginFailures:
        def unit(conn: Connection) -> LoginFailures:
            key = {"lf_tenant": tenant, "lf_subject": subject}
            # SQLite and PostgreSQL, the two stores this service supports.
            conn.execute(_ADD_LOGIN_FAILURES[conn.dialect.name], key)
            row = conn.execute(_LOGIN_FAILURES_LOCKED, key).first()
            state = next_state(_login_failures(row))
            values = {
                "new_failures": state.failures,
                "new_last_failure_at": state.last_failure_at,
                "new_locked_until": state.locked_until,
            }
            conn.execute(_SET_LOGIN_FAILURES, {**key, **values})
            return state

        return await self._tx(unit)

    @retried
    async def clear_login_failures(self, tenant: str, subject: str) -> None:
        key = {"lf_tenant": tenant, "lf_subject": subject}
        await self._tx(lambda conn: conn.execute(_CLEAR_LOGIN_FAILURES, key))

    @retried
    async def purge_login_failures(self, before: int) -> int:
        params = {"before": before}
        return await self._tx(
            lambda conn: int(conn.execute(_PURGE_LOGIN_FAILURES, params).rowcount)
        )

    # --- signing keys -----------------------------------------------------------------------
    @retried
    async def rotate_signing_key(self, new_key: SigningKeyRecord) -> None:
        row = _key_row(dataclasses.replace(new_key, status=KeyStatus.ACTIVE, retired_at=None))

        def unit(conn: Connection) -> None:
            _lock_signing_keys(conn)
            conn.execute(_DEMOTE_ACTIVE_KEY)
            conn.execute(_INSERT_KEY, row)

        await self._tx(unit, duplicate=key_exists(new_key.kid))

    @retried
    async def add_first_signing_key(self, new_key: SigningKeyRecord) -> bool:
        row = _key_row(dataclasses.replace(new_key, status=KeyStatus.ACTIVE, retired_at=None))

        def unit(conn: Connection) -> bool:
            _lock_signing_keys(conn)
            if conn.execute(_ANY_PUBLISHED_KEY).first() is not None:
                return False
            conn.execute(_INSERT_KEY, row)
            return True

        return await self._tx(unit, duplicate=key_exists(new_key.kid))

    async def list_signing_keys(self) -> list[SigningKeyRecord]:
        return [_key(r) for r in await self._all(_KEYS)]

    @retried
    async def retire_signing_key(
        self,
        kid: str,
        now: int,
        *,
        check: Callable[[Sequence[SigningKeyRecord]], None],
    ) -> SigningKeyRecord | None:
        def unit(conn: Connection) -> SigningKeyRecord | None:
            _lock_signing_keys(conn)
            row = conn.execute(_KEY, {"key_id": kid}).first()
            if row is None:
                return None
            key = _key(row)
            if key.status is KeyStatus.ACTIVE:
                raise InvalidRequest(ACTIVE_KEY_RETIRE)
            if key.status is KeyStatus.RETIRED:
                return key
            check([_key(r) for r in conn.execute(_KEYS).all()])
            conn.execute(_RETIRE_KEY, {"key_id": kid, "now": now})
            return dataclasses.replace(key, status=KeyStatus.RETIRED, retired_at=now)

        return await self._tx(unit)

    # --- tokens and sessions ----------------------------------------------------------------
    @retried
    async def save_tokens(
        self, tokens: Sequence[TokenRecord], new_session: SessionRecord | None = None
    ) -> None:
        session_row = None if new_session is None else _session_row(new_session)
        token_rows = [_token_row(t) for t in tokens]

        def unit(conn: Connection) -> None:
            if session_row is not None:
                conn.execute(_INSERT_SESSION, session_row)
            _insert_tokens(conn, token_rows)

        await self._tx(unit, duplicate=IDENTIFIER_EXISTS)

    async def find_token(self, digest: str) -> TokenView | None:
        row = await self._first(_TOKEN_VIEW, {"token_digest": digest})
        return None if row is None else TokenView(_token(row), row.email)

    async def get_session(self, session_id: str) -> SessionRecord | None:
        row = await self._first(_SESSION, {"sid": session_id})
        return None if row is None else _session(row)

    @retried
    async def start_customer_session(
        self,
        session_id: str,
        customer_id: str,
        legal_entity_id: str | None,
        now: int,
        tokens: Sequence[TokenRecord],
        *,
        revoke_anonymous_refresh: bool = False,
    ) -> bool:
        params = {"sid": session_id, "cid": customer_id, "le": legal_entity_id, "now": now}
        token_rows = [_token_row(t) for t in tokens]

        def unit(conn: Connection) -> bool:
            if conn.execute(_BIND_CUSTOMER, params).rowcount == 0:
                return False
            if revoke_anonymous_refresh:
                conn.execute(_REVOKE_ANONYMOUS_REFRESH, {"sid": session_id, "now": now})
            _insert_tokens(conn, token_rows)
            return True

        return await self._tx(unit, duplicate=IDENTIFIER_EXISTS)

    @retried
    async def refresh(
        self,
        presented_digest: str,
        session_id: str,
        tokens: Sequence[TokenRecord],
        update: SessionUpdate,
        *,
        now: int,
        grace_seconds: int,
        rotate: bool,
    ) -> RefreshOutcome:
        params = {"token_digest": presented_digest, "sid": session_id, "now": now}
        token_rows = [_token_row(t) for t in tokens]
        session_update = _update_session(session_id, update)

        def unit(conn: Connection) -> RefreshOutcome:
            if conn.execute(session_update).rowcount == 0:
                return RefreshOutcome.INVALID  # nothing written yet
            outcome = _exchange(conn, params, rotate, now - grace_seconds)
            if outcome is RefreshOutcome.INVALID:
                raise _RollBack(outcome)
            if outcome is RefreshOutcome.REUSED:
                _revoke_session(conn, session_id, now)
            else:
                _insert_tokens(conn, token_rows)
            return outcome

        try:
            return await self._tx(unit, duplicate=IDENTIFIER_EXISTS)
        except _RollBack as rollback:
            return rollback.outcome

    @retried
    async def continue_anonymous_session(
        self,
        access_digest: str,
        session_id: str,
        tokens: Sequence[TokenRecord],
        update: SessionUpdate,
        *,
        now: int,
        after_login: bool = True,
    ) -> bool:
        params = {"token_digest": access_digest, "sid": session_id, "now": now}
        statement = _update_session(session_id, update)
        if not after_login:
            statement = statement.where(sessions.c.customer_id.is_(None))
        token_rows = [_token_row(t) for t in tokens]

        def unit(conn: Connection) -> bool:
            if conn.execute(statement).rowcount == 0:
                return False  # nothing written yet
            if conn.execute(_LIVE_ANONYMOUS_ACCESS, params).first() is None:
                raise _RollBack(RefreshOutcome.INVALID)
            _insert_tokens(conn, token_rows)
            return True

        try:
            return await self._tx(unit, duplicate=IDENTIFIER_EXISTS)
        except _RollBack:
            return False

    @retried
    async def revoke_token(self, digest: str, now: int) -> int:
        params = {"token_digest": digest, "now": now}
        return await self._tx(lambda conn: int(conn.execute(_REVOKE_TOKEN, params).rowcount))

    @retried
    async def revoke_session(self, session_id: str, now: int) -> int:
        return await self._tx(lambda conn: _revoke_session(conn, session_id, now))

    # --- cleanup ----------------------------------------------------------------------------
    async def purge_expired(self, now: int, *, batch_size: int) -> PurgeReport:
        """Three passes, each a loop of short transactions: expired service tokens; closing
        sessions whose tokens have all expired (a read finds them a page at a time, in key
        order, so one call looks at every session once); deleting revoked sessions, their
        tokens first."""
        check_purge_batch(batch_size)
        tokens_removed = sessions_removed = 0
        while True:
            removed = await self._purge_sessionless(now, batch_size)
            tokens_removed += removed
            if removed < batch_size:
                break
        after = ""
        while True:
            page = await self._all(_SESSION_PAGE, {"after": after, "now": now, "batch": batch_size})
            dead = [row.session_id for row in page if row.revoked_at is None and not row.live]
            if dead:
                await self._close_sessions(dead, now)
            if len(page) < batch_size:
                break
            after = page[-1].session_id
        while True:
            picked, removed_tokens, removed_sessions = await self._purge_closed(batch_size)
            tokens_removed += removed_tokens
            sessions_removed += removed_sessions
            if picked < batch_size and removed_tokens < batch_size:
                break  # every revoked session was in this batch, and all its tokens
            if removed_tokens == removed_sessions == 0:
                break  # what is left is held by other transactions: the next call
        return PurgeReport(tokens_removed=tokens_removed, sessions_removed=sessions_removed)

    @retried
    async def _purge_sessionless(self, now: int, batch_size: int) -> int:
        params = {"now": now, "batch": batch_size}
        return await self._tx(lambda conn: int(conn.execute(_PURGE_SESSIONLESS, params).rowcount))

    @retried
    async def _close_sessions(self, session_ids: list[str], now: int) -> int:
        def unit(conn: Connection) -> int:
            ids = list(conn.execute(_LOCK_OPEN_SESSIONS, {"ids": session_ids}).scalars())
            if not ids:
                return 0
            return int(conn.execute(_CLOSE_DEAD_SESSIONS, {"ids": ids, "now": now}).rowcount)

        return await self._tx(unit)

    @retried
    async def _purge_closed(self, batch_size: int) -> tuple[int, int, int]:
        """Returns how many revoked sessions it picked, and how many tokens and sessions it
        deleted."""

        def unit(conn: Connection) -> tuple[int, int, int]:
            ids = list(conn.execute(_CLOSED_SESSIONS, {"batch": batch_size}).scalars())
            if not ids:
                return 0, 0, 0
            params = {"ids": ids, "batch": batch_size}
            removed_tokens = conn.execute(_PURGE_TOKENS_OF_SESSIONS, params).rowcount
            removed_sessions = conn.execute(_PURGE_SESSIONS_WITHOUT_TOKENS, params).rowcount
            return len(ids), int(removed_tokens), int(removed_sessions)

        return await self._tx(unit)


# --- helpers used inside a write transaction ----------------------------------------------------
def _exchange(
    conn: Connection, params: Mapping[str, Any], rotate: bool, grace_floor: int
) -> RefreshOutcome:
    """Decides the refresh outcome for a live session (see TokenStore.refresh)."""
    if rotate and conn.execute(_ROTATE, params).rowcount == 1:
        return RefreshOutcome.ROTATED
    row = conn.execute(_LIVE_REFRESH, params).first()
    if row is None:
        return RefreshOutcome.INVALID
    if not rotate:
        return RefreshOutcome.KEPT
    if row.rotated_at is None:  # lost the race to a writer that then rolled back
        return RefreshOutcome.INVALID
    return RefreshOutcome.GRACE if row.rotated_at >= grace_floor else RefreshOutcome.REUSED


def _revoke_session(conn: Connection, session_id: str, now: int) -> int:
    params = {"sid": session_id, "now": now}
    conn.execute(_REVOKE_SESSION, params)
    return int(conn.execute(_REVOKE_SESSION_TOKENS, params).rowcount)


def _insert_tokens(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(_INSERT_TOKEN, rows)


# --- records <-> rows ---------------------------------------------------------------------------
def _tenant(r: Any) -> TenantRecord:
    return TenantRecord(r.name, r.created_at, tuple(r.allowed_origins.split()))


def _client_row(c: ClientRecord) -> dict[str, Any]:
    row = dataclasses.asdict(c)
    row.update(kind=c.kind.value, scopes=" ".join(c.scopes))
    return row


def _client(r: Any) -> ClientRecord:
    return ClientRecord(
        client_id=r.client_id,
        tenant=r.tenant,
        kind=ClientKind(r.kind),
        name=r.name,
        scopes=tuple(r.scopes.split()),
        secret_digest=r.secret_digest,
        created_at=r.created_at,
        access_token_ttl=r.access_token_ttl,
        refresh_token_ttl=r.refresh_token_ttl,
        refresh_rotation_disabled=bool(r.refresh_rotation_disabled),
    )


def _customer_row(c: CustomerRecord) -> dict[str, Any]:
    row = dataclasses.asdict(c)
    row.update(
        email=c.email.lower(),
        scopes=" ".join(c.scopes),
        legal_entity_ids=json.dumps(list(c.legal_entity_ids)),
    )
    return row


def _customer(r: Any) -> CustomerRecord:
    return CustomerRecord(
        id=r.id,
        tenant=r.tenant,
        email=r.email,
        password_hash=r.password_hash,
        scopes=tuple(r.scopes.split()),
        legal_entity_ids=tuple(json.loads(r.legal_entity_ids)),
        created_at=r.created_at,
    )


def _session_row(s: SessionRecord) -> dict[str, Any]:
    # Spelled out: dataclasses.asdict, which recurses and deep-copies, cost a tenth of an
    # anonymous token's issue.
    return {
        "session_id": s.session_id,
        "tenant": s.tenant,
        "client_id": s.client_id,
        "created_at": s.created_at,
        "updated_at": s.updated_at,
        "currency": s.context.currency,
        "site_code": s.context.site_code,
        "language": s.context.language,
        "target_location": s.context.target_location,
        "customer_id": s.customer_id,
        "legal_entity_id": s.legal_entity_id,
        "revoked_at": s.revoked_at,
    }


def _session(r: Any) -> SessionRecord:
    return SessionRecord(
        session_id=r.session_id,
        tenant=r.tenant,
        client_id=r.client_id,
        created_at=r.created_at,
        updated_at=r.updated_at,
        context=SessionContext(r.currency, r.site_code, r.language, r.target_location),
        customer_id=r.customer_id,
        legal_entity_id=r.legal_entity_id,
        revoked_at=r.revoked_at,
    )


def _token_row(t: TokenRecord) -> dict[str, Any]:
    return {
        "digest": t.digest,
        "kind": t.kind.value,
        "use": t.use.value,
        "tenant": t.tenant,
        "client_id": t.client_id,
        "session_id": t.session_id,
        "customer_id": t.customer_id,
        "scope": t.scope,
        "legal_entity_id": t.legal_entity_id,
        "issued_at": t.issued_at,
        "expires_at": t.expires_at,
        "revoked_at": t.revoked_at,
        "rotated_at": t.rotated_at,
    }


def _token(r: Any) -> TokenRecord:
    return TokenRecord(
        digest=r.digest,
        kind=TokenKind(r.kind),
        use=TokenUse(r.use),
        tenant=r.tenant,
        client_id=r.client_id,
        scope=r.scope,
        issued_at=r.issued_at,
        expires_at=r.expires_at,
        session_id=r.session_id,
        customer_id=r.customer_id,
        legal_entity_id=r.legal_entity_id,
        revoked_at=r.revoked_at,
        rotated_at=r.rotated_at,
    )


def _key_row(k: SigningKeyRecord) -> dict[str, Any]:
    row = dataclasses.asdict(k)
    row["status"] = k.status.value
    return row


def _key(r: Any) -> SigningKeyRecord:
    return SigningKeyRecord(
        kid=r.kid,
        algorithm=r.algorithm,
        private_key_encrypted=bytes(r.private_key_encrypted),
        public_jwk=r.public_jwk,
        status=KeyStatus(r.status),
        created_at=r.created_at,
        retired_at=r.retired_at,
    )
