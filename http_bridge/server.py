"""Serving the bridge with uvicorn inside an event loop the caller owns (beside the gRPC server,
or alone in front of a remote one): the caller handles signals and decides when to stop."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
from collections.abc import Iterator
from typing import Literal

import uvicorn

from http_bridge.access_log import AccessLog
from http_bridge.app import context_of
from http_bridge.connection_limits import HttpLimits, limited_protocol
from server import process_limits
from server.settings import Settings

# Pending connections the kernel queues for accept(). Also asyncio's bound on accepts per loop
# tick (uvicorn's default of 2048 let one tick accept, or fail to accept and log, 2048 sockets
# before any protocol could refuse one), and so part of the file-descriptor reserve
# (server/process_limits.py). A full queue makes new clients retry their SYN, which is what a
# flood should get.
ACCEPT_BACKLOG = 128
# "limited": LimitedHttpToolsProtocol (what the service serves); for the benchmark's comparison,
# "limited_split" (the same with one write per response off: the limits alone) and uvicorn's own
# "httptools" and "h11" (h11 with its incomplete-event bound at the head limit).
Implementation = Literal["limited", "limited_split", "httptools", "h11"]


# How often a stopping server looks whether its last connection and task have finished.
SHUTDOWN_POLL_SECONDS = 0.005

logger = logging.getLogger("uvicorn.error")


class EmbeddedUvicorn(uvicorn.Server):
    """uvicorn without its own signal handlers (the process's owner drains both protocols), and
    without its idle waits on the way out: uvicorn 0.54 notices `should_exit` at its next 0.1 s
    tick, then pauses a fixed 0.1 s after asking the connections to close and polls them every
    0.1 s, so every stop took 150 to 200 ms with nothing left to wait for. Here `request_exit`
    wakes the main loop at once and the drain polls every few milliseconds; what it waits for,
    and for how long, is uvicorn's (`timeout_graceful_shutdown`, then cancel what is left)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._exit_requested = asyncio.Event()

    def request_exit(self) -> None:
        self.should_exit = True
        self._exit_requested.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def main_loop(self) -> None:
        counter = 0
        while not await self.on_tick(counter):  # the date header, max requests, should_exit
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._exit_requested.wait(), timeout=0.1)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()  # idle ones close now, busy ones after their response
        try:
            await asyncio.wait_for(
                self._until_idle(), timeout=self.config.timeout_graceful_shutdown
            )
        except TimeoutError:
            logger.error(
                "Cancel %s running task(s), timeout graceful shutdown exceeded",
                len(self.server_state.tasks),
            )
            for task in self.server_state.tasks:
                task.cancel(msg="Task cancelled, timeout graceful shutdown exceeded")
        if not self.force_exit:
            await self.lifespan.shutdown()

    async def _until_idle(self) -> None:
        state = self.server_state
        # A poll: uvicorn's connection and task sets signal nothing when they empty.
        while (state.connections or state.tasks) and not self.force_exit:  # noqa: ASYNC110
            await asyncio.sleep(SHUTDOWN_POLL_SECONDS)
        for server in self.servers:
            await server.wait_closed()


class DropRecords(logging.Filter):
    """On `uvicorn.access`: uvicorn writes its own access line, raw query string (and so any
    token in it) included, whenever that logger has a handler, `access_log=False` or not.
    AccessLog writes the masked line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return False


def silence_uvicorn_access_log() -> None:
    logger = logging.getLogger("uvicorn.access")
    if not any(isinstance(existing, DropRecords) for existing in logger.filters):
        logger.addFilter(DropRecords())


@dataclasses.dataclass
class RunningHttp:
    server: EmbeddedUvicorn
    task: asyncio.Task[None]
    port: int

    async def stop(self) -> None:
        """Stops taking connections and waits for the requests in flight (up to the graceful
        shutdown timeout given at start)."""
        self.server.request_exit()
        await self.task


def bind(address: str, *, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket on `host:port` (port 0 picks a free one). `reuse_port` sets
    SO_REUSEPORT, so the worker processes of `serve --workers N` share the port (the kernel
    spreads new connections over them)."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"  # noqa: S104 - the documented default
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and
    # without it every keep-alive response waits ~40 ms on Nagle and delayed ACKs.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, int(port)))
    except (OSError, ValueError) as error:
        sock.close()
        raise OSError(f"cannot listen on {address}: {error}") from None
    sock.listen(ACCEPT_BACKLOG)
    sock.setblocking(False)
    return sock


def limits_within_budget(
    settings: Settings, *, grpc_connections: int, database_connections: int
) -> tuple[HttpLimits, process_limits.ConnectionBudget]:
    """At the start of a serving process: the HTTP limits from `settings`, their connection cap
    fitted into the open-file limit beside `grpc_connections` and `database_connections`
    (server/process_limits.py, which also raises that limit and bounds accept-error logging).
    The budget's `grpc` is the gRPC server's share."""
    limits = HttpLimits.from_settings(settings)  # invalid settings fail before anything runs
    budget = process_limits.apply(
        backlog=ACCEPT_BACKLOG,
        http_connections=limits.max_connections if settings.http_addr else 0,
        grpc_connections=grpc_connections,
        database_connections=database_connections,
    )
    return dataclasses.replace(limits, max_connections=max(budget.http, 1)), budget


async def start_http(
    app: AccessLog,
    address: str,
    *,
    grace_seconds: float,
    reuse_port: bool = False,
    limits: HttpLimits | None = None,
    implementation: Implementation = "limited",
    listening: socket.socket | None = None,
) -> RunningHttp:
    """Serves `app` on `address` under `limits` (None: from the app's settings). `listening`, a
    socket from `bind`, is served instead of binding `address`: for a caller that must know the
    port before it builds the app (a test naming the bridge's own URL as the issuer)."""
    silence_uvicorn_access_log()
    if limits is None:
        limits = HttpLimits.from_settings(context_of(app).settings)
    sock = listening if listening is not None else bind(address, reuse_port=reuse_port)
    protocol: type[asyncio.Protocol] | str = implementation
    if implementation in ("limited", "limited_split"):
        protocol = limited_protocol(limits, one_write_per_response=implementation == "limited")
    config = uvicorn.Config(
        app,
        http=protocol,
        # No WebSocket routes here; an upgraded connection would leave the limits behind.
        ws="none",
        # Off: it answers 503 per request while slow sockets keep their connections; the
        # protocol caps connections instead.
        limit_concurrency=None,
        backlog=ACCEPT_BACKLOG,
        # uvicorn hands it to loop.call_later, which takes a float.
        timeout_keep_alive=limits.keepalive_timeout_seconds,  # type: ignore[arg-type]
        h11_max_incomplete_event_size=limits.max_header_bytes,
        lifespan="off",
        access_log=False,  # AccessLog writes a masked one
        log_config=None,  # leave logging to the process
        server_header=False,
        # uvicorn would otherwise rewrite the client address from X-Forwarded-For sent by
        # 127.0.0.1 (its FORWARDED_ALLOW_IPS default); the login throttle believes that header
        # only from TOKENSERVICE_TRUSTED_PROXIES (http_bridge/context.py).
        proxy_headers=False,
        timeout_graceful_shutdown=max(int(grace_seconds), 1),
    )
    server = EmbeddedUvicorn(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()  # re-raises why it could not start
            raise OSError(f"cannot serve HTTP on {address}")
        await asyncio.sleep(0.001)  # uvicorn only sets a flag; its start takes a few ms
    return RunningHttp(server=server, task=task, port=sock.getsockname()[1])
