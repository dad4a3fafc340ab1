"""What every route needs: the backend, the settings, and whether the process is draining."""

from __future__ import annotations

import dataclasses

from starlette.requests import Request

from http_bridge.backend import TokenBackend
from server.settings import Settings


@dataclasses.dataclass
class BridgeContext:
    backend: TokenBackend
    settings: Settings
    # Set on SIGTERM: /readyz answers 503 so balancers stop sending before the server stops.
    draining: bool = False


def bridge(request: Request) -> BridgeContext:
    context: BridgeContext = request.app.state.bridge
    return context
