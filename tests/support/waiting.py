"""Waiting for a condition rather than for a duration: how a test knows that something has
happened whatever the machine's speed, failing with what it waited for."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

WAIT_SECONDS = 30.0  # far longer than any condition takes on a loaded machine


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], what: str, *, within: float = WAIT_SECONDS
) -> None:
    """Waits until `condition()` (a value or an awaitable) holds, at most `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        if await _holds(condition):
            return
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        await asyncio.sleep(0.02)


async def _holds(condition: Callable[[], bool | Awaitable[bool]]) -> bool:
    value = condition()
    return await value if inspect.isawaitable(value) else value
