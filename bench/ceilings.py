"""The independent ceilings: what a bare server of each protocol does with nothing to do, so that
the service's figures are read against the protocol's own limit and not against its own stack.

    python -m bench.ceilings grpc PORT RESPONSE_FILE   # bare grpc.aio, one no-op unary method
    python -m bench.ceilings http PORT RESPONSE_FILE   # bare uvicorn + Starlette, one no-op route

Each runs as its own process beside the service (bench/run.py starts it, pinned to the server's
core where taskset is available) with stock settings: `grpc.aio.server()` with no interceptors,
no options and no health service; `uvicorn.Server` with its defaults (httptools, one process)
except that the console access log is off, since a line per request on a pipe is not part of
what the protocol costs. Both run on the event loop the service runs on
(TOKENSERVICE_EVENT_LOOP, uvloop by default: launcher/event_loop.py), so that a ratio to a
ceiling measures the service's own code and not the loop's. RESPONSE_FILE holds the bytes of
a real answer of the service (the serialized IntrospectTokenResponse of an active token for
gRPC, the JSON body of POST /oauth/introspect for HTTP), so the ceilings answer with messages of
the same size, and the harness sends them the service's own request bodies.

gRPC: `/bench.Bare/Call` parses its request as an IntrospectTokenRequest (as a real method
would) and answers the parsed response; `/bench.Bare/Calls` answers how many calls returned, so
that the harness checks successes from the server's side as it does for the service (an h2load
200 says nothing about grpc-status). HTTP: `GET|POST /bench/bare` reads the body and answers.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

import grpc
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from launcher import event_loop
from server.settings import Settings
from tokenservice.v1 import token_service_pb2 as pb

GRPC_METHOD = "/bench.Bare/Call"
GRPC_COUNT_METHOD = "/bench.Bare/Calls"
HTTP_PATH = "/bench/bare"


async def serve_grpc(port: int, response_bytes: bytes) -> None:
    response = pb.IntrospectTokenResponse.FromString(response_bytes)
    calls = 0

    async def call(request: pb.IntrospectTokenRequest, context: Any) -> pb.IntrospectTokenResponse:
        nonlocal calls
        calls += 1
        return response

    async def count(request: bytes, context: Any) -> bytes:
        return str(calls).encode()

    handler = grpc.method_handlers_generic_handler(
        "bench.Bare",
        {
            "Call": grpc.unary_unary_rpc_method_handler(
                call,
                request_deserializer=pb.IntrospectTokenRequest.FromString,
                response_serializer=pb.IntrospectTokenResponse.SerializeToString,
            ),
            "Calls": grpc.unary_unary_rpc_method_handler(count),
        },
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stopped.set)
    loop.add_signal_handler(signal.SIGINT, stopped.set)
    await stopped.wait()
    await server.stop(grace=1)


def http_app(response_bytes: bytes) -> Starlette:
    async def bare(request: Request) -> Response:
        await request.body()
        return Response(response_bytes, media_type="application/json")

    return Starlette(routes=[Route(HTTP_PATH, bare, methods=["GET", "POST"])])


def serve_http(port: int, response_bytes: bytes, loop: str) -> None:
    config = uvicorn.Config(
        http_app(response_bytes), host="127.0.0.1", port=port, access_log=False, loop=loop
    )
    uvicorn.Server(config).run()


def main() -> None:
    kind, port, response_file = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    response_bytes = response_file.read_bytes()
    loop = Settings.from_env().event_loop  # the service's own loop, uvloop by default
    if kind == "grpc":
        event_loop.run(serve_grpc(port, response_bytes), loop)
    elif kind == "http":
        serve_http(port, response_bytes, loop)
    else:
        sys.exit(f"unknown ceiling {kind!r}: grpc or http")


if __name__ == "__main__":
    main()
