"""CoalescedReads (server/store/coalesced_reads.py): lookups that arrive while a fetch is on its
way go together as the next one; each caller hears its own key's value, None, or the fetch's
error; a cancelled caller leaves the rest unaffected. The fetch is held at a gate, so which
lookups share a fetch does not depend on timing."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest

from server.store.coalesced_reads import CoalescedReads


class GatedFetch:
    """A fetch that records each batch of keys and answers only when its gate is opened."""

    def __init__(self, table: Mapping[str, str]) -> None:
        self.table = table
        self.batches: list[list[str]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.arrived = asyncio.Event()
        self.failure: Exception | None = None

    async def __call__(self, keys: list[str]) -> dict[str, str]:
        self.batches.append(keys)
        self.arrived.set()
        await self.gate.wait()
        if self.failure is not None:
            raise self.failure
        return {key: self.table[key] for key in keys if key in self.table}


async def started(fetch: GatedFetch, batches: int) -> None:
    while len(fetch.batches) < batches:
        fetch.arrived.clear()
        await fetch.arrived.wait()


async def test_a_lone_lookup_is_fetched_at_once_and_gets_its_value() -> None:
    fetch = GatedFetch({"a": "A"})
    reads = CoalescedReads(fetch)
    assert await reads.get("a") == "A"
    assert await reads.get("missing") is None
    assert fetch.batches == [["a"], ["missing"]]


async def test_lookups_arriving_during_a_fetch_share_the_next_one() -> None:
    fetch = GatedFetch({"a": "A", "b": "B", "c": "C"})
    fetch.gate.clear()
    reads = CoalescedReads(fetch)
    first = asyncio.create_task(reads.get("a"))
    await started(fetch, 1)
    later = [asyncio.create_task(reads.get(key)) for key in ("b", "c", "unknown", "b")]
    await asyncio.sleep(0)
    assert len(fetch.batches) == 1  # they wait for the fetch in flight
    fetch.gate.set()
    assert await first == "A"
    assert await asyncio.gather(*later) == ["B", "C", None, "B"]
    assert fetch.batches == [["a"], ["b", "c", "unknown"]]  # "b" asked twice, fetched once
    assert reads.fetches == 2


async def test_a_batch_holds_at_most_max_keys() -> None:
    fetch = GatedFetch({str(n): f"v{n}" for n in range(7)})
    fetch.gate.clear()
    reads = CoalescedReads(fetch, max_keys=3)
    first = asyncio.create_task(reads.get("0"))
    await started(fetch, 1)
    rest = [asyncio.create_task(reads.get(str(n))) for n in range(1, 7)]
    await asyncio.sleep(0)
    fetch.gate.set()
    await first
    assert await asyncio.gather(*rest) == [f"v{n}" for n in range(1, 7)]
    assert fetch.batches == [["0"], ["1", "2", "3"], ["4", "5", "6"]]


async def test_a_failed_fetch_is_every_callers_error_and_the_next_fetch_goes_on() -> None:
    fetch = GatedFetch({"a": "A", "b": "B"})
    fetch.gate.clear()
    fetch.failure = ConnectionError("the database went away")
    reads = CoalescedReads(fetch)
    lookups = [asyncio.create_task(reads.get(key)) for key in ("a", "b")]
    await started(fetch, 1)
    fetch.gate.set()
    for lookup in lookups:
        with pytest.raises(ConnectionError):
            await lookup
    fetch.failure = None
    assert await reads.get("b") == "B"


async def test_a_cancelled_caller_leaves_the_others_their_answers() -> None:
    fetch = GatedFetch({"a": "A", "b": "B"})
    fetch.gate.clear()
    reads = CoalescedReads(fetch)
    leaving = asyncio.create_task(reads.get("a"))
    staying = asyncio.create_task(reads.get("a"))
    other = asyncio.create_task(reads.get("b"))
    await started(fetch, 1)
    leaving.cancel()
    await asyncio.sleep(0)
    fetch.gate.set()
    assert await staying == "A"
    assert await other == "B"
    assert leaving.cancelled()


async def test_when_the_fetching_task_is_cancelled_no_caller_waits_for_ever() -> None:
    fetch = GatedFetch({"a": "A", "b": "B"})
    fetch.gate.clear()
    reads = CoalescedReads(fetch)
    in_flight = asyncio.create_task(reads.get("a"))
    await started(fetch, 1)
    queued = asyncio.create_task(reads.get("b"))
    await asyncio.sleep(0)
    fetching = reads._fetching
    assert fetching is not None
    fetching.cancel()
    for lookup in (in_flight, queued):
        with pytest.raises(asyncio.CancelledError):
            await lookup
    fetch.gate.set()
    assert await reads.get("b") == "B"  # a new fetching task starts


async def test_a_lookup_made_in_the_turn_after_the_first_shares_its_fetch() -> None:
    """The fetch waits one turn of the event loop before it takes its batch: a call that the
    loop runs in the same turn as the first lookup's, or the turn after, joins it (under load,
    the calls a turn makes ready each look a token up)."""
    fetch = GatedFetch({"a": "A", "b": "B"})
    reads = CoalescedReads(fetch)
    first = asyncio.create_task(reads.get("a"))
    await asyncio.sleep(0)  # first ran: it waits, and the fetch's task is scheduled
    second = asyncio.create_task(reads.get("b"))
    assert [await first, await second] == ["A", "B"]
    assert fetch.batches == [["a", "b"]]
