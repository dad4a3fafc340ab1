"""Issue 12's load test: hostile clients beside ordinary ones, against a real `tokenservice serve`
with its default limits.

While a slowloris holds SLOW_SOCKETS HTTP connections (each sending one header byte every half
second, reconnecting when cut off: tests/support/slowloris.py) and another process keeps
asking for HUNG_STREAMS header-only gRPC streams over STREAM_CONNECTIONS connections, never
sending a message (tests/reliability/hung_streams.py), ORDINARY_CLIENTS ordinary clients keep
issuing and introspecting tokens over both protocols. It proves that:

- every ordinary call succeeds, and their p99 latency stays under P99_LIMIT_SECONDS;
- the server's resident memory grows by less than GROWTH_LIMIT_MIB during the attack, and
  comes back to within SETTLED_LIMIT_MIB of where it started once the attackers are gone;
- its log (stdout and stderr, access log included) stays under LOG_LIMIT_BYTES.

Both attackers run as processes of their own, so that their sockets do not slow the test's
ordinary clients; the attack lasts ATTACK_TICKS of the slowloris's half-second ticks, after
every attacking socket has connected once. Bounded in `make test`; full size (1,000 sockets,
20,000 streams, 30 s) in `make soak`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import statistics
import time
from collections.abc import Awaitable
from pathlib import Path

import grpc
import httpx
import pytest

from tests.reliability.support import (
    LEDGER,
    TIMEOUT,
    Provisioned,
    Service,
    provision,
    reliability_env,
    size,
)
from tests.support import attack_process
from tests.support.http_clients import async_http_client
from tokenservice.v1 import token_service_pb2 as pb
from tokenservice.v1 import token_service_pb2_grpc as pb_grpc

SLOW_SOCKETS = size(300, 1_000)
HUNG_STREAMS = size(4_000, 20_000)
STREAM_CONNECTIONS = 4  # as observed: 20,000 streams over 4 connections
ORDINARY_CLIENTS = 8
ATTACK_TICKS = size(10, 60)  # half seconds, once every attacking socket has connected
PAUSE_SECONDS = 0.2  # an ordinary client's pause between rounds: a busy back end's pace
WARM_UP_ROUNDS = 20  # per client, before the baseline is taken
P99_LIMIT_SECONDS = 1.0
GROWTH_LIMIT_MIB = 100
SETTLED_LIMIT_MIB = 20
LOG_LIMIT_BYTES = 1_000_000

pytestmark = pytest.mark.timeout(TIMEOUT)


def resident_mib(pid: int) -> float:
    """VmRSS of `pid`, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


@dataclasses.dataclass
class Ordinary:
    """One ordinary client: an anonymous token and its introspection over gRPC, then an
    anonymous login and an RFC 7662 introspection over HTTP, round after round."""

    stub: pb_grpc.TokenServiceStub
    http: httpx.AsyncClient
    shop: Provisioned
    latencies: list[float] = dataclasses.field(default_factory=list)
    failures: list[str] = dataclasses.field(default_factory=list)

    async def timed(self, what: str, call: Awaitable[object]) -> object:
        started = time.monotonic()
        try:
            result = await call
        except (grpc.aio.AioRpcError, httpx.HTTPError) as error:
            self.failures.append(f"{what}: {type(error).__name__} {error}"[:300])
            return None
        self.latencies.append(time.monotonic() - started)
        return result

    async def round(self) -> None:
        shop = self.shop
        grant = pb.AnonymousGrant(tenant=shop.tenant, client_id=shop.storefront_id)
        issued = await self.timed(
            "gRPC IssueToken",
            self.stub.IssueToken(pb.IssueTokenRequest(anonymous=grant), timeout=30),
        )
        if isinstance(issued, pb.TokenResponse):
            LEDGER.secret(issued.access_token, issued.refresh_token)
            seen = await self.timed(
                "gRPC IntrospectToken",
                self.stub.IntrospectToken(
                    pb.IntrospectTokenRequest(token=issued.access_token), timeout=30
                ),
            )
            if isinstance(seen, pb.IntrospectTokenResponse) and not seen.active:
                self.failures.append("gRPC IntrospectToken: a fresh token is not active")
        login = await self.timed(
            "HTTP anonymous login",
            self.http.get(
                "/customerlogin/auth/anonymous/login",
                params={"tenant": shop.tenant, "client_id": shop.storefront_id},
            ),
        )
        if not isinstance(login, httpx.Response) or login.status_code != 200:
            if isinstance(login, httpx.Response):
                self.failures.append(f"HTTP anonymous login: {login.status_code}")
            return
        token = login.json()["access_token"]
        LEDGER.secret(token, login.json()["refresh_token"])
        answer = await self.timed(
            "HTTP introspect",
            self.http.post(
                "/oauth/introspect", data={"token": token, "client_id": shop.storefront_id}
            ),
        )
        if isinstance(answer, httpx.Response) and (
            answer.status_code != 200 or answer.json().get("active") is not True
        ):
            self.failures.append(f"HTTP introspect: {answer.status_code} {answer.text[:100]}")

    async def run(self, rounds: int | None, stop: asyncio.Event) -> None:
        done = 0
        while not stop.is_set() and (rounds is None or done < rounds):
            await self.round()
            done += 1
            await asyncio.sleep(PAUSE_SECONDS)


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) >= 2 else max(values, default=0)


