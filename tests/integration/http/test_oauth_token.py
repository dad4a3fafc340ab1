"""`POST /oauth/token` (RFC 6749 section 4.4, client_credentials) over the real bridge: form, JSON
and HTTP Basic client authentication, the exact service-token response, scope narrowing, every
refusal with its status, OAuth error code and headers, and that the issued token is one the gRPC
server knows."""

from __future__ import annotations

from typing import Any

import httpx

from tests.integration.conftest import Shop
from tests.integration.http.conftest import Bridge
from tests.integration.http.expect import BASIC_CHALLENGE, assert_no_store, basic
from tests.integration.http.expect import oauth_problem as assert_error
from tokenservice.v1 import token_service_pb2 as pb

TOKEN = "/oauth/token"
SERVICE_SCOPES = "catalog.read catalog.write orders.read"


def credentials(shop: Shop, **extra: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_id": shop.service_id,
        "client_secret": shop.service_secret,
        **extra,
    }


def assert_service_token(response: httpx.Response, shop: Shop, scope: str) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {
        "access_token",
        "token_type",
        "expires_in",
        "refresh_token",
        "refresh_token_expires_in",
        "session_idle_time",
        "scope",
    }
    assert isinstance(body["access_token"], str) and len(body["access_token"]) >= 27
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 14400
    assert body["refresh_token"] == ""
    assert body["refresh_token_expires_in"] == 0
    assert body["session_idle_time"] == 120
    assert body["scope"] == scope
    assert_no_store(response)
    return body


# --- success ---------------------------------------------------------------------------------


