"""What every process of the service does alike: log lines to stderr, and stop on SIGTERM or
SIGINT. Kept apart from the core so that the standalone bridge needs nothing more of it."""

from __future__ import annotations

import asyncio
import logging
import signal

from server.settings import Settings


def configure_logging(settings: Settings, *, label: str = "") -> None:
    """Log lines to stderr; `label` (e.g. "worker 2") tags every line of one worker process."""
    tag = f"[{label}] " if label else ""
    logging.basicConfig(
        level=settings.log_level.upper(),
        format=f"%(asctime)s %(levelname)s {tag}%(name)s %(message)s",
    )


async def wait_for_shutdown_signal(stop: asyncio.Event | None = None) -> None:
    """Returns on SIGTERM or SIGINT, or when `stop` is set."""
    if stop is None:
        stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
