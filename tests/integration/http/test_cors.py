"""CORS over the real bridge (both backends), with httpx sending what a browser sends: a
preflight (`OPTIONS` with Origin and Access-Control-Request-*) and the request itself with
Origin. Which origins each endpoint admits (the tenant's own on its storefront endpoints, the
process-wide TOKENSERVICE_CORS_ALLOWED_ORIGINS everywhere browser-facing), that an origin not
allowed gets no Access-Control-* header at all, that error answers carry the headers too, and
that the bridge's cache of tenants' origins is bounded and ages out."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from http_bridge.access_log import AccessLog
from http_bridge.app import build_app, tenant_origins_of
from http_bridge.channel import ChannelBackend
from http_bridge.cors import TenantOrigins
from http_bridge.server import start_http
from server import admin
from server.clock import ManualClock
from tests.integration.http.conftest import Bridge
from tests.integration.http.test_discovery_and_health import closed_port
from tests.support.harness import Harness, Shop
from tests.support.http_clients import async_http_client

SHOP_ORIGIN = "https://shop-a.example"
OTHER_SHOP_ORIGIN = "http://127.0.0.1:8731"
EVERYWHERE = "https://everywhere.example"
STRANGER = "https://evil.example"
CORS = {"cors_allowed_origins": f" {EVERYWHERE} , "}


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return dict(CORS)


async def shops(bridge: Bridge) -> tuple[Shop, Shop]:
    a = await bridge.harness.shop("shopa")
    b = await bridge.harness.shop("shopb")
    await admin.set_allowed_origins(bridge.harness.core, "shopa", [SHOP_ORIGIN])
    await admin.set_allowed_origins(bridge.harness.core, "shopb", [OTHER_SHOP_ORIGIN])
    return a, b


async def preflight(
    http: httpx.AsyncClient,
    path: str,
    origin: str,
    method: str = "POST",
    headers: str = "authorization,content-type",
) -> httpx.Response:
    return await http.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": headers,
        },
    )


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower().startswith("access-control-")}


def assert_admitted(response: httpx.Response, origin: str) -> None:
    assert response.headers["access-control-allow-origin"] == origin, response.headers
    assert "access-control-allow-credentials" not in response.headers
    assert "Origin" in response.headers["vary"]


def assert_refused(response: httpx.Response) -> None:
    """No Access-Control-* header at all: the browser keeps the page from reading it."""
    assert cors_headers(response) == {}, response.headers
    assert "Origin" in response.headers["vary"]


def origins_cache(bridge: Bridge) -> TenantOrigins:
    app = bridge.running.server.config.app
    assert isinstance(app, AccessLog)
    return tenant_origins_of(app)


def exposed(response: httpx.Response) -> set[str]:
    value = response.headers.get("access-control-expose-headers", "")
    return {item.strip().lower() for item in value.split(",") if item.strip()}


async def test_preflight_of_an_allowed_origin_names_it_and_what_may_be_sent(
    bridge: Bridge,
) -> None:
    await shops(bridge)
    answer = await preflight(bridge.http, "/customer/shopa/login", SHOP_ORIGIN)
    assert answer.status_code == 200, answer.text
    assert_admitted(answer, SHOP_ORIGIN)
    assert {"GET", "POST"} <= set(answer.headers["access-control-allow-methods"].split(", "))
    allowed = {h.strip().lower() for h in answer.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed
    assert answer.headers["access-control-max-age"] == "600"


async def test_preflight_of_an_origin_not_allowed_gets_no_cors_headers(bridge: Bridge) -> None:
    await shops(bridge)
    for path in ("/customer/shopa/login", "/oauth/token", "/.well-known/jwks.json"):
        answer = await preflight(bridge.http, path, STRANGER)
        assert answer.status_code == 403, answer.text
        assert_refused(answer)
        assert "origin" in answer.text.lower()


async def test_each_tenant_admits_its_own_origins_and_the_process_wide_ones(
    bridge: Bridge,
) -> None:
    await shops(bridge)
    http = bridge.http
    # The tenant's own origin on its own paths only.
    assert_admitted(
        await preflight(http, "/customer/shopa/refreshauthtoken", SHOP_ORIGIN), SHOP_ORIGIN
    )
    assert_refused(await preflight(http, "/customer/shopb/refreshauthtoken", SHOP_ORIGIN))
    assert_admitted(
        await preflight(http, "/customer/shopb/logout", OTHER_SHOP_ORIGIN), OTHER_SHOP_ORIGIN
    )
    # The anonymous endpoints take the tenant from the query string.
    anonymous = "/customerlogin/auth/anonymous/login?tenant={}&client_id=x"
    assert_admitted(
        await preflight(http, anonymous.format("shopa"), SHOP_ORIGIN, "GET"), SHOP_ORIGIN
    )
    assert_refused(await preflight(http, anonymous.format("shopb"), SHOP_ORIGIN, "GET"))
    assert_refused(await preflight(http, "/customerlogin/auth/anonymous/login", SHOP_ORIGIN, "GET"))
    doubled = "/customerlogin/auth/anonymous/refresh?tenant=shopa&tenant=shopb"
    assert_refused(await preflight(http, doubled, SHOP_ORIGIN, "GET"))
    # Endpoints without a tenant: the process-wide list only.
    for path in ("/oauth/revoke", "/oauth2/token"):
        assert_refused(await preflight(http, path, SHOP_ORIGIN))
    everywhere = ("/customer/shopa/login", "/customer/shopb/login", "/oauth/revoke")
    # /oauth2/token too: the metadata (which answers CORS) names it as the token endpoint.
    for path in (*everywhere, "/oauth2/token"):
        assert_admitted(await preflight(http, path, EVERYWHERE), EVERYWHERE)
    jwks = await http.get("/.well-known/jwks.json", headers={"Origin": EVERYWHERE})
    assert jwks.status_code == 200
    assert_admitted(jwks, EVERYWHERE)
    # An unknown tenant has no origins of its own; a malformed name is never looked up.
    assert_refused(await preflight(http, "/customer/nosuchshop/login", SHOP_ORIGIN))
    assert_admitted(await preflight(http, "/customer/nosuchshop/login", EVERYWHERE), EVERYWHERE)
    assert_refused(await preflight(http, "/customer/Not%20A%20Tenant/login", SHOP_ORIGIN))


async def test_answers_to_an_allowed_origin_are_readable_and_others_are_not(
    bridge: Bridge,
) -> None:
    shop, _ = await shops(bridge)
    login = await bridge.http.get(
        "/customerlogin/auth/anonymous/login",
        params={"tenant": "shopa", "client_id": shop.storefront_id},
        headers={"Origin": SHOP_ORIGIN},
    )
    assert login.status_code == 200, login.text
    assert_admitted(login, SHOP_ORIGIN)
    assert {"retry-after", "www-authenticate"} <= exposed(login)
    stranger = await bridge.http.get(
        "/customerlogin/auth/anonymous/login",
        params={"tenant": "shopa", "client_id": shop.storefront_id},
        headers={"Origin": STRANGER},
    )
    assert stranger.status_code == 200  # served: it is the browser that blocks the page
    assert_refused(stranger)
    plain = await bridge.http.get(
        "/customerlogin/auth/anonymous/login",
        params={"tenant": "shopa", "client_id": shop.storefront_id},
    )
    assert_refused(plain)


async def test_error_answers_carry_the_cors_headers(bridge: Bridge) -> None:
    await shops(bridge)
    http = bridge.http
    unauthorised = await http.get(
        "/customer/shopa/validateauthtoken",
        headers={"Origin": SHOP_ORIGIN, "Authorization": "Bearer not-a-token"},
    )
    assert unauthorised.status_code == 401
    assert "www-authenticate" in unauthorised.headers
    assert_admitted(unauthorised, SHOP_ORIGIN)
    assert "www-authenticate" in exposed(unauthorised)
    bad = await http.get(
        "/customerlogin/auth/anonymous/login",
        params={"tenant": "shopa"},
        headers={"Origin": SHOP_ORIGIN},
    )
    assert bad.status_code == 400
    assert_admitted(bad, SHOP_ORIGIN)
    refused = await http.get(
        "/customer/shopa/validateauthtoken",
        headers={"Origin": STRANGER, "Authorization": "Bearer not-a-token"},
    )
    assert refused.status_code == 401
    assert_refused(refused)


@pytest.mark.parametrize(
    "settings_overrides",
    [{**CORS, "anonymous_tokens_per_second": 0.001, "anonymous_tokens_burst": 1}],
)
async def test_a_rate_limited_answer_tells_the_page_when_to_retry(bridge: Bridge) -> None:
    shop, _ = await shops(bridge)
    params = {"tenant": "shopa", "client_id": shop.storefront_id}
    first = await bridge.http.get(
        "/customerlogin/auth/anonymous/login", params=params, headers={"Origin": SHOP_ORIGIN}
    )
    assert first.status_code == 200, first.text
    limited = await bridge.http.get(
        "/customerlogin/auth/anonymous/login", params=params, headers={"Origin": SHOP_ORIGIN}
    )
    assert limited.status_code == 429, limited.text
    assert int(limited.headers["retry-after"]) >= 1
    assert_admitted(limited, SHOP_ORIGIN)
    assert "retry-after" in exposed(limited)


async def test_endpoints_that_are_not_browser_facing_never_answer_cors(bridge: Bridge) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        answer = await bridge.http.get(path, headers={"Origin": EVERYWHERE})
        assert cors_headers(answer) == {}, path
        options = await preflight(bridge.http, path, EVERYWHERE, "GET")
        assert options.status_code == 405
        assert cors_headers(options) == {}, path


async def test_a_changed_tenant_list_reaches_the_bridge_when_its_cache_entry_ages_out(
    bridge: Bridge, harness: Harness
) -> None:
    await shops(bridge)
    cache = origins_cache(bridge)
    clock = ManualClock(0)
    cache.clock = clock.now
    path = "/customer/shopa/login"
    assert_admitted(await preflight(bridge.http, path, SHOP_ORIGIN), SHOP_ORIGIN)
    await admin.set_allowed_origins(harness.core, "shopa", [OTHER_SHOP_ORIGIN])
    # Fresh: the cached answer stands, and no call reaches the core.
    clock.advance(harness.core.settings.cors_tenant_cache_seconds - 1)
    assert_admitted(await preflight(bridge.http, path, SHOP_ORIGIN), SHOP_ORIGIN)
    clock.advance(2)
    assert_refused(await preflight(bridge.http, path, SHOP_ORIGIN))
    assert_admitted(await preflight(bridge.http, path, OTHER_SHOP_ORIGIN), OTHER_SHOP_ORIGIN)


@pytest.mark.parametrize("settings_overrides", [{**CORS, "cors_tenant_cache_size": 8}])
async def test_made_up_tenant_names_cannot_grow_the_cache(bridge: Bridge) -> None:
    await shops(bridge)
    cache = origins_cache(bridge)
    for number in range(40):
        answer = await preflight(bridge.http, f"/customer/fake{number:04d}/login", SHOP_ORIGIN)
        assert_refused(answer)
        assert len(cache) <= 8
    assert len(cache) == 8
    assert_admitted(await preflight(bridge.http, "/customer/shopa/login", SHOP_ORIGIN), SHOP_ORIGIN)


@pytest.fixture
async def unreachable_core(harness: Harness) -> AsyncIterator[httpx.AsyncClient]:
    """A standalone bridge whose core is down (nothing listens on its gRPC target)."""
    backend = ChannelBackend(f"127.0.0.1:{closed_port()}", timeout_seconds=2)
    app = build_app(backend, harness.core.settings)
    running = await start_http(app, "127.0.0.1:0", grace_seconds=1)
    try:
        async with async_http_client(base_url=f"http://127.0.0.1:{running.port}") as http:
            yield http
    finally:
        await running.stop()
        await backend.close()


@pytest.mark.parametrize("database_kind", ["sqlite"])
async def test_an_unavailable_core_is_readable_by_process_wide_origins(
    unreachable_core: httpx.AsyncClient,
) -> None:
    answer = await unreachable_core.get(
        "/customerlogin/auth/anonymous/login",
        params={"tenant": "shopa", "client_id": "x"},
        headers={"Origin": EVERYWHERE},
    )
    assert answer.status_code == 503, answer.text
    assert_admitted(answer, EVERYWHERE)
    assert "retry-after" in exposed(answer)
    unknown = await preflight(unreachable_core, "/customer/shopa/login", SHOP_ORIGIN)
    assert_refused(unknown)
