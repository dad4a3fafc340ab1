"""The event loop the serving commands run on (`serve`, its workers, `bridge`):
TOKENSERVICE_EVENT_LOOP, `uvloop` by default, `asyncio` for the standard library's own.

uvloop (libuv under asyncio's interface) runs the same code with less interpreter time per
socket read, write and callback, which on this service is most of what a cheap call costs:
measured side by side (bench/compare.py, 5 interleaved rounds, SQLite, 10 in flight), CPU per
request 0.84 to 0.96 of the standard loop's on every path, gRPC and HTTP. The standard loop is
kept as the fallback an operator can turn to without a new release, should a platform lack
uvloop or a bug be suspected in it. Provisioning commands run once and stay on asyncio.run, and
so does the `serve --workers N` supervisor: it serves no traffic, and it starts each worker in a
process group of its own (`process_group=0`), which uvloop's subprocess_exec does not accept.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from server.settings import ConfigError

T = TypeVar("T")
CHOICES = ("uvloop", "asyncio")


def check(choice: str) -> str:
    """The normalised `choice` (a TOKENSERVICE_EVENT_LOOP value) if it can be had here, else a
    ConfigError naming the setting: the supervisor calls it before it starts any worker."""
    choice = choice.strip().lower()
    if choice not in CHOICES:
        raise ConfigError(f"TOKENSERVICE_EVENT_LOOP must be one of {', '.join(CHOICES)}")
    if choice == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            raise ConfigError(
                "TOKENSERVICE_EVENT_LOOP is uvloop, which is not installed here; "
                "install it or set TOKENSERVICE_EVENT_LOOP=asyncio"
            ) from None
    return choice


def run(main: Coroutine[Any, Any, T], choice: str) -> T:
    """Runs `main` to completion on a new loop of `choice`, as asyncio.run does; a choice that
    cannot be had is check's ConfigError, and `main` is closed unrun."""
    try:
        choice = check(choice)
    except ConfigError:
        main.close()
        raise
    if choice == "asyncio":
        return asyncio.run(main)
    import uvloop

    return uvloop.run(main)


def running_loop_name() -> str:
    """`uvloop` or `asyncio`: the loop this coroutine runs on, for the start-up log line."""
    module = type(asyncio.get_running_loop()).__module__
    return module.split(".")[0]
