"""`make bench`: the service's throughput and latency against ceilings measured in the same run.

For each store (embedded SQLite; PostgreSQL when reachable) it starts the service as `serve`
runs it (bench/server.py, which adds a no-op gRPC method and a no-op HTTP route on the same
stacks), then, `--runs` times over, measures every scenario at 10 and 100 requests in flight
with h2load (bench/load.py), each run taking its ceilings afresh. A scenario's ratio is its
requests/s over its ceiling's in the same run; the figures printed are medians over the runs.
Customer login is compared with the argon2id verify rate of the same parameters measured alone
(in this process, as many threads as CPUs, the service idle). Then, unless --memory-tokens 0,
resident memory after issuing that many tokens (and after filling the introspection cache past
its bound); and one `serve` worker against two (PostgreSQL only; bench/workers.py). And,
unless --no-http-protocols, what the HTTP bridge's LimitedHttpToolsProtocol costs: the no-op
route and GET validateauthtoken served by it, by uvicorn's stock httptools protocol and by
uvicorn's h11 protocol, one process serving all three (bench/server.py --http-protocols),
measured in `--protocol-rounds` interleaved rounds.

    .venv/bin/python -m bench.run [--runs 3] [--requests 5000] [--stores sqlite postgres]
                                  [--memory-tokens 1000000] [--protocol-rounds 5]
                                  [--output bench/results.md]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import dataclasses
import datetime
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import grpc
from argon2 import PasswordHasher, Type
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy.engine import make_url

from bench.load import (
    Measurement,
    Scenario,
    grpc_frame,
    h2load,
    h2load_version,
    measure,
    resident_mib,
)
from tokenservice.v1 import token_service_pb2 as pb
from tokenservice.v1 import token_service_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_URL = os.environ.get(
    "TOKENSERVICE_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
IN_FLIGHT = (10, 100)
SERVICE = "/tokenservice.v1.TokenService/"
# path: (ceiling or "argon2", lowest ratio the issue asks for, extra condition)
TARGETS = {
    "introspect_seen": 0.80,
    "introspect_unseen": 0.40,
    "issue_client_credentials": 0.35,
    "issue_anonymous": 0.35,
    "refresh": 0.25,
    "customer_login": 0.80,
    "http_validate": 0.50,
    "http_introspect": 0.50,
    "http_token": 0.30,
}
P99_TARGET_MS = 5.0  # introspect_seen at 10 in flight
MEMORY_CHUNK = 100_000  # tokens per h2load run of the memory phase


# --- the service under test ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclasses.dataclass
class Service:
    process: subprocess.Popen[bytes]
    grpc_port: int
    http_port: int
    fixtures: dict[str, str]

    @property
    def grpc_url(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"{self.http_url}/metrics"


@contextmanager
def running_service(
    database_url: str, workdir: Path, server_args: tuple[str, ...] = ()
) -> Iterator[Service]:
    grpc_port, http_port = free_port(), free_port()
    fixtures = workdir / "fixtures.json"
    env = {name: value for name, value in os.environ.items() if not name.startswith("TOKENSERVICE")}
    env.update(
        TOKENSERVICE_DATABASE_URL=database_url,
        TOKENSERVICE_GRPC_ADDR=f"127.0.0.1:{grpc_port}",
        TOKENSERVICE_HTTP_ADDR=f"127.0.0.1:{http_port}",
        TOKENSERVICE_PROVISION_DEMO="false",
        TOKENSERVICE_LOG_LEVEL="WARNING",
        TOKENSERVICE_SHUTDOWN_DELAY_SECONDS="0",
        TOKENSERVICE_SHUTDOWN_GRACE_SECONDS="2",
        TOKENSERVICE_JANITOR_INTERVAL_SECONDS="0",
    )
    if not database_url.startswith("sqlite"):
        env["TOKENSERVICE_SECRET_KEY"] = secrets.token_urlsafe(48)
    log = (workdir / "service.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.server", str(fixtures), *server_args],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until_serving(process, grpc_port, fixtures, workdir / "service.log")
        yield Service(process, grpc_port, http_port, json.loads(fixtures.read_text()))
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def wait_until_serving(
    process: subprocess.Popen[bytes], port: int, fixtures: Path, log: Path
) -> None:
    deadline = time.monotonic() + 60
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the service exited {process.returncode}:\n{log.read_text()}")
            try:
                status = health.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                if status == health_pb2.HealthCheckResponse.SERVING and fixtures.exists():
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise RuntimeError(f"the service did not start within 60 s:\n{log.read_text()}")


# --- what is sent -------------------------------------------------------------------------------


def scenarios(service: Service) -> list[Scenario]:
    """Every scenario, with request bodies holding live tokens minted now over gRPC."""
    f = service.fixtures
    tenant = f["tenant"]
    with grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        stub = pb_grpc.TokenServiceStub(channel)

        def anonymous(client_id: str) -> pb.TokenResponse:
            grant = pb.AnonymousGrant(tenant=tenant, client_id=client_id)
            response: pb.TokenResponse = stub.IssueToken(pb.IssueTokenRequest(anonymous=grant))
            return response

        seen = anonymous(f["storefront_id"]).access_token
        assert stub.IntrospectToken(pb.IntrospectTokenRequest(token=seen, tenant=tenant)).active
        steady = anonymous(f["steady_storefront_id"])
        login_session = anonymous(f["storefront_id"]).access_token
    never_seen = secrets.token_urlsafe(32)

    def rpc(message: object) -> bytes:
        return grpc_frame(message.SerializeToString())  # type: ignore[attr-defined]

    introspect_seen = rpc(pb.IntrospectTokenRequest(token=seen, tenant=tenant))
    client_credentials = pb.ClientCredentialsGrant(
        client_id=f["service_id"], client_secret=f["service_secret"]
    )
    form = "application/x-www-form-urlencoded"
    service_form = {"client_id": f["service_id"], "client_secret": f["service_secret"]}
    return [
        Scenario("grpc_noop", "gRPC no-op (ceiling)", "grpc", "/bench.Noop/Call", introspect_seen),
        Scenario(
            "introspect_seen",
            "IntrospectToken, token seen before",
            "grpc",
            SERVICE + "IntrospectToken",
            introspect_seen,
            ceiling="grpc_noop",
        ),
        Scenario(
            "introspect_unseen",
            "IntrospectToken, token never seen",
            "grpc",
            SERVICE + "IntrospectToken",
            rpc(pb.IntrospectTokenRequest(token=never_seen, tenant=tenant)),
            ceiling="grpc_noop",
        ),
        Scenario(
            "issue_client_credentials",
            "IssueToken client_credentials",
            "grpc",
            SERVICE + "IssueToken",
            rpc(pb.IssueTokenRequest(client_credentials=client_credentials)),
            ceiling="grpc_noop",
        ),
        Scenario(
            "issue_anonymous",
            "IssueToken anonymous",
            "grpc",
            SERVICE + "IssueToken",
            rpc(
                pb.IssueTokenRequest(
                    anonymous=pb.AnonymousGrant(tenant=tenant, client_id=f["storefront_id"])
                )
            ),
            ceiling="grpc_noop",
        ),
        Scenario(
            "refresh",
            "RefreshToken (client with rotation off)",
            "grpc",
            SERVICE + "RefreshToken",
            rpc(
                pb.RefreshTokenRequest(
                    tenant=tenant,
                    client_id=f["steady_storefront_id"],
                    refresh_token=steady.refresh_token,
                )
            ),
            ceiling="grpc_noop",
        ),
        Scenario(
            "customer_login",
            "IssueToken customer password (argon2id)",
            "grpc",
            SERVICE + "IssueToken",
            rpc(
                pb.IssueTokenRequest(
                    customer_password=pb.CustomerPasswordGrant(
                        tenant=tenant,
                        email=f["email"],
                        password=f["password"],
                        anonymous_token=login_session,
                    )
                )
            ),
            ceiling="argon2",
            requests_factor=0.01,
        ),
        Scenario("http_noop", "HTTP no-op route (ceiling)", "http", "/bench/noop"),
        Scenario(
            "http_validate",
            "HTTP GET validateauthtoken",
            "http",
            f"/customer/{tenant}/validateauthtoken",
            headers=(f"authorization: Bearer {seen}",),
            ceiling="http_noop",
        ),
        Scenario(
            "http_introspect",
            "HTTP POST /oauth/introspect",
            "http",
            "/oauth/introspect",
            urllib.parse.urlencode({"token": seen, **service_form}).encode(),
            headers=(f"content-type: {form}",),
            ceiling="http_noop",
        ),
        Scenario(
            "http_token",
            "HTTP POST /oauth/token client_credentials",
            "http",
            "/oauth/token",
            urllib.parse.urlencode({"grant_type": "client_credentials", **service_form}).encode(),
            headers=(f"content-type: {form}",),
            ceiling="http_noop",
        ),
    ]


def argon2_verify_rate(fixtures: dict[str, str], seconds: float = 4.0) -> float:
    """Verifies per second of the service's argon2id parameters, one thread per CPU."""
    hasher = PasswordHasher(
        time_cost=int(fixtures["argon2_time_cost"]),
        memory_cost=int(fixtures["argon2_memory_kib"]),
        parallelism=int(fixtures["argon2_parallelism"]),
        type=Type.ID,
    )
    stored = hasher.hash(fixtures["password"])
    threads = os.cpu_count() or 1
    deadline = time.perf_counter() + seconds

    def verify_until_deadline() -> int:
        count = 0
        while time.perf_counter() < deadline:
            hasher.verify(stored, fixtures["password"])
            count += 1
        return count

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(lambda _: verify_until_deadline(), range(threads)))
    return total / (time.perf_counter() - started)


