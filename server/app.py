"""Builds and runs the gRPC server: servicers, health, reflection, the error interceptor, and a
graceful shutdown (health turns NOT_SERVING first, then in-flight calls drain). The core's part
of serving only: putting the HTTP bridge beside it is launcher/serve.py's job."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from server.account_servicer import AccountServicer
from server.admin_servicer import AdminServicer
from server.core import Core
from server.errors import TokenServiceError
from server.grpc_options import limit_options
from server.interceptors import ErrorInterceptor
from server.servicer import TokenServicer
from server.store.protocol import Health
from server.unary_calls import CallsInFlight
from tokenservice.v1 import (
    account_service_pb2,
    account_service_pb2_grpc,
    admin_service_pb2,
    admin_service_pb2_grpc,
    token_service_pb2,
    token_service_pb2_grpc,
)

SERVICE_NAMES = (
    token_service_pb2.DESCRIPTOR.services_by_name["TokenService"].full_name,
    admin_service_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
    account_service_pb2.DESCRIPTOR.services_by_name["AccountService"].full_name,
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
    calls: CallsInFlight

    async def stop(self, grace: float | None = None, delay: float = 0.0) -> None:
        """Drains: NOT_SERVING first, so balancers stop sending; after `delay`, refuse new calls
        (UNAVAILABLE, ShuttingDown) and wait up to `grace` for the unary calls in flight, then
        stop, ending what is left: streams (health Watch, which would otherwise hold the stop
        for the whole grace; revocation watchers end at the refusal) and calls the grace did not
        see finish.

        The service refuses new calls itself while it waits, rather than leaving that to grpc
        core's stop(grace), which answers the calls it received but no handler took yet with
        CANCELLED (grpc/grpc#41785): a client retries UNAVAILABLE elsewhere, not CANCELLED."""
        await self.health.enter_graceful_shutdown()
        if delay > 0:
            await asyncio.sleep(delay)
        self.calls.drain()
        # Revocation watchers (gRPC and the bridge's) end now, UNAVAILABLE: they resume
        # elsewhere from their last position rather than hold the stop for the whole grace.
        await self.core.feed.close()
        if grace:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.calls.drained.wait(), timeout=grace)
        await self.server.stop(0)


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
    account_service_pb2_grpc.add_AccountServiceServicer_to_server(AccountServicer(core), server)
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
    return RunningServer(
        server=server, port=port, core=core, health=health_servicer, calls=interceptor.calls
    )


async def finish_rehashes(core: Core) -> None:
    """The last step of draining, before the caller closes the store: rehashes that logins
    started (server/passwords.py) finish; one still running after the grace is left to the
    customer's next login."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(core.settings.shutdown_grace_seconds):
            await core.passwords.settled()
            await core.mail.settled()  # account mail already scheduled goes out too
