"""docs/clients.md works as written: every block in it (sh with curl and the
CLI, Python with authlib and requests-oauthlib, JavaScript with openid-client) runs against
`tokenservice serve` with the demo tenant, as an operator would after `make run`; only the
port, the issuer and the path of the virtualenv are adapted."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from tests.integration.test_docs_http_walkthrough import run_beside_demo_server
from tests.support import outside_tools
from tests.support.doc_blocks import doc_blocks
from tests.support.processes import free_port

DOCUMENT = "docs/clients.md"
# How each language's block runs from the repository root: Python in this virtualenv, JavaScript
# as an ES module beside tests/js/node_modules, where the pinned npm clients are.
RUNNERS = {
    "sh": "{block}",
    "python": "{python} - <<'DOC_BLOCK'\n{block}\nDOC_BLOCK",
    "js": "(cd tests/js && node --input-type=module <<'DOC_BLOCK'\n{block}\nDOC_BLOCK\n)",
}


async def run_section(subheading: str, tmp_path: Path) -> str:
    """Runs every block under `subheading` of docs/clients.md, in order, in one shell."""
    grpc_port, http_port = free_port(), free_port()
    base = f"http://127.0.0.1:{http_port}"
    parts = []
    for language, block in doc_blocks(DOCUMENT, subheading):
        assert language in RUNNERS, f"a {language} block in {DOCUMENT}'s {subheading}"
        block = block.replace("http://localhost:8080", base)
        block = block.replace(".venv/bin/", f"{Path(sys.executable).parent}/")
        parts.append(RUNNERS[language].format(block=block, python=sys.executable))
    assert parts, f"no blocks under {subheading}"
    bin_dir = Path(sys.executable).parent
    script = f'eval "$({bin_dir}/tokenservice demo env)"\n' + "\n".join(parts)
    return await run_beside_demo_server(
        script,
        tmp_path,
        grpc_port,
        TOKENSERVICE_HTTP_ADDR=f"127.0.0.1:{http_port}",
        TOKENSERVICE_ISSUER=base,
    )


def json_lines(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_the_storefront_sdk_session_handling_runs_as_written(tmp_path: Path) -> None:
    out = await run_section(
        "## An Emporix storefront (the storefront SDK, or hand-written `fetch()` calls)", tmp_path
    )
    (validated,) = json_lines(out)  # the customer token refreshed after the page reload
    assert validated["email"] and validated["sessionId"], out


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_the_cors_example_runs_as_written(tmp_path: Path) -> None:
    out = await run_section("## A browser storefront on another origin (CORS)", tmp_path)
    headers = out.lower()
    assert "access-control-allow-origin: https://shop.example" in headers, out
    assert "authorization" in headers and "content-type" in headers, out
    assert out.rstrip().splitlines()[-1] == "0", out  # the origin that is not allowed


async def test_the_openid_client_example_runs_as_written(tmp_path: Path) -> None:
    outside_tools.need_node()
    out = await run_section(
        "## openid-client and oauth4webapi (Node.js), and other standard OAuth clients", tmp_path
    )
    token, active, after_revocation = out.splitlines()
    assert_service_token(token.split(), "catalog.read")
    assert (active, after_revocation) == ("true", "false"), out


async def test_the_authlib_and_requests_oauthlib_example_runs_as_written(tmp_path: Path) -> None:
    out = await run_section("## authlib and requests-oauthlib (Python)", tmp_path)
    authlib_line, requests_oauthlib_line = (line.split() for line in out.splitlines())
    assert authlib_line[0] == "authlib", out
    assert_service_token(authlib_line[1:], "catalog.read")
    assert requests_oauthlib_line[0] == "requests-oauthlib", out
    assert_service_token(requests_oauthlib_line[1:], "catalog.read catalog.write")


def assert_service_token(printed: list[str], scope: str) -> None:
    """`token_type expires_in scope...` as the examples print them: a bearer token of the demo
    service client with exactly `scope` (and the tenant the service adds)."""
    token_type, expires_in, *scopes = printed
    assert token_type.lower() == "bearer" and int(expires_in) > 0, printed
    assert set(scopes) - {"tenant=demo", "tokenservice.admin"} == set(scope.split()), printed


async def test_the_legacy_storefront_client_example_runs_as_written(tmp_path: Path) -> None:
    out = await run_section("## Refresh-token rotation and legacy storefronts", tmp_path)
    assert "legacy-shop" in out, out
