"""The token cache itself: a bounded LRU of TokenViews by digest, each entry with a deadline,
indexed by session, with the generation counter that keeps a racing read from putting back a
row a change just dropped (server/store/cached.py says what drops what), the suspension a
replica that cannot hear the others' revocations falls back to, and the confirmation a replica
that hears them must keep renewing (both server/store/listener.py)."""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable

from server.records import TokenView

# What a lookup found (`on_lookup`): the entry; none (or a suspended cache); an entry that could
# not be answered, the listener's last proof of hearing every revocation being too old.
HIT, MISS, UNCONFIRMED = "hit", "miss", "unconfirmed"
LOOKUP_RESULTS = (HIT, MISS, UNCONFIRMED)


class TokenCache:
    """Bounded LRU of TokenViews by digest, with a per-entry deadline and a session index."""

    def __init__(
        self,
        *,
        capacity: int,
        max_age: float,
        clock: Callable[[], float] = time.monotonic,
        on_lookup: Callable[[str], None] | None = None,
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
        # While set, nothing is answered from the cache or put in it: a replica that cannot hear
        # the others' revocations (server/store/listener.py) reads every token from the store.
        self.suspended = False
        # Entries are answered only before this time (the cache's clock): a replica whose
        # listener last proved, at time T, that it had heard every revocation committed before T
        # answers from the cache until T + the allowed lag, and from the store after that, however
        # its notices are delayed (server/store/listener.py). Without a listener, no limit.
        self.confirmed_until = math.inf
        # Set by every lookup: the listener proves itself only while lookups happen.
        self.consulted = False
        # Called by `revoked`: whatever heard of a revocation (this process's revoking write,
        # another replica's notice, another process's commit on a SQLite file) tells the
        # revocation feed to read the store (server/revocation_feed.py). Drops alone do not: a
        # refresh rotation drops entries too, and records no event.
        self.on_revocation: list[Callable[[], None]] = []

    def __len__(self) -> int:
        return len(self._entries)

    def now(self) -> float:
        return self._clock()

    def get(self, digest: str) -> TokenView | None:
        self.consulted = True
        if self.suspended:
            self._counted(MISS)
            return None
        entry = self._entries.get(digest)
        if entry is not None:
            now = self._clock()
            if now >= self.confirmed_until:
                self._counted(UNCONFIRMED)
                return None
            if entry[1] > now:
                self._entries.move_to_end(digest)
                self._counted(HIT)
                return entry[0]
            self._remove(digest)
        self._counted(MISS)
        return None

    def put(self, view: TokenView, generation: int) -> None:
        """Caches `view` as read when `self.generation` was `generation`, unless a change
        happened since."""
        if generation != self.generation or self.capacity <= 0 or self.suspended:
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
        self._remove(digest)
        self._changed()

    def drop_session(self, session_id: str) -> None:
        for digest in self._by_session.pop(session_id, ()):
            self._entries.pop(digest, None)
        self._changed()

    def clear(self) -> None:
        self._entries.clear()
        self._by_session.clear()
        self._changed()

    def revoked_unknown(self) -> None:
        """Anything may have been revoked (a write whose outcome is unknown, another process's
        commit): drops every entry and tells the feed."""
        self.clear()
        self.revoked()

    def confirm(self, until: float) -> None:
        """Entries may be answered until `until` (never moved back: proofs may land out of
        order)."""
        self.confirmed_until = max(self.confirmed_until, until)

    def require_confirmation(self) -> None:
        """From now on, answers need a proof (`confirm`); none is held yet."""
        self.confirmed_until = -math.inf

    def suspend(self) -> None:
        """Drops everything and caches nothing until `resume`: what was cached may have been
        revoked elsewhere while nobody was listening."""
        self.suspended = True
        self.clear()
        self.revoked()  # a revocation may now go unheard: the feed starts polling often

    def resume(self) -> None:
        """Caches again, from empty (a read begun while suspended is not put back)."""
        self.clear()
        self.suspended = False
        self.revoked()  # the feed reads what it may have missed while nothing was heard

    def revoked(self) -> None:
        """Something was revoked, here or elsewhere: whoever reads the revocation feed reads."""
        for callback in self.on_revocation:
            callback()

    def _changed(self) -> None:
        self.generation += 1

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

    def _counted(self, result: str) -> None:
        if self._on_lookup is not None:
            self._on_lookup(result)
