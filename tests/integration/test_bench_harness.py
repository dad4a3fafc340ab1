"""`make bench` works: the harness, run for real with tiny counts on SQLite, starts the service
and the two bare ceilings as processes of their own, drives them with h2load, checks every
answer and writes a report with the goals table, the tables per path with a ratio to the bare
ceiling for every measured path and no failed request, labelled as a smoke run; and the raw
JSON beside it names three different server processes, whose CPU was measured on each.

The peers (node-oidc-provider, django-oauth-toolkit) run in a second test only where they are
already installed in the harness's cache folder (`make bench` or `make bench-peers` installs
them): the test suite never downloads them, and skips with a notice where they are missing.

Skipped (with the reason) where h2load is not installed; `make bench` itself installs it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import peers

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.skipif(
        shutil.which("h2load") is None,
        reason="h2load (Debian nghttp2-client) is not installed; make bench installs it",
    ),
    pytest.mark.timeout(300),
]


def run_bench(tmp_path: Path, *extra: str) -> tuple[str, dict[str, Any], str]:
    output = tmp_path / "results.md"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.run",
            "--runs",
            "1",
            "--requests",
            "400",
            "--in-flight",
            "10",
            "--stores",
            "sqlite",
            "--memory-tokens",
            "0",
            "--no-workers",
            "--output",
            str(output),
            *extra,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "FAILED" not in run.stdout, run.stdout[-3000:]
    raw = json.loads(output.with_suffix(".json").read_text())
    return output.read_text(), raw, run.stdout


def table_rows(report: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in report.splitlines()
        if line.startswith("| ") and "---" not in line
    ]


def row(rows: list[list[str]], label: str, in_flight: str = "10") -> list[str]:
    found = [r for r in rows if r[0] == label and r[1] == in_flight]
    assert found, f"no row {label!r} at {in_flight} in flight"
    return found[0]


TOKEN = "access_token that introspects active"


def assert_measured(cells: list[str], checked: str, *, ratio: bool) -> None:
    """req/s and CPU per request measured, every answer OK and spot-checked as `checked`
    (bench/checks.py), a ratio to the bare ceiling if asked."""
    assert float(cells[2].replace(",", "")) > 0, cells  # requests/s
    assert float(cells[5].replace(",", "")) > 0, cells  # CPU us per request
    assert re.fullmatch(rf"all [\d,]+ OK, checked {checked}", cells[10]), cells
    if ratio:
        assert re.fullmatch(r"\d+\.\d\d", cells[7]), cells  # vs the bare ceiling


def servers(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (store,) = raw["stores"]
    return {server["name"]: server for server in store["servers"]}


def cpu_of(raw: dict[str, Any], scenario: str) -> float:
    (store,) = raw["stores"]
    (measured,) = [r for r in store["rows"] if r["scenario"] == scenario]
    return float(measured["rounds"][0]["cpu_us"])


@pytest.mark.slow  # a whole service and two ceilings in processes; make test-fast leaves it out
def test_bench_measures_paths_against_independent_ceilings(tmp_path: Path) -> None:
    report, raw, _ = run_bench(
        tmp_path,
        "--peers",
        "off",
        "--only",
        "introspect_seen",
        "issue_anonymous",
        "http_validate",
        "--protocol-rounds",
        "1",
    )
    assert "Machine:" in report
    assert "SMOKE RUN" in report and "## Goals (issue 16) — smoke figures" in report
    rows = table_rows(report)
    for label, checked in (
        ("ours: IntrospectToken, token seen before", "active"),
        ("ours: IssueToken anonymous", TOKEN),
        ("ours: HTTP GET validateauthtoken", "2xx"),
    ):
        assert_measured(row(rows, label), checked, ratio=True)
    assert_measured(row(rows, "bare grpc.aio no-op (ceiling)"), "active", ratio=False)
    assert_measured(row(rows, "bare uvicorn + Starlette no-op (ceiling)"), "2xx", ratio=False)
    assert "### gRPC" in report and "### HTTP GET validateauthtoken" in report

    # The goals table: the measured goals have a figure and a verdict, the others say so.
    goal = next(r for r in rows if r[0].startswith("gRPC issue_anonymous against the bare"))
    assert re.fullmatch(r"[\d,]+ req/s: \d+\.\d\d", goal[2]) and goal[3] in ("met", "**not met**")
    goal = next(r for r in rows if r[0].startswith("HTTP /oauth/token ahead of node"))
    assert goal[3] == "not measured"

    # The ceilings really ran as processes of their own, beside the service, and their CPU is
    # their own process's.
    named = servers(raw)
    assert {"ours", "bare_grpc", "bare_http"} <= set(named)
    assert len({named[name]["pid"] for name in ("ours", "bare_grpc", "bare_http")}) == 3
    assert "bench.server" in " ".join(named["ours"]["command"])
    assert "bench.ceilings grpc" in " ".join(named["bare_grpc"]["command"])
    assert "bench.ceilings http" in " ".join(named["bare_http"]["command"])
    assert cpu_of(raw, "bare_grpc") > 0 and cpu_of(raw, "bare_http") > 0
    # The service says which loop it runs on; the ceilings are started on the same one.
    assert "uvloop" in named["ours"]["versions"], named["ours"]["versions"]
    assert "uvloop" in named["bare_grpc"]["versions"] and "uvloop" in named["bare_http"]["versions"]

    # The HTTP protocols compared on the same app: every one measured, with ratios to stock.
    assert "## HTTP protocol implementations" in report
    for label in (
        "ours: own-stack no-op route (our middleware, no work)",
        "HTTP GET validateauthtoken",
    ):
        for protocol in ("uvicorn httptools, stock", "LimitedHttpToolsProtocol", "uvicorn h11"):
            cells = next(r for r in rows if r[0] == label and r[2].startswith(protocol))
            assert float(cells[3].replace(",", "")) > 0, cells  # requests/s
            assert re.fullmatch(r"\d+\.\d{3}", cells[7]) and re.fullmatch(r"\d+\.\d{3}", cells[8])
            assert "failed" not in cells[2], cells


PEERS_CACHED = (peers.node_dir() / ".installed").exists() and (
    peers.dot_dir() / ".installed"
).exists()


@pytest.mark.slow
@pytest.mark.skipif(
    not PEERS_CACHED,
    reason=f"the peers are not installed in {peers.cache_root()}: `make bench-peers` installs "
    "them (the test suite does not download)",
)
def test_bench_measures_the_peers_beside_the_service(tmp_path: Path) -> None:
    report, raw, _ = run_bench(
        tmp_path,
        "--peers",
        "cached",
        "--no-http-protocols",
        "--only",
        "http_token",
        "http_introspect",
        "oidc_provider_token",
        "oidc_provider_introspect",
        "dot_token",
        "dot_introspect",
    )
    rows = table_rows(report)
    for label, checked in (
        ("ours: HTTP POST /oauth/token client_credentials", TOKEN),
        ("node-oidc-provider: token client_credentials", TOKEN),
        ("node-oidc-provider: introspection", "active"),
        ("django-oauth-toolkit: token client_credentials (plain secret)", TOKEN),
        ("django-oauth-toolkit: introspection", "active"),
    ):
        cells = row(rows, label)
        assert_measured(cells, checked, ratio=True)
        if label.startswith("ours"):
            continue
        assert re.fullmatch(r"\d+\.\d\d", cells[9]), cells  # ours over this peer
    for goal in ("HTTP /oauth/token ahead of node", "HTTP introspection ahead of node"):
        cells = next(r for r in rows if r[0].startswith(goal))
        assert re.fullmatch(r"[\d,]+ vs [\d,]+ req/s: \d+\.\d\dx", cells[2]), cells

    named = servers(raw)
    assert len({named[name]["pid"] for name in ("ours", "oidc_provider", "dot")}) == 3
    assert "node server.mjs" in " ".join(named["oidc_provider"]["command"])
    assert "gunicorn" in " ".join(named["dot"]["command"])
    # gunicorn's workers do the work, not its master: their CPU is counted
    assert cpu_of(raw, "dot_token") > 100
