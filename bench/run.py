"""`make bench`: the service beside its peers and against independent ceilings, in one run.

For each store (embedded SQLite; PostgreSQL when reachable) it starts, each as its own process:
the service as `serve` runs it (bench/server.py, which also serves its own-stack no-op gRPC
method and HTTP route, kept as the "our stack's overhead" figure), the bare gRPC ceiling and
the bare HTTP ceiling (bench/ceilings.py: grpc.aio and uvicorn with stock settings, answering
with messages of the service's own sizes) and, on SQLite, the peers node-oidc-provider and
django-oauth-toolkit (bench/peers.py; installed into a cache folder outside the source tree,
skipped with a notice where they cannot be had). Where taskset works and there are two cores
or more, h2load runs on the first core and every server on the second.

Then `--runs` rounds: in each, at each load of `--in-flight`, every gRPC scenario of every
server, then every HTTP one, is measured back to back, in an order that rotates from round to
round, so that the machine's drift falls on all of them alike. A ratio is the median over the
rounds of a scenario's requests/s over its ceiling's (or a peer's) in the same round; every
other figure is a median over the rounds. After every measurement one more request is sent by
a real client and its answer checked (bench/checks.py: a token, an active introspection), and
the failed count is what the server itself did not count as OK (gRPC) or h2load's non-2xx.
Customer login is compared with the argon2id verify rate of the same parameters measured alone
on the server's core. Then, unless turned off: resident memory after `--memory-tokens`; one
`serve` worker against two (PostgreSQL, bench/workers.py); the HTTP protocol implementations
(bench/server.py --http-protocols). bench/report.py writes the report and a goals table (issue
16's goals, met or not, with their figures); a run with fewer than 3 rounds or 5,000 requests
is labelled a smoke run there. The raw figures go beside it as JSON.

    .venv/bin/python -m bench.run [--runs 3] [--requests 5000] [--stores sqlite postgres]
                                  [--peers install|cached|off] [--in-flight 10 100]
                                  [--memory-tokens 1000000] [--protocol-rounds 5]
                                  [--output bench/results.md]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import dataclasses
import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import grpc
from argon2 import PasswordHasher, Type
from sqlalchemy.engine import make_url

from bench import peers, report
from bench.checks import CheckFailed, check
from bench.load import (
    Measurement,
    Scenario,
    h2load,
    h2load_version,
    measure,
    pin_load,
    resident_mib,
)
from bench.scenarios import ceiling_scenarios, peer_scenarios, renewed, scenarios
from bench.servers import (
    Pinning,
    Server,
    Service,
    choose_pinning,
    on_cpu,
    running_ceiling,
    running_peers,
    running_service,
)
from tokenservice.v1 import token_service_pb2 as pb
from tokenservice.v1 import token_service_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_URL = os.environ.get(
    "TOKENSERVICE_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
IN_FLIGHT = (10, 100)
MEMORY_CHUNK = 100_000  # tokens per h2load run of the memory phase


def argon2_verify_rate(fixtures: dict[str, str], cpu: int | None, seconds: float = 4.0) -> float:
    """Verifies per second of the service's argon2id parameters, one thread per CPU the server
    may use (just the server's core where pinned), measured on those CPUs."""
    hasher = PasswordHasher(
        time_cost=int(fixtures["argon2_time_cost"]),
        memory_cost=int(fixtures["argon2_memory_kib"]),
        parallelism=int(fixtures["argon2_parallelism"]),
        type=Type.ID,
    )
    stored = hasher.hash(fixtures["password"])
    threads = 1 if cpu is not None else (os.cpu_count() or 1)

    def verify_until(deadline: float) -> int:
        count = 0
        while time.perf_counter() < deadline:
            hasher.verify(stored, fixtures["password"])
            count += 1
        return count

    with on_cpu(cpu), concurrent.futures.ThreadPoolExecutor(threads) as pool:
        started = time.perf_counter()
        deadline = started + seconds
        total = sum(pool.map(lambda _: verify_until(deadline), range(threads)))
        return total / (time.perf_counter() - started)


# --- measuring ----------------------------------------------------------------------------------


@dataclasses.dataclass
class Row:
    """One scenario at one load: a measurement per round (index = round)."""

    scenario: Scenario
    in_flight: int
    runs: list[Measurement] = dataclasses.field(default_factory=list)

    def median(self, field: str) -> float:
        return float(statistics.median(getattr(m, field) for m in self.runs))

    @property
    def failed(self) -> int:
        return sum(m.failed for m in self.runs)


@dataclasses.dataclass
class StoreResult:
    """What one store's part of the run measured: every row, the servers, the argon2 rates."""

    store: str
    rows: dict[tuple[str, int], Row]
    servers: list[dict[str, object]]  # Server.describe() of every server process
    argon2: list[float]  # per round
    notices: list[str]

    def row(self, name: str, in_flight: int) -> Row | None:
        return self.rows.get((name, in_flight))

    def ratio(self, name: str, other: str, in_flight: int, field: str = "per_second") -> float:
        """Median over rounds of `name`'s figure over `other`'s in the same round."""
        mine, theirs = self.rows.get((name, in_flight)), self.rows.get((other, in_flight))
        if other == "argon2" and mine is not None:
            pairs = [(getattr(m, field), a) for m, a in zip(mine.runs, self.argon2, strict=True)]
        elif mine is None or theirs is None:
            return float("nan")
        else:
            pairs = [
                (getattr(m, field), getattr(t, field))
                for m, t in zip(mine.runs, theirs.runs, strict=True)
            ]
        return float(statistics.median(a / b for a, b in pairs if b))


def rotated(items: list[Scenario], round_: int, rounds: int) -> list[Scenario]:
    """`items` starting at a point that moves by len/rounds from round to round."""
    if not items:
        return items
    shift = (round_ * max(1, len(items) // max(1, rounds))) % len(items)
    return items[shift:] + items[:shift]


def measure_store(
    name: str, database_url: str, args: argparse.Namespace, pinning: Pinning, with_peers: bool
) -> StoreResult:
    print(f"\n== {name}: {args.runs} rounds x {args.requests} requests per scenario", flush=True)
    pin = pinning.server_prefix
    notices: list[str] = []
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"bench-{name}-")))
        service = stack.enter_context(running_service(database_url, tmp, pin=tuple(pin)))
        ours, samples = scenarios(service)
        servers = [service.server()]
        servers.append(
            stack.enter_context(running_ceiling("grpc", samples.grpc_introspection, tmp, pin))
        )
        servers.append(
            stack.enter_context(running_ceiling("http", samples.http_introspection, tmp, pin))
        )
        every = [*ceiling_scenarios(samples, ours), *ours]
        running: dict[str, peers.Peer] = {}
        if with_peers:
            for peer in stack.enter_context(running_peers(args.peers, tmp, pin, notices)):
                servers.append(
                    Server(
                        peer.name,
                        peer.label,
                        peer.process.pid,
                        [str(part) for part in peer.process.args],  # type: ignore[union-attr]
                        peer.http_url,
                        versions=peer.versions,
                    )
                )
                every += peer_scenarios(peer, tuple(args.in_flight))
                running[peer.name] = peer
        if args.only:
            every = [s for s in every if s.name in args.only or s.name.startswith("bare_")]
        by_server = {s.name: s for s in servers}
        rows = {
            (s.name, n): Row(s, n)
            for n in args.in_flight
            for s in every
            if not s.in_flight or n in s.in_flight
        }
        argon2: list[float] = []
        for round_ in range(args.runs):
            measures_login = any(s.ceiling == "argon2" for s in every)
            rate = argon2_verify_rate(service.fixtures, pinning.server_cpu) if measures_login else 0
            argon2.append(rate)
            print(f"-- round {round_ + 1}: argon2id verify alone {rate:.1f}/s", flush=True)
            for in_flight in args.in_flight:
                for protocol in ("grpc", "http"):
                    chosen = [r.scenario for (_, n), r in rows.items() if n == in_flight]
                    chosen = [s for s in chosen if s.protocol == protocol]
                    for scenario in rotated(chosen, round_, args.runs):
                        server = by_server[scenario.server]
                        now = renewed(scenario, running)
                        result = measure_one(now, server, args.requests, in_flight)
                        rows[(scenario.name, in_flight)].runs.append(result)
                        print(f"   {describe(scenario, result)}", flush=True)
        described = [s.describe() for s in servers]  # while they run: their CPUs, pids
    return StoreResult(name, rows, described, argon2, notices)