# --- measuring ----------------------------------------------------------------------------------


@dataclasses.dataclass
class Row:
    scenario: Scenario
    in_flight: int
    runs: list[Measurement] = dataclasses.field(default_factory=list)
    ratios: list[float] = dataclasses.field(default_factory=list)

    def median(self, field: str) -> float:
        return float(statistics.median(getattr(m, field) for m in self.runs))

    @property
    def ratio(self) -> float | None:
        return statistics.median(self.ratios) if self.ratios else None


def measure_store(name: str, database_url: str, args: argparse.Namespace) -> list[Row]:
    print(f"\n== {name}: {args.runs} runs x {args.requests} requests per scenario", flush=True)
    with (
        tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp,
        running_service(database_url, Path(tmp)) as service,
    ):
        all_scenarios = [
            s for s in scenarios(service) if not args.only or s.name in args.only or not s.ceiling
        ]
        rows = {(s.name, n): Row(s, n) for s in all_scenarios for n in IN_FLIGHT}
        for run in range(1, args.runs + 1):
            measures_login = any(s.ceiling == "argon2" for s in all_scenarios)
            argon2 = argon2_verify_rate(service.fixtures) if measures_login else 0.0
            print(f"-- run {run}: argon2id verify alone {argon2:.1f}/s", flush=True)
            for in_flight in IN_FLIGHT:
                ceilings = {"argon2": argon2}
                for scenario in all_scenarios:
                    base = service.grpc_url if scenario.protocol == "grpc" else service.http_url
                    result = measure(
                        scenario,
                        base_url=base,
                        metrics_url=service.metrics_url,
                        pid=service.process.pid,
                        requests=args.requests,
                        in_flight=in_flight,
                    )
                    row = rows[(scenario.name, in_flight)]
                    row.runs.append(result)
                    if scenario.ceiling:
                        row.ratios.append(result.per_second / ceilings[scenario.ceiling])
                    else:
                        ceilings[scenario.name] = result.per_second
                    print(f"   {describe(row, result)}", flush=True)
    return list(rows.values())


