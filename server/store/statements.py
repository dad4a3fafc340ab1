"""The SQL the store runs, built once at import (SQLAlchemy Core): one name per statement, so
that sql.py reads as what each transaction does and the statements can be read on their own."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import (
    Integer,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from server.records import KeyStatus, SessionUpdate, TokenKind, TokenUse
from server.store.schema import (
    account_links,
    account_policies,
    clients,
    customers,
    identity_providers,
    login_failures,
    revocation_events,
    service_meta,
    sessions,
    signing_keys,
    tenants,
    tokens,
)

_REFRESH = TokenUse.REFRESH.value
PING = select(literal(1))
# A revocation notice to the other replicas (server/store/notices.py), delivered at commit.
NOTIFY = select(func.pg_notify(bindparam("nt_channel"), bindparam("nt_payload")))
INSERT_TENANT = insert(tenants)
INSERT_CLIENT = insert(clients)
INSERT_CUSTOMER = insert(customers)
INSERT_SESSION = insert(sessions)
INSERT_TOKEN = insert(tokens)
INSERT_KEY = insert(signing_keys)

TENANT = select(tenants).where(tenants.c.name == bindparam("name"))
TENANTS = select(tenants).order_by(tenants.c.name)
SET_ALLOWED_ORIGINS = (
    update(tenants)
    .where(tenants.c.name == bindparam("ao_name"))
    .values(allowed_origins=bindparam("ao_origins"))
)
CLIENT = select(clients).where(clients.c.client_id == bindparam("client_id"))
CLIENTS = (
    select(clients).where(clients.c.tenant == bindparam("tenant")).order_by(clients.c.client_id)
)
CUSTOMER = select(customers).where(customers.c.id == bindparam("id"))
CUSTOMER_BY_EMAIL = select(customers).where(
    customers.c.tenant == bindparam("tenant"), customers.c.email == bindparam("email")
)
# customer password hashes (server/passwords.py)
PASSWORD_HASH_SAMPLE = (
    select(customers.c.password_hash)
    .where(customers.c.tenant == bindparam("ph_tenant"))
    .order_by(customers.c.email)
    .limit(bindparam("ph_limit", type_=Integer))
)
REPLACE_PASSWORD_HASH = (
    update(customers)
    .where(customers.c.id == bindparam("ph_id"))
    .where(customers.c.password_hash == bindparam("ph_expected"))
    .values(password_hash=bindparam("ph_new"))
)
SESSION = select(sessions).where(sessions.c.session_id == bindparam("sid"))
TOKEN_VIEW = (
    select(tokens, customers.c.email)
    .select_from(tokens.outerjoin(customers, customers.c.id == tokens.c.customer_id))
    .where(tokens.c.digest == bindparam("token_digest"))
)
# The same for many tokens at once (server/store/coalesced_reads.py).
TOKEN_VIEWS = (
    select(tokens, customers.c.email)
    .select_from(tokens.outerjoin(customers, customers.c.id == tokens.c.customer_id))
    .where(tokens.c.digest.in_(bindparam("token_digests", expanding=True)))
)
KEYS = select(signing_keys).order_by(signing_keys.c.created_at.desc(), signing_keys.c.kid)
KEY = select(signing_keys).where(signing_keys.c.kid == bindparam("key_id"))
DEMOTE_ACTIVE_KEY = (
    update(signing_keys)
    .where(signing_keys.c.status == KeyStatus.ACTIVE.value)
    .values(status=KeyStatus.VERIFYING.value)
)
ANY_PUBLISHED_KEY = (
    select(signing_keys.c.kid)
    .where(signing_keys.c.status.in_([KeyStatus.ACTIVE.value, KeyStatus.VERIFYING.value]))
    .limit(1)
)
RETIRE_KEY = (
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
ROTATE = (
    update(tokens)
    .where(*_live_refresh, tokens.c.rotated_at.is_(None))
    .values(rotated_at=bindparam("now"))
)
LIVE_REFRESH = select(tokens.c.rotated_at).where(*_live_refresh)
LIVE_ANONYMOUS_ACCESS = select(tokens.c.digest).where(
    tokens.c.digest == bindparam("token_digest"),
    tokens.c.session_id == bindparam("sid"),
    tokens.c.use == TokenUse.ACCESS.value,
    tokens.c.kind == TokenKind.ANONYMOUS.value,
    tokens.c.revoked_at.is_(None),
    tokens.c.expires_at > bindparam("now"),
)

REVOKE_TOKEN = (
    update(tokens)
    .where(tokens.c.digest == bindparam("token_digest"), tokens.c.revoked_at.is_(None))
    .values(revoked_at=bindparam("now"))
    .returning(tokens.c.tenant)
)
REVOKE_SESSION_TOKENS = (
    update(tokens)
    .where(tokens.c.session_id == bindparam("sid"), tokens.c.revoked_at.is_(None))
    .values(revoked_at=bindparam("now"))
)
REVOKE_ANONYMOUS_REFRESH = (
    update(tokens)
    .where(
        tokens.c.session_id == bindparam("sid"),
        tokens.c.kind == TokenKind.ANONYMOUS.value,
        tokens.c.use == _REFRESH,
        tokens.c.revoked_at.is_(None),
    )
    .values(revoked_at=bindparam("now"))
)
REVOKE_SESSION = (
    update(sessions)
    .where(sessions.c.session_id == bindparam("sid"), sessions.c.revoked_at.is_(None))
    .values(revoked_at=bindparam("now"))
    .returning(sessions.c.tenant)
)
BIND_CUSTOMER = (
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

# --- a customer's sessions: see TokenStore.list_customer_sessions and the revokes after it -----
_st = tokens.alias("st")


def _session_expiry(table: Any) -> Any:
    """When the last unrevoked token of the session expires (NULL: none is left); read from
    ix_tokens_session_id_expires_at."""
    return (
        select(func.max(_st.c.expires_at))
        .where(_st.c.session_id == table.c.session_id, _st.c.revoked_at.is_(None))
        .scalar_subquery()
    )


_expiry = _session_expiry(sessions)
# Keyset pagination, newest first: sessions strictly before the cursor (created_at, session_id).
# Without a cursor the caller passes NO_CURSOR_CREATED_AT, later than any session.
NO_CURSOR_CREATED_AT = 2**62
CUSTOMER_SESSIONS = (
    select(
        sessions.c.session_id,
        sessions.c.tenant,
        sessions.c.client_id,
        sessions.c.created_at,
        sessions.c.updated_at,
        sessions.c.legal_entity_id,
        _expiry.label("expires_at"),
    )
    .where(
        sessions.c.customer_id == bindparam("cid"),
        sessions.c.revoked_at.is_(None),
        or_(
            sessions.c.created_at < bindparam("after_created_at"),
            and_(
                sessions.c.created_at == bindparam("after_created_at"),
                sessions.c.session_id < bindparam("after_session_id"),
            ),
        ),
        _expiry > bindparam("now"),
    )
    .order_by(sessions.c.created_at.desc(), sessions.c.session_id.desc())
    .limit(bindparam("limit", type_=Integer))
)
REVOKE_CUSTOMER_SESSION = (
    update(sessions)
    .where(
        sessions.c.session_id == bindparam("sid"),
        sessions.c.customer_id == bindparam("cid"),
        sessions.c.revoked_at.is_(None),
        _expiry > bindparam("now"),
    )
    .values(revoked_at=bindparam("now"))
    .returning(sessions.c.tenant)
)
# Each UPDATE locks the rows it revokes (PostgreSQL): a refresh waiting on one then finds it
# revoked; one that committed first is seen by the tokens' UPDATE after it (read committed).
REVOKE_CUSTOMER_SESSIONS = (
    update(sessions)
    .where(
        sessions.c.customer_id == bindparam("cid"),
        sessions.c.session_id != bindparam("except_sid"),
        sessions.c.revoked_at.is_(None),
    )
    .values(revoked_at=bindparam("now"))
    .returning(sessions.c.session_id, sessions.c.tenant)
)
REVOKE_LEGAL_ENTITY_SESSIONS = (
    update(sessions)
    .where(
        sessions.c.tenant == bindparam("le_tenant"),
        sessions.c.legal_entity_id == bindparam("le"),
        sessions.c.revoked_at.is_(None),
    )
    .values(revoked_at=bindparam("now"))
    .returning(sessions.c.session_id, sessions.c.tenant)
)
OPEN_SESSIONS_OF_CUSTOMER = select(sessions.c.session_id).where(
    sessions.c.customer_id == bindparam("cid"), sessions.c.revoked_at.is_(None)
)
# Ids per statement when revoking the tokens of many sessions: far below SQLite's and
# asyncpg's bound-parameter limits.
SESSION_IDS_PER_STATEMENT = 500
REVOKE_TOKENS_OF_SESSIONS = (
    update(tokens)
    .where(
        tokens.c.session_id.in_(bindparam("ids", expanding=True)),
        tokens.c.revoked_at.is_(None),
    )
    .values(revoked_at=bindparam("now"))
)

# --- login failures: see TokenStore.record_login_failure ---------------------------------------
_login_key = (
    login_failures.c.tenant == bindparam("lf_tenant"),
    login_failures.c.subject == bindparam("lf_subject"),
)
LOGIN_FAILURES = select(login_failures).where(*_login_key)
# The row is created (as an empty counter) if missing and then locked, so that concurrent
# failures on any replica queue up on it and each one is counted.
LOGIN_FAILURES_LOCKED = LOGIN_FAILURES.with_for_update()
_login_row = {
    "tenant": bindparam("lf_tenant"),
    "subject": bindparam("lf_subject"),
    "failures": 0,
    "last_failure_at": 0,
    "locked_until": 0,
}
ADD_LOGIN_FAILURES = {
    "postgresql": pg_dialect.insert(login_failures).values(_login_row).on_conflict_do_nothing(),
    "sqlite": sqlite_dialect.insert(login_failures).values(_login_row).on_conflict_do_nothing(),
}
SET_LOGIN_FAILURES = (
    update(login_failures)
    .where(*_login_key)
    .values(
        failures=bindparam("new_failures"),
        last_failure_at=bindparam("new_last_failure_at"),
        locked_until=bindparam("new_locked_until"),
    )
)
CLEAR_LOGIN_FAILURES = delete(login_failures).where(*_login_key)
PURGE_LOGIN_FAILURES = delete(login_failures).where(
    login_failures.c.last_failure_at < bindparam("before"),
    login_failures.c.locked_until < bindparam("before"),
)


# --- service metadata and the write probe: see TokenStore.add_meta_if_absent, SqlStore.ping ---
META = select(service_meta.c.value).where(service_meta.c.name == bindparam("meta_name"))
_meta_row: dict[str, Any] = {"name": bindparam("meta_name"), "value": bindparam("meta_value")}
ADD_META = {
    "postgresql": pg_dialect.insert(service_meta).values(_meta_row).on_conflict_do_nothing(),
    "sqlite": sqlite_dialect.insert(service_meta).values(_meta_row).on_conflict_do_nothing(),
}


def _upsert_meta(dialect_insert: Any) -> Any:
    statement = dialect_insert(service_meta).values(_meta_row)
    return statement.on_conflict_do_update(
        index_elements=[service_meta.c.name], set_={"value": statement.excluded.value}
    )


SET_META = {
    "postgresql": _upsert_meta(pg_dialect.insert),
    "sqlite": _upsert_meta(sqlite_dialect.insert),
}
HOLDS_DATA = select(
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
PURGE_SESSIONLESS = delete(tokens).where(
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
SESSION_PAGE = select(
    _page.c.session_id, _page.c.revoked_at, _has_live_token(_page).label("live")
).order_by(_page.c.session_id)
# Closing dead sessions: lock the open ones named, then (a new statement, so a new snapshot on
# PostgreSQL: it sees the tokens of every refresh that committed before the lock) revoke those
# that still have no live token. Every write that adds tokens to a session updates its row
# first, so none can add any between the two statements.
LOCK_OPEN_SESSIONS = (
    select(sessions.c.session_id)
    .where(sessions.c.session_id.in_(bindparam("ids", expanding=True)))
    .where(sessions.c.revoked_at.is_(None))
    .with_for_update(skip_locked=True)
)
CLOSE_DEAD_SESSIONS = (
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
CLOSED_SESSIONS = (
    select(sessions.c.session_id)
    .where(_revoked(sessions))
    .order_by(sessions.c.revoked_at)
    .limit(_BATCH)
    .with_for_update(skip_locked=True)
)
PURGE_TOKENS_OF_SESSIONS = delete(tokens).where(
    tokens.c.digest.in_(
        select(_t.c.digest)
        .where(_t.c.session_id.in_(bindparam("ids", expanding=True)))
        .limit(_BATCH)
        .with_for_update(skip_locked=True)
    )
)
PURGE_SESSIONS_WITHOUT_TOKENS = delete(sessions).where(
    sessions.c.session_id.in_(bindparam("ids", expanding=True)),
    ~exists().where(_t.c.session_id == sessions.c.session_id),
)


_SESSION_CONTEXT_FIELDS = ("currency", "site_code", "language", "target_location")


def update_session(
    session_id: str, change: SessionUpdate, *, anonymous_only: bool = False
) -> tuple[Any, dict[str, Any]]:
    """The refresh's session UPDATE and its parameters: only the fields the caller set; with
    `anonymous_only`, only while the session has no customer."""
    context = change.context
    values: dict[str, Any] = {
        name: value
        for name, value in zip(
            _SESSION_CONTEXT_FIELDS,
            (context.currency, context.site_code, context.language, context.target_location),
            strict=True,
        )
        if value is not None
    }
    values["updated_at"] = change.updated_at
    if change.legal_entity_id is not None:
        values["legal_entity_id"] = change.legal_entity_id
    params = {f"su_{name}": value for name, value in values.items()}
    params["su_session_id"] = session_id
    return _session_update(tuple(values), anonymous_only), params


@functools.cache
def _session_update(fields: tuple[str, ...], anonymous_only: bool) -> Any:
    """One UPDATE per set of fields a refresh sets (at most 64), built on first use and kept:
    a statement built per call cost every refresh SQLAlchemy's construction and its cache-key
    walk over it (bench/results.md, "Profiles")."""
    statement = (
        update(sessions)
        .where(
            sessions.c.session_id == bindparam("su_session_id"),
            sessions.c.revoked_at.is_(None),
        )
        .values({name: bindparam(f"su_{name}") for name in fields})
    )
    if anonymous_only:
        statement = statement.where(sessions.c.customer_id.is_(None))
    return statement


# identity providers (server/identity_providers.py)
_PROVIDER_KEY = (
    identity_providers.c.tenant == bindparam("ip_tenant"),
    identity_providers.c.name == bindparam("ip_name"),
)
INSERT_IDENTITY_PROVIDER = insert(identity_providers)
IDENTITY_PROVIDER = select(identity_providers).where(*_PROVIDER_KEY)
IDENTITY_PROVIDERS = (
    select(identity_providers)
    .where(identity_providers.c.tenant == bindparam("ip_tenant"))
    .order_by(identity_providers.c.name)
)
DELETE_IDENTITY_PROVIDER = delete(identity_providers).where(*_PROVIDER_KEY)
# --- customer accounts (server/accounts/) ------------------------------------------------------
ACCOUNT_POLICY = select(account_policies).where(account_policies.c.tenant == bindparam("tenant"))
DELETE_ACCOUNT_POLICY = delete(account_policies).where(
    account_policies.c.tenant == bindparam("tenant")
)
INSERT_ACCOUNT_POLICY = insert(account_policies)
INSERT_ACCOUNT_LINK = insert(account_links)
DELETE_CUSTOMER_LINKS = delete(account_links).where(
    account_links.c.customer_id == bindparam("al_customer"),
    account_links.c.purpose == bindparam("al_purpose"),
)
LIVE_ACCOUNT_LINK = select(account_links).where(
    account_links.c.digest == bindparam("al_digest"),
    account_links.c.purpose == bindparam("al_purpose"),
    account_links.c.tenant == bindparam("al_tenant"),
    account_links.c.expires_at > bindparam("now"),
)
# The consuming DELETE: its row count decides the one caller that uses the link.
CONSUME_ACCOUNT_LINK = delete(account_links).where(
    account_links.c.digest == bindparam("al_digest"),
    account_links.c.expires_at > bindparam("now"),
)
PURGE_ACCOUNT_LINKS = delete(account_links).where(account_links.c.expires_at <= bindparam("now"))
ACTIVATE_CUSTOMER = (
    update(customers).where(customers.c.id == bindparam("cu_id")).values(active=True)
)
SET_PASSWORD_HASH = (
    update(customers)
    .where(customers.c.id == bindparam("cu_id"))
    .values(password_hash=bindparam("cu_hash"))
)
SET_EMAIL = (
    update(customers)
    .where(customers.c.id == bindparam("cu_id"))
    .values(email=bindparam("cu_email"))
)


# --- the revocation feed: see server/store/feed.py ---------------------------------------------
INSERT_REVOCATION_EVENT = insert(revocation_events)
_after = revocation_events.c.position > bindparam("after")
_feed_page = bindparam("limit", type_=Integer)
REVOCATION_EVENTS = (
    select(revocation_events).where(_after).order_by(revocation_events.c.position).limit(_feed_page)
)
REVOCATION_EVENTS_OF_TENANT = (
    select(revocation_events)
    .where(_after, revocation_events.c.tenant == bindparam("tenant"))
    .order_by(revocation_events.c.position)
    .limit(_feed_page)
)
FEED_HEAD = select(func.max(revocation_events.c.position))
LAST_EVENT_BEFORE = select(func.max(revocation_events.c.position)).where(
    revocation_events.c.revoked_at < bindparam("before")
)
PRUNE_REVOCATION_EVENTS = delete(revocation_events).where(
    revocation_events.c.position <= bindparam("through")
)
# The service_meta row that remembers the last position pruned (FeedBounds.pruned_through).
FEED_PRUNED_THROUGH = "revocation_feed_pruned_through"
# Taken by every transaction that records an event, just before it does (PostgreSQL): events
# then commit in position order, so a reader that has seen position N never later finds an
# event below N committed behind its back. Held until commit, and nothing that waits for
# another lock follows it in any transaction: no deadlock.
FEED_LOCK_KEY = 0x7265766F
FEED_LOCK = f"SELECT pg_advisory_xact_lock({FEED_LOCK_KEY})"
