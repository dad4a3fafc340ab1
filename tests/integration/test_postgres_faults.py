"""PostgreSQL going away in the middle of a stream of requests, and coming back.

The test starts a private PostgreSQL cluster of its own (tests/support/pg_cluster.py),
provisions it with the CLI, runs `tokenservice serve` against it, and keeps several storefront
clients busy (refreshing their sessions and introspecting over gRPC, validateauthtoken and
/oauth/token over HTTP, /readyz and grpc.health.v1 polled beside them). Midway it stops PostgreSQL
(`pg_ctl stop -m fast`), keeps the stream going, and starts PostgreSQL again. It proves that:

- while the database is away, callers are told to retry (gRPC UNAVAILABLE with reason
  `temporarily_unavailable`, HTTP 503, NOT_SERVING) and nothing else: no INTERNAL, no
  invalid_grant, no 401, no 500; and the outage was seen on every kind of request;
- no session was revoked, and every client carries on refreshing with the refresh token it
  holds (a refresh whose commit reached the database but whose answer was lost is re-presented
  within the 10 s grace window and gets the answer it missed, which is not an error);
- the same server process recovers by itself (`/readyz` back to 200), and its logs hold no
  traceback and no token.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import grpc
import httpx
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from tests.support.http_clients import async_http_client
from tests.support.pg_cluster import ClusterUnavailable, PrivateCluster, private_cluster
from tests.support.processes import (
    cli,
    free_port,
    service_env,
    start_serve,
    stop_process,
    text_of,
    wait_until_serving,
)
from tokenservice.v1 import token_service_pb2 as pb
from tokenservice.v1 import token_service_pb2_grpc as pb_grpc

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

REQUIRED = os.environ.get("TOKENSERVICE_TEST_REQUIRE_POSTGRES") == "1"
TENANT = "faults"
SECRET_KEY = "fault-test-secret-key-of-at-least-32-bytes"
SHOPPERS = 6
# Successful refreshes every shopper needs before the outage, and again after it.
WARM_UP_REFRESHES = 3
RECOVERED_REFRESHES = 3
# How long PostgreSQL stays away: well inside the 10 s refresh grace window, so that a refresh
# committed just before the stop but answered with UNAVAILABLE can be presented again.
OUTAGE_SECONDS = 3.0
# Upper bounds for waiting on an outcome (a failing test, not a measured time).
PHASE_DEADLINE_SECONDS = 20.0
# A call's own deadline: far above the connect and pool timeouts, so a call never ends on the
# client's side while the server still works on it, and a hang shows as DEADLINE_EXCEEDED.
CALL_TIMEOUT_SECONDS = 15.0
PAUSE_SECONDS = 0.02
HEALTH_SERVICE = "tokenservice.v1.TokenService"

REQUESTS = ("refresh", "introspect", "validate", "oauth_token")
PROBES = ("readyz", "health")
# The only failures a caller may see while the database is away.
RETRY_LATER = {
    "refresh": "UNAVAILABLE/temporarily_unavailable",
    "introspect": "UNAVAILABLE/temporarily_unavailable",
    "validate": "HTTP 503/temporarily_unavailable",
    "oauth_token": "HTTP 503/temporarily_unavailable",
    "readyz": "HTTP 503",
    "health": "NOT_SERVING",
}

# --- the private cluster --------------------------------------------------------------------


@pytest.fixture
def cluster() -> Iterator[PrivateCluster]:
    """A private PostgreSQL cluster, stopped and removed after the test; a skip (a failure when
    TOKENSERVICE_TEST_REQUIRE_POSTGRES=1) where this machine cannot run one."""
    stack = contextlib.ExitStack()
    try:
        started = stack.enter_context(private_cluster())
    except ClusterUnavailable as reason:
        if REQUIRED:
            pytest.fail(f"{reason}; TOKENSERVICE_TEST_REQUIRE_POSTGRES=1 requires it")
        pytest.skip(f"cannot run a private PostgreSQL cluster: {reason}")
    with stack:
        yield started


# --- the request stream ---------------------------------------------------------------------


@dataclasses.dataclass
class Outcome:
    kind: str  # one of REQUESTS or PROBES
    started: float
    ended: float
    failure: str = ""  # empty on success


@dataclasses.dataclass
class Shopper:
    """A storefront client: its session and the tokens it currently holds."""

    session_id: str
    access_token: str
    refresh_token: str
    refreshes: int = 0
    refreshes_after_restart: int = 0
    back_at: float = float("inf")  # when its first refresh after the restart succeeded


@dataclasses.dataclass
class Timeline:
    stop_began: float = float("inf")
    stopped: float = float("inf")
    start_began: float = float("inf")
    started: float = float("inf")  # `pg_ctl start -w` returned: PostgreSQL accepts connections


def grpc_failure(error: grpc.aio.AioRpcError) -> str:
    reason = ""
    status = rpc_status.from_call(error)
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
    return f"{error.code().name}/{reason}"


def http_failure(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    # RFC 6749 bodies say `error`, the customer API's say `type`.
    error = (body.get("error") or body.get("type") or "") if isinstance(body, dict) else ""
    return f"HTTP {response.status_code}/{error}"


class Stream:
    """One task per shopper (refresh, introspect, validateauthtoken, /oauth/token in a loop),
    one polling /readyz and grpc.health.v1; every outcome recorded."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        http: httpx.AsyncClient,
        shoppers: list[Shopper],
        storefront_id: str,
        service: tuple[str, str],
    ) -> None:
        self.stub = pb_grpc.TokenServiceStub(channel)
        self.health = health_pb2_grpc.HealthStub(channel)
        self.http = http
        self.shoppers = shoppers
        self.storefront_id = storefront_id
        self.service = service
        self.outcomes: list[Outcome] = []
        self.tokens_seen: set[str] = set()
        self.timeline = Timeline()
        self.done = asyncio.Event()

    def start(self) -> list[asyncio.Task[None]]:
        tasks = [asyncio.create_task(self._shop(shopper)) for shopper in self.shoppers]
        return [*tasks, asyncio.create_task(self._probe())]

    async def until(self, condition: str, check: Callable[[], bool]) -> None:
        """Lets the stream run until `check()` holds (a failure after PHASE_DEADLINE_SECONDS)."""
        deadline = time.monotonic() + PHASE_DEADLINE_SECONDS
        while not check():
            assert time.monotonic() < deadline, f"not within {PHASE_DEADLINE_SECONDS}s: {condition}"
            await asyncio.sleep(0.05)

    async def _shop(self, shopper: Shopper) -> None:
        while not self.done.is_set():
            await self._refresh(shopper)
            await self._introspect(shopper)
            await self._validate(shopper)
            await self._oauth_token()
            await asyncio.sleep(PAUSE_SECONDS)

    async def _probe(self) -> None:
        request = health_pb2.HealthCheckRequest(service=HEALTH_SERVICE)
        serving = health_pb2.HealthCheckResponse.SERVING
        while not self.done.is_set():
            started = time.monotonic()
            response = await self.http.get("/readyz")
            failure = "" if response.status_code == 200 else f"HTTP {response.status_code}"
            self._record("readyz", started, failure)
            started = time.monotonic()
            try:
                answer = await self.health.Check(request, timeout=CALL_TIMEOUT_SECONDS)
            except grpc.aio.AioRpcError as error:
                self._record("health", started, grpc_failure(error))
            else:
                status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
                self._record("health", started, "" if answer.status == serving else status)
            await asyncio.sleep(0.1)

    async def _refresh(self, shopper: Shopper) -> None:
        request = pb.RefreshTokenRequest(
            tenant=TENANT, client_id=self.storefront_id, refresh_token=shopper.refresh_token
        )
        started = time.monotonic()
        try:
            answer = await self.stub.RefreshToken(request, timeout=CALL_TIMEOUT_SECONDS)
        except grpc.aio.AioRpcError as error:
            # On any failure the shopper keeps the refresh token it has, and tries it again.
            self._record("refresh", started, grpc_failure(error))
            return
        self.tokens_seen.update((answer.access_token, answer.refresh_token))
        if answer.session_id != shopper.session_id or not answer.refresh_token:
            self._record("refresh", started, f"wrong answer: session {answer.session_id!r}")
            return
        shopper.access_token, shopper.refresh_token = answer.access_token, answer.refresh_token
        shopper.refreshes += 1
        if started >= self.timeline.started:
            shopper.refreshes_after_restart += 1
            shopper.back_at = min(shopper.back_at, time.monotonic())
        self._record("refresh", started, "")

    async def _introspect(self, shopper: Shopper) -> None:
        request = pb.IntrospectTokenRequest(token=shopper.access_token, tenant=TENANT)
        started = time.monotonic()
        try:
            answer = await self.stub.IntrospectToken(request, timeout=CALL_TIMEOUT_SECONDS)
        except grpc.aio.AioRpcError as error:
            self._record("introspect", started, grpc_failure(error))
            return
        right = answer.active and answer.session_id == shopper.session_id
        self._record("introspect", started, "" if right else "wrong answer: not active")

    async def _validate(self, shopper: Shopper) -> None:
        started = time.monotonic()
        response = await self.http.get(
            f"/customer/{TENANT}/validateauthtoken",
            headers={"Authorization": f"Bearer {shopper.access_token}"},
        )
        if response.status_code != 200:
            self._record("validate", started, http_failure(response))
            return
        right = response.json().get("sessionId") == shopper.session_id
        self._record("validate", started, "" if right else "wrong answer: other session")

    async def _oauth_token(self) -> None:
        client_id, client_secret = self.service
        started = time.monotonic()
        response = await self.http.post(
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": client_secret,
            },
        )
        if response.status_code != 200:
            self._record("oauth_token", started, http_failure(response))
            return
        token = response.json().get("access_token", "")
        self.tokens_seen.add(token)
        self._record("oauth_token", started, "" if token else "wrong answer: no access_token")

    def _record(self, kind: str, started: float, failure: str) -> None:
        self.outcomes.append(Outcome(kind, started, time.monotonic(), failure))


