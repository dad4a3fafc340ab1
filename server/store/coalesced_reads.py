"""Point reads by key, coalesced: the lookups that arrive while one fetch is on its way to the
database wait, and go together as the next fetch, one statement for all their keys.

Why: on PostgreSQL a point read is a pool checkout, the statement and SQLAlchemy's bridge
around both, a round trip and a few hundred microseconds of the one event loop; a token
introspected for the first time on every replica (a cache miss) paid that alone. One
`WHERE key IN (...)` for every miss waiting costs about what one read did, so under load each
lookup pays a fraction of it. The same shape as the grouped writes (server/store/runners.py):
one fetch in flight at a time, up to `max_keys` keys each. Before it takes its keys, a fetch
lets the event loop run one turn: the calls made ready meanwhile, which under load are many,
look their tokens up in it rather than in the next (without that turn, a fetch that returns
sooner gathered fewer lookups, and never-seen introspection on PostgreSQL cost 16 % more CPU
per call). When idle, that turn is all a lookup waits for company.

Outcomes, for each caller: the value the fetch found for its key, None where it found none,
or the fetch's exception (every caller of that fetch hears it; nothing is retried here: the
store's callers decide). A caller cancelled while it waits leaves the others unaffected; a
key asked for twice in one batch is fetched once. A lookup is never answered by a fetch that
started before it arrived, so it sees nothing older than a read of its own would have (a
revocation committed before the lookup is seen).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# Keys per statement: a page of an index scan, small enough that its parameters stay cheap.
MAX_KEYS = 64


class CoalescedReads(Generic[K, V]):
    def __init__(
        self, fetch: Callable[[list[K]], Awaitable[Mapping[K, V]]], *, max_keys: int = MAX_KEYS
    ) -> None:
        self._fetch = fetch
        self._max_keys = max_keys
        self._waiting: dict[K, list[asyncio.Future[V | None]]] = {}
        self._fetching: asyncio.Task[None] | None = None
        self.fetches = 0  # statements sent: what the coalescing saved is lookups / fetches

    async def get(self, key: K) -> V | None:
        future: asyncio.Future[V | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(future)
        if self._fetching is None:
            self._fetching = asyncio.create_task(self._fetch_batches(), name="coalesced-reads")
        return await future

    async def _fetch_batches(self) -> None:
        batch: dict[K, list[asyncio.Future[V | None]]] = {}
        try:
            while self._waiting:
                # One turn of the event loop first: the lookups that calls made ready meanwhile
                # are about to make (the loop runs what is ready in turns) join this fetch.
                await asyncio.sleep(0)
                batch = self._take_batch()
                self.fetches += 1
                try:
                    found = await self._fetch(list(batch))
                except Exception as exc:  # every caller of this fetch hears why
                    for futures in batch.values():
                        _settle(futures, exception=exc)
                    continue
                for key, futures in batch.items():
                    _settle(futures, value=found.get(key))
        except BaseException:  # this task cancelled (shutdown): nobody is left waiting for ever
            for futures in [*batch.values(), *self._waiting.values()]:
                for future in futures:
                    future.cancel()
            self._waiting.clear()
            raise
        finally:
            self._fetching = None

    def _take_batch(self) -> dict[K, list[asyncio.Future[V | None]]]:
        keys = list(self._waiting)[: self._max_keys]
        return {key: self._waiting.pop(key) for key in keys}


def _settle(
    futures: list[asyncio.Future[V | None]],
    *,
    value: V | None = None,
    exception: BaseException | None = None,
) -> None:
    for future in futures:
        if future.done():  # its caller was cancelled meanwhile
            continue
        if exception is not None:
            future.set_exception(exception)
        else:
            future.set_result(value)
