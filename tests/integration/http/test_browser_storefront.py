"""A real browser runs the storefront journey across origins: headless Chromium (Debian's, driven
by playwright-core, tests/js/browser_storefront.mjs) loads a page from a static HTTP server on
one loopback port and calls the bridge on another with fetch(): anonymous login, anonymous
refresh, customer login, validate, customer refresh, logout, and a 401 it must be able to read.

The page's origin is the tenant's allowed origin (set through the admin operations), so every
step succeeds and the page reads each answer. A second page, from a port whose origin is not
allowed, sends a simple request and a preflighted one: the browser itself refuses both answers
(fetch rejects with a TypeError, and Chromium says it was CORS). Nothing here judges CORS
headers by reading them; the browser does."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from server import admin
from tests.integration.http.conftest import Bridge
from tests.support.outside_tools import CHROMIUM_FLAGS, JS_DIR, need_chromium, need_node

SCRIPT = JS_DIR / "browser_storefront.mjs"
PAGE = b"<!doctype html><html><head><title>shop</title></head><body>shop</body></html>"
# A guard against a hung browser, not a measure of speed.
BROWSER_TIMEOUT_SECONDS = 300


class ShopPage(http.server.BaseHTTPRequestHandler):
    """The shop's own web server: one static page, whatever the path."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@contextlib.contextmanager
def shop_page_server() -> Iterator[str]:
    """A real HTTP server on a free loopback port, in a thread; yields its origin."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ShopPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def run_browser(node: str, arguments: dict[str, Any]) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        node,
        str(SCRIPT),
        json.dumps(arguments),
        cwd=JS_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), BROWSER_TIMEOUT_SECONDS)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, err.decode(errors="replace")
    result: dict[str, Any] = json.loads(out)
    return result


@pytest.mark.parametrize("database_kind", ["sqlite"])
async def test_a_page_on_an_allowed_origin_runs_the_journey_and_others_are_blocked(
    bridge: Bridge, tmp_path: Path
) -> None:
    chromium = need_chromium()
    node = need_node()
    shop = await bridge.harness.shop("shopa")
    with shop_page_server() as allowed, shop_page_server() as blocked:
        await admin.set_allowed_origins(bridge.harness.core, "shopa", [allowed])
        result = await run_browser(
            node,
            {
                "executablePath": chromium,
                "flags": list(CHROMIUM_FLAGS),
                "userDataDir": str(tmp_path / "chromium-profile"),
                "allowedPage": f"{allowed}/shop.html",
                "blockedPage": f"{blocked}/shop.html",
                "bridge": bridge.base_url,
                "tenant": shop.tenant,
                "clientId": shop.storefront_id,
                "email": shop.email,
                "password": shop.password,
            },
        )

    journey = result["allowed"]
    assert {name: step["status"] for name, step in journey["steps"].items()} == {
        "anonymous_login": 200,
        "anonymous_refresh": 200,
        "customer_login": 200,
        "validate": 200,
        "customer_refresh": 200,
        "logout": 204,
        "validate_after_logout": 401,
    }, result
    assert len(set(journey["sessions"])) == 1 and journey["sessions"][0]
    assert journey["email"] == shop.email
    assert journey["customerTokenChanged"] is True
    after = journey["steps"]["validate_after_logout"]
    assert after["wwwAuthenticate"] and after["wwwAuthenticate"].lower().startswith("bearer")
    assert after["body"]  # the error body is readable too

    for name, outcome in result["blocked"].items():
        assert outcome.get("rejected") == "TypeError", (name, result)
    blocked_by_cors = [line for line in result["console"] if "CORS policy" in line]
    assert len(blocked_by_cors) >= 2, result["console"]
