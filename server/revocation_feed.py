"""The revocation feed: each revocation, once committed on any replica, handed to the resource
servers that watch it (WatchRevocations over gRPC, Server-Sent Events over HTTP).

The events are rows the revoking transaction itself writes (server/store/feed.py), so the feed
holds exactly the revocations that committed, in the order they committed, and every replica
reads the same sequence. One pump per process reads the rows after the last position it has
seen and offers each to the watchers of its tenant. It reads when woken, which is whenever this
process hears of a revocation (`TokenCache.revoked`): its own revoking writes (not a refresh
rotation, which drops cached entries but records no event), another replica's notice
(server/store/listener.py), another process's commit on a SQLite file
(runners.SqliteRunner.watch_other_writers); and, woken or not, every `poll_seconds`, which
bounds what a lost wake (or a store without a token cache) can delay. While `hearing` says
this replica cannot hear the others (its listening connection lost), no notice will wake it:
it reads every `deaf_poll_seconds` instead, so that a revocation on another replica still
reaches its watchers within a fraction of a second.

A watcher starts from a position:

- none: a **reset** at the latest position first (drop every answer kept so far), then
  what follows;
- one it was given earlier: the events after it, read from the store a page at a time, then
  a heartbeat (caught up), then the pump's, each exactly once (a watcher registers before it
  reads, and skips what it has already passed);
- one that is gone (older than the retention, so pruned: an event may be missing) or that
  this database never gave (a position past its latest): a reset.

A watcher that falls more than `queue_limit` events behind (a client that does not read) has
its queue replaced by one reset, so memory stays bounded and nothing is silently skipped; so
does a resume with more than `backlog_limit` events to catch up on. When nothing happens for
`heartbeat_seconds` a watcher gets a heartbeat: the position it is now at (everything up to
it delivered), with which it can resume. `max_watchers` bounds the watchers of a process,
both transports together; `close` ends every watcher with ShuttingDown, so that clients
resume on another replica.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable

from server.errors import RateLimited, ShuttingDown, StoreUnavailable
from server.records import RevocationEvent
from server.settings import ConfigError
from server.store.protocol import RevocationFeedEvents

log = logging.getLogger("tokenservice.feed")
PAGE = 500
AT_LIMIT = "the server is at its limit of revocation watchers; retry later"
CLOSING = "the server is shutting down: resume from the last position on another replica"
NOT_READY = "the revocation feed cannot read the store"


@dataclasses.dataclass(frozen=True, slots=True)
class FeedMessage:
    """What a watcher is told. `reset`: drop every answer kept for the tenant watched, then go
    on from `position`. Otherwise the tokens (by fingerprint) and sessions revoked, or, with
    neither, a heartbeat: nothing more up to `position`."""

    position: int
    reset: bool = False
    fingerprints: tuple[str, ...] = ()
    sessions: tuple[str, ...] = ()
    revoked_at: int = 0

    @classmethod
    def of(cls, event: RevocationEvent) -> FeedMessage:
        if event.everything:
            return cls(event.position, reset=True, revoked_at=event.revoked_at)
        return cls(event.position, False, event.fingerprints, event.sessions, event.revoked_at)


class _Watcher:
    """One watcher's queue: bounded, a reset in place of what overflowed, ended by close."""

    def __init__(self, tenant: str | None, limit: int) -> None:
        self.tenant = tenant
        self._limit = limit
        self._items: collections.deque[FeedMessage] = collections.deque()
        self._ready = asyncio.Event()
        self.ended = False

    def offer(self, message: FeedMessage) -> bool:
        """Queues `message`; False when the queue overflowed and became one reset."""
        overflowed = len(self._items) >= self._limit
        if overflowed:
            self._items.clear()
            message = FeedMessage(message.position, reset=True)
        self._items.append(message)
        self._ready.set()
        return not overflowed

    def end(self) -> None:
        self.ended = True
        self._ready.set()

    async def next(self, heartbeat_seconds: float) -> FeedMessage | None:
        """The next message; None after `heartbeat_seconds` without one."""
        if not self._items and not self.ended:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), heartbeat_seconds)
        if self.ended:
            raise ShuttingDown(CLOSING)
        self._ready.clear()
        return self._items.popleft() if self._items else None


