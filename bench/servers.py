"""The servers a benchmark run measures, each started as its own process: the service as
`serve` runs it (bench/server.py), the bare ceilings (bench/ceilings.py) and the peers
(bench/peers.py); where they run (Pinning: h2load on one core, every server on another, with
taskset), and how each one's successes are counted (the service's /metrics, the bare gRPC
ceiling's own count)."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench import ceilings, peers
from bench.load import (
    Scenario,
    metrics_ok_counter,
)
from launcher import event_loop
from server.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
FORM = "content-type: application/x-www-form-urlencoded"


# --- pinning ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Pinning:
    """Which core the load generator runs on and which the servers run on (None: not pinned)."""

    load_cpu: int | None
    server_cpu: int | None
    why_not: str = ""

    @property
    def server_prefix(self) -> list[str]:
        return [] if self.server_cpu is None else ["taskset", "-c", str(self.server_cpu)]

    @property
    def load_prefix(self) -> list[str]:
        return [] if self.load_cpu is None else ["taskset", "-c", str(self.load_cpu)]

    def describe(self) -> str:
        if self.server_cpu is None:
            return f"not pinned ({self.why_not})"
        return f"h2load on CPU {self.load_cpu}, every server (all its processes) on CPU " + (
            f"{self.server_cpu} (taskset)"
        )


def choose_pinning(wanted: bool) -> Pinning:
    if not wanted:
        return Pinning(None, None, "--no-pin")
    if shutil.which("taskset") is None:
        return Pinning(None, None, "taskset is not installed")
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return Pinning(None, None, f"only {len(cpus)} CPU available")
    return Pinning(cpus[0], cpus[1])


@contextmanager
def on_cpu(cpu: int | None) -> Iterator[None]:
    """This process (and the threads it starts meanwhile) on one CPU for a while."""
    if cpu is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def cpus_of(pid: int) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return line.split(":", 1)[1].strip()
    return "?"


# --- the servers under test ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclasses.dataclass
class Server:
    """One server process measured in a run, as the report lists it."""

    name: str  # ours, bare_grpc, bare_http, oidc_provider, dot
    label: str
    pid: int
    command: list[str]
    url: str  # http://127.0.0.1:PORT (gRPC or HTTP, by the scenario)
    grpc_url: str = ""  # ours only: the gRPC port (url is its HTTP port)
    ok_count: Callable[[str], float] | None = None  # gRPC: the server's count of OK calls
    versions: str = ""

    def base_url(self, scenario: Scenario) -> str:
        return self.grpc_url if scenario.protocol == "grpc" and self.grpc_url else self.url

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "label": self.label,
            "pid": self.pid,
            "command": self.command,
            "cpus": cpus_of(self.pid),
            "versions": self.versions,
        }


@dataclasses.dataclass
class Service:
    process: subprocess.Popen[bytes]
    grpc_port: int
    http_port: int
    fixtures: dict[str, str]
    command: list[str]

    @property
    def grpc_url(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"{self.http_url}/metrics"

    def server(self) -> Server:
        def ok(method: str) -> float:
            return metrics_ok_counter(self.metrics_url, method)()

        return Server(
            "ours",
            "ours",
            self.process.pid,
            self.command,
            self.http_url,
            self.grpc_url,
            ok,
            f"grpcio {grpc.__version__}, {loop_versions(self.fixtures['event_loop'])}",
        )


@contextmanager
def running_service(
    database_url: str,
    workdir: Path,
    server_args: tuple[str, ...] = (),
    pin: tuple[str, ...] = (),
) -> Iterator[Service]:
    grpc_port, http_port = free_port(), free_port()
    fixtures = workdir / "fixtures.json"
    env = {name: value for name, value in os.environ.items() if not name.startswith("TOKENSERVICE")}
    env.update(
        TOKENSERVICE_EVENT_LOOP=event_loop_choice(),  # the ceilings' too (bench/ceilings.py)
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
    command = [*pin, sys.executable, "-m", "bench.server", str(fixtures), *server_args]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until_serving(process, grpc_port, fixtures, workdir / "service.log")
        yield Service(process, grpc_port, http_port, json.loads(fixtures.read_text()), command)
    finally:
        stop(process)
        log.close()


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


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


def bare_grpc_calls(target: str) -> Callable[[str], float]:
    """The bare gRPC ceiling's own count of calls it answered."""

    def count(method: str) -> float:
        with grpc.insecure_channel(target) as channel:
            answer: bytes = channel.unary_unary(ceilings.GRPC_COUNT_METHOD)(b"", timeout=10)
        return float(answer.decode())

    return count


