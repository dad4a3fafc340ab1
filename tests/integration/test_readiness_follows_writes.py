"""Readiness follows writes: while the store cannot write (a full disk, a database turned
read-only), calls that write answer UNAVAILABLE / 503 and readiness says so too (gRPC health
for "tokenservice.v1.TokenService" NOT_SERVING, /readyz 503), so a balancer stops sending;
liveness ("" and /healthz) stays up, so nothing restarts the process. When writes can succeed
again, readiness and writes come back by themselves, and nothing stored before is lost.

(a) SQLite on a real full filesystem: a 4 MiB tmpfs (needs root; skipped with a notice where
mounting is not permitted), filled by a filler file, under the real `tokenservice serve`.
(b) PostgreSQL made read-only (`default_transaction_read_only`, and the service's connections
ended so that the new ones get it): the SQLSTATE a failover to a standby gives (25006).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import asyncpg
import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy.engine import make_url

from http_bridge.app import build_app
from http_bridge.server import RunningHttp, start_http
from launcher.in_process import InProcessBackend
from server.store.cached import CachedStore
from tests.support.harness import Harness, error_reason
from tests.support.http_clients import async_http_client
from tests.support.postgres import SERVER_URL, asyncpg_dsn
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

SERVICE = "tokenservice.v1.TokenService"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
RECOVERY_SECONDS = 20.0  # an upper bound for a failing test, not a measured time
CALL_TIMEOUT = 10.0


# --- probes -------------------------------------------------------------------------------------


class Probes:
    """Readiness and liveness over both transports, and one write over each."""

    def __init__(self, channel: grpc.aio.Channel, http: httpx.AsyncClient) -> None:
        self.health = health_pb2_grpc.HealthStub(channel)
        self.stub = pb_grpc.TokenServiceStub(channel)
        self.http = http

    async def grpc_health(self, service: str) -> int:
        request = health_pb2.HealthCheckRequest(service=service)
        answer = await self.health.Check(request, timeout=CALL_TIMEOUT)
        return int(answer.status)

    async def readyz(self) -> int:
        return (await self.http.get("/readyz")).status_code

    async def healthz(self) -> int:
        return (await self.http.get("/healthz")).status_code

    async def state(self) -> dict[str, int]:
        return {
            "ready (gRPC)": await self.grpc_health(SERVICE),
            "ready (HTTP)": await self.readyz(),
            "live (gRPC)": await self.grpc_health(""),
            "live (HTTP)": await self.healthz(),
        }

    async def anonymous_grpc(self, tenant: str, client_id: str) -> pb.TokenResponse:
        request = pb.IssueTokenRequest(
            anonymous=pb.AnonymousGrant(tenant=tenant, client_id=client_id)
        )
        return await self.stub.IssueToken(request, timeout=CALL_TIMEOUT)

    async def anonymous_http(self, tenant: str, client_id: str) -> httpx.Response:
        return await self.http.get(
            "/customerlogin/auth/anonymous/login",
            params={"tenant": tenant, "client_id": client_id},
        )

    async def active(self, token: str) -> bool:
        request = pb.IntrospectTokenRequest(token=token)
        active: bool = (await self.stub.IntrospectToken(request, timeout=CALL_TIMEOUT)).active
        return active

    async def until_ready(self) -> None:
        deadline = time.monotonic() + RECOVERY_SECONDS
        while (state := await self.state()) != HEALTHY:
            assert time.monotonic() < deadline, f"not ready again: {state}"
            await asyncio.sleep(0.1)


HEALTHY = {"ready (gRPC)": SERVING, "ready (HTTP)": 200, "live (gRPC)": SERVING, "live (HTTP)": 200}
WRITES_FAIL = {
    "ready (gRPC)": NOT_SERVING,
    "ready (HTTP)": 503,
    "live (gRPC)": SERVING,
    "live (HTTP)": 200,
}


async def writes_are_refused(probes: Probes, tenant: str, client_id: str) -> None:
    """A write over each transport: told to retry later, never anything else."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await probes.anonymous_grpc(tenant, client_id)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, caught.value
    assert error_reason(caught.value) == "temporarily_unavailable"
    response = await probes.anonymous_http(tenant, client_id)
    assert response.status_code == 503, response.text
    assert "temporarily_unavailable" in response.text


# --- (a) SQLite on a full filesystem -----------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted for this test, unmounted after it."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except FileNotFoundError:
        pytest.skip("SKIPPED: no `mount` command here to make a small filesystem to fill")
    if mounted.returncode != 0:
        pytest.skip(
            "SKIPPED: cannot mount a tmpfs to fill (needs root / CAP_SYS_ADMIN): "
            + mounted.stderr.strip()
        )
    try:
        yield mount_point
    finally:
        done = subprocess.run(["umount", str(mount_point)], capture_output=True, timeout=30)
        if done.returncode != 0:  # still busy: detach it, the kernel frees it when unused
            subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, timeout=30)


