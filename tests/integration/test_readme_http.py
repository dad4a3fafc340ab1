"""The README's "Every HTTP route with curl" block works as written: it is run with bash and the
real curl against `tokenservice serve` with the demo tenant, as a newcomer would after
`make run` (only the port and the path of the virtualenv are adapted)."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path

import pytest

from tests.integration.test_shutdown import (
    free_port,
    service_env,
    start_serve,
    stop_process,
    text_of,
    wait_until_serving,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
HEADING = "### Every HTTP route with curl"


def readme_curl_block() -> str:
    text = (REPO_ROOT / "README.md").read_text()
    after = text.split(HEADING, 1)[1]
    return after.split("```sh\n", 1)[1].split("```", 1)[0]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_readme_curl_walkthrough_runs(tmp_path: Path) -> None:
    grpc_port, http_port = free_port(), free_port()
    env = service_env(
        tmp_path / "t.db",
        grpc_port,
        TOKENSERVICE_HTTP_ADDR=f"127.0.0.1:{http_port}",
        TOKENSERVICE_PROVISION_DEMO="true",
    )
    script = readme_curl_block()
    assert "localhost:8080" in script and ".venv/bin/" in script
    script = script.replace("localhost:8080", f"127.0.0.1:{http_port}")
    script = script.replace(".venv/bin/", f"{Path(sys.executable).parent}/")
    process = await start_serve(env, tmp_path)
    try:
        await wait_until_serving(f"127.0.0.1:{grpc_port}", process, tmp_path / "stderr.txt")
        shell = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            "set -euo pipefail\n" + script,
            env=env,
            cwd=REPO_ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(shell.communicate(), timeout=60)
    finally:
        await stop_process(process)
    out = stdout.decode()
    assert shell.returncode == 0, (
        f"{stderr.decode()}\n{out}\nserver:\n{text_of(tmp_path / 'stderr.txt')}"
    )
    lines = out.splitlines()
    anonymous = json.loads(lines[0])
    assert set(anonymous) >= {"access_token", "refresh_token", "sessionId", "scope"}
    assert "204" in lines, out  # logout
    after_logout = json.loads(lines[lines.index("204") + 1])
    assert after_logout["status"] == 401 and after_logout["type"] == "invalid_token"
    assert {"active": False} in [json.loads(line) for line in lines if line.startswith("{")]
    assert '"keys":[' in out and '"issuer":' in out and '"status":"ready"' in out
