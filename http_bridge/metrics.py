"""Request metrics of the HTTP bridge, and `GET /metrics` (the process's Prometheus metrics:
the bridge's own, and with `tokenservice serve` the gRPC server's too).

A pure ASGI middleware (response_status.ObservedRequests), placed inside Starlette's stack, so
it sees the router's choice: `scope["route"]` is the route that matched (fully, or by path alone
for a 405), whose *template* becomes the label. A path no route matches is `unmatched`: a raw
path or query string may hold a token, so none is ever used.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from http_bridge.response_status import ObservedRequests
from server import metrics


class HttpMetrics(ObservedRequests):
    def started(self, scope: Scope) -> None:
        metrics.HTTP_IN_FLIGHT.value += 1

    def finished(self, scope: Scope, status: int, seconds: float) -> None:
        metrics.HTTP_IN_FLIGHT.value -= 1
        route = scope.get("route")
        template = getattr(route, "path", None) if route is not None else None
        metrics.record_http(
            template if isinstance(template, str) else metrics.UNMATCHED,
            scope["method"],
            status,
            seconds,
        )


async def metrics_endpoint(request: Request) -> Response:
    return Response(
        metrics.exposition(),
        media_type=metrics.CONTENT_TYPE_LATEST,
        headers={"Cache-Control": "no-store"},
    )
