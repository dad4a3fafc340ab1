"""The whole storefront journey over the real bridge, one session from anonymous login to logout,
and tenant isolation between two shops: a token of one shop never validates, refreshes, logs in
or logs out on the other's paths, and the other shop's clients introspect it as inactive."""

from __future__ import annotations

from typing import Any

import httpx

from tests.integration.http.conftest import Bridge
from tests.support.harness import Shop


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def validate(bridge: Bridge, tenant: str, token: str) -> httpx.Response:
    return await bridge.http.get(f"/customer/{tenant}/validateauthtoken", headers=bearer(token))


async def introspect(bridge: Bridge, caller: dict[str, str], token: str) -> dict[str, Any]:
    response = await bridge.http.post("/oauth/introspect", data={"token": token, **caller})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def service_caller(shop: Shop) -> dict[str, str]:
    return {"client_id": shop.service_id, "client_secret": shop.service_secret}


def storefront_caller(shop: Shop) -> dict[str, str]:
    return {"client_id": shop.storefront_id}


async def test_storefront_journey_from_anonymous_login_to_logout(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    http = bridge.http

    # 1. Anonymous login with a session context.
    login = await http.get(
        "/customerlogin/auth/anonymous/login",
        params={"tenant": "shopa", "client_id": shop.storefront_id, "currency": "EUR"},
    )
    assert login.status_code == 200, login.text
    anonymous = login.json()
    session_id = anonymous["sessionId"]

    # 2. Anonymous refresh: same session, new pair.
    bridge.harness.clock.advance(3000)
    refresh = await http.get(
        "/customerlogin/auth/anonymous/refresh",
        params={
            "tenant": "shopa",
            "client_id": shop.storefront_id,
            "refresh_token": anonymous["refresh_token"],
            "language": "de",
        },
    )
    assert refresh.status_code == 200, refresh.text
    anonymous2 = refresh.json()
    assert anonymous2["sessionId"] == session_id
    anonymous_validated = await validate(bridge, "shopa", anonymous2["access_token"])
    assert anonymous_validated.status_code == 200, anonymous_validated.text
    assert "email" not in anonymous_validated.json()

    # 3. Customer login continuing that session.
    customer_login = await http.post(
        "/customer/shopa/login",
        json={"email": shop.email, "password": shop.password},
        headers=bearer(anonymous2["access_token"]),
    )
    assert customer_login.status_code == 200, customer_login.text
    customer = customer_login.json()
    assert customer["session_id"] == session_id

    # 4. Validate: the customer's email on the same session.
    validated = await validate(bridge, "shopa", customer["access_token"])
    assert validated.status_code == 200, validated.text
    assert validated.json()["email"] == shop.email
    assert validated.json()["sessionId"] == session_id

    # 5. Customer refresh choosing a legal entity: validate shows it.
    bridge.harness.clock.advance(600)
    customer_refresh = await http.get(
        "/customer/shopa/refreshauthtoken",
        params={"refreshToken": customer["refresh_token"], "legalEntityId": "le-1"},
        headers=bearer(customer["access_token"]),
    )
    assert customer_refresh.status_code == 200, customer_refresh.text
    customer2 = customer_refresh.json()
    assert customer2["session_id"] == session_id
    validated = await validate(bridge, "shopa", customer2["access_token"])
    assert validated.status_code == 200, validated.text
    assert validated.json()["legalEntityId"] == "le-1"
    assert validated.json()["email"] == shop.email

    session = await bridge.harness.core.store.get_session(session_id)
    assert session is not None
    assert session.customer_id == shop.customer_id
    assert session.legal_entity_id == "le-1"
    assert (session.context.currency, session.context.language) == ("EUR", "de")

    # 6. Logout.
    out = await http.get("/customer/shopa/logout", headers=bearer(customer2["access_token"]))
    assert out.status_code == 204, out.text
    assert out.content == b""

    # 7. Nothing of the session validates or refreshes any more.
    for token in (
        customer2["access_token"],
        customer["access_token"],
        anonymous2["access_token"],
        anonymous["access_token"],
    ):
        response = await validate(bridge, "shopa", token)
        assert response.status_code == 401, response.text
        assert response.json()["type"] == "invalid_token"
    for token in (customer2["refresh_token"], anonymous2["refresh_token"]):
        assert not (await bridge.harness.introspect(token)).active
    again = await http.get(
        "/customer/shopa/refreshauthtoken",
        params={"refreshToken": customer2["refresh_token"]},
        headers=bearer(customer2["access_token"]),
    )
    assert again.status_code == 401, again.text


async def test_tokens_of_one_shop_are_useless_on_another(bridge: Bridge) -> None:
    alpha = await bridge.harness.shop("alpha")
    beta = await bridge.harness.shop("beta")
    http = bridge.http
    anonymous = await bridge.anonymous_login(alpha)
    customer = await bridge.customer_login(
        alpha, (await bridge.anonymous_login(alpha))["access_token"]
    )
    service = await bridge.service_token(alpha)
    accesses = [anonymous["access_token"], customer["access_token"], service["access_token"]]
    everything = [*accesses, anonymous["refresh_token"], customer["refresh_token"]]

    # validate on beta's path: 401 for every alpha token.
    for token in accesses:
        response = await validate(bridge, "beta", token)
        assert response.status_code == 401, response.text
        assert (await validate(bridge, "alpha", token)).status_code == 200

    # anonymous refresh on beta: 403, by refresh token or by the deprecated anonymous token.
    for params in (
        {"refresh_token": anonymous["refresh_token"]},
        {"anonymous_token": anonymous["access_token"]},
    ):
        response = await http.get(
            "/customerlogin/auth/anonymous/refresh",
            params={"tenant": "beta", "client_id": beta.storefront_id, **params},
        )
        assert response.status_code == 403, response.text
        assert response.json()["type"] == "access_denied"

    # customer login on beta with alpha's anonymous token (and beta's own customer): 403.
    response = await http.post(
        "/customer/beta/login",
        json={"email": beta.email, "password": beta.password},
        headers=bearer(anonymous["access_token"]),
    )
    assert response.status_code == 403, response.text

    # customer refresh on beta: 403.
    response = await http.get(
        "/customer/beta/refreshauthtoken",
        params={"refreshToken": customer["refresh_token"]},
        headers=bearer(customer["access_token"]),
    )
    assert response.status_code == 403, response.text

    # logout on beta: 401 with alpha's bearer; beta's bearer naming alpha's token revokes nothing.
    response = await http.get("/customer/beta/logout", headers=bearer(customer["access_token"]))
    assert response.status_code == 401, response.text
    beta_anonymous = await bridge.anonymous_login(beta)
    # (Its status is covered in test_validate_and_logout; here only that it revokes nothing.)
    await http.get(
        "/customer/beta/logout",
        params={"accessToken": customer["access_token"]},
        headers=bearer(beta_anonymous["access_token"]),
    )

    # beta's clients see alpha's tokens as inactive; alpha's own see them active, so nothing
    # done on beta's paths revoked any of them.
    for token in everything:
        assert await introspect(bridge, service_caller(beta), token) == {"active": False}
        assert await introspect(bridge, storefront_caller(beta), token) == {"active": False}
        assert not (await bridge.harness.introspect(token, tenant="beta")).active
        assert (await introspect(bridge, service_caller(alpha), token))["active"] is True
        assert (await bridge.harness.introspect(token, tenant="alpha")).active
