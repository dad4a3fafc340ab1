"""Revocations announced between replicas on PostgreSQL (server/store/notices.py and
listener.py): two stores opened as `tokenservice serve` opens its store (open_store), on one
real PostgreSQL database, each caching a token for an hour. A revocation committed through one
reaches the other's cache by its notice, not by the entry ageing out; and a replica whose
listening connection is cut (pg_terminate_backend) reads every token from the database until it
listens again, so no notice it missed can leave a revoked token active there."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest

from server.records import TenantRecord, TokenUse
from server.store.cached import CachedStore
from server.store.factory import open_store
from server.store.listener import APPLICATION_NAME, RevocationListener, asyncpg_dsn
from server.store.notices import CHANNEL, EVERYTHING, MAX_PAYLOAD_BYTES, Notice
from tests.support.harness import harness_settings
from tests.support.narrow import not_none
from tests.support.records import NOW, session, token
from tests.support.waiting import eventually

pytestmark = pytest.mark.postgres
AN_HOUR = 3600.0


@contextlib.contextmanager
def stopped(pid: int) -> Iterator[None]:
    """A PostgreSQL backend stopped (SIGSTOP) for the block: there, but answering nothing."""
    try:
        os.kill(pid, signal.SIGSTOP)
    except PermissionError:
        pytest.skip(
            "stopping a PostgreSQL backend needs root or the postgres user; "
            "this test runs in CI, which has them"
        )
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


@contextlib.asynccontextmanager
async def two_replicas(
    postgres_url: str, **overrides: Any
) -> AsyncIterator[tuple[CachedStore, CachedStore]]:
    settings = harness_settings(postgres_url, token_cache_seconds=AN_HOUR, **overrides)
    opened = [await open_store(settings, migrate=False) for _ in range(2)]
    try:
        stores = []
        for store in opened:
            assert isinstance(store, CachedStore)
            assert not_none(store.listener).listening.is_set()
            stores.append(store)
        await stores[0].create_tenant(TenantRecord("demo", NOW))
        yield stores[0], stores[1]
    finally:
        for store in opened:
            await store.close()


@pytest.fixture
async def replicas(postgres_url: str) -> AsyncIterator[tuple[CachedStore, CachedStore]]:
    # The cut test relies on asyncpg's report of the closed connection, not on the heartbeats
    # (harness_settings sets their time and the allowed lag to 30 s, so that a slow heartbeat
    # on a busy machine cannot send lookups to the database under the "cached" checks below).
    async with two_replicas(postgres_url) as stores:
        yield stores


def listener_of(store: CachedStore) -> RevocationListener:
    return not_none(store.listener)


async def cached_on(store: CachedStore, digest: str) -> bool:
    """Whether `store` answers `digest` from its cache (without asking the database)."""
    return store.tokens.get(digest) is not None


async def test_a_revoked_token_leaves_the_other_replicas_cache(
    replicas: tuple[CachedStore, CachedStore],
) -> None:
    a, b = replicas
    await a.save_tokens([token("t1", use=TokenUse.ACCESS), token("t2")], session())
    assert not_none(await b.find_token("t1")).token.revoked_at is None
    assert not_none(await b.find_token("t2")).token.revoked_at is None
    assert await cached_on(b, "t1") and await cached_on(b, "t2")

    await a.revoke_token("t1", NOW)

    await eventually(lambda: not b.tokens.get("t1"), "the notice dropped t1 from b's cache")
    assert not_none(await b.find_token("t1")).token.revoked_at == NOW  # read afresh
    assert await cached_on(b, "t2")  # the notice named t1 alone


async def test_ended_sessions_leave_the_other_replicas_cache(
    replicas: tuple[CachedStore, CachedStore],
) -> None:
    a, b = replicas
    await a.save_tokens([token("s1-access", use=TokenUse.ACCESS)], session("s1"))
    await a.save_tokens([token("s2-access", session="s2", use=TokenUse.ACCESS)], session("s2"))
    for digest in ("s1-access", "s2-access"):
        await b.find_token(digest)
    notices = listener_of(b).notices
    woken: list[int] = []
    b.tokens.on_revocation.append(lambda: woken.append(1))

    assert await a.revoke_session("s1", NOW) == 1

    await eventually(lambda: listener_of(b).notices > notices, "b heard the revocation")
    assert woken == [1]  # b's revocation feed reads now, not at its next poll
    assert not await cached_on(b, "s1-access")
    assert await cached_on(b, "s2-access")
    assert not_none(await b.find_token("s1-access")).token.revoked_at == NOW


async def test_nothing_is_announced_for_what_did_not_change(
    replicas: tuple[CachedStore, CachedStore],
) -> None:
    """Revoking a token that does not exist commits nothing to announce; the next real notice
    is the first b hears."""
    a, b = replicas
    await a.save_tokens([token("kept", use=TokenUse.ACCESS)], session())
    await b.find_token("kept")
    before = listener_of(b).notices
    assert await a.revoke_token("no-such-token", NOW) == 0
    await a.revoke_token("kept", NOW)
    await eventually(lambda: listener_of(b).notices > before, "b heard the real revocation")
    assert listener_of(b).notices == before + 1


async def test_a_cut_listening_connection_suspends_the_cache_until_it_listens_again(
    replicas: tuple[CachedStore, CachedStore], postgres_url: str
) -> None:
    a, b = replicas
    await a.save_tokens([token("t1", use=TokenUse.ACCESS)], session())
    await b.find_token("t1")
    assert await cached_on(b, "t1")
    listener = listener_of(b)
    cut_pid = not_none(listener.backend_pid)
    woken: list[bool] = []  # b's revocation feed told, and whether b could hear the others
    b.tokens.on_revocation.append(lambda: woken.append(not b.tokens.suspended))

    admin = await asyncpg.connect(asyncpg_dsn(postgres_url))
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", cut_pid)
    finally:
        await admin.close()
    # Once b has noticed the cut, whether it listens again before or after a's revocation
    # commits, b must not answer t1 active afterwards: either its cache is suspended (it reads
    # the database) or it listens again on a new connection and starts from an empty cache.
    # (Before b notices, which asyncpg reports as soon as the socket closes, a missed notice is
    # bounded by the cache's lifetime alone: waiting for it keeps this test deterministic.)
    await eventually(
        lambda: not listener.listening.is_set() or listener.backend_pid != cut_pid,
        "b noticed the cut",
    )
    await a.revoke_token("t1", NOW)
    assert not_none(await b.find_token("t1")).token.revoked_at == NOW

    await eventually(
        lambda: listener.listening.is_set() and listener.backend_pid not in (None, cut_pid),
        "b listens again on a new connection",
    )
    # Going deaf and hearing again both wake the feed: deaf, it must start polling often at
    # once (its own poll may be long), and on hearing again read what it may have missed.
    assert woken[0] is False and woken[-1] is True
    await a.save_tokens([token("t2", use=TokenUse.ACCESS)], session("s2"))
    await b.find_token("t2")
    assert await cached_on(b, "t2")  # caching again once listening
    await a.revoke_token("t2", NOW)
    await eventually(lambda: not b.tokens.get("t2"), "the new connection hears notices")


async def test_the_listening_connection_names_itself_in_pg_stat_activity(
    replicas: tuple[CachedStore, CachedStore], postgres_url: str
) -> None:
    """What an operator (and tests/reliability/test_revocation_propagation.py) finds it by."""
    pids = {not_none(listener_of(store).backend_pid) for store in replicas}
    admin = await asyncpg.connect(asyncpg_dsn(postgres_url))
    try:
        rows = await admin.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = $1",
            APPLICATION_NAME,
        )
    finally:
        await admin.close()
    assert {row["pid"] for row in rows} == pids


def test_a_notice_too_large_or_unreadable_means_everything() -> None:
    many = tuple(f"{i:064x}" for i in range(200))  # 200 digests: more than 8,000 bytes
    assert Notice.parse(Notice(tokens=many).payload()) == EVERYTHING
    few = Notice(tokens=many[:3], sessions=("s1",))
    assert len(few.payload()) < MAX_PAYLOAD_BYTES
    assert Notice.parse(few.payload()) == few
    for unreadable in ("", "{", '{"t": 1}', '{"t": [1], "s": []}', "[]", '{"t":[],"s":[],"p":1}'):
        assert Notice.parse(unreadable) == EVERYTHING
    probe = Notice(probe="0f1e")
    assert Notice.parse(probe.payload()) == probe
    assert json.loads(probe.payload())["t"] == json.loads(probe.payload())["s"] == []


async def test_another_replicas_probe_is_not_a_revocation(
    replicas: tuple[CachedStore, CachedStore], postgres_url: str
) -> None:
    """A listener proving its connection sends a probe every replica hears; it names nothing, so
    it drops nothing and counts as no notice (the real revocation after it is the next one)."""
    a, b = replicas
    await a.save_tokens([token("kept", use=TokenUse.ACCESS), token("gone")], session())
    await b.find_token("kept")
    before = listener_of(b).notices
    admin = await asyncpg.connect(asyncpg_dsn(postgres_url))
    try:
        await admin.execute("SELECT pg_notify($1, $2)", CHANNEL, Notice(probe="ab12").payload())
    finally:
        await admin.close()
    await a.revoke_token("gone", NOW)
    await eventually(lambda: listener_of(b).notices > before, "b heard the revocation")
    assert listener_of(b).notices == before + 1  # notices arrive in order: the probe came first
    assert await cached_on(b, "kept")


async def test_an_unexpected_driver_error_is_one_more_reason_to_reconnect(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An error asyncpg raises for its own reasons, not the network's or the server's, ends one
    attempt, not the listener: it logs, waits and listens again."""
    connect = asyncpg.connect
    attempts = []

    async def fails_once(*args: object, **kwargs: object) -> object:
        settings: Any = kwargs.get("server_settings", {})
        if settings.get("application_name") != APPLICATION_NAME:  # the listener's probe
            return await connect(*args, **kwargs)
        attempts.append(1)
        if len(attempts) == 1:
            raise asyncpg.exceptions.InternalClientError("a driver's own failure")
        return await connect(*args, **kwargs)

    monkeypatch.setattr(asyncpg, "connect", fails_once)
    store = await open_store(harness_settings(postgres_url), migrate=False)
    try:
        assert isinstance(store, CachedStore)
        await eventually(lambda: listener_of(store).listening.is_set(), "listening after all")
        assert len(attempts) == 2
        assert "not listening for other replicas' revocations (InternalClientError)" in caplog.text
    finally:
        await store.close()


