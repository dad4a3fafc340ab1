"""server/memory_trim.py: glibc's malloc_trim found and called, periodically, off the loop."""

from __future__ import annotations

import asyncio
import platform
import threading

import pytest

from server import memory_trim


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_glibc_malloc_trim_is_found_and_callable() -> None:
    trim = memory_trim.glibc_malloc_trim()
    assert trim is not None
    assert trim() in (0, 1)  # 1: memory was released


async def test_trims_every_interval_in_a_thread_until_stopped() -> None:
    loop_thread = threading.get_ident()
    calls: list[int] = []
    enough = asyncio.Event()
    loop = asyncio.get_running_loop()

    def trim() -> int:
        calls.append(threading.get_ident())
        if len(calls) == 3:
            loop.call_soon_threadsafe(enough.set)
        return 0

    task = asyncio.create_task(memory_trim.run_periodically(0.001, trim))
    await asyncio.wait_for(enough.wait(), timeout=10)
    await memory_trim.stop(task)
    assert task.done()
    assert loop_thread not in calls  # never on the event loop's thread


async def test_an_interval_of_zero_starts_nothing() -> None:
    assert memory_trim.start(0) is None
