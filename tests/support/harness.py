"""The harness: a real server on port 0 over a real database, called through real grpcio stubs
(the `harness` fixture, registered once in tests/conftest.py), and what tests read from its
failed calls.

Every test that uses the harness runs twice: on a real SQLite file and on a fresh PostgreSQL
database (tests/support/databases.py). A test that is about SQLite itself says so by
parametrizing `database_kind` with "sqlite" alone.

The server runs in the test's event loop with a ManualClock, so expiry and grace windows are
tested by moving time, not by sleeping.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from server import admin
from server.app import RunningServer, start_server
from server.clock import ManualClock
from server.core import Core
from server.records import ClientKind
from server.settings import Settings
from server.startup import open_core
from tests.support.databases import copy_sqlite_template
from tests.support.defaults import FAST_ARGON2, TEST_SECRET
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
    # The SQLite file (for a PostgreSQL database: where it would be; nothing is there).
    db_path: Path
    database_url: str
    database_kind: str

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

    async def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Rows of `sql`, read on a connection of its own (as another process would see them)."""
        engine = create_async_engine(self.database_url, poolclass=NullPool)
        try:
            async with engine.connect() as conn:
                return [tuple(row) for row in (await conn.execute(text(sql))).all()]
        finally:
            await engine.dispose()

    async def row_counts(self) -> dict[str, int]:
        counts = {}
        for table in ("sessions", "tokens", "tenants", "clients", "customers"):
            counts[table] = (await self.query(f"SELECT count(*) FROM {table}"))[0][0]  # noqa: S608
        return counts


def harness_settings(database_url: str, **overrides: Any) -> Settings:
    """Settings for a harness; `overrides` are Settings fields (any of them, so Any)."""
    return Settings(
        database_url=database_url,
        grpc_addr="127.0.0.1:0",
        provision_demo=False,
        secret_key="" if database_url.startswith("sqlite") else TEST_SECRET.decode(),
        # PostgreSQL's revocation listener: a heartbeat heard later than the allowed lag (or
        # than the probe time) on a busy machine would send lookups to the database (safe) and
        # turn the tests' cache hits into misses; tests of the lag set their own.
        **{
            **FAST_ARGON2,
            "revocation_listener_probe_seconds": 30.0,
            "revocation_max_lag_seconds": 30.0,
            **overrides,
        },
    )


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    """Override in a test module to change the server's settings."""
    return {}


@pytest.fixture
async def harness(
    tmp_path: Path,
    database_kind: str,
    database_url: str,
    settings_overrides: dict[str, object],
    request: pytest.FixtureRequest,
) -> AsyncIterator[Harness]:
    db_path = tmp_path / "tokens.db"
    # The database is migrated already: the SQLite template copied here, or the PostgreSQL
    # database made from its migrated template. A file a test put there itself is migrated by
    # open_core, as `tokenservice serve` migrates on every start (which the process tests, the
    # store contract and test_migrations test, a no-op run included).
    migrated = database_kind == "postgres"
    if database_kind == "sqlite" and not db_path.exists():
        copy_sqlite_template(request.getfixturevalue("sqlite_template"), db_path)
        migrated = True
    # Account mail goes to the test's own outbox folder (not beside a PostgreSQL-less cwd).
    outbox = {"mail_outbox_dir": str(tmp_path / "outbox")}
    settings = harness_settings(database_url, **{**outbox, **settings_overrides})
    clock = ManualClock()
    core = await open_core(settings, migrate=not migrated, clock=clock)  # as `serve` starts
    store = core.store
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
            database_url=database_url,
            database_kind=database_kind,
        )
    finally:
        await channel.close()
        await running.stop(0)
        await core.outbound.close()
        await store.close()


def lifetimes_apart(answer: pb.TokenResponse, later: pb.TokenResponse) -> int | None:
    """By how many seconds `later` tells shorter lifetimes than `answer` when it is otherwise
    the same answer, field for field (a retried refresh gets the same tokens, told what remains
    of their lives), else None. On a real clock the answers of one exchange are a second apart
    whenever they straddle one."""
    same = [pb.TokenResponse(), pb.TokenResponse()]
    for copy, original in zip(same, (answer, later), strict=True):
        copy.CopyFrom(original)
        copy.expires_in = copy.refresh_token_expires_in = 0
    gap = answer.expires_in - later.expires_in
    refresh_gap = answer.refresh_token_expires_in - later.refresh_token_expires_in
    return gap if same[0] == same[1] and refresh_gap == gap else None


def error_reason(error: grpc.aio.AioRpcError) -> str:
    """The google.rpc.ErrorInfo reason carried in the status details."""
    reason: str = error_info(error).reason
    return reason


def error_field(error: grpc.aio.AioRpcError) -> str:
    """The request field the google.rpc.ErrorInfo detail names ("" when none)."""
    field: str = error_info(error).metadata.get("field", "")
    return field


def error_info(error: grpc.aio.AioRpcError) -> Any:
    """The google.rpc.ErrorInfo detail of a failed call (Any: googleapis-common-protos and
    grpcio-status ship no py.typed, so mypy does not read their stubs)."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    status = rpc_status.from_call(error)
    assert status is not None, "no rich status details"
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    raise AssertionError("no ErrorInfo in the status details")
