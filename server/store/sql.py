"""The TokenStore on SQLAlchemy Core: SQLite (aiosqlite) and PostgreSQL (asyncpg).

SQLite lets one connection write at a time. A transaction that starts reading and later writes
can fail half-way with "database is locked", so on SQLite every write goes through one dedicated
connection whose transactions begin with BEGIN IMMEDIATE (taking the write lock up front, waiting
up to busy_timeout), serialised in-process by an asyncio.Lock; reads use a separate pool, which
WAL lets run beside the writer. PostgreSQL needs none of this: one pool, row locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Row, bindparam, event, insert, literal, or_, select, update
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import (
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from server.errors import AlreadyExists, InvalidRequest, NotFound, StoreUnavailable
from server.store.records import (
    ClientKind,
    ClientRecord,
    CustomerRecord,
    KeyStatus,
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
from server.store.schema import clients, customers, sessions, signing_keys, tenants, tokens

log = logging.getLogger(__name__)

# --- messages (shared with MemoryStore so both stores say the same thing) ----------------------
UNAVAILABLE = "the token store is unavailable; retry later"
ACTIVE_KEY_RETIRE = "the active signing key cannot be retired; rotate first"
IDENTIFIER_EXISTS = "a token or session with this identifier already exists"


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
    violation to NotFound(missing), an unreachable or locked database to StoreUnavailable."""
    try:
        yield
    except IntegrityError as exc:
        if _is_unique_violation(exc):
            if duplicate is not None:
                raise AlreadyExists(duplicate) from None
        elif missing is not None:
            raise NotFound(missing) from None
        raise
    except _UNAVAILABLE_ERRORS as exc:
        _log_unavailable(exc)
        raise StoreUnavailable(UNAVAILABLE) from exc
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        _log_unavailable(exc)
        raise StoreUnavailable(UNAVAILABLE) from exc


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
def is_sqlite_memory(database_url: str) -> bool:
    url = make_url(database_url)
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def ensure_sqlite_directory(database_url: str) -> None:
    """SQLite creates the file but not its directory."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or is_sqlite_memory(database_url):
        return
    if url.query.get("uri") or not url.database or url.database.startswith("file:"):
        return
    Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)


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
_CLIENT = select(clients).where(clients.c.client_id == bindparam("client_id"))
_CLIENTS = (
    select(clients).where(clients.c.tenant == bindparam("tenant")).order_by(clients.c.client_id)
)
_CUSTOMER = select(customers).where(customers.c.id == bindparam("id"))
_CUSTOMER_BY_EMAIL = select(customers).where(
    customers.c.tenant == bindparam("tenant"), customers.c.email == bindparam("email")
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


def _update_session(session_id: str, change: SessionUpdate) -> Any:
    """The refresh's session UPDATE: only the fields the caller set."""
    values: dict[str, Any] = {
        k: v for k, v in dataclasses.asdict(change.context).items() if v is not None
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


class SqlStore:
    """TokenStore over SQLAlchemy Core; see the module docstring for the locking scheme."""

    def __init__(
        self,
        reader: AsyncEngine,
        writer: AsyncEngine,
        *,
        write_guard: contextlib.AbstractAsyncContextManager[Any],
        read_guard: contextlib.AbstractAsyncContextManager[Any],
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._write_guard = write_guard
        self._read_guard = read_guard

    @classmethod
    async def open(cls, database_url: str, *, busy_timeout_ms: int = 5000) -> SqlStore:
        """Engines for the URL. An in-memory SQLite database lives and dies with its one shared
        connection, so it gets its schema here; file and server databases are migrated first
        (`migrate.upgrade`)."""
        if make_url(database_url).get_backend_name() != "sqlite":
            engine = create_async_engine(database_url, pool_pre_ping=True, hide_parameters=True)
            none = contextlib.nullcontext()
            return cls(engine, engine, write_guard=none, read_guard=none)
        if is_sqlite_memory(database_url):
            engine = create_sqlite_engine(
                database_url, busy_timeout_ms, immediate=True, poolclass=StaticPool
            )
            lock = asyncio.Lock()  # one connection: readers must queue behind writers too
            store = cls(engine, engine, write_guard=lock, read_guard=lock)
            await store._create_schema()
            return store
        ensure_sqlite_directory(database_url)
        reader = create_sqlite_engine(database_url, busy_timeout_ms, immediate=False)
        writer = create_sqlite_engine(
            database_url, busy_timeout_ms, immediate=True, pool_size=1, max_overflow=0
        )
        return cls(reader, writer, write_guard=asyncio.Lock(), read_guard=contextlib.nullcontext())

    async def ping(self) -> None:
        await self._first(_PING, {})

    async def close(self) -> None:
        await self._writer.dispose()
        if self._reader is not self._writer:
            await self._reader.dispose()

    async def _create_schema(self) -> None:
        from server.store.migrate import upgrade_connection  # migrate imports this module

        async with self._write() as conn:
            await conn.run_sync(upgrade_connection)

    # --- units of work ----------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _write(
        self, *, duplicate: str | None = None, missing: str | None = None
    ) -> AsyncIterator[AsyncConnection]:
        """One write transaction: committed when the block ends, rolled back if it raises."""
        with store_errors(duplicate=duplicate, missing=missing):
            async with self._write_guard, self._writer.begin() as conn:
                yield conn

    @contextlib.asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        with store_errors():
            async with self._read_guard, self._reader.connect() as conn:
                yield conn

    async def _first(self, statement: Any, params: Mapping[str, Any]) -> Row[Any] | None:
        async with self._read() as conn:
            return (await conn.execute(statement, params)).first()

    async def _all(self, statement: Any, params: Mapping[str, Any] | None = None) -> list[Any]:
        async with self._read() as conn:
            return list((await conn.execute(statement, params or {})).all())

    # --- provisioning -----------------------------------------------------------------------
    async def create_tenant(self, tenant: TenantRecord) -> None:
        async with self._write(duplicate=tenant_exists(tenant.name)) as conn:
            await conn.execute(_INSERT_TENANT, dataclasses.asdict(tenant))

    async def get_tenant(self, name: str) -> TenantRecord | None:
        row = await self._first(_TENANT, {"name": name})
        return None if row is None else TenantRecord(row.name, row.created_at)

    async def list_tenants(self) -> list[TenantRecord]:
        return [TenantRecord(r.name, r.created_at) for r in await self._all(_TENANTS)]

    async def create_client(self, client: ClientRecord) -> None:
        async with self._write(
            duplicate=client_exists(client.client_id), missing=tenant_missing(client.tenant)
        ) as conn:
            await conn.execute(_INSERT_CLIENT, _client_row(client))

    async def get_client(self, client_id: str) -> ClientRecord | None:
        row = await self._first(_CLIENT, {"client_id": client_id})
        return None if row is None else _client(row)

    async def list_clients(self, tenant: str) -> list[ClientRecord]:
        return [_client(r) for r in await self._all(_CLIENTS, {"tenant": tenant})]

    async def create_customer(self, customer: CustomerRecord) -> None:
        async with self._write(
            duplicate=customer_exists(customer.tenant), missing=tenant_missing(customer.tenant)
        ) as conn:
            await conn.execute(_INSERT_CUSTOMER, _customer_row(customer))

    async def find_customer(self, tenant: str, email: str) -> CustomerRecord | None:
        row = await self._first(_CUSTOMER_BY_EMAIL, {"tenant": tenant, "email": email.lower()})
        return None if row is None else _customer(row)

    async def get_customer(self, customer_id: str) -> CustomerRecord | None:
        row = await self._first(_CUSTOMER, {"id": customer_id})
        return None if row is None else _customer(row)

    # --- signing keys -----------------------------------------------------------------------
    async def rotate_signing_key(self, new_key: SigningKeyRecord) -> None:
        active = dataclasses.replace(new_key, status=KeyStatus.ACTIVE, retired_at=None)
        async with self._write(duplicate=key_exists(new_key.kid)) as conn:
            await conn.execute(_DEMOTE_ACTIVE_KEY)
            await conn.execute(_INSERT_KEY, _key_row(active))

    async def list_signing_keys(self) -> list[SigningKeyRecord]:
        return [_key(r) for r in await self._all(_KEYS)]

    async def retire_signing_key(self, kid: str, now: int) -> SigningKeyRecord | None:
        async with self._write() as conn:
            row = (await conn.execute(_KEY, {"key_id": kid})).first()
            if row is None:
                return None
            key = _key(row)
            if key.status is KeyStatus.ACTIVE:
                raise InvalidRequest(ACTIVE_KEY_RETIRE)
            if key.status is KeyStatus.RETIRED:
                return key
            await conn.execute(_RETIRE_KEY, {"key_id": kid, "now": now})
            return dataclasses.replace(key, status=KeyStatus.RETIRED, retired_at=now)

    # --- tokens and sessions ----------------------------------------------------------------
    async def save_tokens(
        self, tokens: Sequence[TokenRecord], new_session: SessionRecord | None = None
    ) -> None:
        async with self._write(duplicate=IDENTIFIER_EXISTS) as conn:
            if new_session is not None:
                await conn.execute(_INSERT_SESSION, _session_row(new_session))
            await _insert_tokens(conn, tokens)

    async def find_token(self, digest: str) -> TokenView | None:
        row = await self._first(_TOKEN_VIEW, {"token_digest": digest})
        return None if row is None else TokenView(_token(row), row.email)

    async def get_session(self, session_id: str) -> SessionRecord | None:
        row = await self._first(_SESSION, {"sid": session_id})
        return None if row is None else _session(row)

    async def start_customer_session(
        self,
        session_id: str,
        customer_id: str,
        legal_entity_id: str | None,
        now: int,
        tokens: Sequence[TokenRecord],
    ) -> bool:
        params = {"sid": session_id, "cid": customer_id, "le": legal_entity_id, "now": now}
        async with self._write(duplicate=IDENTIFIER_EXISTS) as conn:
            if (await conn.execute(_BIND_CUSTOMER, params)).rowcount == 0:
                return False
            await conn.execute(_REVOKE_ANONYMOUS_REFRESH, {"sid": session_id, "now": now})
            await _insert_tokens(conn, tokens)
        return True

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
        try:
            async with self._write(duplicate=IDENTIFIER_EXISTS) as conn:
                if (await conn.execute(_update_session(session_id, update))).rowcount == 0:
                    return RefreshOutcome.INVALID  # nothing written yet
                outcome = await _exchange(conn, params, rotate, now - grace_seconds)
                if outcome is RefreshOutcome.INVALID:
                    raise _RollBack(outcome)
                if outcome is RefreshOutcome.REUSED:
                    await _revoke_session(conn, session_id, now)
                else:
                    await _insert_tokens(conn, tokens)
                return outcome
        except _RollBack as rollback:
            return rollback.outcome

    async def continue_anonymous_session(
        self,
        access_digest: str,
        session_id: str,
        tokens: Sequence[TokenRecord],
        update: SessionUpdate,
        *,
        now: int,
    ) -> bool:
        params = {"token_digest": access_digest, "sid": session_id, "now": now}
        statement = _update_session(session_id, update).where(sessions.c.customer_id.is_(None))
        try:
            async with self._write(duplicate=IDENTIFIER_EXISTS) as conn:
                if (await conn.execute(statement)).rowcount == 0:
                    return False  # nothing written yet
                if (await conn.execute(_LIVE_ANONYMOUS_ACCESS, params)).first() is None:
                    raise _RollBack(RefreshOutcome.INVALID)
                await _insert_tokens(conn, tokens)
                return True
        except _RollBack:
            return False

    async def revoke_token(self, digest: str, now: int) -> int:
        async with self._write() as conn:
            return int(
                (await conn.execute(_REVOKE_TOKEN, {"token_digest": digest, "now": now})).rowcount
            )

    async def revoke_session(self, session_id: str, now: int) -> int:
        async with self._write() as conn:
            return await _revoke_session(conn, session_id, now)


# --- helpers used inside a write transaction ----------------------------------------------------
async def _exchange(
    conn: AsyncConnection, params: Mapping[str, Any], rotate: bool, grace_floor: int
) -> RefreshOutcome:
    """Decides the refresh outcome for a live session (see TokenStore.refresh)."""
    if rotate and (await conn.execute(_ROTATE, params)).rowcount == 1:
        return RefreshOutcome.ROTATED
    row = (await conn.execute(_LIVE_REFRESH, params)).first()
    if row is None:
        return RefreshOutcome.INVALID
    if not rotate:
        return RefreshOutcome.KEPT
    if row.rotated_at is None:  # lost the race to a writer that then rolled back
        return RefreshOutcome.INVALID
    return RefreshOutcome.GRACE if row.rotated_at >= grace_floor else RefreshOutcome.REUSED


async def _revoke_session(conn: AsyncConnection, session_id: str, now: int) -> int:
    params = {"sid": session_id, "now": now}
    await conn.execute(_REVOKE_SESSION, params)
    return int((await conn.execute(_REVOKE_SESSION_TOKENS, params)).rowcount)


async def _insert_tokens(conn: AsyncConnection, records: Sequence[TokenRecord]) -> None:
    if records:
        await conn.execute(_INSERT_TOKEN, [_token_row(t) for t in records])


# --- records <-> rows ---------------------------------------------------------------------------
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
    row = dataclasses.asdict(s)
    row.update(row.pop("context"))
    return row


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
