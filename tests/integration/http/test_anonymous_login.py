"""`GET /customerlogin/auth/anonymous/login` over the real bridge: the exact reference body, the
session context it stores, and each refusal in the customer error shape with the field at
fault (missing, malformed or unknown tenant; unknown, wrong-kind or other-tenant client;
over-long or control-character context values; a repeated parameter)."""

from __future__ import annotations

import uuid

import httpx

from server.records import SessionContext
from tests.integration.http.conftest import Bridge
from tests.integration.http.expect import ANONYMOUS_FIELDS as LOGIN_FIELDS
from tests.integration.http.expect import customer_problem as assert_problem
from tests.support.harness import Shop

PATH = "/customerlogin/auth/anonymous/login"


async def login(bridge: Bridge, **params: str) -> httpx.Response:
    return await bridge.http.get(PATH, params=params)


def params_of(shop: Shop, **extra: str) -> dict[str, str]:
    return {"tenant": shop.tenant, "client_id": shop.storefront_id, **extra}


async def test_login_answers_exactly_the_reference_fields(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    response = await login(bridge, **params_of(shop))
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    body = response.json()
    assert set(body) == LOGIN_FIELDS
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["refresh_token_expires_in"] == 86400
    assert body["scope"] == "tenant=shopa"
    assert str(uuid.UUID(body["sessionId"])) == body["sessionId"]
    assert body["access_token"] and body["refresh_token"]
    assert body["access_token"] != body["refresh_token"]


async def test_login_tokens_are_an_active_anonymous_pair_of_the_session(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    body = (await login(bridge, **params_of(shop))).json()
    access = await bridge.harness.introspect(body["access_token"])
    refresh = await bridge.harness.introspect(body["refresh_token"])
    for result in (access, refresh):
        assert result.active
        assert result.tenant == "shopa"
        assert result.client_id == shop.storefront_id
        assert result.session_id == body["sessionId"]
    assert access.token_use != refresh.token_use


async def test_each_login_starts_a_new_session(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    first = (await login(bridge, **params_of(shop))).json()
    second = (await login(bridge, **params_of(shop))).json()
    assert first["sessionId"] != second["sessionId"]
    assert first["access_token"] != second["access_token"]


async def test_login_stores_the_session_context(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    context = {"currency": "EUR", "siteCode": "main", "language": "de", "targetLocation": "AT"}
    body = (await login(bridge, **params_of(shop, **context))).json()
    session = await bridge.harness.core.store.get_session(body["sessionId"])
    assert session is not None
    assert session.tenant == "shopa"
    assert session.client_id == shop.storefront_id
    assert session.customer_id is None
    assert session.revoked_at is None
    assert session.context == SessionContext(
        currency="EUR", site_code="main", language="de", target_location="AT"
    )


async def test_login_without_context_stores_an_empty_context(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    body = (await login(bridge, **params_of(shop, currency="USD"))).json()
    session = await bridge.harness.core.store.get_session(body["sessionId"])
    assert session is not None
    assert session.context == SessionContext(currency="USD")


async def test_missing_tenant_is_400_naming_tenant(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    assert_problem(
        await login(bridge, client_id=shop.storefront_id), 400, "invalid_request", "tenant"
    )
    assert_problem(
        await login(bridge, tenant="", client_id=shop.storefront_id),
        400,
        "invalid_request",
        "tenant",
    )


async def test_missing_client_id_is_400_naming_client_id(bridge: Bridge) -> None:
    await bridge.harness.shop("shopa")
    assert_problem(await login(bridge, tenant="shopa"), 400, "invalid_request", "client_id")


async def test_malformed_tenant_is_400(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    for tenant in ("ShopA", "1shop", "ab", "shop-a", "a" * 17):
        response = await login(bridge, tenant=tenant, client_id=shop.storefront_id)
        assert_problem(response, 400, "invalid_request", "tenant")


async def test_unknown_tenant_is_400(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    response = await login(bridge, tenant="nosuchshop", client_id=shop.storefront_id)
    body = assert_problem(response, 400, "invalid_request", "tenant")
    assert "nosuchshop" in body["message"]


async def test_unknown_client_is_401_invalid_client_with_a_challenge(bridge: Bridge) -> None:
    """RFC 6749 section 5.2: an unknown client is `invalid_client`, 401; RFC 9110 section
    15.5.2: a 401 carries a WWW-Authenticate challenge."""
    await bridge.harness.shop("shopa")
    response = await login(bridge, tenant="shopa", client_id="no-such-client")
    assert_problem(response, 401, "invalid_client", "client_id")
    assert 'realm="tokenservice"' in response.headers["www-authenticate"]


async def test_malformed_client_id_is_400(bridge: Bridge) -> None:
    await bridge.harness.shop("shopa")
    response = await login(bridge, tenant="shopa", client_id="not a client id!")
    assert_problem(response, 400, "invalid_request", "client_id")


async def test_service_client_as_storefront_client_is_400_unauthorized_client(
    bridge: Bridge,
) -> None:
    shop = await bridge.harness.shop("shopa")
    response = await login(bridge, tenant="shopa", client_id=shop.service_id)
    assert_problem(response, 400, "unauthorized_client")


async def test_another_tenants_storefront_client_is_403(bridge: Bridge) -> None:
    await bridge.harness.shop("shopa")
    other = await bridge.harness.shop("shopb")
    response = await login(bridge, tenant="shopa", client_id=other.storefront_id)
    assert_problem(response, 403, "access_denied", "client_id")


async def test_over_long_context_value_is_400_naming_it(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    for name in ("currency", "siteCode", "language", "targetLocation"):
        response = await login(bridge, **params_of(shop, **{name: "x" * 65}))
        problem = assert_problem(response, 400, "invalid_request", name)
        assert problem["message"].startswith(f"{name} "), problem  # this route's names
    # 64 characters is still accepted.
    accepted = await login(bridge, **params_of(shop, siteCode="s" * 64))
    assert accepted.status_code == 200, accepted.text


async def test_context_value_with_control_characters_is_400(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    response = await login(bridge, **params_of(shop, language="de\nX-Injected: 1"))
    assert_problem(response, 400, "invalid_request", "language")


async def test_a_parameter_given_twice_is_400(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    response = await bridge.http.get(
        PATH,
        params=[("tenant", "shopa"), ("tenant", "shopa"), ("client_id", shop.storefront_id)],
    )
    assert_problem(response, 400, "invalid_request", "tenant")


async def test_parameters_it_does_not_define_are_ignored_even_repeated(bridge: Bridge) -> None:
    """Lenient as the reference is: a shop's tracking parameters do not break the login."""
    shop = await bridge.harness.shop("shopa")
    response = await bridge.http.get(
        PATH,
        params=[*params_of(shop).items(), ("utm_source", "a"), ("utm_source", "b"), ("x", "")],
    )
    assert response.status_code == 200, response.text
    assert response.json()["sessionId"]


async def test_refused_login_creates_no_usable_token(bridge: Bridge) -> None:
    """A refused login hands out nothing: the body has no token field at all."""
    shop = await bridge.harness.shop("shopa")
    response = await login(bridge, tenant="shopa", client_id=shop.service_id)
    assert response.status_code == 400
    assert not LOGIN_FIELDS & set(response.json())


async def test_post_is_405(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    response = await bridge.http.post(PATH, params=params_of(shop))
    assert_problem(response, 405, "method_not_allowed")
    assert "GET" in response.headers["allow"]


async def test_currency_longer_than_16_characters_is_400(bridge: Bridge) -> None:
    """The store keeps at most 16 characters of currency (ISO 4217 codes are 3); PostgreSQL
    enforces the column length, so validation must refuse first."""
    shop = await bridge.harness.shop("currency")
    refused = await login(bridge, **params_of(shop, currency="C" * 17))
    assert_problem(refused, 400, "invalid_request", "currency")
    accepted = await login(bridge, **params_of(shop, currency="C" * 16))
    assert accepted.status_code == 200, accepted.text