def describe(row: Row, m: Measurement) -> str:
    ratio = f" ratio {row.ratios[-1]:.2f}" if row.scenario.ceiling and row.ratios else ""
    failed = f"  FAILED {m.failed}" if m.failed else ""
    return (
        f"{row.scenario.name:<26} {m.in_flight:>3} in flight {m.per_second:>8.0f}/s "
        f"p50 {m.p50_ms:6.2f} ms p99 {m.p99_ms:6.2f} ms cpu {m.cpu_us:6.0f} us{ratio}{failed}"
    )


# --- the HTTP protocol implementations -----------------------------------------------------------

PROTOCOLS = {
    "httptools": "uvicorn httptools, stock",
    "limited": "LimitedHttpToolsProtocol (what the service serves)",
    "h11": "uvicorn h11, h11_max_incomplete_event_size 16384",
}
PROTOCOL_SCENARIOS = ("http_noop", "http_validate")


@dataclasses.dataclass
class ProtocolRow:
    """One path at one load, measured on every implementation once per round."""

    scenario: Scenario
    in_flight: int
    runs: dict[str, list[Measurement]]

    def median(self, implementation: str, field: str) -> float:
        return float(statistics.median(getattr(m, field) for m in self.runs[implementation]))

    def ratio(self, implementation: str, field: str) -> float:
        """The median over rounds of this implementation's figure over stock httptools'."""
        pairs = zip(self.runs[implementation], self.runs["httptools"], strict=True)
        return float(statistics.median(getattr(m, field) / getattr(s, field) for m, s in pairs))