async def test_form_body_issues_a_service_token_with_all_client_scopes(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("formshop")
    response = await bridge.http.post(TOKEN, data=credentials(shop))
    assert_service_token(response, shop, f"{SERVICE_SCOPES} tenant=formshop")


async def test_json_body_issues_a_service_token(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("jsonshop")
    response = await bridge.http.post(TOKEN, json=credentials(shop))
    assert_service_token(response, shop, f"{SERVICE_SCOPES} tenant=jsonshop")


async def test_json_with_a_charset_parameter_is_accepted(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("charset")
    response = await bridge.http.post(
        TOKEN,
        content=httpx.Request("POST", "/", json=credentials(shop)).content,
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert_service_token(response, shop, f"{SERVICE_SCOPES} tenant=charset")


async def test_http_basic_authenticates_the_client(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("basicshop")
    response = await bridge.http.post(
        TOKEN,
        data={"grant_type": "client_credentials"},
        headers=basic(shop.service_id, shop.service_secret),
    )
    assert_service_token(response, shop, f"{SERVICE_SCOPES} tenant=basicshop")


async def test_issued_token_is_active_over_grpc(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("grpcseen")
    body = assert_service_token(
        await bridge.http.post(TOKEN, data=credentials(shop, scope="orders.read")),
        shop,
        "orders.read tenant=grpcseen",
    )
    seen = await bridge.harness.introspect(body["access_token"])
    assert seen.active
    assert seen.kind == pb.TOKEN_KIND_SERVICE
    assert seen.tenant == "grpcseen"
    assert seen.client_id == shop.service_id
    assert seen.scope == "orders.read tenant=grpcseen"
    assert seen.expires_in == 14400


async def test_requested_scope_subset_is_granted_in_request_order(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("subset")
    response = await bridge.http.post(
        TOKEN, data=credentials(shop, scope="orders.read catalog.read")
    )
    assert_service_token(response, shop, "orders.read catalog.read tenant=subset")


async def test_scope_naming_the_own_tenant_is_accepted(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("owntenant")
    narrowed = await bridge.http.post(
        TOKEN, data=credentials(shop, scope="catalog.read tenant=owntenant")
    )
    assert_service_token(narrowed, shop, "catalog.read tenant=owntenant")
    only_tenant = await bridge.http.post(TOKEN, data=credentials(shop, scope="tenant=owntenant"))
    assert_service_token(only_tenant, shop, f"{SERVICE_SCOPES} tenant=owntenant")


# --- refusals --------------------------------------------------------------------------------


async def test_scope_beyond_the_clients_is_invalid_scope(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("greedy")
    response = await bridge.http.post(
        TOKEN, data=credentials(shop, scope="catalog.read payments.write")
    )
    assert_error(response, 400, "invalid_scope")


async def test_scope_naming_another_tenant_is_invalid_scope(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("mytenant")
    await bridge.harness.shop("histenant")
    response = await bridge.http.post(
        TOKEN, data=credentials(shop, scope="catalog.read tenant=histenant")
    )
    assert_error(response, 400, "invalid_scope")


async def test_missing_grant_type_is_invalid_request(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("nogrant")
    form = credentials(shop)
    del form["grant_type"]
    body = assert_error(await bridge.http.post(TOKEN, data=form), 400, "invalid_request")
    assert "grant_type" in body["error_description"]


async def test_other_grant_types_are_unsupported(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("othergrant")
    for grant_type in ("password", "refresh_token", "authorization_code"):
        response = await bridge.http.post(TOKEN, data=credentials(shop, grant_type=grant_type))
        assert_error(response, 400, "unsupported_grant_type")


async def test_missing_client_authentication_is_401_with_basic_challenge(bridge: Bridge) -> None:
    response = await bridge.http.post(TOKEN, data={"grant_type": "client_credentials"})
    assert_error(response, 401, "invalid_client")
    assert response.headers["WWW-Authenticate"] == BASIC_CHALLENGE


async def test_wrong_secret_and_unknown_client_are_the_same_401(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("wrongsec")
    wrong = await bridge.http.post(
        TOKEN, data=credentials(shop, client_secret=shop.service_secret[:-1] + "x")
    )
    unknown = await bridge.http.post(
        TOKEN, data=credentials(shop, client_id="no-such-client-0123456789")
    )
    wrong_body = assert_error(wrong, 401, "invalid_client")
    unknown_body = assert_error(unknown, 401, "invalid_client")
    assert wrong_body == unknown_body
    assert wrong.headers["WWW-Authenticate"] == BASIC_CHALLENGE
    assert unknown.headers["WWW-Authenticate"] == BASIC_CHALLENGE


async def test_wrong_secret_in_http_basic_is_401(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("basicbad")
    response = await bridge.http.post(
        TOKEN,
        data={"grant_type": "client_credentials"},
        headers=basic(shop.service_id, "not-the-secret"),
    )
    assert_error(response, 401, "invalid_client")
    assert response.headers["WWW-Authenticate"] == BASIC_CHALLENGE


async def test_basic_and_body_credentials_together_are_invalid_request(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("twoauths")
    headers = basic(shop.service_id, shop.service_secret)
    with_id = await bridge.http.post(TOKEN, data=credentials(shop), headers=headers)
    assert_error(with_id, 400, "invalid_request")
    only_secret = await bridge.http.post(
        TOKEN,
        data={"grant_type": "client_credentials", "client_secret": shop.service_secret},
        headers=headers,
    )
    assert_error(only_secret, 400, "invalid_request")


async def test_storefront_client_with_a_secret_is_invalid_client(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("storesec")
    response = await bridge.http.post(
        TOKEN,
        data={
            "grant_type": "client_credentials",
            "client_id": shop.storefront_id,
            "client_secret": "anything-at-all",
        },
    )
    assert_error(response, 401, "invalid_client")
    assert response.headers["WWW-Authenticate"] == BASIC_CHALLENGE


async def test_storefront_client_without_a_secret_is_400(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("storenosec")
    response = await bridge.http.post(
        TOKEN, data={"grant_type": "client_credentials", "client_id": shop.storefront_id}
    )
    body = assert_error(response, 400, "invalid_request")
    assert "client_secret" in body["error_description"]
    assert "WWW-Authenticate" not in response.headers


async def test_duplicate_parameter_is_invalid_request(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("dupparam")
    content = httpx.QueryParams(
        [*credentials(shop).items(), ("scope", "catalog.read"), ("scope", "orders.read")]
    )
    response = await bridge.http.post(
        TOKEN,
        content=str(content),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    body = assert_error(response, 400, "invalid_request")
    assert "scope" in body["error_description"]
