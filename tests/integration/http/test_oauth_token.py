"""`POST /oauth/token` (RFC 6749 section 4.4, client_credentials) over the real bridge: form, JSON
and HTTP Basic client authentication, the exact service-token response, scope narrowing, every
refusal with its status, OAuth error code and headers, and that the issued token is one the gRPC
server knows."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration.http.conftest import Bridge
from tests.integration.http.expect import BASIC_CHALLENGE, assert_no_store, basic
from tests.integration.http.expect import oauth_problem as assert_error
from tests.support.harness import Shop
from tokenservice.v1 import token_service_pb2 as pb

TOKEN = "/oauth/token"
STANDARD_TOKEN = "/oauth2/token"
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


@pytest.mark.parametrize("path", [TOKEN, STANDARD_TOKEN])
async def test_a_client_id_without_a_secret_is_invalid_client(bridge: Bridge, path: str) -> None:
    """RFC 6749 section 5.2: client_credentials needs client authentication (section 4.4.2), so
    a client_id alone, as a public storefront client sends it, in the body or as HTTP Basic with
    no password, is "no client authentication included": 401 invalid_client with the Basic
    challenge, the same for a public client, a service client and an unknown id."""
    shop = await bridge.harness.shop("storenosec")
    grant = {"grant_type": "client_credentials"}
    answers = []
    for client_id in (shop.storefront_id, shop.service_id, "no-such-client-0123456789"):
        for attempt in (
            {"data": {**grant, "client_id": client_id}},
            {"data": {**grant, "client_id": client_id, "client_secret": ""}},
            {"json": {**grant, "client_id": client_id}},
            {"data": grant, "headers": basic(client_id, "")},
        ):
            # An attempt is post()'s keyword arguments (data/json/headers), values of mixed
            # types that mypy cannot match through **.
            response = await bridge.http.post(path, **attempt)  # type: ignore[arg-type]
            answers.append(assert_error(response, 401, "invalid_client"))
            assert response.headers["WWW-Authenticate"] == BASIC_CHALLENGE
    assert all(answer == answers[0] for answer in answers)
    assert "client_secret" in answers[0]["error_description"]


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


# --- the standard endpoint the metadata names --------------------------------------------------


async def test_standard_endpoint_answers_rfc6749_with_no_empty_fields(bridge: Bridge) -> None:
    """`POST /oauth2/token`: the same grant and token, without the reference's empty
    refresh_token and its zero lifetime (RFC 6749 section 5.1 leaves them out)."""
    shop = await bridge.harness.shop("rfcshop")
    for attempt in (
        {"data": credentials(shop)},
        {"json": credentials(shop)},
        {
            "data": {"grant_type": "client_credentials"},
            "headers": basic(shop.service_id, shop.service_secret),
        },
    ):
        # post()'s keyword arguments of mixed types, which mypy cannot match through **.
        response = await bridge.http.post(STANDARD_TOKEN, **attempt)  # type: ignore[arg-type]
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {
            "access_token",
            "token_type",
            "expires_in",
            "session_idle_time",
            "scope",
        }
        assert body["token_type"] == "Bearer"
        assert body["expires_in"] == 14400
        assert body["scope"] == f"{SERVICE_SCOPES} tenant=rfcshop"
        assert_no_store(response)
        introspected = await bridge.harness.introspect(body["access_token"])
        assert introspected.active and introspected.kind == pb.TOKEN_KIND_SERVICE


async def test_standard_endpoint_refuses_like_the_reference_one(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("rfcerrors")
    wrong = await bridge.http.post(
        STANDARD_TOKEN, data=credentials(shop, client_secret="not-the-secret")
    )
    assert_error(wrong, 401, "invalid_client")
    assert wrong.headers["WWW-Authenticate"] == BASIC_CHALLENGE
    grant = await bridge.http.post(STANDARD_TOKEN, data=credentials(shop, grant_type="password"))
    assert_error(grant, 400, "unsupported_grant_type")
    scope = await bridge.http.post(STANDARD_TOKEN, data=credentials(shop, scope="admin.all"))
    assert_error(scope, 400, "invalid_scope")


# --- lenient where the reference is ------------------------------------------------------------


@pytest.mark.parametrize("path", [TOKEN, STANDARD_TOKEN])
async def test_unknown_json_fields_of_any_type_are_ignored(bridge: Bridge, path: str) -> None:
    shop = await bridge.harness.shop("lenient")
    extra: dict[str, Any] = {
        "rememberMe": True,
        "attempt": 3,
        "ratio": 0.5,
        "audience": ["a", "b"],
        "client": {"name": "back office", "client_id": 7},
        "nothing": None,
        "audience_twice": 1,
    }
    body = httpx.Request("POST", "/", json={**credentials(shop), **extra}).content
    # ... and an unknown member given twice is as ignorable as one given once.
    body = body[:-1] + b', "audience_twice": "again"}'
    response = await bridge.http.post(
        path, content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == f"{SERVICE_SCOPES} tenant=lenient"


@pytest.mark.parametrize(
    ("field", "value"),
    [("client_secret", 12345), ("scope", ["catalog.read"]), ("grant_type", {"x": 1})],
)
async def test_a_known_json_field_of_the_wrong_type_is_still_400(
    bridge: Bridge, field: str, value: object
) -> None:
    shop = await bridge.harness.shop("strict")
    response = await bridge.http.post(TOKEN, json={**credentials(shop), field: value})
    body = assert_error(response, 400, "invalid_request")
    assert body["error_description"] == f"{field} must be a string"