class RevocationFeed:
    """The process's pump and its watchers (see the module docstring)."""

    def __init__(
        self,
        store: RevocationFeedEvents,
        *,
        poll_seconds: float = 1.0,
        heartbeat_seconds: float = 15.0,
        max_watchers: int = 256,
        queue_limit: int = 1_000,
        backlog_limit: int = 10_000,
        ready_timeout: float = 5.0,
        hearing: Callable[[], bool] | None = None,
        deaf_poll_seconds: float = 0.05,
    ) -> None:
        if poll_seconds <= 0:
            raise ConfigError("TOKENSERVICE_REVOCATION_FEED_POLL_SECONDS must be greater than 0")
        if heartbeat_seconds <= 0:
            raise ConfigError(
                "TOKENSERVICE_REVOCATION_STREAM_HEARTBEAT_SECONDS must be greater than 0"
            )
        if max_watchers < 0:
            raise ConfigError("TOKENSERVICE_REVOCATION_STREAMS_MAX must not be negative")
        self._store = store
        self._poll = poll_seconds
        self._heartbeat = heartbeat_seconds
        self._max_watchers = max_watchers
        self._queue_limit = queue_limit
        self._backlog_limit = backlog_limit
        self._ready_timeout = ready_timeout
        self._hearing = hearing
        self._deaf_poll = deaf_poll_seconds
        self._watchers: set[_Watcher] = set()
        self._wake = asyncio.Event()
        self._ready = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None
        self._closed = False
        self.position = 0  # the pump's: every event up to it has been offered
        # Events replaced by a reset, by why (/metrics): each overflow of the queue of a watcher
        # that did not read (`slow_watcher`), each resume with more than backlog_limit to catch
        # up on (`backlog`).
        self.overflow_resets = {"slow_watcher": 0, "backlog": 0}

    @property
    def watchers(self) -> int:
        return len(self._watchers)

    def wake(self) -> None:
        """Something may have been revoked: read the store now."""
        self._wake.set()

    async def watch(self, tenant: str | None, after: int | None) -> AsyncIterator[FeedMessage]:
        """The messages for `tenant`'s revocations (every tenant's for None), from `after`."""
        if self._closed:
            raise ShuttingDown(CLOSING)
        if len(self._watchers) >= self._max_watchers:
            raise RateLimited(AT_LIMIT, retry_after=1)
        watcher = _Watcher(tenant, self._queue_limit)
        self._watchers.add(watcher)
        try:
            self._start_pump()
            last = after if after is not None else 0
            async for message in self._opening(watcher, after):
                last = message.position
                yield message
            while True:
                queued = await watcher.next(self._heartbeat)
                if queued is None:
                    last = max(last, self.position)
                    yield FeedMessage(last)
                elif queued.position > last:
                    last = queued.position
                    yield queued
        finally:
            self._watchers.discard(watcher)

    async def close(self) -> None:
        """Ends every watcher (ShuttingDown) and the pump; new watchers are refused."""
        self._closed = True
        for watcher in self._watchers:
            watcher.end()
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump

    async def _opening(self, watcher: _Watcher, after: int | None) -> AsyncIterator[FeedMessage]:
        """What a new watcher is told before the pump's messages: a reset, or what it missed."""
        try:
            await asyncio.wait_for(self._ready.wait(), self._ready_timeout)
        except TimeoutError:
            raise StoreUnavailable(NOT_READY) from None
        bounds = await self._store.revocation_feed_bounds()
        if after is None or not bounds.pruned_through <= after <= bounds.head:
            yield FeedMessage(bounds.head, reset=True)
            return
        position, sent = after, 0
        while True:
            page = await self._store.revocation_events(position, tenant=watcher.tenant, limit=PAGE)
            sent += len(page)
            if sent > self._backlog_limit:
                self.overflow_resets["backlog"] += 1
                yield FeedMessage(max(bounds.head, position), reset=True)
                return
            for event in page:
                position = event.position
                yield FeedMessage.of(event)
            if len(page) < PAGE:
                break
        # Caught up: a heartbeat says so (a client trusts what it kept again from here).
        yield FeedMessage(max(position, bounds.head))

    def _start_pump(self) -> None:
        if self._pump is None:
            self._pump = asyncio.create_task(self._run(), name="revocation-feed")

    async def _run(self) -> None:
        while not self._ready.is_set():
            try:
                self.position = (await self._store.revocation_feed_bounds()).head
                self._ready.set()
            except StoreUnavailable:
                await asyncio.sleep(self._poll)
        failing = False
        while True:
            deaf = self._hearing is not None and not self._hearing()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._deaf_poll if deaf else self._poll)
            self._wake.clear()
            try:
                await self._deliver_new()
                if failing:
                    log.info("revocation feed: reading the store again")
                failing = False
            except StoreUnavailable:
                if not failing:
                    log.warning("revocation feed: cannot read the store; retrying")
                failing = True

    async def _deliver_new(self) -> None:
        while True:
            page = await self._store.revocation_events(self.position, limit=PAGE)
            for event in page:
                message = FeedMessage.of(event)
                for watcher in self._watchers:
                    if watcher.tenant not in (None, event.tenant):
                        continue
                    if not watcher.offer(message):
                        self.overflow_resets["slow_watcher"] += 1
                self.position = event.position
            if len(page) < PAGE:
                return
