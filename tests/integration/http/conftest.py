"""The HTTP bridge served by uvicorn on port 0, over the real gRPC harness (real SQLite file),
called with a real HTTP client (httpx).

`bridge` runs every test twice: with the in-process backend (what `tokenservice serve` does) and
with the grpc.aio channel backend (what `tokenservice bridge --grpc-target` does), so the two
transports must map every result and error the same way.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from http_bridge.app import build_app
from http_bridge.backend import TokenBackend
from http_bridge.channel import ChannelBackend
from http_bridge.server import RunningHttp, bind, start_http
from launcher.in_process import InProcessBackend
from tests.support.harness import Harness, Shop
from tests.support.http_clients import async_http_client


@dataclasses.dataclass
class Bridge:
    harness: Harness
    http: httpx.AsyncClient
    running: RunningHttp
    backend_name: str

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.running.port}"

    async def anonymous_login(self, shop: Shop, **context: str) -> dict[str, Any]:
        response = await self.http.get(
            "/customerlogin/auth/anonymous/login",
            params={"tenant": shop.tenant, "client_id": shop.storefront_id, **context},
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def customer_login(
        self, shop: Shop, anonymous_token: str | None = None
    ) -> dict[str, Any]:
        if anonymous_token is None:
            anonymous_token = (await self.anonymous_login(shop))["access_token"]
        response = await self.http.post(
            f"/customer/{shop.tenant}/login",
            json={"email": shop.email, "password": shop.password},
            headers={"Authorization": f"Bearer {anonymous_token}"},
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def service_token(self, shop: Shop, **form: str) -> dict[str, Any]:
        response = await self.http.post(
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": shop.service_id,
                "client_secret": shop.service_secret,
                **form,
            },
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture
def bridge_socket() -> Iterator[socket.socket]:
    """The bridge's listening socket on a free port, bound before the service is built, so a
    test module can put the bridge's own URL in the settings (`bridge_url`)."""
    sock = bind("127.0.0.1:0")
    try:
        yield sock
    finally:
        sock.close()


@pytest.fixture
def bridge_url(bridge_socket: socket.socket) -> str:
    """Where `bridge` serves. A module whose clients discover the service overrides
    `settings_overrides` to return `{"issuer": bridge_url}`: a discovering client checks that
    the metadata's issuer is the URL it asked, and follows the endpoints the issuer names."""
    return f"http://127.0.0.1:{bridge_socket.getsockname()[1]}"


@pytest.fixture(params=["in_process", "channel"])
async def bridge(
    request: pytest.FixtureRequest, harness: Harness, bridge_socket: socket.socket
) -> AsyncIterator[Bridge]:
    backend: TokenBackend
    if request.param == "in_process":
        backend = InProcessBackend(harness.core)
    else:
        backend = ChannelBackend(harness.target)
    app = build_app(backend, harness.core.settings)
    running = await start_http(app, "127.0.0.1:0", grace_seconds=1, listening=bridge_socket)
    client = async_http_client(base_url=f"http://127.0.0.1:{running.port}", timeout=30)
    try:
        yield Bridge(harness=harness, http=client, running=running, backend_name=request.param)
    finally:
        await client.aclose()
        await running.stop()
        await backend.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The channel backend's mapping does not depend on the database: run it on SQLite only, so
    the HTTP suite runs three times (in-process on SQLite and PostgreSQL, channel on SQLite), not
    four."""
    keep, drop = [], []
    for item in items:
        params = getattr(item, "callspec", None)
        chosen = params.params if params is not None else {}
        if chosen.get("bridge") == "channel" and chosen.get("database_kind") == "postgres":
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
