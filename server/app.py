"""Builds and runs the gRPC server: servicers, health, reflection, the error interceptor, and a
graceful shutdown (health turns NOT_SERVING first, then in-flight calls drain)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from starlette.routing import BaseRoute

from http_bridge.app import build_app, context_of
from http_bridge.in_process import InProcessBackend
from http_bridge.server import RunningHttp, limits_within_budget, start_http
from server import janitor, memory_trim
from server.admin_servicer import AdminServicer
from server.core import Core
from server.errors import TokenServiceError
from server.grpc_options import limit_options
from server.interceptors import ErrorInterceptor
from server.servicer import TokenServicer
from server.settings import Settings
from server.startup import open_core
from server.store.protocol import Health
from tokenservice.v1 import (
    admin_service_pb2,
    admin_service_pb2_grpc,
    token_service_pb2,
    token_service_pb2_grpc,
)

log = logging.getLogger("tokenservice")

SERVICE_NAMES = (
    token_service_pb2.DESCRIPTOR.services_by_name["TokenService"].full_name,
    admin_service_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
)


class StoreAwareHealth(health.aio.HealthServicer):
    """grpc.health.v1 where asking about a service ("tokenservice.v1.TokenService") also asks
    the store: a server that cannot reach its store is NOT_SERVING for it, so balancers and a
    standalone bridge's /readyz stop sending. The overall status ("") stays the process's own,
    for liveness probes, so a database outage does not get the process restarted."""

    def __init__(self, store: Health) -> None:
        super().__init__()
        self._store = store

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        response = await super().Check(request, context)
        serving = response.status == health_pb2.HealthCheckResponse.SERVING
        if request.service and serving:
            try:
                await self._store.ping()
            except TokenServiceError:
                return health_pb2.HealthCheckResponse(
                    status=health_pb2.HealthCheckResponse.NOT_SERVING
                )
        return response


@dataclasses.dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    core: Core
    health: StoreAwareHealth

    async def stop(self, grace: float | None = None, delay: float = 0.0) -> None:
        """Drains: NOT_SERVING first, so balancers stop sending; after `delay`, stop taking
        calls and wait up to `grace` for the ones in flight."""
        await self.health.enter_graceful_shutdown()
        if delay > 0:
            await asyncio.sleep(delay)
        await self.server.stop(grace)


async def start_server(
    core: Core,
    address: str | None = None,
    *,
    reuse_port: bool = False,
    extra_handlers: Sequence[grpc.GenericRpcHandler] = (),
    max_connections: int | None = None,
) -> RunningServer:
    """Starts serving `core` on `address` (port 0 picks a free port). `reuse_port` shares the
    port with the other worker processes of `serve --workers N` (SO_REUSEPORT); without it a
    port someone else listens on is refused instead of silently shared. `extra_handlers` are
    served beside the service, behind the same interceptors (the benchmark's no-op ceiling;
    never used by `tokenservice serve`). `max_connections` is the effective connection cap
    when it is lower than `grpc_max_connections` (the file-descriptor budget's share)."""
    settings = core.settings
    interceptor = ErrorInterceptor(
        message_timeout=settings.grpc_message_timeout_seconds,
        max_calls=settings.grpc_max_concurrent_rpcs,
        evictable_after=settings.grpc_evictable_after_seconds,
    )
    server = grpc.aio.server(
        interceptors=[interceptor],
        options=[
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.so_reuseport", 1 if reuse_port else 0),
            *limit_options(settings, max_connections=max_connections),
        ],
    )
    token_service_pb2_grpc.add_TokenServiceServicer_to_server(TokenServicer(core), server)
    admin_service_pb2_grpc.add_AdminServiceServicer_to_server(AdminServicer(core), server)
    if extra_handlers:
        server.add_generic_rpc_handlers(tuple(extra_handlers))
    health_servicer = StoreAwareHealth(core.store)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, reflection.SERVICE_NAME, health.SERVICE_NAME), server
    )
    address = address or settings.grpc_addr
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as error:  # grpcio reports a busy or invalid address this way
        raise OSError(f"cannot listen on {address}: {error}") from None
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    await server.start()
    serving = health_pb2.HealthCheckResponse.SERVING
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, serving)
    return RunningServer(server=server, port=port, core=core, health=health_servicer)


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
        await core.store.close()
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
    log.info("tokenservice: gRPC on %s (port %d)", settings.grpc_addr, running.port)
    http: RunningHttp | None = None
    bridge_app = build_app(InProcessBackend(core), settings, extra_routes=extra_http_routes)
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
    # Rehashes that logins started (server/passwords.py) finish before the caller closes the
    # store; one still running after the grace is left to the customer's next login.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(settings.shutdown_grace_seconds):
            await core.passwords.settled()


def configure_logging(settings: Settings, *, label: str = "") -> None:
    """Log lines to stderr; `label` (e.g. "worker 2") tags every line of one worker process."""
    tag = f"[{label}] " if label else ""
    logging.basicConfig(
        level=settings.log_level.upper(),
        format=f"%(asctime)s %(levelname)s {tag}%(name)s %(message)s",
    )


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
    from server.demo import demo_banner, provision_demo

    credentials = await provision_demo(core)
    if credentials is not None:
        settings = core.settings
        print(demo_banner(credentials, settings.grpc_addr, settings.http_addr), flush=True)


async def wait_for_shutdown_signal(stop: asyncio.Event | None = None) -> None:
    """Returns on SIGTERM or SIGINT, or when `stop` is set."""
    if stop is None:
        stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
