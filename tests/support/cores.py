"""A core over the in-memory store, for the unit tests of grants and policies: fast argon2
parameters, a manual clock, the test secret, and a signing key already made."""

from __future__ import annotations

from typing import Any

import httpx

from server.clock import ManualClock
from server.core import Core, build_core
from server.mail.message import Mailer
from server.settings import Settings
from server.store.memory import MemoryStore
from tests.support.defaults import FAST_ARGON2, TEST_SECRET

START = 1_800_000_000  # the manual clock's first reading, in epoch seconds


async def memory_core(
    *,
    http_transport: httpx.AsyncBaseTransport | None = None,
    mailer: Mailer | None = None,
    **settings: Any,
) -> Core:
    """A core with `settings` over the defaults (and fast argon2), on a fresh memory store;
    `http_transport` stands in for the network under the outbound HTTP client, `mailer`
    receives its mail (the default writes to an outbox folder)."""
    core = build_core(
        Settings(**{**FAST_ARGON2, **settings}),
        MemoryStore(),
        clock=ManualClock(START),
        secret=TEST_SECRET,
        http_transport=http_transport,
        mailer=mailer,
    )
    await core.keys.ensure_active_key()
    return core