async def test_a_held_up_notice_cannot_keep_a_revoked_token_active_past_the_allowed_lag(
    postgres_url: str,
) -> None:
    """The lag bound (TOKENSERVICE_REVOCATION_MAX_LAG_SECONDS): b's listening connection stays
    up, but its PostgreSQL backend is stopped (SIGSTOP: a backend not scheduled, a network
    path stalled), so neither a's notice nor b's heartbeats reach b. Once the lag has passed
    since the revocation, b answers the token from the database all the same, keeping its
    entries; when the backend runs again, b hears the notice, confirms and answers from its
    cache again."""
    lag = 0.2
    async with two_replicas(postgres_url, revocation_max_lag_seconds=lag) as (a, b):
        await a.save_tokens(
            [token("t1", use=TokenUse.ACCESS), token("t2", use=TokenUse.ACCESS)], session()
        )
        for digest in ("t1", "t2"):
            await b.find_token(digest)
        await eventually(
            lambda: b.tokens.get("t1") is not None and b.tokens.get("t2") is not None,
            "b answers both tokens from its cache",
        )
        listener = listener_of(b)
        backend = not_none(listener.backend_pid)
        with stopped(backend):
            notices = listener.notices
            await a.revoke_token("t1", NOW)
            t0 = time.monotonic()
            # A duration here is the subject, not a guess: what b answers once `lag` is over.
            await asyncio.sleep(lag)
            assert time.monotonic() > t0 + lag
            assert not_none(await b.find_token("t1")).token.revoked_at == NOW
            assert listener.notices == notices  # not the notice: b has not heard it
            assert b.tokens.get("t2") is None  # unconfirmed: to the database as well
            assert listener.listening.is_set()  # the connection was never given up
        await eventually(lambda: listener.notices > notices, "b hears the notice after all")
        await eventually(lambda: b.tokens.get("t2") is not None, "b confirms its cache again")
        assert b.tokens.get("t1") is None  # dropped by the notice
        assert listener.backend_pid == backend


async def test_a_heartbeat_unheard_for_the_probe_time_gives_the_connection_up(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A listening connection that died silently (here its backend stopped) is given up once a
    heartbeat goes unheard for TOKENSERVICE_REVOCATION_LISTENER_PROBE_SECONDS: the cache is
    emptied and the listener listens again on a new connection."""
    # A probe time long enough that no heartbeat on a busy machine misses it before the stop.
    settings = {"revocation_max_lag_seconds": 0.2, "revocation_listener_probe_seconds": 2.0}
    async with two_replicas(postgres_url, **settings) as (a, b):
        await a.save_tokens([token("t1", use=TokenUse.ACCESS)], session())
        await b.find_token("t1")
        await eventually(lambda: b.tokens.get("t1") is not None, "b answers t1 from its cache")
        listener = listener_of(b)
        backend = not_none(listener.backend_pid)
        with stopped(backend):
            await eventually(lambda: not listener.listening.is_set(), "b gives the connection up")
            assert len(b.tokens) == 0
        await eventually(
            lambda: listener.listening.is_set() and listener.backend_pid not in (None, backend),
            "b listens again on a new connection",
        )
        assert "not listening for other replicas' revocations (TimeoutError)" in caplog.text
