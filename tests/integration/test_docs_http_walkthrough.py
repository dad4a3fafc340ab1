"""docs/walkthrough.md's "Every HTTP route with curl" block works as written: it is run with bash
and the real curl against `tokenservice serve` with the demo tenant, as a newcomer would after
`make run` (only the port and the path of the virtualenv are adapted)."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path

import pytest

from launcher import demo
from tests.support.doc_blocks import doc_sh_blocks
from tests.support.processes import (
    free_port,
    service_env,
    start_serve,
    stop_process,
    text_of,
    wait_until_serving,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = "docs/walkthrough.md"
HEADING = "## Every HTTP route with curl"


async def run_bash(script: str, env: dict[str, str]) -> tuple[int, str, str]:
    """`script` under `set -euo pipefail`, from the repository root: (exit code, out, err)."""
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
    assert shell.returncode is not None
    return shell.returncode, stdout.decode(), stderr.decode()


async def run_beside_demo_server(
    script: str, tmp_path: Path, grpc_port: int, **settings: str
) -> str:
    """Starts `tokenservice serve` with the demo tenant (and `settings`), runs `script` with
    `run_bash` once it serves, stops it; the script's output, which must have succeeded."""
    env = service_env(tmp_path / "t.db", grpc_port, TOKENSERVICE_PROVISION_DEMO="true", **settings)
    process = await start_serve(env, tmp_path)
    try:
        await wait_until_serving(f"127.0.0.1:{grpc_port}", process, tmp_path / "stderr.txt")
        code, out, err = await run_bash(script, env)
    finally:
        await stop_process(process)
    assert code == 0, f"{err}\n{out}\nserver:\n{text_of(tmp_path / 'stderr.txt')}"
    return out


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.slow  # a whole service in processes; make test-fast leaves it out
async def test_the_curl_walkthrough_runs(tmp_path: Path) -> None:
    grpc_port, http_port = free_port(), free_port()
    script = doc_sh_blocks(DOCUMENT, HEADING)[0]
    assert "localhost:8080" in script and ".venv/bin/" in script
    script = script.replace("localhost:8080", f"127.0.0.1:{http_port}")
    script = script.replace(".venv/bin/", f"{Path(sys.executable).parent}/")
    out = await run_beside_demo_server(
        script, tmp_path, grpc_port, TOKENSERVICE_HTTP_ADDR=f"127.0.0.1:{http_port}"
    )
    lines = out.splitlines()
    anonymous = json.loads(lines[0])
    assert set(anonymous) >= {"access_token", "refresh_token", "sessionId", "scope"}
    assert "204" in lines, out  # logout
    after_logout = json.loads(lines[lines.index("204") + 1])
    assert after_logout["status"] == 401 and after_logout["type"] == "invalid_token"
    assert after_logout["fault"]["detail"]["errorcode"] == "oauth.v2.InvalidAccessToken"
    assert {"active": False} in [json.loads(line) for line in lines if line.startswith("{")]
    assert '"keys":[' in out and '"issuer":' in out and '"status":"ready"' in out


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.slow  # a whole service in processes; make test-fast leaves it out
async def test_the_token_exchange_walkthrough_runs(tmp_path: Path) -> None:
    grpc_port, http_port, idp_port = free_port(), free_port(), free_port()
    script = doc_sh_blocks(DOCUMENT, "## Token exchange with an identity provider")[0]
    assert "localhost:8080" in script and "127.0.0.1:8090" in script
    script = script.replace("localhost:8080", f"127.0.0.1:{http_port}")
    script = script.replace("127.0.0.1:8090", f"127.0.0.1:{idp_port}")
    script = script.replace(".venv/bin/", f"{Path(sys.executable).parent}/")
    out = await run_beside_demo_server(
        script, tmp_path, grpc_port, TOKENSERVICE_HTTP_ADDR=f"127.0.0.1:{http_port}"
    )
    answers = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    exchanged, validated, refused = answers[-3:]
    assert {"subject_access_token", "access_token", "saas_token", "session_id"} <= set(exchanged)
    assert validated["email"] == demo.CUSTOMER_EMAIL
    assert refused["status"] == 400 and refused["type"] == "invalid_request"
    assert refused["details"][0]["field"] == "subjectAccessToken"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.slow  # a whole service in processes; make test-fast leaves it out
async def test_the_sign_up_and_reset_walkthrough_runs(tmp_path: Path) -> None:
    """Sign-up, a reset token read from the outbox with `tokenservice mail`, the new password,
    and a login with it: the section's block as written (port and virtualenv adapted)."""
    grpc_port, http_port = free_port(), free_port()
    [script] = doc_sh_blocks(DOCUMENT, "## Sign-up and a password reset through the outbox")
    script = script.replace("localhost:8080", f"127.0.0.1:{http_port}")
    script = script.replace(".venv/bin/", f"{Path(sys.executable).parent}/")
    out = await run_beside_demo_server(
        script, tmp_path, grpc_port, TOKENSERVICE_HTTP_ADDR=f"127.0.0.1:{http_port}"
    )
    lines = out.splitlines()
    assert set(json.loads(lines[0])) == {"id"} and lines[1] == "201", out
    assert lines[2:4] == ["204", "204"], out  # the reset request, then the update
    login = json.loads(lines[4])
    assert login["access_token"] and login["saas_token"], out
    assert (tmp_path / "outbox").is_dir()
