"""The revocation feed's mechanism (server/revocation_feed.py) over the in-memory store: what a
watcher that falls behind, resumes from far back, or outlives the feed is told, and that a
replica that cannot hear the others still reads the store often. The polls that back up the
wakes are set to 30 s, longer than any wait here, so what arrives was woken (or deaf-polled)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from server.errors import RateLimited, ShuttingDown
from server.revocation_feed import FeedMessage, RevocationFeed
from server.store.memory import MemoryStore
from tests.support.records import ACCESS, NOW, token
from tests.support.waiting import eventually

WAIT = 10.0


async def revoke(store: MemoryStore, n: int) -> None:
    await store.save_tokens([token(f"t{n}", session=None, use=ACCESS)])
    assert await store.revoke_token(f"t{n}", NOW, fingerprint=f"fp{n}") == 1


async def next_of(messages: AsyncIterator[FeedMessage]) -> FeedMessage:
    return await asyncio.wait_for(anext(messages), WAIT)


def feed_over(store: MemoryStore, **options: object) -> RevocationFeed:
    settings: dict[str, object] = {"poll_seconds": 30.0, "heartbeat_seconds": 30.0, **options}
    return RevocationFeed(store, **settings)  # type: ignore[arg-type]


async def test_a_replica_that_cannot_hear_reads_the_store_often() -> None:
    store = MemoryStore()
    feed = feed_over(store, hearing=lambda: False, deaf_poll_seconds=0.01)
    messages = feed.watch("demo", None)
    assert (await next_of(messages)).reset
    await revoke(store, 1)  # no wake: another replica's, unheard
    assert (await next_of(messages)).fingerprints == ("fp1",)
    await feed.close()


async def test_a_watcher_that_falls_behind_gets_one_reset_instead() -> None:
    store = MemoryStore()
    feed = feed_over(store, queue_limit=2)
    messages = feed.watch("demo", None)
    assert (await next_of(messages)).reset
    for n in range(5):  # five events while the watcher does not read
        await revoke(store, n)
    feed.wake()
    await eventually(lambda: feed.position == 5, "the pump read all five")
    # Its queue overflowed: what it missed is one reset at the latest position, no more.
    assert await next_of(messages) == FeedMessage(5, reset=True)
    # Counted for /metrics: its queue (limit 2) overflowed at the third event and the fifth.
    assert feed.overflow_resets == {"slow_watcher": 2, "backlog": 0}
    await revoke(store, 5)
    feed.wake()
    assert (await next_of(messages)).fingerprints == ("fp5",)  # and it goes on from there
    await feed.close()


async def test_a_resume_with_too_much_to_catch_up_on_is_a_reset() -> None:
    store = MemoryStore()
    for n in range(4):
        await revoke(store, n)
    feed = feed_over(store, backlog_limit=2)
    told = await next_of(feed.watch("demo", 0))
    assert told.reset and told.position == 4
    caught_up = feed.watch("demo", 2)  # two to catch up on: within the limit
    assert [(await next_of(caught_up)).fingerprints for _ in range(2)] == [("fp2",), ("fp3",)]
    assert await next_of(caught_up) == FeedMessage(4)  # then a heartbeat: caught up
    assert feed.overflow_resets == {"slow_watcher": 0, "backlog": 1}  # the first resume only
    await feed.close()


async def test_closing_ends_every_watcher_and_refuses_new_ones() -> None:
    store = MemoryStore()
    feed = feed_over(store, max_watchers=1)
    messages = feed.watch(None, None)
    assert (await next_of(messages)).reset
    with pytest.raises(RateLimited):
        await next_of(feed.watch(None, None))
    await feed.close()
    with pytest.raises(ShuttingDown):
        await next_of(messages)
    with pytest.raises(ShuttingDown):
        await next_of(feed.watch(None, None))
