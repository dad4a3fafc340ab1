"""Serving the bridge with uvicorn inside an event loop the caller owns (beside the gRPC server,
or alone in front of a remote one): the caller handles signals and decides when to stop."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
from collections.abc import Iterator

import uvicorn

from http_bridge.access_log import AccessLog


class EmbeddedUvicorn(uvicorn.Server):
    """uvicorn without its own signal handlers: the process's owner drains both protocols."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


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
        self.server.should_exit = True
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
    sock.listen(1024)
    sock.setblocking(False)
    return sock


async def start_http(
    app: AccessLog, address: str, *, grace_seconds: float, reuse_port: bool = False
) -> RunningHttp:
    silence_uvicorn_access_log()
    sock = bind(address, reuse_port=reuse_port)
    config = uvicorn.Config(
        app,
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
        await asyncio.sleep(0.01)
    return RunningHttp(server=server, task=task, port=sock.getsockname()[1])