def fill(directory: Path) -> Path:
    """A file that takes every free byte of the filesystem under `directory`."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (1 << 16, 1 << 12, 1):
            while True:
                try:
                    os.write(fd, b"\0" * chunk)
                except OSError as error:
                    if error.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return filler


async def test_a_full_disk_turns_readiness_off_and_back_on(
    small_disk: Path, tmp_path: Path
) -> None:
    db = small_disk / "t.db"
    grpc_port, http_port = free_port(), free_port()
    env = service_env(
        db,
        grpc_port,
        TOKENSERVICE_HTTP_ADDR=f"127.0.0.1:{http_port}",
        TOKENSERVICE_PROVISION_DEMO="true",
        TOKENSERVICE_JANITOR_INTERVAL_SECONDS="0",
    )
    process = await start_serve(env, tmp_path)
    try:
        await wait_until_serving(f"127.0.0.1:{grpc_port}", process, tmp_path / "stderr.txt")
        demo = json.loads(db.with_name(db.name + ".demo.json").read_text())
        tenant, client_id = demo["tenant"], demo["storefront_client_id"]
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel,
            async_http_client(base_url=f"http://127.0.0.1:{http_port}", timeout=30) as http,
        ):
            probes = Probes(channel, http)
            before = [await probes.anonymous_grpc(tenant, client_id) for _ in range(3)]
            assert await probes.state() == HEALTHY

            filler = fill(small_disk)
            await writes_are_refused(probes, tenant, client_id)
            assert await probes.state() == WRITES_FAIL
            await writes_are_refused(probes, tenant, client_id)  # and it stays so
            assert await probes.state() == WRITES_FAIL
            for issued in before:  # reads go on meanwhile
                assert await probes.active(issued.access_token)

            filler.unlink()
            await probes.until_ready()
            after = await probes.anonymous_grpc(tenant, client_id)
            assert (await probes.anonymous_http(tenant, client_id)).status_code == 200
            for issued in (*before, after):
                assert await probes.active(issued.access_token)
                assert await probes.active(issued.refresh_token)
    finally:
        await stop_process(process)
    stderr = text_of(tmp_path / "stderr.txt")
    assert "database or disk is full" in stderr  # the cause, in the log
    assert "Traceback" not in stderr, stderr


# --- (b) PostgreSQL turned read-only -----------------------------------------------------------


@pytest.fixture
async def http_bridge(harness: Harness) -> AsyncIterator[httpx.AsyncClient]:
    """The HTTP bridge in front of the harness, in-process as `tokenservice serve` runs it."""
    app = build_app(InProcessBackend(harness.core), harness.core.settings)
    running: RunningHttp = await start_http(app, "127.0.0.1:0", grace_seconds=1)
    try:
        async with async_http_client(
            base_url=f"http://127.0.0.1:{running.port}", timeout=30
        ) as client:
            yield client
    finally:
        await running.stop()


@contextlib.asynccontextmanager
async def read_only(database_url: str) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """Makes the database read-only for new sessions and ends its current ones (so the service
    reconnects into read-only sessions); yields a function that reverts this, which also runs
    on the way out."""
    name = make_url(database_url).database
    admin = await asyncpg.connect(asyncpg_dsn(SERVER_URL), timeout=10)

    async def apply(on: bool) -> None:
        await admin.execute(
            f'ALTER DATABASE "{name}" SET default_transaction_read_only = {"on" if on else "off"}'
        )
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )

    async def revert() -> None:
        await apply(False)

    try:
        await apply(True)
        yield revert
    finally:
        with contextlib.suppress(Exception):
            await revert()
        await admin.close()


@pytest.mark.postgres
@pytest.mark.parametrize("database_kind", ["postgres"])
async def test_a_read_only_postgres_turns_readiness_off_and_back_on(
    harness: Harness, http_bridge: httpx.AsyncClient
) -> None:
    shop = await harness.shop("acme")
    probes = Probes(harness.channel, http_bridge)
    before = [await probes.anonymous_grpc(shop.tenant, shop.storefront_id) for _ in range(3)]
    service = await harness.service(shop)
    assert await probes.state() == HEALTHY

    async with read_only(harness.database_url) as revert:
        await writes_are_refused(probes, shop.tenant, shop.storefront_id)
        assert await probes.state() == WRITES_FAIL
        await writes_are_refused(probes, shop.tenant, shop.storefront_id)
        assert await probes.state() == WRITES_FAIL
        assert isinstance(harness.core.store, CachedStore)  # open_core() caches token reads
        harness.core.store.tokens.clear()  # reads reach the database
        for issued in before:  # reads go on meanwhile
            assert await probes.active(issued.access_token)

        await revert()
        await probes.until_ready()
        after = await probes.anonymous_grpc(shop.tenant, shop.storefront_id)
        assert (await probes.anonymous_http(shop.tenant, shop.storefront_id)).status_code == 200
        assert await probes.active(after.access_token)
    for issued in before:
        assert await probes.active(issued.access_token)
        assert await probes.active(issued.refresh_token)
    assert await probes.active(service.access_token)