# --- the test -------------------------------------------------------------------------------


async def test_postgres_outage_is_unavailable_then_recovers_without_losing_sessions(
    cluster: PrivateCluster, tmp_path: Path
) -> None:
    grpc_port, http_port = free_port(), free_port()
    env = service_env(
        tmp_path / "unused.db",
        grpc_port,
        TOKENSERVICE_DATABASE_URL=cluster.url,
        TOKENSERVICE_SECRET_KEY=SECRET_KEY,
        TOKENSERVICE_HTTP_ADDR=f"127.0.0.1:{http_port}",
        TOKENSERVICE_DB_CONNECT_TIMEOUT_SECONDS="2",
        TOKENSERVICE_DB_POOL_TIMEOUT_SECONDS="2",
        TOKENSERVICE_DB_STATEMENT_TIMEOUT_SECONDS="5",
        TOKENSERVICE_JANITOR_INTERVAL_SECONDS="0",
    )
    await cli(env, "tenant", "create", TENANT)
    storefront = json.loads(
        await cli(env, *f"client create --tenant {TENANT} --kind storefront --json".split())
    )
    service = json.loads(
        await cli(env, *f"client create --tenant {TENANT} --kind service --json".split())
    )

    process = await start_serve(env, tmp_path)
    pid = process.pid
    try:
        await wait_until_serving(f"127.0.0.1:{grpc_port}", process, tmp_path / "stderr.txt")
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel,
            async_http_client(
                base_url=f"http://127.0.0.1:{http_port}", timeout=CALL_TIMEOUT_SECONDS
            ) as http,
        ):
            stub = pb_grpc.TokenServiceStub(channel)
            shoppers = [await _new_shopper(stub, storefront["client_id"]) for _ in range(SHOPPERS)]
            stream = Stream(
                channel,
                http,
                shoppers,
                storefront["client_id"],
                (service["client_id"], service["client_secret"]),
            )
            stream.tokens_seen.update(s.refresh_token for s in shoppers)
            stream.tokens_seen.update(s.access_token for s in shoppers)
            tasks = stream.start()
            try:
                await _outage(stream, cluster)
            finally:
                stream.done.set()
                await asyncio.gather(*tasks)
            ready = await http.get("/readyz")
        # Recovered in place: the same process, never restarted, ready again.
        assert process.returncode is None, f"the server exited:\n{text_of(tmp_path / 'stderr.txt')}"
        assert process.pid == pid
        assert ready.status_code == 200, ready.text
        sessions, refresh_tokens = await _database_state(cluster)
    finally:
        await stop_process(process)

    # No session was revoked (a refresh answered UNAVAILABLE did not burn its token: a re-use
    # would have revoked the session), and each session holds the refresh tokens its client was
    # given plus one per refresh that committed but whose answer was lost.
    assert set(sessions) == {s.session_id for s in shoppers}
    assert all(revoked_at is None for revoked_at in sessions.values()), sessions
    lost_answers = {s.session_id: refresh_tokens[s.session_id] - 1 - s.refreshes for s in shoppers}
    assert all(lost >= 0 for lost in lost_answers.values()), lost_answers

    stderr, stdout = text_of(tmp_path / "stderr.txt"), text_of(tmp_path / "stdout.txt")
    secrets = stream.tokens_seen | {service["client_secret"]}
    leaked = [value for value in secrets if value and value in stderr + stdout]
    assert not leaked, f"{len(leaked)} token or secret values in the server's output"
    print(_numbers(stream, lost_answers, stderr))  # seen with -s

    _check_outcomes(stream)
    _check_log(stderr)


