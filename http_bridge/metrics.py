"""Request metrics of the HTTP bridge, and `GET /metrics` (the process's Prometheus metrics:
the bridge's own, and with `tokenservice serve` the gRPC server's too).

A pure ASGI middleware (Starlette's BaseHTTPMiddleware costs a task and queues per request),
placed inside Starlette's stack, so it sees the router's choice: `scope["route"]` is the route
that matched (fully, or by path alone for a 405), whose *template* becomes the label. A path no
route matches is `unmatched`: a raw path or query string may hold a token, so none is ever used.
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from http_bridge.response_status import ResponseStatus
from server import metrics


class HttpMetrics:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = ResponseStatus(send)
        in_flight = metrics.HTTP_IN_FLIGHT
        in_flight.value += 1
        try:
            await self.app(scope, receive, status)
        finally:
            in_flight.value -= 1
            route = scope.get("route")
            template = getattr(route, "path", None) if route is not None else None
            metrics.record_http(
                template if isinstance(template, str) else metrics.UNMATCHED,
                scope["method"],
                status.code,
                time.perf_counter() - started,
            )


async def metrics_endpoint(request: Request) -> Response:
    return Response(
        metrics.exposition(),
        media_type=metrics.CONTENT_TYPE_LATEST,
        headers={"Cache-Control": "no-store"},
    )