def protocols_phase(args: argparse.Namespace) -> list[ProtocolRow]:
    """The same app behind each protocol in one process; every round measures each
    implementation back to back, in an order that rotates from round to round."""
    rounds = args.protocol_rounds
    print(f"\n== HTTP protocols: {rounds} rounds x {args.requests} requests (SQLite)", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-protocols-") as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'tokens.db'}"
        with running_service(url, Path(tmp), ("--http-protocols",)) as service:
            f = service.fixtures
            urls = {
                "limited": service.http_url,
                "httptools": f"http://127.0.0.1:{f['http_port_httptools']}",
                "h11": f"http://127.0.0.1:{f['http_port_h11']}",
            }
            chosen = [s for s in scenarios(service) if s.name in PROTOCOL_SCENARIOS]
            rows = {
                (s.name, n): ProtocolRow(s, n, {name: [] for name in PROTOCOLS})
                for s in chosen
                for n in IN_FLIGHT
            }
            names = list(PROTOCOLS)
            for round_ in range(rounds):
                order = names[round_ % len(names) :] + names[: round_ % len(names)]
                for in_flight in IN_FLIGHT:
                    for scenario in chosen:
                        for name in order:
                            result = measure(
                                scenario,
                                base_url=urls[name],
                                metrics_url=service.metrics_url,
                                pid=service.process.pid,
                                requests=args.requests,
                                in_flight=in_flight,
                            )
                            rows[(scenario.name, in_flight)].runs[name].append(result)
                            failed = f"  FAILED {result.failed}" if result.failed else ""
                            print(
                                f"   round {round_ + 1} {scenario.name:<14} {in_flight:>3} in "
                                f"flight {name:<10} {result.per_second:>8.0f}/s cpu "
                                f"{result.cpu_us:5.0f} us{failed}",
                                flush=True,
                            )
    return list(rows.values())


def protocols_table(rows: list[ProtocolRow]) -> list[str]:
    lines = [
        "| path | in flight | HTTP protocol | req/s | p50 ms | p99 ms | CPU us/req "
        "| req/s vs stock | CPU vs stock |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        for name, label in PROTOCOLS.items():
            failed = sum(m.failed for m in row.runs[name])
            label += f" ({failed} failed)" if failed else ""
            lines.append(
                f"| {row.scenario.label} | {row.in_flight} | {label} | "
                f"{row.median(name, 'per_second'):,.0f} | {row.median(name, 'p50_ms'):.2f} | "
                f"{row.median(name, 'p99_ms'):.2f} | {row.median(name, 'cpu_us'):,.0f} | "
                f"{row.ratio(name, 'per_second'):.3f} | {row.ratio(name, 'cpu_us'):.3f} |"
            )
    return lines


def memory_phase(tokens: int, args: argparse.Namespace) -> dict[str, float]:
    """Resident memory of the service on SQLite: at rest, after `tokens` client_credentials
    issues at 100 in flight, and after introspecting more distinct tokens than the cache holds."""
    print(f"\n== memory: issuing {tokens:,} tokens (SQLite)", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'tokens.db'}"
        with running_service(url, Path(tmp)) as service:
            pid = service.process.pid
            figures = {"at rest": resident_mib(pid)}
            issue = next(s for s in scenarios(service) if s.name == "issue_client_credentials")
            started = time.monotonic()
            issued = 0
            while issued < tokens:
                chunk = min(MEMORY_CHUNK, tokens - issued)
                h2load(issue, service.grpc_url, chunk, 100)
                issued += chunk
                print(
                    f"   {issued:>9,} issued in {time.monotonic() - started:5.0f} s: "
                    f"resident {resident_mib(pid):.0f} MiB",
                    flush=True,
                )
            figures[f"after {tokens:,} issued"] = resident_mib(pid)
            distinct = args.cache_fill
            asyncio.run(introspect_distinct(service, distinct))
            figures[f"after {distinct:,} more issued and introspected"] = resident_mib(pid)
    for label, mib in figures.items():
        print(f"   resident memory {label}: {mib:.0f} MiB", flush=True)
    return figures


async def introspect_distinct(service: Service, count: int) -> None:
    """Issues `count` anonymous tokens and introspects each (all distinct), 100 in flight."""
    f = service.fixtures
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        stub = pb_grpc.TokenServiceStub(channel)
        grant = pb.IssueTokenRequest(
            anonymous=pb.AnonymousGrant(tenant=f["tenant"], client_id=f["storefront_id"])
        )
        remaining = iter(range(count))

        async def worker() -> None:
            for _ in remaining:
                token = (await stub.IssueToken(grant)).access_token
                request = pb.IntrospectTokenRequest(token=token, tenant=f["tenant"])
                assert (await stub.IntrospectToken(request)).active

        await asyncio.gather(*(worker() for _ in range(100)))


def workers_phase() -> str:
    """bench/workers.py: IntrospectToken with one and two `serve` workers on PostgreSQL."""
    print("\n== one serve worker against two (PostgreSQL)", flush=True)
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "workers.py"), "--runs", "3"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    print(result.stdout, result.stderr[-2000:], flush=True)
    return result.stdout


# --- the PostgreSQL database --------------------------------------------------------------------


def postgres_reachable() -> bool:
    async def probe() -> None:
        connection = await asyncpg.connect(dsn(POSTGRES_URL), timeout=3)
        await connection.close()

    try:
        asyncio.run(probe())
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return False
    return True


def dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def postgres_admin(statement: str) -> None:
    connection = await asyncpg.connect(dsn(POSTGRES_URL), timeout=5)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@contextmanager
def postgres_database() -> Iterator[str]:
    name = f"tokenservice_bench_{secrets.token_hex(4)}"
    asyncio.run(postgres_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# --- the report ---------------------------------------------------------------------------------


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return (
        f"{platform.node()}: {os.cpu_count()} CPUs ({model}), {mem_kib / 1024 / 1024:.0f} GiB, "
        f"{platform.platform()}, Python {platform.python_version()}, grpcio {grpc.__version__}, "
        f"{h2load_version()}; load generator on the same machine, loopback only"
    )


def table(rows: list[Row]) -> list[str]:
    lines = [
        "| path | in flight | req/s | p50 ms | p99 ms | CPU us/req | ratio | target |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        ratio = row.ratio
        target = TARGETS.get(row.scenario.name)
        verdict = ""
        if target is not None and ratio is not None:
            met = ratio >= target
            if row.scenario.name == "introspect_seen" and row.in_flight == 10:
                met = met and row.median("p99_ms") <= P99_TARGET_MS
                verdict = f"≥ {target:.2f}, p99 ≤ {P99_TARGET_MS:g} ms: "
            else:
                verdict = f"≥ {target:.2f}: "
            verdict += "met" if met else "**not met**"
        failed = sum(m.failed for m in row.runs)
        label = row.scenario.label + (f" ({failed} failed)" if failed else "")
        lines.append(
            f"| {label} | {row.in_flight} | {row.median('per_second'):,.0f} | "
            f"{row.median('p50_ms'):.2f} | {row.median('p99_ms'):.2f} | "
            f"{row.median('cpu_us'):,.0f} | {'' if ratio is None else f'{ratio:.2f}'} | {verdict} |"
        )
    return lines


def write_report(
    path: Path,
    results: dict[str, list[Row]],
    memory: dict[str, float],
    workers: str,
    protocols: list[ProtocolRow],
    args: argparse.Namespace,
) -> None:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "# Benchmark results",
        "",
        f"Written by `make bench` (bench/run.py) on {now}.",
        "",
        f"Machine: {machine()}.",
        "",
        f"Method: h2load sends {args.requests:,} requests per scenario (customer login: "
        f"{max(20, int(args.requests * 0.01))}) after a warm-up of a tenth as many, at 10 and at "
        f"100 in flight (gRPC: up to 10 HTTP/2 connections, streams shared among them; HTTP: "
        f"one HTTP/1.1 connection per request in flight). {args.runs} runs; every figure is the "
        "median over the runs, and a ratio is the median of per-run ratios of a scenario's "
        "requests/s to its ceiling's in the same run: the no-op gRPC method on the same server "
        "and interceptors, the no-op HTTP route on the same ASGI stack, and for customer login "
        "the argon2id verify rate of the same parameters measured alone (one thread per CPU). "
        "gRPC successes are the service's own count of OK answers (/metrics), HTTP successes "
        "h2load's count of 2xx. CPU us/req: the service process's CPU time (all threads) over "
        "the requests. RefreshToken uses a client with rotation off, so one refresh token can "
        "be sent again and again (each call still writes the session and a new access token).",
        "",
    ]
    for store, rows in results.items():
        out += [f"## {store}", "", *table(rows), ""]
    if protocols:
        out += [
            "## HTTP protocol implementations (SQLite)",
            "",
            f"One process serves the same bridge app (same core, routes and ASGI stack) with "
            f"each HTTP protocol on its own port (bench/server.py --http-protocols); "
            f"{args.protocol_rounds} rounds, each measuring every implementation back to back "
            f"in an order that rotates from round to round, {args.requests:,} requests each "
            "after the warm-up. Figures are medians over the rounds; the ratios are medians of "
            "per-round ratios to stock httptools.",
            "",
            *protocols_table(protocols),
            "",
        ]
    if memory:
        out += ["## Resident memory (SQLite)", ""]
        out += [f"- {label}: {mib:.0f} MiB" for label, mib in memory.items()]
        out += [""]
    if workers:
        out += ["## One worker against two (PostgreSQL, bench/workers.py)", "", "```"]
        out += [workers.strip(), "```", ""]
    path.write_text("\n".join(out))
    print(f"\nwritten to {path}", flush=True)


# --- main ---------------------------------------------------------------------------------------


def check_tools() -> None:
    if shutil.which("h2load"):
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("h2load is missing: installing Debian's nghttp2-client", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-qq", "nghttp2-client"]
        if subprocess.run(install, check=False, env=env).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
            subprocess.run(install, check=False, env=env)
    if not shutil.which("h2load"):
        sys.exit(
            "make bench needs h2load (Debian/Ubuntu: apt-get install nghttp2-client; "
            "macOS: brew install nghttp2); it is not on PATH"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--stores", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument(
        "--only", nargs="+", default=[], help="measure only these scenarios (and the ceilings)"
    )
    parser.add_argument("--memory-tokens", type=int, default=1_000_000)
    parser.add_argument("--cache-fill", type=int, default=60_000)
    parser.add_argument("--workers", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--http-protocols", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--protocol-rounds", type=int, default=5)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results.md")
    args = parser.parse_args()
    check_tools()
    print(machine(), flush=True)
    results: dict[str, list[Row]] = {}
    pg = postgres_reachable()
    if "sqlite" in args.stores:
        with tempfile.TemporaryDirectory(prefix="bench-db-") as tmp:
            url = f"sqlite+aiosqlite:///{Path(tmp) / 'tokens.db'}"
            results["SQLite (embedded)"] = measure_store("SQLite", url, args)
    if "postgres" in args.stores:
        if pg:
            with postgres_database() as url:
                results["PostgreSQL"] = measure_store("PostgreSQL", url, args)
        else:
            print(f"\nPostgreSQL not reachable at {POSTGRES_URL}: its figures are skipped")
    protocols = protocols_phase(args) if args.http_protocols else []
    memory = memory_phase(args.memory_tokens, args) if args.memory_tokens else {}
    workers = workers_phase() if args.workers and pg else ""
    for store, rows in results.items():
        print(f"\n{store}")
        print("\n".join(table(rows)))
    if protocols:
        print("\nHTTP protocols")
        print("\n".join(protocols_table(protocols)))
    write_report(args.output, results, memory, workers, protocols, args)


if __name__ == "__main__":
    main()
