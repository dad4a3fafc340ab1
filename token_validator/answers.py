"""The validator's cache of introspection answers, keyed by the token's SHA-256 (the name the
revocation feed gives a token), never by the token.

How long an answer is good for depends on whether revocations are being followed:

- An active answer obtained while the feed was followed is good until the token's `exp` for
  as long as the feed is followed: any revocation of it would reach us and drop it. (One whose
  question crossed a revocation event is not stored at all: validator.py.)
- Any other active answer, and every active answer while the feed is not followed (the stream
  lost, not yet caught up), is good for the answer's own `cache_seconds` only.
- An inactive answer is final (a token never becomes active again): good until evicted.

Times are monotonic seconds counted from when the question was sent, so an answer that took
long to arrive is kept less long, never more.
"""

from __future__ import annotations

import collections
import dataclasses

from tokenservice.v1 import token_service_pb2 as pb


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    answer: pb.IntrospectTokenResponse
    hint_until: float  # good until then in any case
    exp_until: float  # good until then while revocations are followed (`followed`)
    followed: bool  # stored while following, with no revocation heard since the question


class Answers:
    """A bounded LRU of introspection answers, with the session index the feed's events use."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("the answer cache needs room for at least one answer")
        self._capacity = capacity
        self._entries: collections.OrderedDict[str, Entry] = collections.OrderedDict()
        self._by_session: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str, now: float, following: bool) -> pb.IntrospectTokenResponse | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if not entry.answer.active:
            good = True
        elif following and entry.followed:
            good = now < entry.exp_until
        else:
            good = now < entry.hint_until
        if not good:
            self._remove(key)
            return None
        self._entries.move_to_end(key)
        return entry.answer

    def put(
        self, key: str, answer: pb.IntrospectTokenResponse, sent: float, followed: bool
    ) -> None:
        entry = Entry(
            answer,
            hint_until=sent + answer.cache_seconds,
            exp_until=sent + answer.expires_in,
            followed=followed,
        )
        self._remove(key)
        self._entries[key] = entry
        if answer.session_id:
            self._by_session.setdefault(answer.session_id, set()).add(key)
        while len(self._entries) > self._capacity:
            self._remove(next(iter(self._entries)))

    def drop_tokens(self, keys: list[str]) -> None:
        for key in keys:
            self._remove(key)

    def drop_sessions(self, session_ids: list[str]) -> None:
        for session_id in session_ids:
            for key in list(self._by_session.get(session_id, ())):
                self._remove(key)

    def clear(self) -> None:
        self._entries.clear()
        self._by_session.clear()

    def _remove(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is None or not entry.answer.session_id:
            return
        keys = self._by_session.get(entry.answer.session_id)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_session[entry.answer.session_id]
