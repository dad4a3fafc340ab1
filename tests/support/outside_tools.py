"""The programs we did not write that tests run against the service: Node.js with the pinned npm
clients of tests/js (openid-client, oauth4webapi, jose, playwright-core), Debian's Chromium and
Debian's PgBouncer.

`make install` installs tests/js when npm is present; `make test` installs Chromium and
PgBouncer with apt where it runs as root. A test that needs one calls `need_node()`,
`need_chromium()` or `need_pgbouncer()`: where the thing cannot be had it skips with the reason,
which the run's summary repeats, and where CI sets TOKENSERVICE_TEST_REQUIRE_NODE=1,
TOKENSERVICE_TEST_REQUIRE_BROWSER=1 or TOKENSERVICE_TEST_REQUIRE_PGBOUNCER=1 the skip is a
failure.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

JS_DIR = Path(__file__).resolve().parents[1] / "js"
NODE_MODULES = JS_DIR / "node_modules"
CHROMIUM_CANDIDATES = ("chromium", "chromium-browser")
# What a headless Chromium needs on a closed network and as root (the machine notes): without
# the background-networking flags it keeps trying to reach Google's hosts.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
SKIPPED: list[str] = []


def need_node(package: str = "openid-client") -> str:
    """The node binary, with tests/js installed (`package` among its modules); else skip (or
    fail where CI requires it)."""
    node = shutil.which("node")
    if node is None:
        _unavailable("Node.js is not installed", "TOKENSERVICE_TEST_REQUIRE_NODE")
    elif not (NODE_MODULES / package).is_dir():
        _unavailable(
            "tests/js is not installed (make install runs npm ci there)",
            "TOKENSERVICE_TEST_REQUIRE_NODE",
        )
    assert node is not None
    return node


def need_chromium() -> str:
    """Debian's Chromium and Node.js with playwright-core; else skip (or fail in CI)."""
    need_node()
    found = next((p for p in map(shutil.which, CHROMIUM_CANDIDATES) if p), None)
    if found is None:
        _unavailable(
            "Chromium is not installed (make test installs Debian's chromium as root)",
            "TOKENSERVICE_TEST_REQUIRE_BROWSER",
        )
    assert found is not None
    return found


def need_pgbouncer() -> str:
    """Debian's pgbouncer binary; else skip (or fail in CI)."""
    found = shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer",) if Path(p).is_file()), None
    )
    if found is None:
        _unavailable(
            "PgBouncer is not installed (make test installs Debian's pgbouncer as root)",
            "TOKENSERVICE_TEST_REQUIRE_PGBOUNCER",
        )
    assert found is not None
    return found


def _unavailable(reason: str, required_by: str) -> None:
    if os.environ.get(required_by) == "1":
        pytest.fail(f"{reason}; {required_by}=1 requires it")
    if reason not in SKIPPED:
        SKIPPED.append(reason)
    pytest.skip(reason)
