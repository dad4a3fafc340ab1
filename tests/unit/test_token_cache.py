"""The in-process caches (server/store/cached.py): bounded, never past their deadline, dropped at
once by this replica's own changes, never re-filled by a read that raced with a change, and a
change made by another replica seen within `max_age` (two stores on one SQLite file)."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Generic, Protocol

import pytest

from server.records import (
    ClientKind,
    ClientRecord,
    RefreshOutcome,
    SessionUpdate,
    TenantRecord,
    TokenUse,
    TokenView,
)
from server.store.cached import (
    CACHED_READS,
    DROPPING_WRITES,
    UNCACHED_READS,
    WRITES_KEEPING_CACHED_ROWS,
    CachedStore,
    cached,
)
from server.store.memory import MemoryStore
from server.store.protocol import TokenStore
from server.store.token_cache import TokenCache
from tests.support.narrow import not_none
from tests.support.records import NOW, session, token


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def view(digest: str, session_id: str | None = "s1") -> TokenView:
    return TokenView(token(digest, session=session_id))


class CountingStore(MemoryStore):
    """A MemoryStore that counts the reads reaching it."""

    def __init__(self) -> None:
        super().__init__()
        self.token_reads = 0
        self.client_reads = 0

    async def find_token(self, digest: str) -> TokenView | None:
        self.token_reads += 1
        return await super().find_token(digest)

    async def get_client(self, client_id: str) -> ClientRecord | None:
        self.client_reads += 1
        return await super().get_client(client_id)


# --- TokenCache -----------------------------------------------------------------------------


def test_capacity_evicts_the_least_recently_used() -> None:
    cache = TokenCache(capacity=2, max_age=60)
    cache.put(view("a", "s-a"), cache.generation)
    cache.put(view("b", "s-b"), cache.generation)
    assert cache.get("a") is not None  # a is now the most recent
    cache.put(view("c", "s-c"), cache.generation)
    assert len(cache) == 2
    assert cache.get("b") is None
    assert cache.get("a") is not None and cache.get("c") is not None
    cache.drop_session("s-b")  # the evicted entry left the session index too
    assert len(cache) == 2


def test_an_entry_is_not_served_after_its_deadline() -> None:
    clock = FakeMonotonic()
    cache = TokenCache(capacity=10, max_age=2.0, clock=clock)
    cache.put(view("a"), cache.generation)
    clock.now += 1.999
    assert cache.get("a") is not None
    clock.now += 0.002
    assert cache.get("a") is None
    assert len(cache) == 0


def test_dropping_a_session_drops_every_token_of_it_and_only_those() -> None:
    cache = TokenCache(capacity=10, max_age=60)
    for digest, sid in (("a1", "s1"), ("r1", "s1"), ("a2", "s2"), ("svc", None)):
        cache.put(view(digest, sid), cache.generation)
    cache.drop_session("s1")
    assert cache.get("a1") is None and cache.get("r1") is None
    assert cache.get("a2") is not None and cache.get("svc") is not None


def test_a_read_that_raced_with_a_change_is_not_cached() -> None:
    cache = TokenCache(capacity=10, max_age=60)
    generation = cache.generation  # the read starts ...
    cache.drop_token("a")  # ... a revocation commits and drops ...
    cache.put(view("a"), generation)  # ... and the read, with the old row, answers
    assert cache.get("a") is None


def test_a_suspended_cache_answers_nothing_and_keeps_nothing() -> None:
    """What a replica that cannot hear the others' revocations falls back to
    (server/store/listener.py): every read goes to the store until it listens again."""
    cache = TokenCache(capacity=10, max_age=60)
    cache.put(view("a"), cache.generation)
    cache.suspend()
    assert cache.get("a") is None
    cache.put(view("b"), cache.generation)
    assert cache.get("b") is None and len(cache) == 0
    read_while_suspended = cache.generation
    cache.resume()
    cache.put(view("c"), read_while_suspended)  # read before listening again: not kept
    assert cache.get("c") is None
    cache.put(view("d"), cache.generation)
    assert cache.get("d") is not None


def test_hits_misses_and_unconfirmed_lookups_are_reported() -> None:
    seen: list[str] = []
    clock = FakeMonotonic()
    cache = TokenCache(capacity=10, max_age=60, on_lookup=seen.append, clock=clock)
    cache.get("a")
    cache.put(view("a"), cache.generation)
    cache.get("a")
    cache.require_confirmation()
    cache.get("a")
    cache.get("b")  # not cached at all: a miss, confirmed or not
    assert seen == ["miss", "hit", "unconfirmed", "miss"]


def test_an_entry_is_answered_only_until_the_listeners_proof_runs_out() -> None:
    """What bounds a late notice (server/store/listener.py): with a listener, the cache answers
    only before the time its last heartbeat confirmed, and keeps the entries meanwhile."""
    clock = FakeMonotonic()
    cache = TokenCache(capacity=10, max_age=60, clock=clock)
    cache.require_confirmation()
    cache.put(view("a"), cache.generation)  # a read while unconfirmed is kept ...
    assert cache.get("a") is None  # ... but not answered before a proof
    assert cache.consulted
    cache.confirm(clock.now + 0.08)
    assert cache.get("a") is not None
    clock.now += 0.0799
    assert cache.get("a") is not None
    clock.now += 0.0002
    assert cache.get("a") is None  # the proof is too old: to the store
    cache.confirm(clock.now - 1.0)  # a proof older than the one held moves nothing back
    assert cache.get("a") is None
    cache.confirm(clock.now + 0.08)
    assert cache.get("a") is not None and len(cache) == 1


# --- CachedStore over a store ---------------------------------------------------------------


@pytest.fixture
async def counting() -> AsyncIterator[tuple[CountingStore, TokenStore]]:
    inner = CountingStore()
    await inner.save_tokens(
        [token("a1", use=TokenUse.ACCESS), token("r1"), token("a2", use=TokenUse.ACCESS)],
        session(),
    )
    yield inner, cached(inner, token_capacity=100, max_age=60, client_capacity=10)


async def test_known_tokens_are_read_once_unknown_ones_every_time(
    counting: tuple[CountingStore, TokenStore],
) -> None:
    inner, store = counting
    for _ in range(5):
        assert await store.find_token("a1") is not None
        assert await store.find_token("never-issued") is None
    assert inner.token_reads == 1 + 5


async def test_own_revocations_are_seen_at_once(
    counting: tuple[CountingStore, TokenStore],
) -> None:
    _, store = counting
    assert not_none(await store.find_token("a1")).token.revoked_at is None
    await store.revoke_token("a1", NOW)
    assert not_none(await store.find_token("a1")).token.revoked_at == NOW
    assert not_none(await store.find_token("a2")).token.revoked_at is None
    await store.revoke_session("s1", NOW)
    assert not_none(await store.find_token("a2")).token.revoked_at == NOW


async def test_a_refresh_drops_the_presented_token_and_its_session(
    counting: tuple[CountingStore, TokenStore],
) -> None:
    _, store = counting
    await store.find_token("r1")
    await store.find_token("a1")
    outcome = await store.refresh(
        "r1",
        "s1",
        [token("a3", use=TokenUse.ACCESS), token("r3")],
        SessionUpdate(updated_at=NOW),
        now=NOW,
        grace_seconds=10,
        rotate=True,
    )
    assert outcome is RefreshOutcome.ROTATED
    assert not_none(await store.find_token("r1")).token.rotated_at == NOW


async def test_revocations_wake_the_feed_and_rotations_do_not(
    counting: tuple[CountingStore, TokenStore],
) -> None:
    """The revocation feed reads the store when `TokenCache.revoked` says so: after every
    revoking write, and not after a refresh rotation or a purge, which drop entries but record
    no event (a watched replica would otherwise read the feed once per refresh)."""
    _, store = counting
    assert isinstance(store, CachedStore)
    woken: list[str] = []
    store.tokens.on_revocation.append(lambda: woken.append("woken"))

    def refresh(now: int, *, grace_seconds: int = 10) -> Awaitable[RefreshOutcome]:
        issued = [token(f"a-{now}", use=TokenUse.ACCESS), token(f"r-{now}")]
        update = SessionUpdate(updated_at=now)
        return store.refresh(
            "r1", "s1", issued, update, now=now, grace_seconds=grace_seconds, rotate=True
        )

    assert await refresh(NOW) is RefreshOutcome.ROTATED
    assert await refresh(NOW + 1) is RefreshOutcome.GRACE
    await store.purge_expired(NOW, batch_size=100)
    assert await store.revoke_customer_sessions("nobody", now=NOW) == []
    assert woken == []

    await store.revoke_token("a1", NOW)
    assert woken == ["woken"]
    assert await refresh(NOW + 60, grace_seconds=0) is RefreshOutcome.REUSED
    assert len(woken) == 2
    await store.revoke_session("s1", NOW)
    assert len(woken) == 3


async def test_a_customers_and_a_legal_entitys_revocations_drop_their_sessions_at_once() -> None:
    """The sessions a bulk revoke ended (by the ids the store returns) leave the cache before
    the call returns; a session it spared stays cached, read no more."""
    inner = CountingStore()
    store = cached(inner, token_capacity=100, max_age=60, client_capacity=10)
    for sid, customer, entity in (("s1", "c1", None), ("s2", "c1", "le1"), ("s3", "c2", "le1")):
        await inner.save_tokens(
            [token(f"a-{sid}", session=sid, use=TokenUse.ACCESS)],
            session(sid, customer_id=customer, legal_entity_id=entity),
        )
    for sid in ("s1", "s2", "s3"):
        await store.find_token(f"a-{sid}")
    reads = inner.token_reads

    assert await store.revoke_customer_sessions("c1", except_session_id="s2", now=NOW) == ["s1"]
    assert (await store.find_token("a-s1")).token.revoked_at == NOW  # type: ignore[union-attr]
    assert (await store.find_token("a-s2")).token.revoked_at is None  # type: ignore[union-attr]
    assert inner.token_reads == reads + 1  # only s1's token was read again

    assert sorted(await store.revoke_legal_entity_sessions("demo", "le1", now=NOW)) == ["s2", "s3"]
    for sid in ("s2", "s3"):
        assert (await store.find_token(f"a-{sid}")).token.revoked_at == NOW  # type: ignore[union-attr]


async def test_clients_are_read_once(counting: tuple[CountingStore, TokenStore]) -> None:
    inner, store = counting
    await store.create_tenant(TenantRecord("demo", NOW))
    await store.create_client(
        ClientRecord("web", "demo", ClientKind.STOREFRONT, "Shop", (), None, NOW)
    )
    for _ in range(3):
        assert (await store.get_client("web")) is not None
        assert (await store.get_client("nobody")) is None
    assert inner.client_reads == 1 + 3


# --- every store method decided: cached, forwarded, dropping or keeping -----------------------


def protocol_methods() -> set[str]:
    """Every method of TokenStore, through all the roles it is composed of."""
    return {
        name
        for role in TokenStore.__mro__
        if role not in (TokenStore, Protocol, Generic, object)
        for name, value in vars(role).items()
        if inspect.iscoroutinefunction(value)
    }


def test_every_store_method_is_decided_once() -> None:
    """A write added to the protocol fails here until cached.py says whether it drops cache
    entries (DROPPING_WRITES) or why it changes no cached row (WRITES_KEEPING_CACHED_ROWS)."""
    decided = [
        set(CACHED_READS),
        set(UNCACHED_READS),
        set(DROPPING_WRITES),
        set(WRITES_KEEPING_CACHED_ROWS),
    ]
    methods = protocol_methods()
    assert {"refresh", "password_hash_sample", "purge_expired", "ping"} <= methods
    assert set().union(*decided) == methods
    assert sum(len(group) for group in decided) == len(methods), "a method decided twice"
    assert all(reason.strip() for reason in WRITES_KEEPING_CACHED_ROWS.values())


def test_cached_store_writes_every_method_out() -> None:
    assert not hasattr(CachedStore, "__getattr__")
    missing = {name for name in protocol_methods() if name not in vars(CachedStore)}
    assert missing == set()


class RecordingStore:
    """Answers every call with a marker and remembers it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[object, ...], dict[str, object]]] = []
        self.answer: object = object()

    def __getattr__(self, name: str) -> object:
        async def call(*args: object, **kwargs: object) -> object:
            self.calls.append((name, args, kwargs))
            return self.answer

        return call


