"""The README's first walkthrough works as written: run with bash and the real curl against
`tokenservice serve` with the demo tenant, as a newcomer would after `make run` (only the port
and the path of the virtualenv are adapted)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from tests.integration.test_docs_http_walkthrough import run_beside_demo_server
from tests.support.doc_blocks import doc_sh_blocks
from tests.support.processes import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = "README.md"
HEADING = "## A first walkthrough: a visitor, a customer, a back end"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.slow  # a whole service in processes; make test-fast leaves it out
async def test_the_readme_walkthrough_runs(tmp_path: Path) -> None:
    grpc_port, http_port = free_port(), free_port()
    (script,) = doc_sh_blocks(DOCUMENT, HEADING)
    assert "localhost:8080" in script and ".venv/bin/" in script
    script = script.replace("localhost:8080", f"127.0.0.1:{http_port}")
    script = script.replace(".venv/bin/", f"{Path(sys.executable).parent}/")
    out = await run_beside_demo_server(
        script, tmp_path, grpc_port, TOKENSERVICE_HTTP_ADDR=f"127.0.0.1:{http_port}"
    )
    anonymous, validated, service, logout = out.splitlines()
    anonymous_answer, validated_answer = json.loads(anonymous), json.loads(validated)
    assert set(anonymous_answer) >= {"access_token", "refresh_token", "sessionId"}, out
    # The customer's session continues the visitor's.
    assert validated_answer["sessionId"] == anonymous_answer["sessionId"], out
    assert validated_answer["email"], out
    service_answer = json.loads(service)
    assert service_answer["access_token"] and "catalog.read" in service_answer["scope"], out
    assert logout == "204", out


ACCOUNTS_HEADING = "## Accounts: sign-up, a password reset, a token exchange"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.slow  # a whole service in processes; make test-fast leaves it out
async def test_the_readme_accounts_walkthrough_runs(tmp_path: Path) -> None:
    """The accounts block, run after the first one as a reader would (it uses its variables):
    a sign-up, a reset with the token read from the outbox, and a token exchange against the
    stand-in provider (ports and the virtualenv adapted)."""
    grpc_port, http_port, idp_port = free_port(), free_port(), free_port()
    (first,) = doc_sh_blocks(DOCUMENT, HEADING)
    (accounts,) = doc_sh_blocks(DOCUMENT, ACCOUNTS_HEADING)
    assert "127.0.0.1:8090" in accounts
    script = f"cd {tmp_path}\n{first}\n{accounts}"
    script = script.replace("docs/examples/", f"{REPO_ROOT}/docs/examples/")
    script = script.replace("localhost:8080", f"127.0.0.1:{http_port}")
    script = script.replace("127.0.0.1:8090", f"127.0.0.1:{idp_port}")
    script = script.replace(".venv/bin/", f"{Path(sys.executable).parent}/")
    out = await run_beside_demo_server(
        script, tmp_path, grpc_port, TOKENSERVICE_HTTP_ADDR=f"127.0.0.1:{http_port}"
    )
    lines = out.splitlines()[4:]  # after the first block's four
    assert set(json.loads(lines[0])) == {"id"}, out  # signed up
    assert lines[1] == "204", out  # the new password, set with the mailed token
    assert "trusts identity provider" in lines[2], out  # tokenservice idp put
    exchanged = json.loads(lines[3])
    assert exchanged["access_token"] and exchanged["saas_token"] and exchanged["session_id"], out