def measure_one(scenario: Scenario, server: Server, requests: int, in_flight: int) -> Measurement:
    base = server.base_url(scenario)
    ok_count = None
    if scenario.protocol == "grpc":
        assert server.ok_count is not None
        counter = server.ok_count

        def ok_count() -> float:
            return counter(scenario.path)

    result = measure(
        scenario,
        base_url=base,
        pid=server.pid,
        requests=requests,
        in_flight=in_flight,
        ok_count=ok_count,
    )
    try:
        checked = "ok: " + check(scenario, base)
        failed = result.failed
    except CheckFailed as why:
        checked = f"FAILED: {why}"
        failed = result.failed + 1
    return dataclasses.replace(result, checked=checked, failed=failed)


def describe(scenario: Scenario, m: Measurement) -> str:
    failed = f"  FAILED {m.failed}" if m.failed else ""
    return (
        f"{scenario.name:<26} {m.in_flight:>3} in flight {m.per_second:>8.0f}/s "
        f"p50 {m.p50_ms:6.2f} ms p99 {m.p99_ms:6.2f} ms cpu {m.cpu_us:6.0f} us "
        f"check {m.checked}{failed}"
    )


# --- the HTTP protocol implementations -----------------------------------------------------------

PROTOCOLS = {
    "httptools": "uvicorn httptools, stock",
    "limited": "LimitedHttpToolsProtocol (what the service serves)",
    "limited_split": "LimitedHttpToolsProtocol, one write per response off (the limits alone)",
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


def protocols_phase(args: argparse.Namespace, pinning: Pinning) -> list[ProtocolRow]:
    """The same app behind each protocol in one process; every round measures each
    implementation back to back, in an order that rotates from round to round."""
    rounds = args.protocol_rounds
    print(f"\n== HTTP protocols: {rounds} rounds x {args.requests} requests (SQLite)", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-protocols-") as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'tokens.db'}"
        pin = tuple(pinning.server_prefix)
        with running_service(url, Path(tmp), ("--http-protocols",), pin) as service:
            f = service.fixtures
            urls = {
                "limited": service.http_url,
                "limited_split": f"http://127.0.0.1:{f['http_port_limited_split']}",
                "httptools": f"http://127.0.0.1:{f['http_port_httptools']}",
                "h11": f"http://127.0.0.1:{f['http_port_h11']}",
            }
            chosen = [s for s in scenarios(service)[0] if s.name in PROTOCOL_SCENARIOS]
            rows = {
                (s.name, n): ProtocolRow(s, n, {name: [] for name in PROTOCOLS})
                for s in chosen
                for n in args.in_flight
            }
            names = list(PROTOCOLS)
            for round_ in range(rounds):
                order = names[round_ % len(names) :] + names[: round_ % len(names)]
                for in_flight in args.in_flight:
                    for scenario in chosen:
                        for name in order:
                            result = measure(
                                scenario,
                                base_url=urls[name],
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
            issue = next(s for s in scenarios(service)[0] if s.name == "issue_client_credentials")
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
        [sys.executable, "-m", "bench.workers", "--runs", "3"],
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


# --- the machine --------------------------------------------------------------------------------


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
    parser.add_argument("--runs", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--in-flight", type=int, nargs="+", default=list(IN_FLIGHT))
    parser.add_argument("--stores", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument(
        "--peers",
        choices=["install", "cached", "off"],
        default="install",
        help="install: install the peers when missing (cache folder); cached: only if installed",
    )
    parser.add_argument("--pin", action=argparse.BooleanOptionalAction, default=True)
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
    # SIGTERM unwinds like Ctrl-C, so that every server this run started is stopped with it
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(128 + number))
    check_tools()
    pinning = choose_pinning(args.pin)
    pin_load(pinning.load_prefix)
    described = machine()
    print(described, flush=True)
    print(f"pinning: {pinning.describe()}", flush=True)
    results: list[StoreResult] = []
    notices: list[str] = []
    pg = postgres_reachable()
    if "sqlite" in args.stores:
        with tempfile.TemporaryDirectory(prefix="bench-db-") as tmp:
            url = f"sqlite+aiosqlite:///{Path(tmp) / 'tokens.db'}"
            results.append(measure_store("SQLite", url, args, pinning, with_peers=True))
    if "postgres" in args.stores:
        if pg:
            with postgres_database() as url:
                results.append(measure_store("PostgreSQL", url, args, pinning, with_peers=False))
        else:
            notices.append(f"PostgreSQL: not reachable at {POSTGRES_URL}")
            print(f"\nPostgreSQL not reachable at {POSTGRES_URL}: its figures are skipped")
    for result in results:
        notices += result.notices
    protocols = protocols_phase(args, pinning) if args.http_protocols else []
    memory = memory_phase(args.memory_tokens, args) if args.memory_tokens else {}
    workers = workers_phase() if args.workers and pg else ""
    protocol_cpu = None
    for row in protocols:
        if row.scenario.name == "http_validate" and row.in_flight == min(args.in_flight):
            protocol_cpu = row.ratio("limited_split", "cpu_us")
    report.write_report(
        args.output,
        results,
        args=args,
        pinning=pinning,
        machine=described,
        notices=notices,
        protocol_lines=protocols_section(protocols, args) if protocols else [],
        protocol_cpu=protocol_cpu,
        memory=memory,
        workers=workers,
    )


def protocols_section(rows: list[ProtocolRow], args: argparse.Namespace) -> list[str]:
    return [
        "One process serves the same bridge app (same core, routes and ASGI stack) with each "
        "HTTP protocol on its own port (bench/server.py --http-protocols); "
        f"{args.protocol_rounds} rounds, each measuring every implementation back to back in an "
        f"order that rotates from round to round, {args.requests:,} requests each after the "
        "warm-up. Figures are medians over the rounds; the ratios are medians of per-round "
        "ratios to stock httptools.",
        "",
        *protocols_table(rows),
    ]


if __name__ == "__main__":
    main()
