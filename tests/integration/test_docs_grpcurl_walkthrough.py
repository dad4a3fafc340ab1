"""docs/walkthrough.md's "Walkthrough with grpcurl" works as written: its blocks, in order, run
with bash and the real grpcurl against `tokenservice serve` with the demo tenant, as a newcomer
would after `make run` (only the port and the path of the virtualenv are adapted). Every grpcurl
call that fails exits non-zero, which fails the script."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.integration.test_docs_http_walkthrough import run_beside_demo_server
from tests.support.doc_blocks import doc_sh_blocks
from tests.support.processes import free_port

DOCUMENT = "docs/walkthrough.md"
HEADING = "## Walkthrough with grpcurl"
DOCUMENTED_ADDR = "localhost:50051"


async def test_the_grpcurl_walkthrough_runs(tmp_path: Path) -> None:
    port = free_port()
    script = "\n".join(doc_sh_blocks(DOCUMENT, HEADING))
    assert DOCUMENTED_ADDR in script and ".venv/bin/" in script
    script = script.replace(DOCUMENTED_ADDR, f"127.0.0.1:{port}")
    script = script.replace(".venv/bin/", f"{Path(sys.executable).parent}/")
    out = await run_beside_demo_server(script, tmp_path, port)
    # Every section ran: the customer refresh switched the legal entity, the admin call answered.
    assert '"legal_entity_id": "le-demo-2"' in out
    assert '"current": true' in out  # the customer's own session, listed
    assert '"kind": "TOKEN_KIND_SERVICE"' in out and '"client_secret":' in out
