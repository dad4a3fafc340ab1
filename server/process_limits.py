"""The process's file descriptors: how many connections fit, and what happens at the limit.

Every connection costs a file descriptor, and so do the database pool, the listening sockets,
the SQLite files, grpc's and asyncio's internal pipes. When the process runs out, accept()
fails with EMFILE, and CPython's selector loop (3.11) logs a traceback for *every* pending
connection, retries each a second later, and goes on trying the next in the same tick: at
`ulimit -n 512` six hundred slow sockets made it write 90,000 tracebacks in 9 seconds while
neither HTTP nor gRPC answered. So at start `apply`:

- raises the soft RLIMIT_NOFILE to the hard limit (at most MAX_OPEN_FILES), and logs it once;
- fits the connection caps into what the limit leaves (`connection_budget`): the soft limit
  minus a reserve for the accept pipeline, the database pool and a fixed margin. The pipeline
  is ACCEPT_PIPELINE accept backlogs: asyncio accepts up to `backlog` sockets per loop tick
  and hands each to its protocol two ticks later, so two ticks' worth are open before the
  protocol can refuse one, and the connections evicted for them close a tick after that. If
  the configured HTTP plus gRPC connections do not fit, both are scaled down in proportion
  and one WARNING says by how much and that `ulimit -n` should be raised. The HTTP cap is
  then enforced by the bridge's protocol (http_bridge/connection_limits.py), which refuses
  (503) or evicts instead of running out;
- installs a loop exception handler that turns asyncio's "socket.accept() out of system
  resource" (and any accept error for EMFILE, ENFILE, ENOBUFS or ENOMEM) into one summary line
  per interval with the count (server/log_throttle.py); every other error goes to the handler
  that was there before (asyncio's default one).
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
import math
import resource
from collections.abc import Callable
from typing import Any

from server.log_throttle import SummaryLog

log = logging.getLogger("tokenservice.limits")

# Enough for the default caps (4,096 HTTP + 1,000 gRPC connections) ten times over, while a hard
# limit of "unlimited" or a million (containers) does not become a per-process fd table that
# size, nor a trap for code that loops over every possible descriptor.
MAX_OPEN_FILES = 65536
# Descriptors that are neither connections nor the database pool: stdio, the listening
# sockets, the epoll and signal fds, grpc's and asyncio's wake-up pipes, the SQLite file with
# its WAL and shared memory, the key file, /proc reads for /metrics, a standalone bridge's
# channel to its gRPC server.
FD_MARGIN = 64
# Accept backlogs' worth of descriptors the cap cannot see (see the module docstring).
ACCEPT_PIPELINE = 3
ACCEPT_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
ACCEPT_ERROR_INTERVAL = 10.0


@dataclasses.dataclass(frozen=True)
class ConnectionBudget:
    """What the open-file limit allows: connections per protocol after the reserve."""

    open_files: int
    reserve: int
    http: int
    grpc: int
    wanted_http: int
    wanted_grpc: int

    @property
    def available(self) -> int:
        return max(self.open_files - self.reserve, 0)

    @property
    def scaled(self) -> bool:
        return (self.http, self.grpc) != (self.wanted_http, self.wanted_grpc)

    @property
    def open_files_needed(self) -> int:
        """The soft limit at which the configured caps would fit unscaled."""
        return self.reserve + self.wanted_http + self.wanted_grpc


def connection_budget(
    open_files: int,
    *,
    http_connections: int,
    grpc_connections: int,
    backlog: int,
    database_connections: int,
    margin: int = FD_MARGIN,
) -> ConnectionBudget:
    """The caps that fit into `open_files` descriptors: the configured ones if they fit after
    the reserve (`ACCEPT_PIPELINE * backlog + database_connections + margin`), else both scaled
    down by the same
    factor (at least one each, for a protocol that is served at all)."""
    reserve = ACCEPT_PIPELINE * backlog + database_connections + margin
    available = max(open_files - reserve, 0)
    wanted = http_connections + grpc_connections
    http, grpc = http_connections, grpc_connections
    if wanted > available:
        share = available / wanted
        http = _scaled(http_connections, share)
        grpc = _scaled(grpc_connections, share)
    return ConnectionBudget(
        open_files=open_files,
        reserve=reserve,
        http=http,
        grpc=grpc,
        wanted_http=http_connections,
        wanted_grpc=grpc_connections,
    )


def _scaled(wanted: int, share: float) -> int:
    return max(1, math.floor(wanted * share)) if wanted > 0 else 0


def raise_open_file_limit(maximum: int = MAX_OPEN_FILES) -> tuple[int, int, int]:
    """Raises the soft RLIMIT_NOFILE to the hard limit (at most `maximum`; never lowers it).
    Returns (soft before, soft now, hard)."""
    before, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = maximum if hard == resource.RLIM_INFINITY else min(hard, maximum)
    if ceiling > before:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
        except (ValueError, OSError):
            ceiling = before
    return before, max(ceiling, before), hard


def apply(
    *,
    backlog: int,
    http_connections: int,
    grpc_connections: int,
    database_connections: int,
) -> ConnectionBudget:
    """At the start of a serving process, in its event loop: raises the open-file limit, fits
    the caps into it (the caller passes `budget.http` to the HTTP bridge and `budget.grpc` to
    the gRPC server) and installs the accept-error handler."""
    before, soft, hard = raise_open_file_limit()
    shown_hard = "unlimited" if hard == resource.RLIM_INFINITY else str(hard)
    raised = f" (raised from {before})" if soft > before else ""
    log.info("open-file limit: %d%s, hard limit %s", soft, raised, shown_hard)
    budget = connection_budget(
        soft,
        http_connections=http_connections,
        grpc_connections=grpc_connections,
        backlog=backlog,
        database_connections=database_connections,
    )
    if budget.scaled:
        log.warning(
            "open-file limit %d leaves %d connections after reserving %d (accept pipeline %d, "
            "database pool %d, margin %d): HTTP connections capped at %d instead of %d, gRPC "
            "at %d instead of %d; raise `ulimit -n` to at least %d to serve the configured "
            "numbers",
            soft,
            budget.available,
            budget.reserve,
            ACCEPT_PIPELINE * backlog,
            database_connections,
            FD_MARGIN,
            budget.http,
            budget.wanted_http,
            budget.grpc,
            budget.wanted_grpc,
            budget.open_files_needed,
        )
    install_accept_error_handler(asyncio.get_running_loop())
    return budget


ExceptionHandler = Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object]


def is_accept_resource_error(context: dict[str, Any]) -> bool:
    exception = context.get("exception")
    return (
        "accept" in str(context.get("message", ""))
        and isinstance(exception, OSError)
        and exception.errno in ACCEPT_RESOURCE_ERRNOS
    )


class AcceptErrorHandler:
    """A loop exception handler: accept errors for want of descriptors or memory become one
    summary line per interval; everything else goes to `fallback`."""

    def __init__(self, fallback: ExceptionHandler, summary: SummaryLog) -> None:
        self.fallback = fallback
        self.summary = summary

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if not is_accept_resource_error(context):
            self.fallback(loop, context)
            return
        exception = context["exception"]
        self.summary.add(f"x {errno.errorcode.get(exception.errno, exception.errno)}")


def install_accept_error_handler(
    loop: asyncio.AbstractEventLoop,
    *,
    interval: float = ACCEPT_ERROR_INTERVAL,
    clock: Callable[[], float] | None = None,
) -> AcceptErrorHandler:
    """Installs (once per loop) the handler, delegating to the one installed before it."""
    current = loop.get_exception_handler()
    if isinstance(current, AcceptErrorHandler):
        return current
    fallback: ExceptionHandler
    if current is None:

        def fallback(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            loop.default_exception_handler(context)

    else:
        fallback = current
    summary = SummaryLog(
        log,
        "accept() failed for want of file descriptors or memory; new connections wait in the "
        "listen backlog (raise `ulimit -n`)",
        interval=interval,
        level=logging.ERROR,
        clock=clock or loop.time,
        schedule=loop.call_later,
    )
    handler = AcceptErrorHandler(fallback, summary)
    loop.set_exception_handler(handler)
    return handler
