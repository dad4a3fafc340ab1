"""The file-descriptor budget (server/process_limits.py): pure arithmetic over limits the test
chooses; and the accept-error handler, fed asyncio's own context dicts, with the clock and the
timer injected so nothing waits."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
import resource
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from server import process_limits
from server.log_throttle import SummaryLog
from server.process_limits import AcceptErrorHandler, connection_budget


def test_caps_that_fit_are_kept() -> None:
    budget = connection_budget(
        20_000, http_connections=4096, grpc_connections=1000, backlog=128, database_connections=20
    )
    assert (budget.http, budget.grpc) == (4096, 1000)
    assert not budget.scaled
    assert budget.reserve == 3 * 128 + 20 + process_limits.FD_MARGIN


def test_caps_that_do_not_fit_are_scaled_down_in_proportion() -> None:
    budget = connection_budget(
        512, http_connections=4096, grpc_connections=1000, backlog=128, database_connections=20
    )
    available = 512 - (3 * 128 + 20 + process_limits.FD_MARGIN)
    assert budget.available == available
    assert budget.scaled
    assert budget.http + budget.grpc <= available
    assert budget.http == 4096 * available // 5096
    assert budget.grpc == 1000 * available // 5096
    assert budget.open_files_needed == 4096 + 1000 + 3 * 128 + 20 + process_limits.FD_MARGIN


def test_the_budget_is_exactly_the_limit_minus_the_reserve_at_the_edge() -> None:
    reserve = 3 * 128 + 0 + process_limits.FD_MARGIN
    fits = connection_budget(
        reserve + 300,
        http_connections=200,
        grpc_connections=100,
        backlog=128,
        database_connections=0,
    )
    assert (fits.http, fits.grpc, fits.scaled) == (200, 100, False)
    short = connection_budget(
        reserve + 299,
        http_connections=200,
        grpc_connections=100,
        backlog=128,
        database_connections=0,
    )
    assert short.scaled and short.http + short.grpc <= 299


def test_a_tiny_limit_still_leaves_one_connection_per_served_protocol() -> None:
    budget = connection_budget(
        64, http_connections=4096, grpc_connections=1000, backlog=128, database_connections=20
    )
    assert (budget.http, budget.grpc) == (1, 1)
    bridge_alone = connection_budget(
        64, http_connections=4096, grpc_connections=0, backlog=128, database_connections=0
    )
    assert (bridge_alone.http, bridge_alone.grpc) == (1, 0)


def test_the_soft_open_file_limit_is_raised_to_the_hard_limit_at_most_the_maximum() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        lower = max(soft // 2, 256)
        resource.setrlimit(resource.RLIMIT_NOFILE, (lower, hard))
        before, now, seen_hard = process_limits.raise_open_file_limit(maximum=lower + 100)
        assert (before, seen_hard) == (lower, hard)
        expected = min(hard, lower + 100) if hard != resource.RLIM_INFINITY else lower + 100
        assert now == expected == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        # never lowered
        assert process_limits.raise_open_file_limit(maximum=lower)[1] == expected
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# --- the accept-error handler --------------------------------------------------------------------


class Timers:
    """A stand-in for loop.call_later and loop.time."""

    def __init__(self) -> None:
        self.now = 100.0
        self.pending: list[tuple[float, Callable[[], None]]] = []

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        self.pending.append((self.now + delay, callback))

    def advance(self, seconds: float) -> None:
        self.now += seconds
        due = [c for at, c in self.pending if at <= self.now]
        self.pending = [(at, c) for at, c in self.pending if at > self.now]
        for callback in due:
            callback()


def accept_error(code: int = errno.EMFILE) -> dict[str, Any]:
    """What CPython's selector loop passes when accept() fails for want of resources."""
    return {
        "message": "socket.accept() out of system resource",
        "exception": OSError(code, "Too many open files"),
    }


@dataclasses.dataclass
class Handled:
    handler: AcceptErrorHandler
    timers: Timers
    others: list[dict[str, Any]]  # what reached the previous handler
    loop: asyncio.AbstractEventLoop


@pytest.fixture
def handled() -> Iterator[Handled]:
    timers = Timers()
    others: list[dict[str, Any]] = []
    summary = SummaryLog(
        logging.getLogger("tokenservice.limits"),
        "accept() failed",
        interval=10.0,
        clock=lambda: timers.now,
        schedule=timers.call_later,
    )
    handler = AcceptErrorHandler(lambda loop, context: others.append(context), summary)
    loop = asyncio.new_event_loop()
    try:
        yield Handled(handler, timers, others, loop)
    finally:
        loop.close()


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "tokenservice.limits"]


def test_an_accept_error_storm_is_one_line_per_interval_with_the_count(
    handled: Handled, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(128):  # one tick of asyncio's accept loop at the limit
        handled.handler(handled.loop, accept_error())
    handled.timers.advance(0)
    assert lines(caplog) == ["accept() failed: 128 x EMFILE (at most one such line every 10 s)"]
    for _ in range(9):  # nine more seconds of it, 2,048 a second
        for _ in range(2048):
            handled.handler(handled.loop, accept_error())
        handled.timers.advance(1)
    assert len(lines(caplog)) == 1
    handled.timers.advance(1)
    assert lines(caplog)[1] == "accept() failed: 18432 x EMFILE (at most one such line every 10 s)"
    handled.timers.advance(60)  # quiet: nothing more
    assert len(lines(caplog)) == 2
    assert handled.others == []


def test_other_errors_go_to_the_previous_handler(
    handled: Handled, caplog: pytest.LogCaptureFixture
) -> None:
    unrelated = {"message": "Task exception was never retrieved", "exception": ValueError()}
    refused = {"message": "socket.accept() failed", "exception": OSError(errno.EPERM, "no")}
    handled.handler(handled.loop, unrelated)
    handled.handler(handled.loop, refused)
    handled.handler(handled.loop, accept_error(errno.ENFILE))
    handled.timers.advance(0)
    assert handled.others == [unrelated, refused]
    assert lines(caplog) == ["accept() failed: 1 x ENFILE (at most one such line every 10 s)"]


def test_installing_keeps_the_previous_handler_and_happens_once() -> None:
    loop = asyncio.new_event_loop()
    try:
        seen: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda loop, context: seen.append(context))
        first = process_limits.install_accept_error_handler(loop)
        assert process_limits.install_accept_error_handler(loop) is first
        assert loop.get_exception_handler() is first
        loop.call_exception_handler({"message": "something else"})
        assert seen == [{"message": "something else"}]
    finally:
        loop.close()
