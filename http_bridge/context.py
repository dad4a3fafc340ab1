"""What every route needs: the backend, the settings, and whether the process is draining."""

from __future__ import annotations

import dataclasses

from starlette.requests import Request

from http_bridge.backend import TokenBackend
from server.proxies import Networks, client_address
from server.settings import Settings


@dataclasses.dataclass
class BridgeContext:
    backend: TokenBackend
    settings: Settings
    # TOKENSERVICE_TRUSTED_PROXIES: peers whose X-Forwarded-For names the client.
    trusted_proxies: Networks = ()
    # Set on SIGTERM: /readyz answers 503 so balancers stop sending before the server stops.
    draining: bool = False


def bridge(request: Request) -> BridgeContext:
    context: BridgeContext = request.app.state.bridge
    return context


def client_address_of(request: Request) -> str:
    """The HTTP client's address, for the login throttle: the socket's peer, or, when that peer
    is a trusted proxy, the client its X-Forwarded-For names (server.abuse.client_address)."""
    peer = request.client.host if request.client is not None else ""
    context = bridge(request)
    if not context.trusted_proxies:
        return peer
    forwarded = ",".join(request.headers.getlist("x-forwarded-for"))
    return client_address(peer, forwarded, context.trusted_proxies)