def protocol_method(name: str) -> Callable[..., object]:
    method: Callable[..., object] = next(
        vars(role)[name] for role in TokenStore.__mro__ if name in vars(role)
    )
    return method


def placeholder_arguments(name: str) -> tuple[tuple[object, ...], dict[str, object]]:
    """A distinct object for every parameter of the protocol method, passed as declared."""
    method = protocol_method(name)
    args: list[object] = []
    kwargs: dict[str, object] = {}
    for parameter in list(inspect.signature(method).parameters.values())[1:]:
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY:
            kwargs[parameter.name] = object()
        else:
            args.append(object())
    return tuple(args), kwargs


@pytest.mark.parametrize(
    "name", sorted(UNCACHED_READS | DROPPING_WRITES | set(WRITES_KEEPING_CACHED_ROWS))
)
async def test_each_method_forwards_its_arguments_and_drops_only_if_it_says_so(name: str) -> None:
    inner = RecordingStore()
    if inspect.signature(protocol_method(name)).return_annotation in (
        "list[str]",
        "list[str] | None",
    ):
        inner.answer = []  # the ids of the sessions a revoke ended, which the cache reads
    tokens = TokenCache(capacity=10, max_age=60)
    # RecordingStore answers every method through __getattr__, which mypy cannot see as the
    # TokenStore protocol.
    store = CachedStore(inner, tokens, client_capacity=10)  # type: ignore[arg-type]
    args, kwargs = placeholder_arguments(name)
    generation = tokens.generation
    answer = await getattr(store, name)(*args, **kwargs)
    returns_nothing = inspect.signature(protocol_method(name)).return_annotation == "None"
    assert answer is (None if returns_nothing else inner.answer)
    assert inner.calls == [(name, args, kwargs)]
    assert (tokens.generation > generation) is (name in DROPPING_WRITES)
