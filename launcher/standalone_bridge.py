"""`tokenservice bridge --grpc-target HOST:PORT`: the HTTP bridge alone, in front of a remote
TokenService, calling it through a grpc.aio channel. It needs no database and no secret: every
decision is the gRPC server's. This module's one job is starting it; it imports only the bridge
and the light parts of the core (settings, errors), so that it loads no SQLAlchemy, Alembic or
argon2 (tests/project/test_package_graph.py)."""

from __future__ import annotations

import asyncio
import logging

from http_bridge.app import build_app, context_of
from http_bridge.channel import ChannelBackend
from http_bridge.server import limits_within_budget, start_http
from launcher.event_loop import running_loop_name
from launcher.process import configure_logging, wait_for_shutdown_signal
from server.settings import Settings

log = logging.getLogger("tokenservice")


async def run_bridge(settings: Settings, grpc_target: str) -> None:
    configure_logging(settings)
    limits, _ = limits_within_budget(settings, grpc_connections=0, database_connections=0)
    backend = ChannelBackend(grpc_target)
    try:
        app = build_app(backend, settings)
        http = await start_http(
            app, settings.http_addr, grace_seconds=settings.shutdown_grace_seconds, limits=limits
        )
        log.info(
            "tokenservice bridge: HTTP on %s (port %d), calling gRPC at %s, event loop %s",
            settings.http_addr,
            http.port,
            grpc_target,
            running_loop_name(),
        )
        await wait_for_shutdown_signal()
        context_of(app).draining = True
        await asyncio.sleep(settings.shutdown_delay_seconds)
        backend.end_streams()  # as a draining server ends its own streams
        await http.stop()
    finally:
        await backend.close()
    log.info("stopped")
