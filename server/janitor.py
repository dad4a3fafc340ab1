"""The janitor: deletes expired tokens and dead sessions, so that the tables do not grow without
bound. `tokenservice janitor` runs one sweep; `tokenservice serve` runs one every
TOKENSERVICE_JANITOR_INTERVAL_SECONDS (0 turns that off).

What a sweep deletes, and what it keeps, is `TokenStore.purge_expired`'s contract: expired
service tokens, and revoked sessions and sessions whose tokens have all expired, with their
tokens. Every token of a live session stays (reuse detection, customer-refresh bearers).
It also forgets failed-login counters that have gone quiet for
TOKENSERVICE_LOGIN_FAILURE_RESET_SECONDS (they would count from zero anyway), and the revocation
feed's events older than TOKENSERVICE_REVOCATION_FEED_RETENTION_SECONDS (a watcher resuming from
before them is told to reset).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from server.errors import StoreUnavailable
from server.records import PurgeReport

if TYPE_CHECKING:  # the `tokenservice` parser reads DEFAULT_BATCH_SIZE without the core
    from server.core import Core

log = logging.getLogger("tokenservice.janitor")

# Sessions or tokens per transaction: small enough that each holds SQLite's write lock or
# PostgreSQL's row locks for a few milliseconds.
DEFAULT_BATCH_SIZE = 500


async def sweep(core: Core, *, batch_size: int = DEFAULT_BATCH_SIZE) -> PurgeReport:
    """Deletes what has expired as of `core.now()`; returns how much, and logs it (counts
    only)."""
    now = core.now()
    report = await core.store.purge_expired(now, batch_size=batch_size)
    log.info(
        "janitor: removed %d tokens and %d sessions",
        report.tokens_removed,
        report.sessions_removed,
    )
    reset = core.settings.login_failure_reset_seconds
    if reset > 0:
        forgotten = await core.store.purge_login_failures(now - reset)
        if forgotten:
            log.info("janitor: forgot %d quiet failed-login counters", forgotten)
    links = await core.store.purge_account_links(now)
    if links:
        log.info("janitor: removed %d expired account links", links)
    retention = core.settings.revocation_feed_retention_seconds
    events = await core.store.prune_revocation_events(now - retention)
    if events:
        log.info("janitor: removed %d revocation-feed events past their retention", events)
    return report


async def run_periodically(
    core: Core, interval_seconds: float, *, batch_size: int = DEFAULT_BATCH_SIZE
) -> None:
    """Sweeps every `interval_seconds`, the first time one interval after the start, until
    cancelled. A sweep that fails (the store unavailable, or anything else) is logged and the
    next one tried an interval later: cleanup must never take the service down."""
    while True:
        await asyncio.sleep(interval_seconds)
        try:
            await sweep(core, batch_size=batch_size)
        except StoreUnavailable:
            log.warning(
                "janitor: the token store is unavailable; next sweep in %ss", interval_seconds
            )
        except Exception:
            log.exception("janitor: sweep failed; next sweep in %ss", interval_seconds)


def start(core: Core) -> asyncio.Task[None] | None:
    """The periodic sweep as a background task, or None when the interval setting is 0."""
    interval = core.settings.janitor_interval_seconds
    if interval <= 0:
        return None
    return asyncio.create_task(run_periodically(core, interval), name="janitor")


async def stop(task: asyncio.Task[None] | None) -> None:
    """Cancels the task and waits until it has ended (a sweep in progress rolls back its open
    batch); the caller's own cancellation still propagates."""
    if task is None:
        return
    task.cancel()
    await asyncio.wait([task])
