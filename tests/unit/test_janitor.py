"""The janitor's own logic, over a MemoryStore: a sweep purges as of the core's clock and logs
counts; the periodic task sweeps every interval (not at start), outlives failing sweeps, is off
at interval 0, and ends when stopped. The CLI command's output and its refusal of a bad batch
size."""

from __future__ import annotations

import asyncio
import logging

import pytest

from server import janitor
from server.clock import ManualClock
from server.core import Core, build_core
from server.errors import StoreUnavailable
from server.records import PurgeReport, TokenKind, TokenRecord, TokenUse
from server.settings import Settings
from server.store.memory import MemoryStore
from tests.support.defaults import FAST_ARGON2, TEST_SECRET

START = 1_700_000_000
WAIT = 10  # seconds a test waits for an event before it fails instead of hanging


def service_token(digest: str, expires_at: int) -> TokenRecord:
    return TokenRecord(
        digest=digest,
        kind=TokenKind.SERVICE,
        use=TokenUse.ACCESS,
        tenant="demo",
        client_id="svc",
        scope="tenant=demo",
        issued_at=START - 10,
        expires_at=expires_at,
    )


class ScriptedStore(MemoryStore):
    """A MemoryStore whose purges first fail as scripted; every call is counted and signalled."""

    def __init__(self, failures: list[BaseException] | None = None) -> None:
        super().__init__()
        self.failures = list(failures or [])
        self.calls: list[int] = []
        self.called = asyncio.Event()

    async def purge_expired(self, now: int, *, batch_size: int) -> PurgeReport:
        self.calls.append(now)
        self.called.set()
        if self.failures:
            raise self.failures.pop(0)
        return await super().purge_expired(now, batch_size=batch_size)

    async def wait_for_calls(self, count: int) -> None:
        async def until() -> None:
            while len(self.calls) < count:
                self.called.clear()
                await self.called.wait()

        await asyncio.wait_for(until(), timeout=WAIT)


def make_core(store: MemoryStore, interval: float = 600.0) -> tuple[Core, ManualClock]:
    settings = Settings(janitor_interval_seconds=interval, **FAST_ARGON2)
    clock = ManualClock(START)
    return build_core(settings, store, clock=clock, secret=TEST_SECRET), clock


async def test_sweep_purges_as_of_the_core_clock_and_logs_the_counts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryStore()
    core, clock = make_core(store)
    await store.save_tokens([service_token("old", START - 1), service_token("new", START + 60)])
    with caplog.at_level(logging.INFO, logger="tokenservice.janitor"):
        assert await janitor.sweep(core) == PurgeReport(tokens_removed=1, sessions_removed=0)
    assert await store.find_token("old") is None
    assert await store.find_token("new") is not None
    assert "janitor: removed 1 tokens and 0 sessions" in caplog.messages
    clock.advance(60)
    assert await janitor.sweep(core) == PurgeReport(tokens_removed=1, sessions_removed=0)
    assert await store.find_token("new") is None


async def test_the_periodic_task_sweeps_again_after_failing_sweeps_and_ends_when_stopped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = ScriptedStore([StoreUnavailable("the token store is unavailable"), RuntimeError("bug")])
    core, _ = make_core(store, interval=0.05)
    await store.save_tokens([service_token("old", START - 1)])
    with caplog.at_level(logging.INFO, logger="tokenservice.janitor"):
        task = janitor.start(core)
        assert task is not None
        await store.wait_for_calls(4)
        assert not task.done()  # two failures did not end it
        await janitor.stop(task)
    assert task.cancelled()
    assert await store.find_token("old") is None  # the third sweep removed it
    records = [r for r in caplog.records if r.name == "tokenservice.janitor"]
    assert [(r.levelno, r.getMessage()) for r in records[:3]] == [
        (logging.WARNING, "janitor: the token store is unavailable; next sweep in 0.05s"),
        (logging.ERROR, "janitor: sweep failed; next sweep in 0.05s"),
        (logging.INFO, "janitor: removed 1 tokens and 0 sessions"),
    ]
    assert records[1].exc_info is not None  # the traceback of the unexpected failure
    assert set(store.calls) == {START}  # every sweep asked the core's clock


async def test_the_first_sweep_waits_one_interval() -> None:
    store = ScriptedStore()
    core, _ = make_core(store, interval=3600)
    task = janitor.start(core)
    assert task is not None
    for _ in range(20):  # let the task run as far as it can without time passing
        await asyncio.sleep(0)
    assert store.calls == []
    await janitor.stop(task)
    assert task.cancelled()


async def test_interval_zero_turns_the_periodic_sweep_off() -> None:
    core, _ = make_core(ScriptedStore(), interval=0)
    assert janitor.start(core) is None
    await janitor.stop(None)  # nothing to stop


async def test_stop_waits_for_a_sweep_in_progress_to_end() -> None:
    entered = asyncio.Event()

    class SlowStore(MemoryStore):
        async def purge_expired(self, now: int, *, batch_size: int) -> PurgeReport:
            entered.set()
            await asyncio.Event().wait()  # a batch that never finishes by itself
            raise AssertionError("unreachable")

    core, _ = make_core(SlowStore(), interval=0.01)
    task = janitor.start(core)
    assert task is not None
    await asyncio.wait_for(entered.wait(), timeout=WAIT)
    await janitor.stop(task)
    assert task.cancelled()


async def test_stopping_does_not_swallow_the_callers_own_cancellation() -> None:
    """serve() being cancelled while it stops the janitor is still cancelled."""
    told_to_stop, release = asyncio.Event(), asyncio.Event()

    async def slow_to_end() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            told_to_stop.set()
            await release.wait()
            raise

    task = asyncio.create_task(slow_to_end())
    await asyncio.sleep(0)
    stopping = asyncio.create_task(janitor.stop(task))
    await asyncio.wait_for(told_to_stop.wait(), timeout=WAIT)
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping
    release.set()
    await janitor.stop(task)
    assert task.cancelled()


def test_the_setting_is_read_from_the_environment() -> None:
    assert Settings().janitor_interval_seconds == 600
    env = {"TOKENSERVICE_JANITOR_INTERVAL_SECONDS": "0.5"}
    assert Settings.from_env(env).janitor_interval_seconds == 0.5
