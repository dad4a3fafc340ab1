"""One measurement: h2load sends a fixed number of requests to a running server at a fixed
number in flight, after a warm-up; we read requests/s from h2load, p50/p99 from its per-request
log, CPU time from the /proc entries of the server process and all its descendants (gunicorn's
workers), and success from the server itself where h2load cannot see it (gRPC answers always
carry HTTP 200, so a gRPC call counts as a success only if the server counted it as OK: the
service's /metrics, the bare gRPC ceiling's own count), else from h2load's count of 2xx.

h2load runs under `taskset -c LOAD_CPU` once `pin_load` has been called (bench/run.py pins the
load generator to one core and the servers to the other)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import statistics
import struct
import subprocess
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_LOAD_PREFIX: list[str] = []


def pin_load(prefix: list[str]) -> None:
    """The command prefix h2load runs under from now on (["taskset", "-c", "0"], or none)."""
    _LOAD_PREFIX[:] = prefix


@dataclasses.dataclass(frozen=True)
class Scenario:
    """What one kind of request is: where it goes, what it carries, what it is compared to."""

    name: str
    label: str
    protocol: str  # "grpc" or "http"
    path: str
    body: bytes = b""
    headers: tuple[str, ...] = ()
    ceiling: str = ""  # the scenario this one's ratio is taken against ("" for a ceiling)
    requests_factor: float = 1.0  # customer login is slow: fewer requests
    server: str = "ours"  # which server answers: ours, bare_grpc, bare_http, oidc_provider, dot
    expect: str = ""  # what the spot-check wants (bench/checks.py): token, active, inactive, ok
    in_flight: tuple[int, ...] = ()  # measured only at these loads (empty: at every load)
    introspect_path: str = ""  # token scenarios: where the spot-check introspects the token

    @property
    def grpc_method(self) -> str:
        return self.path if self.protocol == "grpc" else ""


@dataclasses.dataclass(frozen=True)
class Measurement:
    requests: int
    in_flight: int
    per_second: float
    p50_ms: float
    p99_ms: float
    cpu_us: float  # server CPU time (all threads, all processes of its tree) per request
    failed: int
    checked: str = ""  # what the spot-check after the run found ("" where none was made)


def grpc_frame(message: bytes) -> bytes:
    """A gRPC message on the wire: not compressed (0), 4-byte big-endian length, the bytes."""
    return struct.pack(">BI", 0, len(message)) + message


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_cpu_seconds(pid: int) -> float:
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (children, their children, ...)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int(_stat(int(entry.name))[1])
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile
            parents.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of `pid` and its live descendants: a multi-process server's whole cost."""
    total = 0.0
    for member in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError):  # gone meanwhile
            total += process_cpu_seconds(member)
    return total


def resident_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def grpc_codes(metrics_url: str, method: str) -> dict[str, float]:
    """The service's count of calls to `method` per status code name."""
    with urllib.request.urlopen(metrics_url, timeout=10) as response:  # noqa: S310 - loopback
        text = response.read().decode()
    codes: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "tokenservice_grpc_requests_total"
                and sample.labels.get("method") == method
            ):
                codes[sample.labels["code"]] = sample.value
    return codes


def h2load(
    scenario: Scenario, base_url: str, requests: int, in_flight: int, log: Path | None = None
) -> str:
    with tempfile.NamedTemporaryFile(prefix="bench-body-", delete=False) as body_file:
        body_file.write(scenario.body)
    try:
        command = [*_LOAD_PREFIX, "h2load", "-n", str(requests), "-t", "1"]
        if scenario.protocol == "grpc":
            connections = min(in_flight, 10)
            command += ["-c", str(connections), "-m", str(max(1, in_flight // connections))]
            command += ["-H", "content-type: application/grpc", "-H", "te: trailers"]
        else:
            command += ["--h1", "-c", str(in_flight), "-m", "1"]
        for header in scenario.headers:
            command += ["-H", header]
        if scenario.body:
            command += ["-d", body_file.name]
        if log is not None:
            command.append(f"--log-file={log}")
        command.append(base_url + scenario.path)
        result = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"h2load failed: {result.stderr.strip() or result.stdout[-500:]}")
        return result.stdout
    finally:
        os.unlink(body_file.name)


def metrics_ok_counter(metrics_url: str, method: str) -> Callable[[], float]:
    """The service's count of OK answers to `method`, read from its /metrics."""
    return lambda: grpc_codes(metrics_url, method).get("OK", 0)


def measure(
    scenario: Scenario,
    *,
    base_url: str,
    pid: int,
    requests: int,
    in_flight: int,
    ok_count: Callable[[], float] | None = None,
) -> Measurement:
    """`ok_count`: the server's own count of successful calls (required for gRPC)."""
    requests = max(in_flight * 2, int(requests * scenario.requests_factor))
    h2load(scenario, base_url, max(in_flight, requests // 10), in_flight)  # warm-up
    if scenario.protocol == "grpc" and ok_count is None:
        raise ValueError("a gRPC scenario needs the server's own count of OK calls")
    ok_before = ok_count() if ok_count else 0.0
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        log = Path(tmp) / "requests.log"
        cpu_before = tree_cpu_seconds(pid)
        output = h2load(scenario, base_url, requests, in_flight, log)
        cpu_after = tree_cpu_seconds(pid)
        rows = [line.split("\t") for line in log.read_text().splitlines() if line]
    durations_ms = sorted(int(row[2]) / 1000 for row in rows)
    finished = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", output)
    if finished is None:
        raise RuntimeError(f"unexpected h2load output:\n{output}")
    if ok_count is not None:
        failed = requests - int(ok_count() - ok_before)
    else:
        statuses = re.search(r"status codes: (\d+) 2xx", output)
        failed = requests - (int(statuses.group(1)) if statuses else 0)
    quantiles = statistics.quantiles(durations_ms, n=100, method="inclusive")
    return Measurement(
        requests=requests,
        in_flight=in_flight,
        per_second=float(finished.group(1)),
        p50_ms=quantiles[49],
        p99_ms=quantiles[98],
        cpu_us=(cpu_after - cpu_before) * 1e6 / requests,
        failed=failed,
    )


def h2load_version() -> str:
    result = subprocess.run(["h2load", "--version"], capture_output=True, text=True, check=False)
    return result.stdout.strip().splitlines()[0] if result.stdout else "unknown"
