"""`POST /customer/{tenant}/login` over the real bridge: the reference body with its deprecated
camelCase twins, the customer session continuing the anonymous one, a SaaS token whose ES256
signature verifies against the service's JWKS, and every refusal: wrong credentials (one answer
for a wrong password and an unknown email), missing or wrong bearer, other tenant, bad body."""

from __future__ import annotations

import json
from typing import Any

import httpx
import jwt
import pytest

from server.records import SessionContext
from tests.integration.http.conftest import Bridge
from tests.integration.http.expect import CUSTOMER_FIELDS, INVALID_TOKEN_CHALLENGE, TWINS
from tests.integration.http.expect import customer_problem as assert_problem
from tests.support.harness import Shop


async def login(
    bridge: Bridge, tenant: str, bearer: str | None, body: Any, **kwargs: Any
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer is not None else {}
    if isinstance(body, dict):
        kwargs["json"] = body
    else:
        kwargs["content"] = body
    return await bridge.http.post(
        f"/customer/{tenant}/login", headers={**headers, **kwargs.pop("headers", {})}, **kwargs
    )


def credentials(shop: Shop) -> dict[str, str]:
    return {"email": shop.email, "password": shop.password}


async def test_login_answers_the_reference_fields_and_their_twins(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    anonymous = await bridge.anonymous_login(shop)
    response = await login(bridge, "shopa", anonymous["access_token"], credentials(shop))
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    body = response.json()
    assert set(body) == CUSTOMER_FIELDS | set(TWINS)
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 14400
    assert body["refresh_token_expires_in"] == 86400
    assert body["session_id"] == anonymous["sessionId"]
    assert body["scope"] == "customer.read order.write tenant=shopa"
    for twin, name in TWINS.items():
        assert body[twin] == body[name], twin
    assert body["access_token"] and body["refresh_token"] and body["saas_token"]
    assert len({body["access_token"], body["refresh_token"], anonymous["access_token"]}) == 3


async def test_login_continues_the_anonymous_session(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    anonymous = await bridge.anonymous_login(shop, currency="EUR")
    body = await bridge.customer_login(shop, anonymous["access_token"])
    session = await bridge.harness.core.store.get_session(anonymous["sessionId"])
    assert session is not None
    assert session.customer_id == shop.customer_id
    assert session.revoked_at is None
    assert session.context == SessionContext(currency="EUR")
    access = await bridge.harness.introspect(body["access_token"])
    assert access.active
    assert access.session_id == anonymous["sessionId"]
    assert access.customer_id == shop.customer_id
    assert access.email == shop.email
    assert access.tenant == "shopa"


async def test_email_is_matched_case_insensitively(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    anonymous = await bridge.anonymous_login(shop)
    response = await login(
        bridge,
        "shopa",
        anonymous["access_token"],
        {"email": shop.email.upper(), "password": shop.password},
    )
    assert response.status_code == 200, response.text


async def test_saas_token_is_an_es256_jwt_of_the_customer_and_session(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    body = await bridge.customer_login(shop)
    jwks = await bridge.harness.core.keys.jwks()
    header = jwt.get_unverified_header(body["saas_token"])
    assert header["alg"] == "ES256"
    [jwk] = [key for key in jwks["keys"] if key["kid"] == header["kid"]]
    settings = bridge.harness.core.settings
    claims = jwt.decode(
        body["saas_token"],
        key=jwt.PyJWK(jwk).key,
        algorithms=["ES256"],
        audience=settings.saas_audience,
        issuer=settings.issuer,
    )
    assert claims["sub"] == shop.customer_id
    assert claims["sid"] == body["session_id"]
    assert claims["tenant"] == "shopa"
    assert claims["exp"] - claims["iat"] == body["expires_in"]


async def test_wrong_password_and_unknown_email_get_the_same_401(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    anonymous = (await bridge.anonymous_login(shop))["access_token"]
    wrong_password = await login(
        bridge, "shopa", anonymous, {"email": shop.email, "password": "not the password"}
    )
    unknown_email = await login(
        bridge, "shopa", anonymous, {"email": "nobody@shopa.example", "password": shop.password}
    )
    body = assert_problem(wrong_password, 401, "invalid_grant")
    assert unknown_email.status_code == 401
    assert unknown_email.json() == body
    assert wrong_password.headers.get("www-authenticate") == unknown_email.headers.get(
        "www-authenticate"
    )
    # The failed attempts did not spend the anonymous token.
    assert (await bridge.customer_login(shop, anonymous))["session_id"]


async def test_another_tenants_customer_cannot_log_in_here(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    other = await bridge.harness.shop("shopb")
    anonymous = (await bridge.anonymous_login(shop))["access_token"]
    response = await login(bridge, "shopa", anonymous, credentials(other))
    assert_problem(response, 401, "invalid_grant")


async def test_missing_bearer_is_401_with_a_bearer_challenge(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": "Basic Zm9vOmJhcg=="}):
        response = await bridge.http.post(
            "/customer/shopa/login", json=credentials(shop), headers=headers
        )
        assert_problem(response, 401, "invalid_token")
        assert response.headers["www-authenticate"] == INVALID_TOKEN_CHALLENGE


async def test_bearer_of_another_tenant_is_403(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    other = await bridge.harness.shop("shopb")
    foreign = (await bridge.anonymous_login(other))["access_token"]
    response = await login(bridge, "shopa", foreign, credentials(shop))
    assert_problem(response, 403, "access_denied")


async def test_expired_bearer_of_another_tenant_is_403_not_expired(bridge: Bridge) -> None:
    """ "Expired" tells a storefront to refresh and retry, which cannot help with a token of
    another tenant: the tenant is checked first."""
    shop = await bridge.harness.shop("shopa")
    other = await bridge.harness.shop("shopb")
    foreign = (await bridge.anonymous_login(other))["access_token"]
    bridge.harness.clock.advance(3600 + 1)
    response = await login(bridge, "shopa", foreign, credentials(shop))
    assert_problem(response, 403, "access_denied")
    assert "fault" not in response.json()


async def test_customer_or_service_token_as_bearer_is_401(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    customer = await bridge.customer_login(shop)
    service = await bridge.service_token(shop)
    for bearer in (
        customer["access_token"],
        customer["refresh_token"],
        service["access_token"],
        "not-a-token",
    ):
        response = await login(bridge, "shopa", bearer, credentials(shop))
        assert_problem(response, 401, "invalid_token")
        assert response.headers["www-authenticate"] == INVALID_TOKEN_CHALLENGE


async def test_anonymous_refresh_token_as_bearer_is_401(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    anonymous = await bridge.anonymous_login(shop)
    response = await login(bridge, "shopa", anonymous["refresh_token"], credentials(shop))
    assert_problem(response, 401, "invalid_token")


async def test_expired_anonymous_bearer_is_401(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    anonymous = await bridge.anonymous_login(shop)
    bridge.harness.clock.advance(3600 + 1)
    response = await login(bridge, "shopa", anonymous["access_token"], credentials(shop))
    assert_problem(response, 401, "invalid_token")


async def test_missing_email_or_password_is_400_naming_it(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    anonymous = (await bridge.anonymous_login(shop))["access_token"]
    cases = {
        "email": {"password": shop.password},
        "password": {"email": shop.email},
    }
    for field, body in cases.items():
        assert_problem(await login(bridge, "shopa", anonymous, body), 400, "invalid_request", field)
        blank = {**body, field: ""}
        assert_problem(
            await login(bridge, "shopa", anonymous, blank), 400, "invalid_request", field
        )
        null = {**body, field: None}
        assert_problem(await login(bridge, "shopa", anonymous, null), 400, "invalid_request", field)


async def test_malformed_email_is_400(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    anonymous = (await bridge.anonymous_login(shop))["access_token"]
    response = await login(
        bridge, "shopa", anonymous, {"email": "not-an-email", "password": shop.password}
    )
    assert_problem(response, 400, "invalid_request", "email")


async def test_non_string_json_value_is_400(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    anonymous = (await bridge.anonymous_login(shop))["access_token"]
    response = await login(bridge, "shopa", anonymous, {"email": shop.email, "password": 12345678})
    assert_problem(response, 400, "invalid_request", "password")


@pytest.mark.parametrize(
    "extra",
    [
        {"rememberMe": True},
        {"rememberMe": False, "attempt": 2, "ratio": 1.5},
        {"device": {"name": "phone", "email": 7}, "tags": ["a", 1, None]},
        {"rememberMe": None, "email2": None},
    ],
    ids=["true", "numbers", "objects_and_arrays", "nulls"],
)
async def test_unknown_fields_of_any_type_are_ignored(
    bridge: Bridge, extra: dict[str, Any]
) -> None:
    """What storefronts send beside email and password (`"rememberMe": true`) does not stop the
    login: fields the route does not define are ignored whatever they hold."""
    shop = await bridge.harness.shop("shopa")
    anonymous = (await bridge.anonymous_login(shop))["access_token"]
    response = await login(bridge, "shopa", anonymous, {**credentials(shop), **extra})
    assert response.status_code == 200, response.text
    assert response.json()["session_id"]


async def test_an_ignored_integer_of_any_length_is_ignored(bridge: Bridge) -> None:
    """Python's int() refuses more than 4,300 digits; an ignored field never reaches it."""
    shop = await bridge.harness.shop("shopa")
    anonymous = (await bridge.anonymous_login(shop))["access_token"]
    body = json.dumps(credentials(shop))[:-1] + ', "attempt": ' + "7" * 5000 + "}"
    response = await bridge.http.post(
        "/customer/shopa/login",
        content=body,
        headers={"Authorization": f"Bearer {anonymous}", "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("value", [12345678, True, {"p": "w"}, ["pw"]])
async def test_a_known_field_of_another_type_is_still_400(bridge: Bridge, value: object) -> None:
    shop = await bridge.harness.shop("shopa")
    anonymous = (await bridge.anonymous_login(shop))["access_token"]
    for field in ("email", "password"):
        body = {**credentials(shop), "rememberMe": True, field: value}
        response = await login(bridge, "shopa", anonymous, body)
        problem = assert_problem(response, 400, "invalid_request", field)
        assert problem["message"] == f"{field} must be a string"


async def test_non_json_content_type_is_415(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    anonymous = (await bridge.anonymous_login(shop))["access_token"]
    response = await bridge.http.post(
        "/customer/shopa/login",
        data=credentials(shop),
        headers={"Authorization": f"Bearer {anonymous}"},
    )
    assert_problem(response, 415, "invalid_request")


async def test_invalid_json_is_400(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    anonymous = (await bridge.anonymous_login(shop))["access_token"]
    for body in (b'{"email": ', b"[1, 2]", b"\xff\xfe"):
        response = await login(
            bridge, "shopa", anonymous, body, headers={"Content-Type": "application/json"}
        )
        assert_problem(response, 400, "invalid_request")


async def test_malformed_tenant_path_is_400(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    anonymous = (await bridge.anonymous_login(shop))["access_token"]
    response = await login(bridge, "Shop-A", anonymous, credentials(shop))
    assert_problem(response, 400, "invalid_request", "tenant")


async def test_second_login_on_the_same_session_keeps_the_session(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    anonymous = await bridge.anonymous_login(shop)
    first = await bridge.customer_login(shop, anonymous["access_token"])
    second = await bridge.customer_login(shop, anonymous["access_token"])
    assert first["session_id"] == second["session_id"] == anonymous["sessionId"]
    assert first["access_token"] != second["access_token"]