@contextmanager
def running_ceiling(kind: str, response: bytes, workdir: Path, pin: list[str]) -> Iterator[Server]:
    """A bare ceiling (bench/ceilings.py) as its own process, answering `response`'s bytes."""
    port = free_port()
    response_file = workdir / f"ceiling-{kind}.bin"
    response_file.write_bytes(response)
    log_path = workdir / f"ceiling-{kind}.log"
    command = [*pin, sys.executable, "-m", "bench.ceilings", kind, str(port), str(response_file)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        target = f"127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the {kind} ceiling exited:\n{log_path.read_text()}")
            try:
                if kind == "grpc":
                    bare_grpc_calls(target)("")
                else:
                    urllib.request.urlopen(
                        f"http://{target}{ceilings.HTTP_PATH}", timeout=1
                    ).close()
                break
            except (grpc.RpcError, OSError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the {kind} ceiling did not start") from None
                time.sleep(0.1)
        if kind == "grpc":
            yield Server(
                "bare_grpc",
                "bare grpc.aio no-op",
                process.pid,
                command,
                f"http://{target}",
                ok_count=bare_grpc_calls(target),
                versions=(
                    f"grpcio {grpc.__version__}, stock grpc.aio.server(), no interceptors, "
                    f"{loop_versions()}"
                ),
            )
        else:
            yield Server(
                "bare_http",
                "bare uvicorn + Starlette no-op",
                process.pid,
                command,
                f"http://{target}",
                versions=uvicorn_versions(),
            )
    finally:
        stop(process)


def uvicorn_versions() -> str:
    import starlette
    import uvicorn

    return (
        f"uvicorn {uvicorn.__version__} (httptools), Starlette {starlette.__version__}, "
        f"{loop_versions()}"
    )


def event_loop_choice() -> str:
    """The loop the service and the ceilings run on: TOKENSERVICE_EVENT_LOOP as the harness was
    started with (`TOKENSERVICE_EVENT_LOOP=asyncio make bench`), else the service's default."""
    return event_loop.check(os.environ.get("TOKENSERVICE_EVENT_LOOP", Settings().event_loop))


def loop_versions(name: str | None = None) -> str:
    """The loop `name` (bench/server.py reports the one it runs on), else the one chosen."""
    if (name or event_loop_choice()) == "asyncio":
        return "the standard asyncio loop"
    return f"uvloop {importlib.metadata.version('uvloop')}"


@contextmanager
def running_peers(
    mode: str, workdir: Path, pin: list[str], notices: list[str]
) -> Iterator[list[peers.Peer]]:
    """Every peer that can be had, started; a notice for each that cannot."""
    running: list[peers.Peer] = []
    with contextlib.ExitStack() as stack:
        for label, install, start in (
            ("node-oidc-provider", peers.install_node, peers.node_oidc_provider),
            ("django-oauth-toolkit", peers.install_dot, peers.django_oauth_toolkit),
        ):
            if mode == "off":
                notices.append(f"{label}: not run (--peers off)")
                continue
            try:
                folder = install(mode)
                running.append(stack.enter_context(start(folder, free_port(), workdir, pin)))
            except peers.Unavailable as why:
                notices.append(f"{label}: skipped, {why}")
                print(f"notice: {label} skipped: {why}", flush=True)
        yield running
