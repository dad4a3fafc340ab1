"""Item 2, graceful shutdown under load: SIGTERM to a real `tokenservice serve` while gRPC and
HTTP clients keep it busy (anonymous logins, introspections and refreshes over gRPC; logins and
validateauthtoken over HTTP), with grpc.health.v1 and /readyz polled every 20 ms beside them.

It proves that:

- health turns NOT_SERVING at once (both the overall status and the TokenService's), and /readyz
  503, and neither says ready again: no answer to a check sent after the signal says SERVING;
- no accepted call fails: every call started before the shutdown delay ended succeeded (during
  the delay the server keeps answering, so clients whose balancer has not noticed lose nothing);
  after the delay new calls are refused with UNAVAILABLE (HTTP: 503 or a refused connection)
  and nothing else, never INTERNAL, UNKNOWN or CANCELLED;
- the process exits 0 within delay + grace, with no traceback;
- nothing answered is lost: after a restart every access token answered during the run, and
  every client's newest refresh token, is active.

Bounded: one SIGTERM; soak: five, each on a restarted server over the same SQLite file.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import Counter
from collections.abc import Awaitable
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.reliability.support import (
    LEDGER,
    TIMEOUT,
    Provisioned,
    Service,
    grpc_code,
    http_outcome,
    provision,
    reliability_env,
    size,
    tally,
)
from tests.support.http_clients import async_http_client
from tokenservice.v1 import token_service_pb2 as pb
from tokenservice.v1 import token_service_pb2_grpc as pb_grpc

CYCLES = size(1, 5)
DELAY_SECONDS = 1.0
GRACE_SECONDS = 5.0
GRPC_WORKERS = 40
HTTP_WORKERS = 10
WARM_UP_SUCCESSES = 300
POLL_SECONDS = 0.02
# What "at once" allows: the signal reaches the event loop between two requests it is serving.
AT_ONCE_SECONDS = 0.5
# A call sent this close to the end of the delay may reach a server that no longer takes calls.
EDGE_SECONDS = 0.1
# Exiting takes the drain plus the interpreter's own exit.
EXIT_MARGIN_SECONDS = 1.0
CALL_TIMEOUT = DELAY_SECONDS + GRACE_SECONDS + 10
HEALTH_SERVICES = ("", "tokenservice.v1.TokenService")
# How a server that no longer takes calls refuses one (the call never ran): the service itself
# while it drains (UNAVAILABLE, reason temporarily_unavailable, cause shutting_down), grpc
# core once it has stopped, the bridge with a 503, or a closed port.
REFUSED = frozenset(
    {
        "UNAVAILABLE/temporarily_unavailable/shutting_down",
        "UNAVAILABLE",
        "HTTP 503/temporarily_unavailable",
        "ConnectError",
    }
)
# How calls the server had received but not started are dropped when it stops: grpc core
# cancels the calls it had not handed to the service yet (grpc/grpc#41785; the service refuses
# new calls itself while it drains, so only those arriving at the very stop); uvicorn closes
# keep-alive connections whose next request it has not begun to read (a client retries those).
DROPPED_AT_STOP = frozenset({"CANCELLED", "ReadError", "RemoteProtocolError"})

pytestmark = pytest.mark.timeout(TIMEOUT)


@dataclasses.dataclass
class Call:
    kind: str
    started: float
    ended: float
    outcome: str  # "OK", a gRPC code, "HTTP 200", ...
    presented: str = ""  # a refresh call's refresh token


@dataclasses.dataclass
class Burst:
    stub: pb_grpc.TokenServiceStub
    http: httpx.AsyncClient
    shop: Provisioned
    calls: list[Call] = dataclasses.field(default_factory=list)
    probes: list[Call] = dataclasses.field(default_factory=list)
    access_tokens: list[str] = dataclasses.field(default_factory=list)
    newest_refresh: dict[int, str] = dataclasses.field(default_factory=dict)
    unchanged: list[str] = dataclasses.field(default_factory=list)  # of failed refreshes
    in_flight: int = 0
    done: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    @property
    def successes(self) -> int:
        return sum(c.outcome in ("OK", "HTTP 200") for c in self.calls)

    async def _call(self, kind: str, call: Awaitable[object], presented: str = "") -> object:
        """Runs one call, recording it; the answer, or None when it failed."""
        started = time.monotonic()
        self.in_flight += 1
        try:
            answer = await call
        except grpc.aio.AioRpcError as error:
            failed = Call(
                kind, started, time.monotonic(), grpc_code(error, with_cause=True), presented
            )
            self.calls.append(failed)
            return None
        except httpx.TransportError as error:
            self.calls.append(Call(kind, started, time.monotonic(), type(error).__name__))
            return None
        finally:
            self.in_flight -= 1
        outcome = http_outcome(answer) if isinstance(answer, httpx.Response) else "OK"
        self.calls.append(Call(kind, started, time.monotonic(), outcome))
        return answer if outcome in ("OK", "HTTP 200") else None

    async def grpc_worker(self, number: int) -> None:
        shop = self.shop
        login = pb.IssueTokenRequest(
            anonymous=pb.AnonymousGrant(tenant=shop.tenant, client_id=shop.storefront_id)
        )
        while not self.done.is_set():
            issued = await self._call("issue", self.stub.IssueToken(login, timeout=CALL_TIMEOUT))
            if not isinstance(issued, pb.TokenResponse):
                await asyncio.sleep(POLL_SECONDS)
                continue
            self._keep(number, issued)
            introspect = pb.IntrospectTokenRequest(token=issued.access_token)
            seen = await self._call(
                "introspect", self.stub.IntrospectToken(introspect, timeout=CALL_TIMEOUT)
            )
            if isinstance(seen, pb.IntrospectTokenResponse) and not seen.active:
                self.calls.append(Call("introspect", 0, 0, "wrong answer: inactive"))
            refresh = pb.RefreshTokenRequest(
                tenant=shop.tenant, client_id=shop.storefront_id, refresh_token=issued.refresh_token
            )
            refreshed = await self._call(
                "refresh",
                self.stub.RefreshToken(refresh, timeout=CALL_TIMEOUT),
                presented=issued.refresh_token,
            )
            if isinstance(refreshed, pb.TokenResponse):
                self._keep(number, refreshed)

    def _keep(self, number: int, answer: pb.TokenResponse) -> None:
        LEDGER.secret(answer.access_token, answer.refresh_token)
        self.access_tokens.append(answer.access_token)
        self.newest_refresh[number] = answer.refresh_token

    async def http_worker(self) -> None:
        shop = self.shop
        params = {"tenant": shop.tenant, "client_id": shop.storefront_id}
        while not self.done.is_set():
            login = await self._call(
                "http login", self.http.get("/customerlogin/auth/anonymous/login", params=params)
            )
            if not isinstance(login, httpx.Response):
                await asyncio.sleep(POLL_SECONDS)
                continue
            body = login.json()
            LEDGER.secret(body["access_token"], body["refresh_token"])
            self.access_tokens.append(body["access_token"])
            await self._call(
                "http validate",
                self.http.get(
                    f"/customer/{shop.tenant}/validateauthtoken",
                    headers={"Authorization": f"Bearer {body['access_token']}"},
                ),
            )

    async def health_probe(self, health: health_pb2_grpc.HealthStub) -> None:
        while not self.done.is_set():
            for service in HEALTH_SERVICES:
                started = time.monotonic()
                try:
                    answer = await health.Check(
                        health_pb2.HealthCheckRequest(service=service), timeout=2
                    )
                    outcome = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
                except grpc.aio.AioRpcError as error:
                    outcome = error.code().name
                self.probes.append(Call(f"health {service!r}", started, time.monotonic(), outcome))
            await asyncio.sleep(POLL_SECONDS)

    async def readyz_probe(self, http: httpx.AsyncClient) -> None:
        while not self.done.is_set():
            started = time.monotonic()
            try:
                outcome = f"HTTP {(await http.get('/readyz')).status_code}"
            except httpx.TransportError as error:
                outcome = type(error).__name__
            self.probes.append(Call("readyz", started, time.monotonic(), outcome))
            await asyncio.sleep(POLL_SECONDS)


async def test_sigterm_under_load_drains_every_accepted_call(tmp_path: Path) -> None:
    env = reliability_env(
        tmp_path / "tokens.db",
        TOKENSERVICE_SHUTDOWN_DELAY_SECONDS=str(DELAY_SECONDS),
        TOKENSERVICE_SHUTDOWN_GRACE_SECONDS=str(GRACE_SECONDS),
    )
    shop = await provision(env, "drain")
    service = Service(env, tmp_path / "logs")
    problems: list[str] = []
    numbers: Counter[str] = Counter()
    access_tokens: list[str] = []
    newest_refresh: list[str] = []
    failed_refreshes: list[str] = []
    try:
        for cycle in range(CYCLES):
            await service.start()
            burst = await _sigterm_under_load(service, shop, problems, numbers, f"cycle {cycle}")
            access_tokens += burst.access_tokens
            newest_refresh += burst.newest_refresh.values()
            failed_refreshes += burst.unchanged
        await service.start()
        async with grpc.aio.insecure_channel(service.grpc_target) as channel:
            stub = pb_grpc.TokenServiceStub(channel)
            lost = await _inactive(stub, access_tokens + newest_refresh)
            ran_anyway = await _inactive(stub, failed_refreshes)
        await service.stop()
    finally:
        await service.close()

    LEDGER.record(
        "2 graceful shutdown under load",
        sigterms=CYCLES,
        faults_injected=CYCLES,
        requests_sent=numbers["requests"],
        requests_answered=numbers["outcome OK"] + numbers["outcome HTTP 200"],
        by_outcome={k: v for k, v in numbers.items() if k.startswith("outcome ")},
        in_flight_at_sigterm=numbers["in flight"],
        slowest_not_serving_seconds=round(numbers["not serving ms"] / 1000, 3),
        slowest_exit_seconds=round(numbers["exit ms"] / 1000, 3),
        tokens_checked=len(access_tokens) + len(newest_refresh),
        tokens_lost=len(lost),
        calls_dropped_at_stop=numbers["dropped at stop"],
        failed_refreshes_checked_unrotated=len(failed_refreshes),
    )
    assert not problems, "\n".join(problems[:20])
    assert not lost, f"{len(lost)} answered tokens are not active after the restart"
    assert not ran_anyway, f"{len(ran_anyway)} refreshes that failed did rotate their token"
    assert "Traceback" not in service.stderr, service.stderr[-4000:]


async def _sigterm_under_load(
    service: Service,
    shop: Provisioned,
    problems: list[str],
    numbers: Counter[str],
    label: str,
) -> Burst:
    assert service.process is not None
    async with contextlib.AsyncExitStack() as stack:
        channel = await stack.enter_async_context(grpc.aio.insecure_channel(service.grpc_target))
        probe_channel = await stack.enter_async_context(
            grpc.aio.insecure_channel(service.grpc_target)
        )
        limits = httpx.Limits(max_connections=HTTP_WORKERS)
        http = await stack.enter_async_context(
            async_http_client(base_url=service.http_base, timeout=CALL_TIMEOUT, limits=limits)
        )
        probe_http = await stack.enter_async_context(
            async_http_client(base_url=service.http_base, timeout=2)
        )
        burst = Burst(pb_grpc.TokenServiceStub(channel), http, shop)
        tasks = [asyncio.create_task(burst.grpc_worker(n)) for n in range(GRPC_WORKERS)]
        tasks += [asyncio.create_task(burst.http_worker()) for _ in range(HTTP_WORKERS)]
        tasks.append(
            asyncio.create_task(burst.health_probe(health_pb2_grpc.HealthStub(probe_channel)))
        )
        tasks.append(asyncio.create_task(burst.readyz_probe(probe_http)))
        try:
            deadline = time.monotonic() + 60
            while burst.successes < WARM_UP_SUCCESSES:
                assert time.monotonic() < deadline, (
                    f"{label}: no load: {tally(c.outcome for c in burst.calls)}"
                )
                await asyncio.sleep(0.05)
            in_flight = burst.in_flight
            code, exit_seconds = await service.terminate(within=DELAY_SECONDS + GRACE_SECONDS + 10)
            signalled = time.monotonic() - exit_seconds
        finally:
            burst.done.set()
            await asyncio.gather(*tasks)

    def problem(condition: bool, message: str) -> None:
        if not condition:
            problems.append(f"{label}: {message}")

    problem(in_flight >= GRPC_WORKERS // 2, f"only {in_flight} calls in flight: inconclusive")
    problem(code == 0, f"exit code {code}")
    problem(
        exit_seconds <= DELAY_SECONDS + GRACE_SECONDS + EXIT_MARGIN_SECONDS,
        f"exited {exit_seconds:.2f}s after SIGTERM, beyond delay + grace",
    )

    # Health: NOT_SERVING (and /readyz 503) at once: every check sent from AT_ONCE_SECONDS
    # after the signal on says so (or is refused), none says ready. (When its answer arrives
    # is no guide: a check waits in line with the load; the slowest is reported.)
    slowest = 0.0
    for kind in (*(f"health {s!r}" for s in HEALTH_SERVICES), "readyz"):
        probes = [p for p in burst.probes if p.kind == kind and p.started >= signalled]
        first = min(
            (p.ended for p in probes if p.outcome in ("NOT_SERVING", "HTTP 503")),
            default=float("inf"),
        )
        problem(first < float("inf"), f"{kind}: never said NOT_SERVING / 503")
        if first < float("inf"):  # else reported above, not turned into an OverflowError below
            slowest = max(slowest, first - signalled)
        late = [p for p in probes if p.started >= signalled + AT_ONCE_SECONDS]
        ready = [p for p in late if p.outcome in ("SERVING", "HTTP 200")]
        problem(not ready, f"{kind}: ready {len(ready)} times after {AT_ONCE_SECONDS}s")
        strange = [
            p
            for p in probes
            if p.outcome not in ("SERVING", "HTTP 200", "NOT_SERVING", "HTTP 503")
            and p.outcome not in REFUSED | DROPPED_AT_STOP
        ]
        problem(not strange, f"{kind}: odd answers {tally(p.outcome for p in strange)}")

    # Calls: answered, or refused (never run) once the delay was over, and nothing else. When
    # a client sent a call is no guide to when the server got it (both sides share two busy
    # cores), so what is checked is that nothing was refused before the delay ended: every
    # call the server received during the delay was answered. Calls gRPC had received but
    # not yet handed to the service when the delay ended are dropped by grpc core at
    # server.stop() with CANCELLED, not UNAVAILABLE (they never ran: the failed refreshes are
    # checked below), and uvicorn closes a keep-alive connection whose next request it has
    # not begun to read (ReadError / RemoteProtocolError at the client). Only at that moment:
    # a call cut off at the end of the grace period would fail later.
    delay_over = signalled + DELAY_SECONDS - EDGE_SECONDS
    stop_window = (delay_over, signalled + DELAY_SECONDS + AT_ONCE_SECONDS)

    def dropped_at_stop(call: Call) -> bool:
        return call.outcome in DROPPED_AT_STOP and stop_window[0] <= call.ended <= stop_window[1]

    odd = [
        c
        for c in burst.calls
        if c.outcome not in ("OK", "HTTP 200")
        and c.outcome not in REFUSED
        and not dropped_at_stop(c)
    ]
    problem(not odd, f"calls failed: {tally((c.kind, c.outcome) for c in odd)}")
    early = [c for c in burst.calls if c.outcome in REFUSED and c.ended < delay_over]
    problem(
        not early, f"refused during the shutdown delay: {tally((c.kind, c.outcome) for c in early)}"
    )
    during_delay = [
        c
        for c in burst.calls
        if c.started >= signalled + AT_ONCE_SECONDS
        and c.ended < delay_over
        and c.outcome in ("OK", "HTTP 200")
    ]
    problem(bool(during_delay), "no call was answered during the shutdown delay")
    # A failed refresh changed nothing: its refresh token was not rotated (checked after the
    # restart with the other tokens: a rotated refresh token introspects inactive).
    burst.unchanged = [c.presented for c in burst.calls if c.presented]
    numbers["dropped at stop"] += sum(dropped_at_stop(c) for c in burst.calls)
    numbers["requests"] += len(burst.calls) + len(burst.probes)
    numbers.update(f"outcome {c.outcome}" for c in burst.calls)
    numbers["in flight"] += in_flight
    numbers["not serving ms"] = max(numbers["not serving ms"], int(slowest * 1000))
    numbers["exit ms"] = max(numbers["exit ms"], int(exit_seconds * 1000))
    return burst


async def _inactive(stub: pb_grpc.TokenServiceStub, tokens: list[str]) -> list[str]:
    pending, inactive = list(tokens), []

    async def worker() -> None:
        while pending:
            token = pending.pop()
            answer = await stub.IntrospectToken(pb.IntrospectTokenRequest(token=token), timeout=30)
            if not answer.active:
                inactive.append(token)

    await asyncio.gather(*(worker() for _ in range(50)))
    return inactive
