"""A real server on port 0 over a real SQLite file, called through real grpcio stubs.

The server runs in the test's event loop with a ManualClock, so expiry and grace windows are
tested by moving time, not by sleeping.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from server import admin
from server.app import RunningServer, start_server
from server.clock import ManualClock
from server.core import Core, build_core
from server.settings import Settings
from server.store import open_store
from server.store.records import ClientKind
from tests.conftest import FAST_ARGON2
from tokenservice.v1 import admin_service_pb2_grpc
from tokenservice.v1 import token_service_pb2 as pb
from tokenservice.v1 import token_service_pb2_grpc as pb_grpc

PASSWORD = "correct horse battery staple"


@dataclasses.dataclass
class Shop:
    """One provisioned tenant: a storefront client, a service client and a customer."""

    tenant: str
    storefront_id: str
    service_id: str
    service_secret: str
    email: str
    password: str
    customer_id: str
    legal_entities: tuple[str, ...]


@dataclasses.dataclass
class Harness:
    core: Core
    clock: ManualClock
    running: RunningServer
    channel: grpc.aio.Channel
    stub: pb_grpc.TokenServiceStub
    admin_stub: admin_service_pb2_grpc.AdminServiceStub
    db_path: Path

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.running.port}"

    async def shop(self, tenant: str, *, rotation: bool = True) -> Shop:
        core = self.core
        await admin.create_tenant(core, tenant)
        storefront, _ = await admin.create_client(
            core,
            tenant,
            ClientKind.STOREFRONT,
            (),
            refresh_rotation_disabled=not rotation,
        )
        service, secret = await admin.create_client(
            core, tenant, ClientKind.SERVICE, ("catalog.read", "catalog.write", "orders.read")
        )
        assert secret is not None
        email = f"ann@{tenant}.example"
        customer = await admin.create_customer(
            core, tenant, email, PASSWORD, ("customer.read", "order.write"), ("le-1", "le-2")
        )
        return Shop(
            tenant=tenant,
            storefront_id=storefront.client_id,
            service_id=service.client_id,
            service_secret=secret,
            email=email,
            password=PASSWORD,
            customer_id=customer.id,
            legal_entities=customer.legal_entity_ids,
        )

    async def anonymous(self, shop: Shop, **context: str) -> pb.TokenResponse:
        return await self.stub.IssueToken(
            pb.IssueTokenRequest(
                anonymous=pb.AnonymousGrant(
                    tenant=shop.tenant,
                    client_id=shop.storefront_id,
                    context=pb.SessionContext(**context),
                )
            )
        )

    async def customer(self, shop: Shop, anonymous_token: str | None = None) -> pb.TokenResponse:
        if anonymous_token is None:
            anonymous_token = (await self.anonymous(shop)).access_token
        return await self.stub.IssueToken(
            pb.IssueTokenRequest(
                customer_password=pb.CustomerPasswordGrant(
                    tenant=shop.tenant,
                    email=shop.email,
                    password=shop.password,
                    anonymous_token=anonymous_token,
                )
            )
        )

    async def service(self, shop: Shop, scope: str = "") -> pb.TokenResponse:
        return await self.stub.IssueToken(
            pb.IssueTokenRequest(
                client_credentials=pb.ClientCredentialsGrant(
                    client_id=shop.service_id, client_secret=shop.service_secret, scope=scope
                )
            )
        )

    async def introspect(self, token: str, tenant: str = "") -> pb.IntrospectTokenResponse:
        return await self.stub.IntrospectToken(
            pb.IntrospectTokenRequest(token=token, tenant=tenant)
        )


def harness_settings(db_path: Path, **overrides: object) -> Settings:
    return Settings(
        database_url=f"sqlite+aiosqlite:///{db_path}",
        grpc_addr="127.0.0.1:0",
        provision_demo=False,
        **{**FAST_ARGON2, **overrides},  # type: ignore[arg-type]
    )


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    """Override in a test module to change the server's settings."""
    return {}


@pytest.fixture
async def harness(tmp_path: Path, settings_overrides: dict[str, object]) -> AsyncIterator[Harness]:
    db_path = tmp_path / "tokens.db"
    settings = harness_settings(db_path, **settings_overrides)
    store = await open_store(settings)
    clock = ManualClock()
    core = build_core(settings, store, clock=clock)
    await core.keys.ensure_active_key()
    running = await start_server(core, "127.0.0.1:0")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    try:
        yield Harness(
            core=core,
            clock=clock,
            running=running,
            channel=channel,
            stub=pb_grpc.TokenServiceStub(channel),
            admin_stub=admin_service_pb2_grpc.AdminServiceStub(channel),
            db_path=db_path,
        )
    finally:
        await channel.close()
        await running.stop(0)
        await store.close()


def error_reason(error: grpc.aio.AioRpcError) -> str:
    """The google.rpc.ErrorInfo reason carried in the status details."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "no rich status details"
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.reason
    raise AssertionError("no ErrorInfo in the status details")
