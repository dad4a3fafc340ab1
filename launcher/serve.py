"""`tokenservice serve`, one process of it: gRPC (server/app.py) and the HTTP bridge calling
the same core in-process, started together and drained together."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import grpc
from starlette.routing import BaseRoute

from http_bridge.app import build_app, context_of
from http_bridge.server import RunningHttp, limits_within_budget, start_http
from launcher.event_loop import running_loop_name
from launcher.in_process import InProcessBackend
from launcher.process import configure_logging, wait_for_shutdown_signal
from server import janitor, memory_trim
from server.app import finish_rehashes, start_server
from server.core import Core
from server.settings import Settings
from server.startup import open_core

log = logging.getLogger("tokenservice")


async def serve(settings: Settings) -> None:
    """`tokenservice serve`: migrate and check the secret (server/startup.py), provision the
    demo tenant on an empty embedded store,
    serve gRPC and the HTTP bridge (calling the same handlers in-process) until SIGTERM or
    SIGINT, then drain both."""
    configure_logging(settings)
    core = await open_core(settings)
    try:
        await prepare_store(core)
        await serve_core(core)
    finally:
        await core.close()
    log.info("stopped")


async def serve_core(
    core: Core,
    *,
    reuse_port: bool = False,
    stop: asyncio.Event | None = None,
    sweep: bool = True,
    extra_grpc_handlers: Sequence[grpc.GenericRpcHandler] = (),
    extra_http_routes: Sequence[BaseRoute] = (),
) -> None:
    """Serves gRPC and the HTTP bridge for `core` until SIGTERM, SIGINT or `stop`, then drains
    both: what one process of `tokenservice serve` does, alone or as one of several workers.
    Meanwhile, with `sweep`, the janitor sweeps every `janitor_interval_seconds` (one process
    of several is enough); it is stopped when the signal comes, before the draining (and so
    before the caller closes the store). The `extra_` handlers and routes are the benchmark's
    no-op ceilings, served on the same stacks (`tokenservice serve` passes none)."""
    settings = core.settings
    http_limits, budget = limits_within_budget(
        settings,
        grpc_connections=settings.grpc_max_connections,
        database_connections=settings.db_pool_size + settings.db_max_overflow,
    )
    running = await start_server(
        core,
        reuse_port=reuse_port,
        extra_handlers=extra_grpc_handlers,
        max_connections=budget.grpc,
    )
    log.info(
        "tokenservice: gRPC on %s (port %d), event loop %s",
        settings.grpc_addr,
        running.port,
        running_loop_name(),
    )
    http: RunningHttp | None = None
    bridge_app = build_app(
        InProcessBackend(core),
        settings,
        extra_routes=extra_http_routes,
        trusted_proxies=core.abuse.trusted_proxies,  # parsed once, by the core
    )
    if settings.http_addr:
        http = await start_http(
            bridge_app,
            settings.http_addr,
            grace_seconds=settings.shutdown_grace_seconds,
            reuse_port=reuse_port,
            limits=http_limits,
        )
        log.info("tokenservice: HTTP on %s (port %d)", settings.http_addr, http.port)
    sweeper = janitor.start(core) if sweep else None
    trimmer = memory_trim.start(settings.memory_trim_interval_seconds)
    try:
        await wait_for_shutdown_signal(stop)
    finally:
        await janitor.stop(sweeper)
        await memory_trim.stop(trimmer)
    log.info(
        "shutting down: draining in-flight calls for up to %ss", settings.shutdown_grace_seconds
    )
    context_of(bridge_app).draining = True
    await asyncio.gather(
        running.stop(settings.shutdown_grace_seconds, settings.shutdown_delay_seconds),
        _stop_http_after(http, settings.shutdown_delay_seconds),
    )
    await finish_rehashes(core)


async def _stop_http_after(http: RunningHttp | None, delay: float) -> None:
    if http is None:
        return
    await asyncio.sleep(delay)
    await http.stop()


async def prepare_store(core: Core) -> None:
    """What happens once per database at start, before serving: the first signing key and, on
    an empty embedded store, the demo tenant."""
    await core.keys.ensure_active_key()
    await _provision_demo(core)


async def _provision_demo(core: Core) -> None:
    if not (core.settings.provision_demo and core.settings.is_sqlite):
        return
    from launcher.demo import demo_banner, provision_demo

    credentials = await provision_demo(core)
    if credentials is not None:
        settings = core.settings
        print(demo_banner(credentials, settings.grpc_addr, settings.http_addr), flush=True)
