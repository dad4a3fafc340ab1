"""The service as the benchmark runs it: exactly what `tokenservice serve` runs (same store,
caches, interceptors, HTTP stack), plus the two ceilings on the same stacks: a no-op gRPC method
`/bench.Noop/Call` (IntrospectToken's request and response types, answered with a fixed
response of a real introspection's size) and a no-op HTTP route `GET|POST /bench/noop`.

    python bench/server.py FIXTURES.json [--http-protocols]
                                          (settings from TOKENSERVICE_* as for `serve`)

With --http-protocols the same bridge app (same core, same routes, same ASGI stack) is also
served by LimitedHttpToolsProtocol with one write per response off (the limits alone), by
uvicorn's stock httptools protocol and by its h11 protocol (with its incomplete-event bound at
the head limit) on three more ports, named in FIXTURES.json as `http_port_limited_split`,
`http_port_httptools` and `http_port_h11`, so that the cost of the limits and the gain of the
joined writes are measured against stock in one process.

Before serving it provisions the tenant `bench` (two storefront clients, one with refresh-token
rotation off, a service client and a customer) and writes their names and secrets to
FIXTURES.json for the load generator.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

import grpc
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from http_bridge.app import build_app
from http_bridge.server import RunningHttp, start_http
from launcher import event_loop
from launcher.in_process import InProcessBackend
from launcher.serve import prepare_store, serve_core
from server import admin
from server.records import ClientKind
from server.settings import Settings
from server.startup import open_core
from tokenservice.v1 import token_service_pb2 as pb

TENANT = "bench"
EMAIL = "shopper@bench.example"
PASSWORD = "correct horse battery staple"  # a benchmark fixture, not a secret
NOOP_RESPONSE = pb.IntrospectTokenResponse(
    active=True,
    tenant=TENANT,
    client_id="cl_" + "x" * 22,
    scope="customer.read order.write",
    expires_in=3600,
    exp=1_900_000_000,
    iat=1_899_996_400,
    session_id="x" * 32,
    token_type="Bearer",
)
NOOP_BODY = json.dumps(
    {"tenant": TENANT, "sessionId": "x" * 32, "scope": "customer.read", "expires_in": 3600}
).encode()


async def _noop_call(
    request: pb.IntrospectTokenRequest, context: Any
) -> pb.IntrospectTokenResponse:
    return NOOP_RESPONSE


async def _noop_route(request: Request) -> Response:
    await request.body()
    return Response(NOOP_BODY, media_type="application/json")


NOOP_GRPC = grpc.method_handlers_generic_handler(
    "bench.Noop",
    {
        "Call": grpc.unary_unary_rpc_method_handler(
            _noop_call,
            request_deserializer=pb.IntrospectTokenRequest.FromString,
            response_serializer=pb.IntrospectTokenResponse.SerializeToString,
        )
    },
)
NOOP_HTTP = Route("/bench/noop", _noop_route, methods=["GET", "POST"])


async def provision(core: Any) -> dict[str, str]:
    await admin.create_tenant(core, TENANT)
    rotating, _ = await admin.create_client(core, TENANT, ClientKind.STOREFRONT, ())
    steady, _ = await admin.create_client(
        core, TENANT, ClientKind.STOREFRONT, (), refresh_rotation_disabled=True
    )
    service, secret = await admin.create_client(core, TENANT, ClientKind.SERVICE, ("bench.read",))
    assert secret is not None
    await admin.create_customer(core, TENANT, EMAIL, PASSWORD, ("customer.read",), ("le-1",))
    return {
        "tenant": TENANT,
        "storefront_id": rotating.client_id,
        "steady_storefront_id": steady.client_id,
        "service_id": service.client_id,
        "service_secret": secret,
        "email": EMAIL,
        "password": PASSWORD,
        "argon2_time_cost": str(core.settings.argon2_time_cost),
        "argon2_memory_kib": str(core.settings.argon2_memory_kib),
        "argon2_parallelism": str(core.settings.argon2_parallelism),
    }


async def other_protocols(core: Any) -> dict[str, RunningHttp]:
    """The bridge as serve_core builds it, served by uvicorn's own protocols on free ports."""
    servers = {}
    for implementation in ("limited_split", "httptools", "h11"):
        app = build_app(InProcessBackend(core), core.settings, extra_routes=[NOOP_HTTP])
        servers[implementation] = await start_http(
            app, "127.0.0.1:0", grace_seconds=1, implementation=implementation
        )
    return servers


async def main(fixtures: Path, http_protocols: bool) -> None:
    settings = Settings.from_env()
    logging.basicConfig(level=logging.WARNING)
    core = await open_core(settings)
    others: dict[str, RunningHttp] = {}
    try:
        await prepare_store(core)
        described = await provision(core)
        described["event_loop"] = event_loop.running_loop_name()  # what runs, not what was asked
        if http_protocols:
            others = await other_protocols(core)
            described.update({f"http_port_{name}": str(h.port) for name, h in others.items()})
        await asyncio.to_thread(fixtures.write_text, json.dumps(described))
        await serve_core(
            core, sweep=False, extra_grpc_handlers=[NOOP_GRPC], extra_http_routes=[NOOP_HTTP]
        )
    finally:
        for http in others.values():
            await http.stop()
        await core.store.close()


if __name__ == "__main__":
    event_loop.run(
        main(Path(sys.argv[1]), "--http-protocols" in sys.argv[2:]),
        Settings.from_env().event_loop,
    )
