"""What the reliability tests share: their sizes (bounded in `make test`, full in `make soak`),
the ledger every test writes to (secrets it saw, log files of the servers it started, error
messages it received, the numbers it measured), a real `tokenservice serve` subprocess, and
in-process provisioning of a tenant on the database that subprocess will use.

The servers are real processes (`tokenservice serve`, gRPC and the HTTP bridge), started with
the helpers of tests/integration/test_shutdown.py, so a SIGKILL or a SIGTERM is the real thing and
every log line they write lands in a file the final leak test reads.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import secrets
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import httpx
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from server import admin
from server.records import ClientKind
from server.scopes import ADMIN_SCOPE, PLATFORM_ADMIN_SCOPE
from server.settings import Settings
from server.startup import open_core
from server.store.listener import APPLICATION_NAME
from tests.support.databases import sqlite_url
from tests.support.defaults import TEST_SECRET
from tests.support.http_clients import async_http_client
from tests.support.processes import (
    free_port,
    service_env,
    start_serve,
    stop_process,
    text_of,
    wait_until_serving,
)
from tokenservice.v1 import token_service_pb2 as pb
from tokenservice.v1 import token_service_pb2_grpc as pb_grpc

# --- sizes --------------------------------------------------------------------------------------

SOAK = os.environ.get("TOKENSERVICE_SOAK") == "1"


def size(bounded: int, soak: int) -> int:
    """`soak` under `make soak` (TOKENSERVICE_SOAK=1), `bounded` otherwise."""
    return soak if SOAK else bounded


# A soak test may run for many minutes; a bounded one must not.
TIMEOUT = size(150, 3600)


# --- the ledger ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Ledger:
    """Collected over the whole reliability run; read by the final leak test and printed in the
    terminal summary."""

    secrets: set[str] = dataclasses.field(default_factory=set)
    log_dirs: list[Path] = dataclasses.field(default_factory=list)
    # (where it came from, the text): error messages and bodies, /metrics snapshots
    texts: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    metrics_snapshots: int = 0
    metrics_missing: int = 0
    numbers: list[tuple[str, dict[str, Any]]] = dataclasses.field(default_factory=list)

    def secret(self, *values: str) -> None:
        for value in values:
            if value:
                self.secrets.add(value)

    def record(self, name: str, **numbers: Any) -> None:
        """Numbers of one test, printed at the end of the run (and written to
        TOKENSERVICE_RELIABILITY_REPORT, when set, as JSON)."""
        self.numbers.append((name, numbers))
        print(f"\n[reliability] {name}: {json.dumps(numbers)}")

    def error_text(self, where: str, message: str) -> None:
        if message:
            self.texts.append((where, message))


LEDGER = Ledger()


def grpc_code(error: grpc.RpcError, *, with_cause: bool = False) -> str:
    """`CODE/reason` of a failed call (the ErrorInfo reason, if any), and `/cause` after it
    `with_cause` when ErrorInfo names one; records its message."""
    code = error.code()
    LEDGER.error_text(f"gRPC {code.name}", error.details() or "")
    reason = cause = ""
    try:
        status = rpc_status.from_call(error)
    except ValueError:
        status = None
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason, cause = info.reason, info.metadata.get("cause", "")
    if with_cause and cause:
        reason = f"{reason}/{cause}"
    return f"{code.name}/{reason}" if reason else code.name


def http_outcome(response: httpx.Response) -> str:
    """`HTTP status/error` of a response (the body's `error` or `type`); records error bodies."""
    if response.status_code < 400:
        return f"HTTP {response.status_code}"
    LEDGER.error_text(f"HTTP {response.status_code}", response.text)
    try:
        body = response.json()
    except ValueError:
        body = None
    error = (body.get("error") or body.get("type") or "") if isinstance(body, dict) else ""
    return f"HTTP {response.status_code}/{error}"


# --- provisioning -------------------------------------------------------------------------------


@dataclasses.dataclass
class Provisioned:
    tenant: str
    storefront_id: str
    service_id: str
    service_secret: str
    admin_id: str  # a service client with tokenservice.admin on this tenant
    admin_secret: str
    platform_id: str  # a service client with tokenservice.platform_admin
    platform_secret: str
    email: str
    password: str
    legal_entities: tuple[str, ...]


async def provision(env: dict[str, str], tenant: str) -> Provisioned:
    """A tenant with a storefront client, a service client, two admin clients and a customer,
    written straight into the database `env` names (what the CLI does, without a process per
    command). Every secret goes into the ledger."""
    settings = Settings.from_env(env)
    core = await open_core(settings)
    store = core.store
    try:
        await admin.create_tenant(core, tenant)
        storefront, _ = await admin.create_client(core, tenant, ClientKind.STOREFRONT, ())
        service, service_secret = await admin.create_client(
            core, tenant, ClientKind.SERVICE, ("catalog.read", "catalog.write")
        )
        admin_client, admin_secret = await admin.create_client(
            core, tenant, ClientKind.SERVICE, (ADMIN_SCOPE,)
        )
        platform, platform_secret = await admin.create_client(
            core, tenant, ClientKind.SERVICE, (PLATFORM_ADMIN_SCOPE,)
        )
        email, password = f"ann@{tenant}.example", secrets.token_urlsafe(18)
        await admin.create_customer(
            core, tenant, email, password, ("customer.read",), ("le-1", "le-2")
        )
    finally:
        await store.close()
    assert service_secret and admin_secret and platform_secret
    LEDGER.secret(service_secret, admin_secret, platform_secret, password)
    return Provisioned(
        tenant=tenant,
        storefront_id=storefront.client_id,
        service_id=service.client_id,
        service_secret=service_secret,
        admin_id=admin_client.client_id,
        admin_secret=admin_secret,
        platform_id=platform.client_id,
        platform_secret=platform_secret,
        email=email,
        password=password,
        legal_entities=("le-1", "le-2"),
    )


async def sign_in(
    stub: pb_grpc.TokenServiceStub, shop: Provisioned, kind: str, *, deadline: float
) -> pb.TokenResponse:
    """A new session's tokens: anonymous, or (`kind` "customer") the customer's login continuing
    an anonymous session; `deadline` is each call's timeout. Every token goes into the
    ledger."""
    answer = await stub.IssueToken(
        pb.IssueTokenRequest(
            anonymous=pb.AnonymousGrant(tenant=shop.tenant, client_id=shop.storefront_id)
        ),
        timeout=deadline,
    )
    LEDGER.secret(answer.access_token, answer.refresh_token)
    if kind == "customer":
        answer = await stub.IssueToken(
            pb.IssueTokenRequest(
                customer_password=pb.CustomerPasswordGrant(
                    tenant=shop.tenant,
                    email=shop.email,
                    password=shop.password,
                    anonymous_token=answer.access_token,
                )
            ),
            timeout=deadline,
        )
        LEDGER.secret(answer.access_token, answer.refresh_token, answer.saas_token)
    return answer


# --- the server process -------------------------------------------------------------------------


def database_env(
    database_kind: str, database_url: str, tmp_path: Path
) -> tuple[dict[str, str], str]:
    """The `reliability_env` of a test run on both databases (the `database_kind` and
    `database_url` fixtures), and its database's URL: a SQLite file in `tmp_path`, or the fresh
    PostgreSQL database."""
    db_path = tmp_path / "tokens.db"
    if database_kind == "sqlite":
        return reliability_env(db_path), sqlite_url(db_path)
    return reliability_env(db_path, database_url), database_url


def reliability_env(db_path: Path, database_url: str = "", **settings: str) -> dict[str, str]:
    """The environment of a `tokenservice serve` on free gRPC and HTTP ports: on the SQLite file
    `db_path`, or on `database_url` (PostgreSQL, with the test secret key). No janitor, so that
    nothing but the calls under test writes."""
    grpc_port, http_port = free_port(), free_port()
    while http_port == grpc_port:
        http_port = free_port()
    extra: dict[str, str] = {
        "TOKENSERVICE_HTTP_ADDR": f"127.0.0.1:{http_port}",
        "TOKENSERVICE_JANITOR_INTERVAL_SECONDS": "0",
        # No balancer to warn: stop at once (the shutdown test sets its own delay).
        "TOKENSERVICE_SHUTDOWN_DELAY_SECONDS": "0",
    }
    if database_url:
        extra.update(
            TOKENSERVICE_DATABASE_URL=database_url, TOKENSERVICE_SECRET_KEY=TEST_SECRET.decode()
        )
    extra.update(settings)
    return service_env(db_path, grpc_port, **extra)


class Service:
    """One `tokenservice serve` process at a time over `env` (restartable); its stdout and
    stderr (appended across restarts) are in `logs`, which the ledger remembers."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        logs.mkdir(parents=True, exist_ok=True)
        LEDGER.log_dirs.append(logs)
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0

    @property
    def grpc_target(self) -> str:
        return self.env["TOKENSERVICE_GRPC_ADDR"]

    @property
    def http_base(self) -> str:
        return f"http://{self.env['TOKENSERVICE_HTTP_ADDR']}"

    @property
    def stderr(self) -> str:
        return text_of(self.logs / "stderr.txt")

    async def start(self) -> None:
        assert self.process is None or self.process.returncode is not None
        self.process = await start_serve(self.env, self.logs)
        self.starts += 1
        await wait_until_serving(self.grpc_target, self.process, self.logs / "stderr.txt")
        deadline = time.monotonic() + 30
        async with async_http_client(base_url=self.http_base, timeout=5) as http:
            while True:
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, f"/readyz never 200:\n{self.stderr[-4000:]}"
                await asyncio.sleep(0.05)

    async def kill(self) -> None:
        """SIGKILL: no drain, no cleanup, exactly what a crash or an OOM kill does."""
        assert self.process is not None and self.process.returncode is None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def terminate(self, within: float) -> tuple[int, float]:
        """SIGTERM, then (exit code, seconds until it exited), failing after `within` s."""
        assert self.process is not None and self.process.returncode is None
        self.process.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        code = await asyncio.wait_for(self.process.wait(), timeout=within)
        return code, time.monotonic() - sent

    async def stop(self) -> None:
        """Snapshots /metrics for the leak check, then SIGTERM; exit 0 and no traceback."""
        if self.process is None or self.process.returncode is not None:
            return
        await self.snapshot_metrics()
        code, _ = await self.terminate(within=30)
        assert code == 0, f"exit {code}:\n{self.stderr[-4000:]}"

    async def close(self) -> None:
        """Whatever happened: the process is gone afterwards."""
        if self.process is not None:
            await stop_process(self.process)

    async def snapshot_metrics(self) -> None:
        try:
            async with async_http_client(base_url=self.http_base, timeout=10) as http:
                response = await http.get("/metrics")
        except httpx.TransportError:
            return
        if response.status_code == 200:
            LEDGER.metrics_snapshots += 1
            LEDGER.texts.append((f"/metrics of {self.logs.name}", response.text))
        else:
            LEDGER.metrics_missing += 1


# --- reading the database as another process sees it --------------------------------------------


class Database:
    """Read-only queries on the service's database, on a pool of this test's own."""

    def __init__(self, url: str) -> None:
        self.engine: AsyncEngine = create_async_engine(url, poolclass=NullPool)

    async def rows(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        async with self.engine.connect() as conn:
            return [tuple(row) for row in (await conn.execute(text(sql), params)).all()]

    async def scalar(self, sql: str, **params: Any) -> Any:
        return (await self.rows(sql, **params))[0][0]

    async def session_revoked(self, session_id: str) -> bool:
        revoked_at = await self.scalar(
            "SELECT revoked_at FROM sessions WHERE session_id = :sid", sid=session_id
        )
        return revoked_at is not None

    async def close(self) -> None:
        await self.engine.dispose()


async def listening_pids(connection: asyncpg.Connection) -> set[int]:
    """The server pids of the revocation listeners of `connection`'s database: named as the
    listener names them, and past their LISTEN (the last statement a connection ran is in
    `query`; before LISTEN there is none, after it the heartbeats). Only this database's: the
    suite runs several PostgreSQL tests at once, each on a database of its own, and their
    replicas' listeners are in pg_stat_activity too."""
    rows = await connection.fetch(
        "SELECT pid, query FROM pg_stat_activity"
        " WHERE datname = current_database() AND application_name = $1",
        APPLICATION_NAME,
    )
    return {row["pid"] for row in rows if row["query"].startswith(("LISTEN", "SELECT pg_notify"))}


def tally(values: Any) -> dict[str, int]:
    return dict(Counter(values).most_common())


TOKEN_LIKE = re.compile(r"[A-Za-z0-9_\-]{16,}")
