"""SqlStore: the TokenStore on SQLAlchemy Core, SQLite (the stdlib driver, in threads) and
PostgreSQL (asyncpg). This module is the store class and its transactions only: the statements
are in statements.py, the row conversions in rows.py, the engines in engines.py, the mapping of
driver errors in errors.py.

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
import dataclasses
import functools
import logging
import random
import secrets
from collections.abc import Callable, Coroutine, Hashable, Mapping, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Row
from sqlalchemy.engine import Connection

from server.errors import InvalidRequest, NotFound, StoreUnavailable
from server.records import (
    AccountLink,
    AccountPolicy,
    ClientRecord,
    CustomerRecord,
    CustomerSession,
    FeedBounds,
    IdentityProviderRecord,
    KeyStatus,
    LinkPurpose,
    LoginFailures,
    PurgeReport,
    RefreshOutcome,
    RevocationEvent,
    SessionCursor,
    SessionRecord,
    SessionUpdate,
    SigningKeyRecord,
    TenantRecord,
    TokenRecord,
    TokenView,
)
from server.store import feed, rows, statements
from server.store.coalesced_reads import CoalescedReads
from server.store.engines import (
    PoolOptions,
    create_server_engine,
    create_sqlite_file_engines,
    create_sqlite_memory_engine,
    is_sqlite,
    is_sqlite_memory,
)
from server.store.errors import Conflict, store_errors
from server.store.kept_refresh import KeptRefresh, RollBack, insert_tokens
from server.store.migrate import upgrade_connection
from server.store.notices import announce
from server.store.outcomes import (
    ACTIVE_KEY_RETIRE,
    IDENTIFIER_EXISTS,
    UNAVAILABLE,
    check_purge_batch,
    client_exists,
    customer_exists,
    key_exists,
    tenant_exists,
    tenant_missing,
)
from server.store.runners import INSERTS, Inserts, ServerRunner, SqliteRunner, session_group

log = logging.getLogger(__name__)


P = ParamSpec("P")
R = TypeVar("R")
# The store the method is on: SqlStore or a subclass of it (the tests' FlakyStore).
S = TypeVar("S", bound="SqlStore")


def retried(
    method: Callable[Concatenate[S, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, R]]:
    """Runs a write unit of work again when it lost a serialization conflict or a deadlock
    (PostgreSQL), with a short random back-off; after the last try the store is unavailable."""

    @functools.wraps(method)
    async def call(store: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        for attempt in range(store.conflict_retries + 1):
            try:
                return await method(store, *args, **kwargs)
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
        # PostgreSQL: first-time token lookups share statements (coalesced_reads.py). SQLite
        # reads a row on the event loop itself, cheaper than any hand-off.
        self._token_views: CoalescedReads[str, Row[Any]] | None = (
            CoalescedReads(self._fetch_token_views) if isinstance(runner, ServerRunner) else None
        )

    @classmethod
    async def open(
        cls, database_url: str, *, busy_timeout_ms: int = 5000, pool: PoolOptions | None = None
    ) -> SqlStore:
        """Engines for the URL. An in-memory SQLite database lives and dies with its one shared
        connection, so it gets its schema here; file and server databases are migrated first
        (`migrate.upgrade`)."""
        pool = pool or PoolOptions()
        if not is_sqlite(database_url):
            server = create_server_engine(database_url, pool)
            return cls(ServerRunner(server), conflict_retries=pool.conflict_retries)
        if is_sqlite_memory(database_url):
            store = cls(
                SqliteRunner(create_sqlite_memory_engine(database_url, busy_timeout_ms), None)
            )
            await store._create_schema()
            return store
        writer, reader = create_sqlite_file_engines(database_url, busy_timeout_ms)
        return cls(SqliteRunner(writer, reader))

    async def ping(self) -> None:
        """A trivial read; while the last write failed for want of the store (a full disk, a
        database turned read-only), a real write (`_probe_write`) instead, so that readiness
        says whether writes succeed, not only reads."""
        if self._writes_failing:
            await self._probe_write()
            return
        await self._query(lambda conn: conn.execute(statements.PING).first())

    async def close(self) -> None:
        await self._runner.close()

    def watch_other_writers(self, changed: Callable[[], None]) -> bool:
        """On a SQLite file: `changed` is called soon after another process commits to it
        (runners.SqliteRunner.watch_other_writers); False, and nothing, elsewhere."""
        if not isinstance(self._runner, SqliteRunner) or not self._runner.has_reader:
            return False
        self._runner.watch_other_writers(changed)
        return True

    async def _create_schema(self) -> None:
        await self._tx(upgrade_connection)

    # --- units of work ----------------------------------------------------------------------
    async def _tx(
        self,
        unit: Callable[[Connection], R],
        *,
        duplicate: str | None = None,
        missing: str | None = None,
        group: Hashable | None = None,
    ) -> R:
        """`unit` in one write transaction: committed when it returns, rolled back if it
        raises. A write the store could not take turns readiness to probing writes.
        `group`: a key the unit may share a transaction under with others of that key
        (runners.ServerRunner says which units may)."""
        try:
            with store_errors(duplicate=duplicate, missing=missing):
                return await self._runner.write(unit, group=group)
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
        row = await self._first(statements.META, {"meta_name": name})
        return None if row is None else str(row.value)

    @retried
    async def add_meta_if_absent(self, name: str, value: str) -> str:
        params = {"meta_name": name, "meta_value": value}

        def unit(conn: Connection) -> str:
            conn.execute(statements.ADD_META[conn.dialect.name], params)
            return str(conn.execute(statements.META, params).scalar_one())

        return await self._tx(unit)

    async def holds_data(self) -> bool:
        return bool(await self._query(lambda conn: conn.execute(statements.HOLDS_DATA).scalar()))

    def _note_write_failed(self) -> None:
        if not self._writes_failing:
            log.warning("token store: a write failed; not ready until a probe write succeeds")
        self._writes_failing = True

    @retried
    async def _probe_write(self) -> None:
        """Rewrites the probe row (statements.WRITE_PROBE) in a committed transaction of its own."""
        probe = secrets.token_hex(statements.WRITE_PROBE_BYTES // 2)
        params = {"meta_name": statements.WRITE_PROBE, "meta_value": probe}
        with store_errors():
            await self._runner.write(
                lambda conn: conn.execute(statements.SET_META[conn.dialect.name], params)
            )
        if self._writes_failing:
            log.warning("token store: a probe write succeeded; ready again")
        self._writes_failing = False

    # --- provisioning -----------------------------------------------------------------------
    @retried
    async def create_tenant(self, tenant: TenantRecord) -> None:
        row = rows.tenant_row(tenant)
        await self._tx(
            lambda conn: conn.execute(statements.INSERT_TENANT, row),
            duplicate=tenant_exists(tenant.name),
        )

    async def get_tenant(self, name: str) -> TenantRecord | None:
        row = await self._first(statements.TENANT, {"name": name})
        return None if row is None else rows.tenant_record(row)

    async def list_tenants(self) -> list[TenantRecord]:
        return [rows.tenant_record(r) for r in await self._all(statements.TENANTS)]

    @retried
    async def set_allowed_origins(self, name: str, origins: Sequence[str]) -> TenantRecord | None:
        params = {"ao_name": name, "ao_origins": " ".join(origins)}

        def unit(conn: Connection) -> Row[Any] | None:
            if conn.execute(statements.SET_ALLOWED_ORIGINS, params).rowcount == 0:
                return None
            return conn.execute(statements.TENANT, {"name": name}).first()

        row = await self._tx(unit)
        return None if row is None else rows.tenant_record(row)

    @retried
    async def create_client(self, client: ClientRecord) -> None:
        row = rows.client_row(client)
        await self._tx(
            lambda conn: conn.execute(statements.INSERT_CLIENT, row),
            duplicate=client_exists(client.client_id),
            missing=tenant_missing(client.tenant),
        )

    @retried
    async def put_identity_provider(self, provider: IdentityProviderRecord) -> None:
        row = rows.identity_provider_row(provider)
        key = {"ip_tenant": provider.tenant, "ip_name": provider.name}

        def unit(conn: Connection) -> None:
            conn.execute(statements.DELETE_IDENTITY_PROVIDER, key)
            conn.execute(statements.INSERT_IDENTITY_PROVIDER, row)

        await self._tx(unit, missing=tenant_missing(provider.tenant))

    async def get_identity_provider(self, tenant: str, name: str) -> IdentityProviderRecord | None:
        row = await self._first(
            statements.IDENTITY_PROVIDER, {"ip_tenant": tenant, "ip_name": name}
        )
        return None if row is None else rows.identity_provider_record(row)

    async def list_identity_providers(self, tenant: str) -> list[IdentityProviderRecord]:
        found = await self._all(statements.IDENTITY_PROVIDERS, {"ip_tenant": tenant})
        return [rows.identity_provider_record(r) for r in found]

    @retried
    async def delete_identity_provider(self, tenant: str, name: str) -> bool:
        key = {"ip_tenant": tenant, "ip_name": name}
        deleted = await self._tx(
            lambda conn: conn.execute(statements.DELETE_IDENTITY_PROVIDER, key).rowcount
        )
        return bool(deleted)

    async def get_client(self, client_id: str) -> ClientRecord | None:
        row = await self._first(statements.CLIENT, {"client_id": client_id})
        return None if row is None else rows.client_record(row)

    async def list_clients(self, tenant: str) -> list[ClientRecord]:
        return [
            rows.client_record(r) for r in await self._all(statements.CLIENTS, {"tenant": tenant})
        ]

    @retried
    async def create_customer(self, customer: CustomerRecord) -> None:
        row = rows.customer_row(customer)
        await self._tx(
            lambda conn: conn.execute(statements.INSERT_CUSTOMER, row),
            duplicate=customer_exists(customer.tenant),
            missing=tenant_missing(customer.tenant),
        )

    async def find_customer(self, tenant: str, email: str) -> CustomerRecord | None:
        row = await self._first(
            statements.CUSTOMER_BY_EMAIL, {"tenant": tenant, "email": email.lower()}
        )
        return None if row is None else rows.customer_record(row)

    async def get_customer(self, customer_id: str) -> CustomerRecord | None:
        row = await self._first(statements.CUSTOMER, {"id": customer_id})
        return None if row is None else rows.customer_record(row)

    # --- customer password hashes -----------------------------------------------------------
    async def password_hash_sample(self, tenant: str, limit: int) -> list[str]:
        found = await self._all(
            statements.PASSWORD_HASH_SAMPLE, {"ph_tenant": tenant, "ph_limit": limit}
        )
        return [row.password_hash for row in found]

    @retried
    async def replace_password_hash(self, customer_id: str, expected: str, new: str) -> bool:
        params = {"ph_id": customer_id, "ph_expected": expected, "ph_new": new}
        return await self._tx(
            lambda conn: conn.execute(statements.REPLACE_PASSWORD_HASH, params).rowcount == 1
        )

    # --- customer accounts (server/accounts/) --------------------------------------------------
    async def get_account_policy(self, tenant: str) -> AccountPolicy | None:
        row = await self._first(statements.ACCOUNT_POLICY, {"tenant": tenant})
        return None if row is None else rows.account_policy_record(row)

    @retried
    async def set_account_policy(self, policy: AccountPolicy) -> None:
        row = rows.account_policy_row(policy)

        def unit(conn: Connection) -> None:
            if conn.execute(statements.TENANT, {"name": policy.tenant}).first() is None:
                raise NotFound(tenant_missing(policy.tenant))
            conn.execute(statements.DELETE_ACCOUNT_POLICY, {"tenant": policy.tenant})
            conn.execute(statements.INSERT_ACCOUNT_POLICY, row)

        await self._tx(unit)

    @retried
    async def save_account_link(self, link: AccountLink) -> None:
        row = rows.account_link_row(link)
        params = {"al_customer": link.customer_id, "al_purpose": link.purpose.value}

        def unit(conn: Connection) -> None:
            conn.execute(statements.DELETE_CUSTOMER_LINKS, params)
            conn.execute(statements.INSERT_ACCOUNT_LINK, row)

        await self._tx(unit, duplicate=IDENTIFIER_EXISTS)

    @retried
    async def activate_customer(self, tenant: str, digest: str, now: int) -> CustomerRecord | None:
        def unit(conn: Connection) -> CustomerRecord | None:
            link = _consume_link(conn, tenant, digest, LinkPurpose.OPT_IN, now)
            if link is None:
                return None
            conn.execute(statements.ACTIVATE_CUSTOMER, {"cu_id": link.customer_id})
            return _customer(conn, link.customer_id)

        return await self._tx(unit)

    @retried
    async def reset_password(
        self, tenant: str, digest: str, new_hash: str, now: int
    ) -> list[str] | None:
        def unit(conn: Connection) -> list[str] | None:
            link = _consume_link(conn, tenant, digest, LinkPurpose.PASSWORD_RESET, now)
            if link is None:
                return None
            params = {"cu_id": link.customer_id, "cu_hash": new_hash}
            conn.execute(statements.SET_PASSWORD_HASH, params)
            return _end_customer_sessions(conn, link.customer_id, None, now)

        return await self._tx(unit)

    @retried
    async def change_password(
        self, customer_id: str, expected_hash: str, new_hash: str, keep_session_id: str, now: int
    ) -> list[str] | None:
        params = {"ph_id": customer_id, "ph_expected": expected_hash, "ph_new": new_hash}

        def unit(conn: Connection) -> list[str] | None:
            if conn.execute(statements.REPLACE_PASSWORD_HASH, params).rowcount != 1:
                return None
            return _end_customer_sessions(conn, customer_id, keep_session_id, now)

        return await self._tx(unit)

    @retried
    async def change_email(self, tenant: str, digest: str, now: int) -> CustomerRecord | None:
        def unit(conn: Connection) -> CustomerRecord | None:
            link = _consume_link(conn, tenant, digest, LinkPurpose.EMAIL_CHANGE, now)
            if link is None or link.new_email is None:
                return None
            conn.execute(
                statements.SET_EMAIL, {"cu_id": link.customer_id, "cu_email": link.new_email}
            )
            announce(conn, everything=True)  # cached tokens carry the customer's e-mail
            # So do resource servers' cached answers: the feed names the customer's sessions.
            sessions = conn.execute(
                statements.OPEN_SESSIONS_OF_CUSTOMER, {"cid": link.customer_id}
            ).scalars()
            feed.record(conn, tenant, now, sessions=[str(sid) for sid in sessions])
            return _customer(conn, link.customer_id)

        return await self._tx(unit, duplicate=customer_exists(tenant))

    @retried
    async def purge_account_links(self, now: int) -> int:
        return await self._tx(
            lambda conn: int(conn.execute(statements.PURGE_ACCOUNT_LINKS, {"now": now}).rowcount)
        )

    # --- login failures ---------------------------------------------------------------------
    async def get_login_failures(self, tenant: str, subject: str) -> LoginFailures | None:
        return rows.login_failures(
            await self._first(
                statements.LOGIN_FAILURES, {"lf_tenant": tenant, "lf_subject": subject}
            )
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
            conn.execute(statements.ADD_LOGIN_FAILURES[conn.dialect.name], key)
            row = conn.execute(statements.LOGIN_FAILURES_LOCKED, key).first()
            state = next_state(rows.login_failures(row))
            values = {
                "new_failures": state.failures,
                "new_last_failure_at": state.last_failure_at,
                "new_locked_until": state.locked_until,
            }
            conn.execute(statements.SET_LOGIN_FAILURES, {**key, **values})
            return state

        return await self._tx(unit)

    @retried
    async def clear_login_failures(self, tenant: str, subject: str) -> None:
        key = {"lf_tenant": tenant, "lf_subject": subject}
        await self._tx(lambda conn: conn.execute(statements.CLEAR_LOGIN_FAILURES, key))

    @retried
    async def purge_login_failures(self, before: int) -> int:
        params = {"before": before}
        return await self._tx(
            lambda conn: int(conn.execute(statements.PURGE_LOGIN_FAILURES, params).rowcount)
        )

    # --- signing keys -----------------------------------------------------------------------
    @retried
    async def rotate_signing_key(self, new_key: SigningKeyRecord) -> None:
        row = rows.key_row(dataclasses.replace(new_key, status=KeyStatus.ACTIVE, retired_at=None))

        def unit(conn: Connection) -> None:
            _lock_signing_keys(conn)
            conn.execute(statements.DEMOTE_ACTIVE_KEY)
            conn.execute(statements.INSERT_KEY, row)

        await self._tx(unit, duplicate=key_exists(new_key.kid))

    @retried
    async def add_first_signing_key(self, new_key: SigningKeyRecord) -> bool:
        row = rows.key_row(dataclasses.replace(new_key, status=KeyStatus.ACTIVE, retired_at=None))

        def unit(conn: Connection) -> bool:
            _lock_signing_keys(conn)
            if conn.execute(statements.ANY_PUBLISHED_KEY).first() is not None:
                return False
            conn.execute(statements.INSERT_KEY, row)
            return True

        return await self._tx(unit, duplicate=key_exists(new_key.kid))

    async def list_signing_keys(self) -> list[SigningKeyRecord]:
        return [rows.key_record(r) for r in await self._all(statements.KEYS)]

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
            row = conn.execute(statements.KEY, {"key_id": kid}).first()
            if row is None:
                return None
            key = rows.key_record(row)
            if key.status is KeyStatus.ACTIVE:
                raise InvalidRequest(ACTIVE_KEY_RETIRE)
            if key.status is KeyStatus.RETIRED:
                return key
            check([rows.key_record(r) for r in conn.execute(statements.KEYS).all()])
            conn.execute(statements.RETIRE_KEY, {"key_id": kid, "now": now})
            return dataclasses.replace(key, status=KeyStatus.RETIRED, retired_at=now)

        return await self._tx(unit)

    # --- tokens and sessions ----------------------------------------------------------------
    @retried
    async def save_tokens(
        self, tokens: Sequence[TokenRecord], new_session: SessionRecord | None = None
    ) -> None:
        inserts: list[tuple[Any, list[dict[str, Any]]]] = []
        if new_session is not None:
            inserts.append((statements.INSERT_SESSION, [rows.session_row(new_session)]))
        if tokens:
            inserts.append((statements.INSERT_TOKEN, [rows.token_row(t) for t in tokens]))
        await self._tx(Inserts(tuple(inserts)), duplicate=IDENTIFIER_EXISTS, group=INSERTS)

    async def find_token(self, digest: str) -> TokenView | None:
        if self._token_views is not None:
            row = await self._token_views.get(digest)
        else:
            row = await self._first(statements.TOKEN_VIEW, {"token_digest": digest})
        return None if row is None else TokenView(rows.token_record(row), row.email)

    async def _fetch_token_views(self, digests: list[str]) -> dict[str, Row[Any]]:
        found = await self._query(
            lambda conn: conn.execute(statements.TOKEN_VIEWS, {"token_digests": digests}).all()
        )
        return {row.digest: row for row in found}

    async def get_session(self, session_id: str) -> SessionRecord | None:
        row = await self._first(statements.SESSION, {"sid": session_id})
        return None if row is None else rows.session_record(row)

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
        token_rows = [rows.token_row(t) for t in tokens]

        def unit(conn: Connection) -> bool:
            if conn.execute(statements.BIND_CUSTOMER, params).rowcount == 0:
                return False
            if revoke_anonymous_refresh:
                # Only the refresh token, which no resource server sees: no feed event.
                conn.execute(statements.REVOKE_ANONYMOUS_REFRESH, {"sid": session_id, "now": now})
                announce(conn, sessions=[session_id])
            insert_tokens(conn, token_rows)
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
        token_rows = [rows.token_row(t) for t in tokens]

        def rotating(conn: Connection) -> RefreshOutcome:
            if conn.execute(*statements.update_session(session_id, update)).rowcount == 0:
                return RefreshOutcome.INVALID  # nothing written yet
            outcome = _exchange(conn, params, now - grace_seconds)
            if outcome in (RefreshOutcome.INVALID, RefreshOutcome.GRACE):
                raise RollBack(outcome)  # the session's update too: nothing changes
            if outcome is RefreshOutcome.REUSED:
                _revoke_session(conn, session_id, now)
            else:
                insert_tokens(conn, token_rows)
            return outcome

        unit = rotating if rotate else KeptRefresh(session_id, params, update, token_rows)
        group = session_group(session_id)
        try:
            return await self._tx(unit, duplicate=IDENTIFIER_EXISTS, group=group)
        except RollBack as rollback:
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
        statement, session_params = statements.update_session(
            session_id, update, anonymous_only=not after_login
        )
        token_rows = [rows.token_row(t) for t in tokens]

        def unit(conn: Connection) -> bool:
            if conn.execute(statement, session_params).rowcount == 0:
                return False  # nothing written yet
            if conn.execute(statements.LIVE_ANONYMOUS_ACCESS, params).first() is None:
                raise RollBack(RefreshOutcome.INVALID)
            insert_tokens(conn, token_rows)
            return True

        try:
            return await self._tx(unit, duplicate=IDENTIFIER_EXISTS)
        except RollBack:
            return False

    @retried
    async def revoke_token(self, digest: str, now: int, *, fingerprint: str = "") -> int:
        params = {"token_digest": digest, "now": now}

        def unit(conn: Connection) -> int:
            tenant = conn.execute(statements.REVOKE_TOKEN, params).scalar()
            if tenant is None:
                return 0
            announce(conn, tokens=[digest])
            feed.record(conn, tenant, now, fingerprints=[fingerprint] if fingerprint else [])
            return 1

        return await self._tx(unit)

    @retried
    async def revoke_session(self, session_id: str, now: int) -> int:
        return await self._tx(lambda conn: _revoke_session(conn, session_id, now))

    # --- a customer's sessions ---------------------------------------------------------------
    async def list_customer_sessions(
        self,
        customer_id: str,
        *,
        now: int,
        limit: int,
        after: SessionCursor | None = None,
    ) -> list[CustomerSession]:
        params = {
            "cid": customer_id,
            "now": now,
            "limit": limit,
            "after_created_at": statements.NO_CURSOR_CREATED_AT
            if after is None
            else after.created_at,
            "after_session_id": "" if after is None else after.session_id,
        }
        found = await self._all(statements.CUSTOMER_SESSIONS, params)
        return [rows.customer_session(r) for r in found]

    @retried
    async def revoke_customer_session(self, customer_id: str, session_id: str, *, now: int) -> bool:
        params = {"sid": session_id, "cid": customer_id, "now": now}

        def unit(conn: Connection) -> bool:
            tenant = conn.execute(statements.REVOKE_CUSTOMER_SESSION, params).scalar()
            if tenant is None:
                return False
            conn.execute(statements.REVOKE_SESSION_TOKENS, params)
            announce(conn, sessions=[session_id])
            feed.record(conn, tenant, now, sessions=[session_id])
            return True

        return await self._tx(unit)

    @retried
    async def revoke_customer_sessions(
        self, customer_id: str, *, except_session_id: str | None = None, now: int
    ) -> list[str]:
        params = {"cid": customer_id, "except_sid": except_session_id or "", "now": now}
        return await self._tx(
            lambda conn: _revoke_sessions(conn, statements.REVOKE_CUSTOMER_SESSIONS, params)
        )

    @retried
    async def revoke_legal_entity_sessions(
        self, tenant: str, legal_entity_id: str, *, now: int
    ) -> list[str]:
        params = {"le_tenant": tenant, "le": legal_entity_id, "now": now}
        return await self._tx(
            lambda conn: _revoke_sessions(conn, statements.REVOKE_LEGAL_ENTITY_SESSIONS, params)
        )

    # --- the revocation feed (server/store/feed.py) -------------------------------------------
    async def revocation_events(
        self, after: int, *, tenant: str | None = None, limit: int
    ) -> list[RevocationEvent]:
        return await self._query(lambda conn: feed.events(conn, after, tenant, limit))

    async def revocation_feed_bounds(self) -> FeedBounds:
        return await self._query(feed.bounds)

    @retried
    async def prune_revocation_events(self, before: int) -> int:
        return await self._tx(lambda conn: feed.prune(conn, before))

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
            page = await self._all(
                statements.SESSION_PAGE, {"after": after, "now": now, "batch": batch_size}
            )
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
        return await self._tx(
            lambda conn: int(conn.execute(statements.PURGE_SESSIONLESS, params).rowcount)
        )

    @retried
    async def _close_sessions(self, session_ids: list[str], now: int) -> int:
        def unit(conn: Connection) -> int:
            ids = list(conn.execute(statements.LOCK_OPEN_SESSIONS, {"ids": session_ids}).scalars())
            if not ids:
                return 0
            return int(
                conn.execute(statements.CLOSE_DEAD_SESSIONS, {"ids": ids, "now": now}).rowcount
            )

        return await self._tx(unit)

    @retried
    async def _purge_closed(self, batch_size: int) -> tuple[int, int, int]:
        """Returns how many revoked sessions it picked, and how many tokens and sessions it
        deleted."""

        def unit(conn: Connection) -> tuple[int, int, int]:
            ids = list(conn.execute(statements.CLOSED_SESSIONS, {"batch": batch_size}).scalars())
            if not ids:
                return 0, 0, 0
            params = {"ids": ids, "batch": batch_size}
            removed_tokens = conn.execute(statements.PURGE_TOKENS_OF_SESSIONS, params).rowcount
            removed_sessions = conn.execute(
                statements.PURGE_SESSIONS_WITHOUT_TOKENS, params
            ).rowcount
            return len(ids), int(removed_tokens), int(removed_sessions)

        return await self._tx(unit)


# --- helpers used inside a write transaction ----------------------------------------------------
def _exchange(conn: Connection, params: Mapping[str, Any], grace_floor: int) -> RefreshOutcome:
    """Decides the outcome of a rotating refresh for a live session (see TokenStore.refresh)."""
    if conn.execute(statements.ROTATE, params).rowcount == 1:
        return RefreshOutcome.ROTATED
    row = conn.execute(statements.LIVE_REFRESH, params).first()
    if row is None:
        return RefreshOutcome.INVALID
    if row.rotated_at is None:  # lost the race to a writer that then rolled back
        return RefreshOutcome.INVALID
    return RefreshOutcome.GRACE if row.rotated_at >= grace_floor else RefreshOutcome.REUSED


def _revoke_session(conn: Connection, session_id: str, now: int) -> int:
    params = {"sid": session_id, "now": now}
    tenant = conn.execute(statements.REVOKE_SESSION, params).scalar()
    revoked = int(conn.execute(statements.REVOKE_SESSION_TOKENS, params).rowcount)
    announce(conn, sessions=[session_id])
    if tenant is not None:
        feed.record(conn, tenant, now, sessions=[session_id])
    return revoked


def _revoke_sessions(conn: Connection, statement: Any, params: Mapping[str, Any]) -> list[str]:
    """Revokes the sessions `statement` picks (it RETURNs their ids), then their tokens."""
    ended = conn.execute(statement, params).all()
    ids = [str(row.session_id) for row in ended]
    step = statements.SESSION_IDS_PER_STATEMENT
    for start in range(0, len(ids), step):
        chunk = {"ids": ids[start : start + step], "now": params["now"]}
        conn.execute(statements.REVOKE_TOKENS_OF_SESSIONS, chunk)
    announce(conn, sessions=ids)
    if ended:  # one customer's or one legal entity's: one tenant
        feed.record(conn, ended[0].tenant, params["now"], sessions=ids)
    return ids


def _consume_link(
    conn: Connection, tenant: str, digest: str, purpose: LinkPurpose, now: int
) -> AccountLink | None:
    """The live link of an existing customer, deleted; None, deleting nothing, when there is
    none, and None when a concurrent caller deleted it first (the DELETE's row count
    decides)."""
    params = {"al_digest": digest, "al_purpose": purpose.value, "al_tenant": tenant, "now": now}
    row = conn.execute(statements.LIVE_ACCOUNT_LINK, params).first()
    if row is None or _customer(conn, row.customer_id) is None:
        return None
    if conn.execute(statements.CONSUME_ACCOUNT_LINK, params).rowcount != 1:
        return None
    return rows.account_link_record(row)


def _customer(conn: Connection, customer_id: str) -> CustomerRecord | None:
    row = conn.execute(statements.CUSTOMER, {"id": customer_id}).first()
    return None if row is None else rows.customer_record(row)


def _end_customer_sessions(
    conn: Connection, customer_id: str, keep: str | None, now: int
) -> list[str]:
    """Revokes every open session of the customer but `keep`, with their tokens (what
    revoke_customer_sessions does, inside the caller's transaction)."""
    params = {"cid": customer_id, "except_sid": keep or "", "now": now}
    return _revoke_sessions(conn, statements.REVOKE_CUSTOMER_SESSIONS, params)