async def _new_shopper(stub: pb_grpc.TokenServiceStub, client_id: str) -> Shopper:
    answer = await stub.IssueToken(
        pb.IssueTokenRequest(anonymous=pb.AnonymousGrant(tenant=TENANT, client_id=client_id)),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    assert answer.refresh_token and answer.session_id
    return Shopper(answer.session_id, answer.access_token, answer.refresh_token)


async def _outage(stream: Stream, cluster: PrivateCluster) -> None:
    """Warm up, stop PostgreSQL, wait, start it, wait until every shopper refreshed again."""
    shoppers, timeline = stream.shoppers, stream.timeline
    await stream.until(
        "every shopper refreshed before the outage",
        lambda: all(s.refreshes >= WARM_UP_REFRESHES for s in shoppers),
    )
    timeline.stop_began = time.monotonic()
    await asyncio.to_thread(cluster.stop, "fast")
    timeline.stopped = time.monotonic()
    await asyncio.sleep(OUTAGE_SECONDS)  # the stream runs on against a stopped database
    timeline.start_began = time.monotonic()
    await asyncio.to_thread(cluster.start)
    timeline.started = time.monotonic()
    await stream.until(
        "every shopper refreshed again, with the token it held, after PostgreSQL came back",
        lambda: all(s.refreshes_after_restart >= RECOVERED_REFRESHES for s in shoppers),
    )
    await stream.until(
        "/readyz and grpc.health.v1 said ready after PostgreSQL came back",
        lambda: (
            {o.kind for o in stream.outcomes if not o.failure and o.started >= timeline.started}
            >= set(PROBES)
        ),
    )


def _check_outcomes(stream: Stream) -> None:
    timeline, outcomes = stream.timeline, stream.outcomes
    failures = [o for o in outcomes if o.failure]
    # Before the stop everything succeeded (no failure that ended before it began) ...
    early = Counter((o.kind, o.failure) for o in failures if o.ended < timeline.stop_began)
    assert not early, f"failures before PostgreSQL was stopped: {early}"
    # ... the outage was seen by every kind of request and probe ...
    assert {o.kind for o in failures} == {*REQUESTS, *PROBES}, Counter(o.kind for o in failures)
    # ... and once PostgreSQL was back, every kind succeeded again.
    back = {o.kind for o in outcomes if not o.failure and o.started >= timeline.started}
    assert back == {*REQUESTS, *PROBES}, back
    # Every failure said "retry later": never INTERNAL, UNKNOWN, invalid_grant, 401, 500, ...
    wrong = Counter((o.kind, o.failure) for o in failures if o.failure != RETRY_LATER[o.kind])
    assert not wrong, f"failures other than UNAVAILABLE/503/NOT_SERVING: {wrong}"


def _check_log(stderr: str) -> None:
    """No traceback: an outage is logged as a warning, never as an unhandled error."""
    assert "Traceback" not in stderr, f"a traceback in the server's log:\n{_errors_of(stderr)}"


async def _database_state(cluster: PrivateCluster) -> tuple[dict[str, int | None], Counter[str]]:
    """Each session's revoked_at, and how many refresh tokens each session has had."""
    connection = await asyncpg.connect(cluster.dsn, timeout=10)
    try:
        sessions = {
            row["session_id"]: row["revoked_at"]
            for row in await connection.fetch("SELECT session_id, revoked_at FROM sessions")
        }
        rows = await connection.fetch(
            "SELECT session_id, count(*) AS n FROM tokens WHERE use = 'refresh' GROUP BY 1"
        )
    finally:
        await connection.close()
    return sessions, Counter({row["session_id"]: row["n"] for row in rows})


def _numbers(stream: Stream, lost_answers: dict[str, int], stderr: str) -> str:
    """What happened, for the record (nothing secret)."""
    timeline, outcomes = stream.timeline, stream.outcomes
    requests = [o for o in outcomes if o.kind in REQUESTS]
    failed = [o for o in requests if o.failure]
    back = [o for o in outcomes if not o.failure and o.started >= timeline.started]

    def first(kinds: tuple[str, ...]) -> str:
        ends = [min((o.ended for o in back if o.kind == kind), default=None) for kind in kinds]
        if None in ends:
            return "never"
        return f"{max(e for e in ends if e is not None) - timeline.started:.3f}s"

    every_shopper = max(s.back_at for s in stream.shoppers) - timeline.started

    probes_failed = [o for o in outcomes if o.failure and o.kind in PROBES]
    slowest = max((o.ended - o.started for o in failed), default=0.0)
    return (
        f"\nrequests sent: {len(requests)} {dict(Counter(o.kind for o in requests))}"
        f"\nfailed: {len(failed)} {dict(Counter((o.kind, o.failure) for o in failed))}"
        f"\nprobes failed: {dict(Counter((o.kind, o.failure) for o in probes_failed))}"
        f"\nslowest failed request: {slowest:.3f}s"
        f"\npg_ctl stop took {timeline.stopped - timeline.stop_began:.2f}s, pg_ctl start "
        f"{timeline.started - timeline.start_began:.2f}s, "
        f"down {timeline.started - timeline.stop_began:.2f}s"
        f"\nafter pg_ctl start returned: every request kind succeeded within {first(REQUESTS)}, "
        f"every shopper refreshed within {every_shopper:.3f}s, "
        f"/readyz and health ready within {first(PROBES)}"
        f"\nrefreshes per shopper: {[s.refreshes for s in stream.shoppers]}, after the restart: "
        f"{[s.refreshes_after_restart for s in stream.shoppers]}"
        f"\nrefreshes committed but answered with a failure (lost answers): "
        f"{sum(lost_answers.values())}"
        f"\nserver log: {_errors_of(stderr)}"
    )


def _errors_of(stderr: str) -> str:
    """The exception types the server logged (unavailable warnings and errors), counted."""
    kinds: Counter[str] = Counter()
    for line in stderr.splitlines():
        if match := re.search(r"token store unavailable: (\w+) \(([\w.]+)", line):
            kinds[f"unavailable: {match[1]} ({match[2]})"] += 1
        elif match := re.match(r"^([\w.]+(?:Error|Exception)): (.{0,60})", line):
            kinds[f"raised: {match[1]}: {match[2]}"] += 1
        elif " ERROR " in line:
            kinds[line.split(" ERROR ", 1)[1][:100]] += 1
    return "\n  " + "\n  ".join(f"{n} x {kind}" for kind, n in kinds.most_common())
