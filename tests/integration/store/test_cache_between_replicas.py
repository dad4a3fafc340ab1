"""The introspection cache between replicas: two caching stores on one real SQLite file, as two
replicas, so a revocation made by one reaches the other only when its cached entry ages out
(TOKENSERVICE_TOKEN_CACHE_SECONDS; this replica's own revocations drop its entries at once,
tests/unit/test_token_cache.py)."""

from __future__ import annotations

from pathlib import Path

from server.records import TokenUse
from server.store.cached import CachedStore, cached
from server.store.migrate import upgrade
from server.store.sql import SqlStore
from tests.support.narrow import not_none
from tests.support.records import NOW, session, token
from tests.unit.test_token_cache import FakeMonotonic


async def test_another_replicas_revocation_is_seen_within_max_age(tmp_path: Path) -> None:
    """Two caching stores on one database, as two replicas: B serves its cached row until the
    entry ages out, and the truth right after. Time is B's cache clock, moved by hand."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    await upgrade(url)
    max_age = 2.0
    clock = FakeMonotonic()
    a, b = [
        cached(
            await SqlStore.open(url),
            token_capacity=100,
            max_age=max_age,
            client_capacity=10,
            clock=clock,
        )
        for _ in range(2)
    ]
    try:
        await a.save_tokens([token("a1", use=TokenUse.ACCESS)], session())
        assert not_none(await b.find_token("a1")).token.revoked_at is None
        await a.revoke_token("a1", NOW)
        clock.now += max_age - 0.01
        stale = await b.find_token("a1")
        assert stale is not None and stale.token.revoked_at is None  # cached, not re-read
        clock.now += 0.01
        seen = await b.find_token("a1")
        assert seen is not None and seen.token.revoked_at == NOW  # aged out: the truth
    finally:
        for store in (a, b):
            assert isinstance(store, CachedStore)
            await store.close()
