"""docs/operations.md's "Several replicas with PostgreSQL" block works as written: run with
bash, the real createdb and curl, two `tokenservice serve` processes on one fresh database.
Adapted only where a test must: the database name and server, free ports, the virtualenv's path,
and no `make install` (the suite runs in it already)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.support.doc_blocks import doc_sh_blocks
from tests.support.postgres import SERVER_URL, PostgresServer, with_database
from tests.support.processes import free_port

pytestmark = pytest.mark.postgres

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = "docs/operations.md"
HEADING = "## Several replicas with PostgreSQL"
DOCUMENTED_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/tokens"
DOCUMENTED_CREATEDB = "createdb -h 127.0.0.1 -U postgres tokens"


def replicas_block() -> str:
    """The section's first ```sh block: the two replicas, step by step."""
    return doc_sh_blocks(DOCUMENT, HEADING)[0]


def adapted(script: str, database: str, ports: dict[int, int]) -> str:
    """The block with this test's database, ports and virtualenv; every replaced text must be
    there, so that the document cannot drift away from what is tested."""
    server = make_url(SERVER_URL)
    replacements = {
        "make install": "true",
        DOCUMENTED_CREATEDB: (
            f"createdb -h {server.host or '127.0.0.1'} -p {server.port or 5432} "
            f"-U {server.username or 'postgres'} {database}"
        ),
        DOCUMENTED_URL: with_database(SERVER_URL, database),
        ".venv/bin/": f"{Path(sys.executable).parent}/",
        **{f"0.0.0.0:{documented}": f"127.0.0.1:{port}" for documented, port in ports.items()},
        **{f"localhost:{http}": f"127.0.0.1:{ports[http]}" for http in (8080, 8081)},
    }
    for documented, ours in replacements.items():
        assert documented in script, f"the {DOCUMENT} block no longer has {documented!r}"
        script = script.replace(documented, ours)
    return script


@pytest.mark.skipif(
    shutil.which("curl") is None or shutil.which("createdb") is None,
    reason="curl or createdb is not installed",
)
@pytest.mark.slow  # a whole service in processes; make test-fast leaves it out
async def test_the_two_replicas_walkthrough_runs(postgres_server: PostgresServer) -> None:
    database = f"{postgres_server.prefix}_docs_replicas"
    ports = {documented: free_port() for documented in (50051, 50052, 8080, 8081)}
    script = adapted(replicas_block(), database, ports)
    env = {name: value for name, value in os.environ.items() if not name.startswith("TOKENSERVICE")}
    shell = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        # Whatever happens, no replica outlives the script.
        "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n" + script,
        env=env,
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        stdout, stderr = await asyncio.wait_for(shell.communicate(), timeout=90)
    except TimeoutError:
        os.killpg(shell.pid, signal.SIGKILL)
        raise
    finally:
        await postgres_server.drop(with_database(SERVER_URL, database))
    out = stdout.decode()
    assert shell.returncode == 0, f"{stderr.decode()}\n{out}"
    answers = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(answers) == 2, out
    login, refreshed = answers
    assert refreshed["sessionId"] == login["sessionId"]
    assert refreshed["refresh_token"] != login["refresh_token"]
    # Both replicas drained and stopped on `kill`: each logged its stop.
    assert stderr.decode().count("stopped") >= 2, stderr.decode()
