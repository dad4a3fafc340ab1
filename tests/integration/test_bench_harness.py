"""`make bench` works: the harness, run for real with tiny counts on SQLite, starts the service
with its ceilings, drives it with h2load, reads success from the service's /metrics and writes
a results table with a ratio for every measured path and no failed request, and the table of
HTTP protocol implementations (stock httptools, the service's limited protocol, h11).

Skipped (with the reason) where h2load is not installed; `make bench` itself installs it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.skipif(
        shutil.which("h2load") is None,
        reason="h2load (Debian nghttp2-client) is not installed; make bench installs it",
    ),
    pytest.mark.timeout(300),
]


@pytest.mark.slow  # a whole service in processes; make test-fast leaves it out
def test_bench_measures_paths_against_their_ceilings(tmp_path: Path) -> None:
    output = tmp_path / "results.md"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.run",
            "--runs",
            "1",
            "--requests",
            "300",
            "--stores",
            "sqlite",
            "--only",
            "introspect_seen",
            "issue_anonymous",
            "http_validate",
            "--memory-tokens",
            "0",
            "--no-workers",
            "--protocol-rounds",
            "1",
            "--output",
            str(output),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = output.read_text()
    assert "Machine:" in report
    assert "FAILED" not in run.stdout
    rows = [line for line in report.splitlines() if line.startswith("| ") and "---" not in line]
    measured = {
        "IntrospectToken, token seen before",
        "IssueToken anonymous",
        "HTTP GET validateauthtoken",
    }
    for label in measured:
        for in_flight in ("10", "100"):
            row = next(r for r in rows if r.startswith(f"| {label} | {in_flight} |"))
            cells = [cell.strip() for cell in row.strip("|").split("|")]
            assert float(cells[2].replace(",", "")) > 0, row  # requests/s
            assert re.fullmatch(r"\d+\.\d\d", cells[6]), row  # a ratio to its ceiling
            assert "failed" not in cells[0], row
    assert any(r.startswith("| gRPC no-op (ceiling) | 10 |") for r in rows)
    assert any(r.startswith("| HTTP no-op route (ceiling) | 100 |") for r in rows)

    # The HTTP protocols compared on the same app: every one measured, with ratios to stock.
    assert "## HTTP protocol implementations" in report
    for label in ("HTTP no-op route (ceiling)", "HTTP GET validateauthtoken"):
        for protocol in ("uvicorn httptools, stock", "LimitedHttpToolsProtocol", "uvicorn h11"):
            row = next(r for r in rows if r.startswith(f"| {label} | 10 | {protocol}"))
            cells = [cell.strip() for cell in row.strip("|").split("|")]
            assert float(cells[3].replace(",", "")) > 0, row  # requests/s
            assert re.fullmatch(r"\d+\.\d{3}", cells[7]) and re.fullmatch(r"\d+\.\d{3}", cells[8])
            assert "failed" not in cells[2], row
