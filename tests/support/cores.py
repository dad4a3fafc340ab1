"""A core over the in-memory store, for the unit tests of grants and policies: fast argon2
parameters, a manual clock, the test secret, and a signing key already made."""

from __future__ import annotations

from typing import Any

from server.clock import ManualClock
from server.core import Core, build_core
from server.mail.message import Mailer
from server.settings import Settings
from server.store.memory import MemoryStore
from tests.conftest import FAST_ARGON2, TEST_SECRET

START = 1_800_000_000  # the manual clock's first reading, in epoch seconds


async def memory_core(*, mailer: Mailer | None = None, **settings: Any) -> Core:
    """A core with `settings` over the defaults (and fast argon2), on a fresh memory store;
    `mailer` receives its mail (the default writes to an outbox folder)."""
    core = build_core(
        Settings(**{**FAST_ARGON2, **settings}),
        MemoryStore(),
        clock=ManualClock(START),
        secret=TEST_SECRET,
        mailer=mailer,
    )
    await core.keys.ensure_active_key()
    return core
