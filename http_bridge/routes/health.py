"""Liveness and readiness for orchestrators: /healthz says the process runs, /readyz says calls
can succeed now (the store or the remote gRPC server answers, and the process is not draining)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from http_bridge.context import bridge

NO_CACHE = {"Cache-Control": "no-store"}


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"}, headers=NO_CACHE)


async def readyz(request: Request) -> Response:
    context = bridge(request)
    if context.draining or not await context.backend.ready():
        return JSONResponse({"status": "unavailable"}, status_code=503, headers=NO_CACHE)
    return JSONResponse({"status": "ready"}, headers=NO_CACHE)