async def test_ordinary_clients_are_served_through_a_slowloris_and_hung_streams(
    tmp_path: Path,
) -> None:
    attack_process.own_open_files(SLOW_SOCKETS + HUNG_STREAMS // 10 + 1_000)
    env = reliability_env(tmp_path / "tokens.db", TOKENSERVICE_LOG_LEVEL="INFO")
    shop = await provision(env, "hostile")
    service = Service(env, tmp_path / "logs")
    http_port = env["TOKENSERVICE_HTTP_ADDR"].rpartition(":")[2]
    grpc_port = env["TOKENSERVICE_GRPC_ADDR"].rpartition(":")[2]
    attackers: list[asyncio.subprocess.Process] = []
    samples: list[float] = []
    try:
        await service.start()
        assert service.process is not None
        pid = service.process.pid
        async with contextlib.AsyncExitStack() as stack:
            clients = []
            for _ in range(ORDINARY_CLIENTS):
                channel = await stack.enter_async_context(
                    grpc.aio.insecure_channel(service.grpc_target)
                )
                http = await stack.enter_async_context(
                    async_http_client(base_url=service.http_base, timeout=30)
                )
                clients.append(Ordinary(pb_grpc.TokenServiceStub(channel), http, shop))
            never = asyncio.Event()
            await asyncio.gather(*(c.run(WARM_UP_ROUNDS, never) for c in clients))
            warm_failures = [f for c in clients for f in c.failures]
            assert not warm_failures, warm_failures[:5]
            for client in clients:
                client.latencies.clear()
            baseline = resident_mib(pid)

            slowloris = await attack_process.start(
                "tests.support.slowloris", http_port, str(SLOW_SOCKETS)
            )
            attackers.append(slowloris)
            streams = await attack_process.start(
                "tests.reliability.hung_streams",
                grpc_port,
                str(STREAM_CONNECTIONS),
                str(HUNG_STREAMS),
            )
            attackers.append(streams)
            stop = asyncio.Event()
            ordinary = asyncio.gather(*(c.run(None, stop) for c in clients))
            # The attack: until every slow socket has connected once, then ATTACK_TICKS more
            # ticks, sampling the server's memory at each.
            while await attack_process.tick(slowloris) < SLOW_SOCKETS:
                samples.append(resident_mib(pid))
                assert not ordinary.done(), ordinary
            for _ in range(ATTACK_TICKS):
                await attack_process.tick(slowloris)
                samples.append(resident_mib(pid))
            stop.set()
            await ordinary
            slow = await attack_process.finish(slowloris)
            hung = await attack_process.finish(streams)

            # After the attack: back to (near) where it started, waited for, not slept on.
            deadline = time.monotonic() + 60
            settled = resident_mib(pid)
            while settled > baseline + SETTLED_LIMIT_MIB and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                settled = resident_mib(pid)
            after = Ordinary(clients[0].stub, clients[0].http, shop)
            await after.run(3, never)
        await service.stop()
    finally:
        for process in attackers:
            if process.returncode is None:
                process.kill()
                await process.wait()
        await service.close()

    latencies = [latency for client in clients for latency in client.latencies]
    failures = [failure for client in clients for failure in client.failures]
    log_bytes = sum(path.stat().st_size for path in service.logs.iterdir())
    peak = max(samples, default=baseline)
    LEDGER.record(
        "9 hostile clients (slowloris and hung gRPC streams)",
        slow_sockets=SLOW_SOCKETS,
        hung_streams_asked=HUNG_STREAMS,
        stream_connections=STREAM_CONNECTIONS,
        most_streams_held_by_the_server=max(hung.progress, default=0),
        ordinary_clients=ORDINARY_CLIENTS,
        ordinary_calls=len(latencies) + len(failures),
        ordinary_failures=len(failures),
        p50_ms=round(statistics.median(latencies) * 1000, 1) if latencies else None,
        p99_ms=round(p99(latencies) * 1000, 1),
        rss_baseline_mib=round(baseline, 1),
        rss_peak_mib=round(peak, 1),
        rss_settled_mib=round(settled, 1),
        log_bytes=log_bytes,
        slowloris=slow.outcomes,
        hung_streams=hung.outcomes,
    )
    assert not failures, failures[:10]
    assert not after.failures, after.failures
    assert len(latencies) >= ORDINARY_CLIENTS * 4, "the ordinary clients hardly ran"
    assert p99(latencies) < P99_LIMIT_SECONDS, f"p99 {p99(latencies):.3f} s"
    assert peak - baseline < GROWTH_LIMIT_MIB, f"{baseline:.0f} -> {peak:.0f} MiB"
    assert settled - baseline <= SETTLED_LIMIT_MIB, f"{baseline:.0f} -> {settled:.0f} MiB after"
    assert log_bytes < LOG_LIMIT_BYTES, f"{log_bytes} bytes of log"
    assert "Traceback" not in service.stderr, service.stderr[-4000:]
