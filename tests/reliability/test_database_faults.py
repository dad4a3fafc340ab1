"""Item 4, database faults: PostgreSQL (a private cluster, tests/support/pg_cluster.py) stopped and
started again, repeatedly, while clients refresh their sessions in a loop against a real
`tokenservice serve`: over gRPC (anonymous RefreshToken, then IntrospectToken of the new access
token) and over HTTP (the anonymous refresh route, and the customer refreshauthtoken route).

It proves that while the database is away callers see only UNAVAILABLE (reason
`temporarily_unavailable`) or HTTP 503, never INTERNAL, invalid_grant, 401 or 500; that no session
is revoked by mistake (a refresh answered UNAVAILABLE did not burn its token); and that after
every restart each client carries on refreshing with the newest refresh token it holds, without
logging in again (the database holds exactly the sessions the clients opened).

Outages alternate `pg_ctl stop -m fast` and `-m immediate` (a crash of PostgreSQL) and last 3 s,
inside the 10 s refresh grace window (a refresh whose commit landed but whose answer was lost is
re-presented within it). tests/integration/test_postgres_faults.py covers the other routes and
the probes through one outage; this is the looping-refresh variant. Bounded: 8 clients, one
outage; soak: 24 clients, six outages.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import asyncpg
import grpc
import httpx
import pytest

from tests.integration.test_postgres_faults import cluster  # noqa: F401 - the fixture
from tests.reliability.support import (
    LEDGER,
    TIMEOUT,
    Provisioned,
    Service,
    grpc_code,
    http_outcome,
    provision,
    reliability_env,
    sign_in,
    size,
    tally,
)
from tests.support.http_clients import async_http_client
from tests.support.pg_cluster import PrivateCluster
from tokenservice.v1 import token_service_pb2 as pb
from tokenservice.v1 import token_service_pb2_grpc as pb_grpc

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(TIMEOUT)]

CLIENTS = size(8, 24)
OUTAGES = size(1, 6)
OUTAGE_SECONDS = 3.0
REFRESHES_BETWEEN = 3  # successful refreshes every client makes before and after each outage
PHASE_DEADLINE = 30.0
CALL_TIMEOUT = 15.0
PAUSE = 0.02
RETRY_LATER = {"UNAVAILABLE/temporarily_unavailable", "HTTP 503/temporarily_unavailable"}
TRANSPORTS = ("grpc", "http anonymous", "http customer", "grpc")


@dataclasses.dataclass
class Client:
    transport: str
    session_id: str
    access_token: str
    refresh_token: str
    refreshes: int = 0


@dataclasses.dataclass
class Loop:
    stub: pb_grpc.TokenServiceStub
    http: httpx.AsyncClient
    shop: Provisioned
    outcomes: Counter[str] = dataclasses.field(default_factory=Counter)
    wrong: Counter[str] = dataclasses.field(default_factory=Counter)
    done: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    async def run(self, client: Client) -> None:
        while not self.done.is_set():
            outcome = await self.refresh(client)
            self.outcomes[outcome] += 1
            if outcome not in ("OK", *RETRY_LATER):
                self.wrong[f"{client.transport}: {outcome}"] += 1
            if client.transport == "grpc" and outcome == "OK":
                seen = await self.introspect(client)
                self.outcomes[seen] += 1
                if seen not in ("OK", *RETRY_LATER):
                    self.wrong[f"introspect: {seen}"] += 1
            await asyncio.sleep(PAUSE)

    async def refresh(self, client: Client) -> str:
        shop = self.shop
        if client.transport == "grpc":
            request = pb.RefreshTokenRequest(
                tenant=shop.tenant, client_id=shop.storefront_id, refresh_token=client.refresh_token
            )
            try:
                answer = await self.stub.RefreshToken(request, timeout=CALL_TIMEOUT)
            except grpc.aio.AioRpcError as error:
                return grpc_code(error)
            return self.took(client, answer.session_id, answer.access_token, answer.refresh_token)
        if client.transport == "http anonymous":
            response = await self.http.get(
                "/customerlogin/auth/anonymous/refresh",
                params={
                    "tenant": shop.tenant,
                    "client_id": shop.storefront_id,
                    "refresh_token": client.refresh_token,
                },
            )
            session_key = "sessionId"
        else:
            response = await self.http.get(
                f"/customer/{shop.tenant}/refreshauthtoken",
                params={"refreshToken": client.refresh_token},
                headers={"Authorization": f"Bearer {client.access_token}"},
            )
            session_key = "session_id"
        if response.status_code != 200:
            return http_outcome(response)
        body = response.json()
        return self.took(client, body[session_key], body["access_token"], body["refresh_token"])

    def took(self, client: Client, session_id: str, access: str, refresh: str) -> str:
        LEDGER.secret(access, refresh)
        if session_id != client.session_id:
            return "wrong answer: another session"
        client.access_token, client.refresh_token = access, refresh
        client.refreshes += 1
        return "OK"

    async def introspect(self, client: Client) -> str:
        request = pb.IntrospectTokenRequest(token=client.access_token, tenant=self.shop.tenant)
        try:
            answer = await self.stub.IntrospectToken(request, timeout=CALL_TIMEOUT)
        except grpc.aio.AioRpcError as error:
            return grpc_code(error)
        return "OK" if answer.active else "wrong answer: inactive"


async def _login(stub: pb_grpc.TokenServiceStub, shop: Provisioned, transport: str) -> Client:
    kind = "customer" if transport == "http customer" else "anonymous"
    answer = await sign_in(stub, shop, kind, deadline=CALL_TIMEOUT)
    return Client(transport, answer.session_id, answer.access_token, answer.refresh_token)


async def _until(what: str, check: Callable[[], bool], loop: Loop, clients: list[Client]) -> None:
    deadline = time.monotonic() + PHASE_DEADLINE
    while not check():
        assert time.monotonic() < deadline, (
            f"not within {PHASE_DEADLINE}s: {what}; refreshes per client "
            f"{[(c.transport, c.refreshes) for c in clients]}; outcomes {dict(loop.outcomes)}; "
            f"wrong {dict(loop.wrong)}"
        )
        await asyncio.sleep(0.05)


async def test_postgres_outages_only_delay_looping_refreshes(
    cluster: PrivateCluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    env = reliability_env(
        tmp_path / "unused.db",
        cluster.url,
        TOKENSERVICE_DB_CONNECT_TIMEOUT_SECONDS="2",
        TOKENSERVICE_DB_POOL_TIMEOUT_SECONDS="2",
        TOKENSERVICE_DB_STATEMENT_TIMEOUT_SECONDS="5",
    )
    shop = await provision(env, "outage")
    service = Service(env, tmp_path / "logs")
    started = time.monotonic()
    try:
        await service.start()
        async with (
            grpc.aio.insecure_channel(service.grpc_target) as channel,
            async_http_client(base_url=service.http_base, timeout=CALL_TIMEOUT) as http,
        ):
            stub = pb_grpc.TokenServiceStub(channel)
            clients = [
                await _login(stub, shop, TRANSPORTS[n % len(TRANSPORTS)]) for n in range(CLIENTS)
            ]
            loop = Loop(stub, http, shop)
            tasks = [asyncio.create_task(loop.run(client)) for client in clients]
            try:
                for outage in range(OUTAGES):
                    floor = [c.refreshes + REFRESHES_BETWEEN for c in clients]

                    def refreshed_past(f: list[int] = floor) -> bool:
                        return all(c.refreshes >= n for c, n in zip(clients, f, strict=True))

                    await _until(
                        f"every client refreshed before outage {outage}",
                        refreshed_past,
                        loop,
                        clients,
                    )
                    mode = "fast" if outage % 2 == 0 else "immediate"
                    await asyncio.to_thread(cluster.stop, mode)
                    await asyncio.sleep(OUTAGE_SECONDS)
                    await asyncio.to_thread(cluster.start)
                floor = [c.refreshes + REFRESHES_BETWEEN for c in clients]
                await _until(
                    "every client refreshed, with the token it held, after the last restart",
                    lambda: all(c.refreshes >= n for c, n in zip(clients, floor, strict=True)),
                    loop,
                    clients,
                )
            finally:
                loop.done.set()
                await asyncio.gather(*tasks)
        sessions = await _sessions(cluster)
        await service.stop()
    finally:
        await service.close()

    retried = sum(n for outcome, n in loop.outcomes.items() if outcome in RETRY_LATER)
    LEDGER.record(
        "4 database faults (PostgreSQL stop/start)",
        clients=CLIENTS,
        outages=OUTAGES,
        faults_injected=OUTAGES,
        requests_sent=sum(loop.outcomes.values()),
        outcomes=tally(loop.outcomes.elements()),
        refreshes=sum(c.refreshes for c in clients),
        sessions_revoked=sum(revoked is not None for revoked in sessions.values()),
        seconds=round(time.monotonic() - started, 1),
    )
    assert not loop.wrong, f"failures other than UNAVAILABLE/503: {dict(loop.wrong)}"
    assert retried > 0, "no call saw the outage: inconclusive"
    # No new login, no session revoked: the clients' own sessions, all live.
    assert set(sessions) == {c.session_id for c in clients}, "sessions other than the clients'"
    assert all(revoked is None for revoked in sessions.values()), sessions
    assert "Traceback" not in service.stderr, service.stderr[-4000:]


async def _sessions(database: PrivateCluster) -> dict[str, int | None]:
    connection = await asyncpg.connect(database.dsn, timeout=10)
    try:
        rows = await connection.fetch("SELECT session_id, revoked_at FROM sessions")
    finally:
        await connection.close()
    return {row["session_id"]: row["revoked_at"] for row in rows}
