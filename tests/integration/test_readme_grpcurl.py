"""The README's "Walkthrough with grpcurl" works as written: its blocks, in order, run with bash
and the real grpcurl against `tokenservice serve` with the demo tenant, as a newcomer would
after `make run` (only the port and the path of the virtualenv are adapted). Every grpcurl call
that fails exits non-zero, which fails the script."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.integration.test_readme_http import readme_sh_blocks, run_beside_demo_server
from tests.integration.test_shutdown import free_port

HEADING = "## Walkthrough with grpcurl"
README_ADDR = "localhost:50051"


async def test_readme_grpcurl_walkthrough_runs(tmp_path: Path) -> None:
    port = free_port()
    script = "\n".join(readme_sh_blocks(HEADING))
    assert README_ADDR in script and ".venv/bin/" in script
    script = script.replace(README_ADDR, f"127.0.0.1:{port}")
    script = script.replace(".venv/bin/", f"{Path(sys.executable).parent}/")
    out = await run_beside_demo_server(script, tmp_path, port)
    # Every section ran: the customer refresh switched the legal entity, the admin call answered.
    assert '"legal_entity_id": "le-demo-2"' in out
    assert '"kind": "TOKEN_KIND_SERVICE"' in out and '"client_secret":' in out
