"""A TokenStore with an in-process cache in front of the two reads every request makes.

Introspection is the call every other service makes on every request of its own; issuing and
refreshing start with the client look-up. Both would otherwise be one database round trip each.

- Tokens (`find_token`), keyed by digest, for at most `max_age` seconds, at most `capacity`
  entries, least recently used out first. Only tokens that exist are cached: an unknown token
  is looked up every time, so guessing costs the guesser, not a growing cache. A cached token
  stays correct while its row does not change, and the expiry is re-checked from the record on
  every use, so the entry never outlives the token.
- Rows change by revocation, rotation and customer login. Done through this store (this
  replica), they drop the affected entries before the call returns: the token by digest, and
  every token of a session by session id. Done by another replica, they reach this one when the
  entry ages out, after `max_age` at the latest: that is the documented bound
  (TOKENSERVICE_TOKEN_CACHE_SECONDS).
- A database read that races with a change (it read the row before the change committed, and
  answers after the entries were dropped) must not put the old row back: every change bumps a
  generation counter, and a read only caches its row when no change happened meanwhile.
- Clients (`get_client`): no call changes or deletes a client record once created, so a found
  client is cached until evicted. (Should clients ever become mutable, their writes must drop
  them here as the token writes do.)

The rest of TokenStore passes through unchanged.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

from server.store.protocol import TokenStore
from server.store.records import (
    ClientRecord,
    PurgeReport,
    RefreshOutcome,
    SessionUpdate,
    TokenRecord,
    TokenView,
)


class TokenCache:
    """Bounded LRU of TokenViews by digest, with a per-entry deadline and a session index."""

    def __init__(
        self,
        *,
        capacity: int,
        max_age: float,
        clock: Callable[[], float] = time.monotonic,
        on_lookup: Callable[[bool], None] | None = None,
    ) -> None:
        self.capacity = capacity
        self.max_age = max_age
        self._clock = clock
        self._on_lookup = on_lookup
        self._entries: collections.OrderedDict[str, tuple[TokenView, float]] = (
            collections.OrderedDict()
        )
        self._by_session: dict[str, set[str]] = {}
        self.generation = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, digest: str) -> TokenView | None:
        entry = self._entries.get(digest)
        if entry is not None:
            if entry[1] > self._clock():
                self._entries.move_to_end(digest)
                self._counted(True)
                return entry[0]
            self._remove(digest)
        self._counted(False)
        return None

    def put(self, view: TokenView, generation: int) -> None:
        """Caches `view` as read when `self.generation` was `generation`, unless a change
        happened since."""
        if generation != self.generation or self.capacity <= 0:
            return
        digest = view.token.digest
        if digest in self._entries:
            self._remove(digest)
        self._entries[digest] = (view, self._clock() + self.max_age)
        session_id = view.token.session_id
        if session_id:
            self._by_session.setdefault(session_id, set()).add(digest)
        while len(self._entries) > self.capacity:
            self._remove(next(iter(self._entries)))

    def drop_token(self, digest: str) -> None:
        self.generation += 1
        self._remove(digest)

    def drop_session(self, session_id: str) -> None:
        self.generation += 1
        for digest in self._by_session.pop(session_id, ()):
            self._entries.pop(digest, None)

    def clear(self) -> None:
        self.generation += 1
        self._entries.clear()
        self._by_session.clear()

    def _remove(self, digest: str) -> None:
        entry = self._entries.pop(digest, None)
        if entry is None:
            return
        session_id = entry[0].token.session_id
        if session_id:
            digests = self._by_session.get(session_id)
            if digests is not None:
                digests.discard(digest)
                if not digests:
                    del self._by_session[session_id]

    def _counted(self, hit: bool) -> None:
        if self._on_lookup is not None:
            self._on_lookup(hit)


class CachedStore:
    """`store` with `tokens` in front of find_token and a client cache in front of get_client;
    every other method is the store's own."""

    def __init__(self, store: TokenStore, tokens: TokenCache, *, client_capacity: int) -> None:
        self._store = store
        self.tokens = tokens
        self._clients: collections.OrderedDict[str, ClientRecord] = collections.OrderedDict()
        self._client_capacity = client_capacity

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    @property
    def inner(self) -> TokenStore:
        return self._store

    # --- reads ------------------------------------------------------------------------------
    async def find_token(self, digest: str) -> TokenView | None:
        view = self.tokens.get(digest)
        if view is not None:
            return view
        generation = self.tokens.generation
        view = await self._store.find_token(digest)
        if view is not None:
            self.tokens.put(view, generation)
        return view

    async def get_client(self, client_id: str) -> ClientRecord | None:
        client = self._clients.get(client_id)
        if client is not None:
            self._clients.move_to_end(client_id)
            return client
        client = await self._store.get_client(client_id)
        if client is not None and self._client_capacity > 0:
            self._clients[client_id] = client
            while len(self._clients) > self._client_capacity:
                self._clients.popitem(last=False)
        return client

    # --- writes that change tokens: drop what they change -------------------------------------
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
        try:
            return await self._store.start_customer_session(
                session_id,
                customer_id,
                legal_entity_id,
                now,
                tokens,
                revoke_anonymous_refresh=revoke_anonymous_refresh,
            )
        finally:
            self.tokens.drop_session(session_id)

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
        try:
            return await self._store.refresh(
                presented_digest,
                session_id,
                tokens,
                update,
                now=now,
                grace_seconds=grace_seconds,
                rotate=rotate,
            )
        finally:
            self.tokens.drop_token(presented_digest)
            self.tokens.drop_session(session_id)

    async def purge_expired(self, now: int, *, batch_size: int) -> PurgeReport:
        """Rows it deletes are inactive already; dropping everything (once per sweep) keeps
        find_token answering None for them, as the store does."""
        try:
            return await self._store.purge_expired(now, batch_size=batch_size)
        finally:
            self.tokens.clear()

    async def revoke_token(self, digest: str, now: int) -> int:
        try:
            return await self._store.revoke_token(digest, now)
        finally:
            self.tokens.drop_token(digest)

    async def revoke_session(self, session_id: str, now: int) -> int:
        try:
            return await self._store.revoke_session(session_id, now)
        finally:
            self.tokens.drop_session(session_id)


def cached(
    store: TokenStore,
    *,
    token_capacity: int,
    max_age: float,
    client_capacity: int,
    on_lookup: Callable[[bool], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> TokenStore:
    """`store` behind the caches; with no token capacity and no client capacity, `store`.
    `clock` (seconds, monotonic) ages the token entries; tests move it by hand."""
    if token_capacity <= 0 and client_capacity <= 0:
        return store
    tokens = TokenCache(capacity=token_capacity, max_age=max_age, on_lookup=on_lookup, clock=clock)
    return cast(TokenStore, CachedStore(store, tokens, client_capacity=client_capacity))
