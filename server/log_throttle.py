"""One log line per interval for events an attacker can repeat at will (refused connections,
accept errors at the file-descriptor limit): each event is counted by name, and the counts are
written as one summary line at most once per `interval` seconds. The first event of a quiet
spell is written on the next tick, with whatever else that tick brought; the events of the
following interval wait for its end and are written together. No count is dropped, and the log
cannot grow faster than one line per interval, however fast the events come.

Runs on the event loop's thread (no lock); the clock and the timer are injectable so tests
need not wait.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

Schedule = Callable[[float, Callable[[], None]], Any]


class SummaryLog:
    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        *,
        interval: float = 10.0,
        level: int = logging.WARNING,
        clock: Callable[[], float] = time.monotonic,
        schedule: Schedule | None = None,
    ) -> None:
        self.logger = logger
        self.what = what
        self.interval = interval
        self.level = level
        self._clock = clock
        self._schedule = schedule
        self._counts: dict[str, int] = {}
        self._next_line_at = float("-inf")
        self._flush_pending = False

    def add(self, event: str) -> None:
        """Counts one `event` (a fixed name: never a value a client sent)."""
        counts = self._counts
        counts[event] = counts.get(event, 0) + 1
        if not self._flush_pending:
            self._flush_pending = True
            delay = max(0.0, self._next_line_at - self._clock())
            schedule = self._schedule or asyncio.get_running_loop().call_later
            schedule(delay, self.flush)

    def flush(self) -> None:
        """Writes the counts gathered since the last line (nothing if there are none)."""
        self._flush_pending = False
        if not self._counts:
            return
        counts, self._counts = self._counts, {}
        self._next_line_at = self._clock() + self.interval
        summary = ", ".join(f"{count} {event}" for event, count in sorted(counts.items()))
        self.logger.log(
            self.level,
            "%s: %s (at most one such line every %g s)",
            self.what,
            summary,
            self.interval,
        )
