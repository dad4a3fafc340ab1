"""`GET /customer/{tenant}/validateauthtoken` and `GET /customer/{tenant}/logout` over the real
bridge. Validate: the exact reference field set for anonymous and customer tokens, and a 401 with
the `invalid_token` Bearer challenge for any token that is not an active access token of the
path's tenant. Logout: 204 with no body, after which every token of the session (customer and
anonymous, access and refresh) is inactive; refused for another session's token (403) or an
inactive or other-tenant bearer (401), and then nothing is revoked."""

from __future__ import annotations

from typing import Any

import httpx

from tests.integration.http.conftest import Bridge
from tests.integration.http.expect import INVALID_TOKEN_CHALLENGE
from tests.integration.http.expect import customer_problem as assert_problem
from tests.support.harness import Shop


def assert_unauthorized(response: httpx.Response) -> None:
    assert_problem(response, 401, "invalid_token")
    assert response.headers["www-authenticate"] == INVALID_TOKEN_CHALLENGE


async def validate(bridge: Bridge, tenant: str, token: str) -> httpx.Response:
    return await bridge.http.get(
        f"/customer/{tenant}/validateauthtoken", headers={"Authorization": f"Bearer {token}"}
    )


async def logout(bridge: Bridge, tenant: str, bearer: str | None, **params: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer is not None else {}
    return await bridge.http.get(f"/customer/{tenant}/logout", params=params, headers=headers)


async def logged_in(bridge: Bridge, shop: Shop) -> tuple[dict[str, Any], dict[str, Any]]:
    """(anonymous login body, customer login body) of one session."""
    anonymous = await bridge.anonymous_login(shop)
    customer = await bridge.customer_login(shop, anonymous["access_token"])
    return anonymous, customer


def session_tokens(anonymous: dict[str, Any], customer: dict[str, Any]) -> list[str]:
    """Every token of the session: the anonymous pair and the customer pair."""
    return [
        anonymous["access_token"],
        anonymous["refresh_token"],
        customer["access_token"],
        customer["refresh_token"],
    ]


def live_tokens(anonymous: dict[str, Any], customer: dict[str, Any]) -> list[str]:
    """The tokens of the session that stay live after the customer login (which ends the
    anonymous refresh token)."""
    return [anonymous["access_token"], customer["access_token"], customer["refresh_token"]]


async def active(bridge: Bridge, token: str) -> bool:
    introspected: bool = (await bridge.harness.introspect(token)).active
    return introspected


# --- validateauthtoken ---------------------------------------------------------------------


async def test_validate_anonymous_token_has_no_email(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    anonymous = await bridge.anonymous_login(shop)
    bridge.harness.clock.advance(100)
    response = await validate(bridge, "shopa", anonymous["access_token"])
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.json() == {
        "token_type": "Bearer",
        "expires_in": 3600 - 100,
        "scope": "tenant=shopa",
        "sessionId": anonymous["sessionId"],
    }


async def test_validate_customer_token_has_email_and_session(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    _, customer = await logged_in(bridge, shop)
    response = await validate(bridge, "shopa", customer["access_token"])
    assert response.status_code == 200, response.text
    assert response.json() == {
        "token_type": "Bearer",
        "expires_in": 14400,
        "scope": "customer.read order.write tenant=shopa",
        "sessionId": customer["session_id"],
        "email": shop.email,
    }


async def test_validate_shows_the_legal_entity_once_chosen(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    _, customer = await logged_in(bridge, shop)
    refreshed = await bridge.http.get(
        "/customer/shopa/refreshauthtoken",
        params={"refreshToken": customer["refresh_token"], "legalEntityId": "le-1"},
        headers={"Authorization": f"Bearer {customer['access_token']}"},
    )
    assert refreshed.status_code == 200, refreshed.text
    response = await validate(bridge, "shopa", refreshed.json()["access_token"])
    assert response.status_code == 200, response.text
    assert response.json() == {
        "token_type": "Bearer",
        "expires_in": 14400,
        "scope": "customer.read order.write tenant=shopa",
        "sessionId": customer["session_id"],
        "email": shop.email,
        "legalEntityId": "le-1",
    }


async def test_validate_unknown_token_is_401(bridge: Bridge) -> None:
    await bridge.harness.shop("shopa")
    assert_unauthorized(await validate(bridge, "shopa", "not-a-token"))


async def test_validate_expired_token_is_401(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    anonymous = await bridge.anonymous_login(shop)
    bridge.harness.clock.advance(3600 - 1)
    assert (await validate(bridge, "shopa", anonymous["access_token"])).status_code == 200
    bridge.harness.clock.advance(1)
    assert_unauthorized(await validate(bridge, "shopa", anonymous["access_token"]))


async def test_validate_revoked_token_is_401(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    _, customer = await logged_in(bridge, shop)
    revoked = await bridge.http.post(
        "/oauth/revoke", data={"token": customer["access_token"], "client_id": shop.storefront_id}
    )
    assert revoked.status_code == 200, revoked.text
    assert_unauthorized(await validate(bridge, "shopa", customer["access_token"]))


async def test_validate_refresh_token_as_bearer_is_401(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    _anonymous, customer = await logged_in(bridge, shop)
    assert await active(bridge, customer["refresh_token"])
    assert_unauthorized(await validate(bridge, "shopa", customer["refresh_token"]))
    fresh = await bridge.anonymous_login(shop)
    assert_unauthorized(await validate(bridge, "shopa", fresh["refresh_token"]))


async def test_validate_another_tenants_token_is_401(bridge: Bridge) -> None:
    await bridge.harness.shop("shopa")
    other = await bridge.harness.shop("shopb")
    _, customer = await logged_in(bridge, other)
    assert_unauthorized(await validate(bridge, "shopa", customer["access_token"]))
    assert (await validate(bridge, "shopb", customer["access_token"])).status_code == 200


async def test_validate_without_bearer_is_401(bridge: Bridge) -> None:
    await bridge.harness.shop("shopa")
    response = await bridge.http.get("/customer/shopa/validateauthtoken")
    assert_unauthorized(response)


# --- logout --------------------------------------------------------------------------------


async def test_logout_revokes_every_token_of_the_session(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    anonymous, customer = await logged_in(bridge, shop)
    bystander_anonymous, bystander = await logged_in(bridge, shop)
    for token in live_tokens(anonymous, customer):
        assert await active(bridge, token)
    response = await logout(
        bridge, "shopa", customer["access_token"], accessToken=customer["access_token"]
    )
    assert response.status_code == 204, response.text
    assert response.content == b""
    assert response.headers["cache-control"] == "no-store"
    # The anonymous access token stayed live after the customer login; logout ends it too.
    for token in session_tokens(anonymous, customer):
        assert not await active(bridge, token)
    session = await bridge.harness.core.store.get_session(customer["session_id"])
    assert session is not None and session.revoked_at is not None
    assert_unauthorized(await validate(bridge, "shopa", customer["access_token"]))
    # Another session of the same customer is untouched.
    for token in live_tokens(bystander_anonymous, bystander):
        assert await active(bridge, token)


async def test_logout_access_token_defaults_to_the_bearer(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    anonymous, customer = await logged_in(bridge, shop)
    response = await logout(bridge, "shopa", customer["access_token"])
    assert response.status_code == 204, response.text
    assert response.content == b""
    for token in session_tokens(anonymous, customer):
        assert not await active(bridge, token)


async def test_logout_of_an_anonymous_session(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    anonymous = await bridge.anonymous_login(shop)
    response = await logout(bridge, "shopa", anonymous["access_token"])
    assert response.status_code == 204, response.text
    assert not await active(bridge, anonymous["access_token"])
    assert not await active(bridge, anonymous["refresh_token"])


async def test_logout_by_the_sessions_anonymous_bearer(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    anonymous, customer = await logged_in(bridge, shop)
    response = await logout(
        bridge, "shopa", anonymous["access_token"], accessToken=customer["access_token"]
    )
    assert response.status_code == 204, response.text
    for token in session_tokens(anonymous, customer):
        assert not await active(bridge, token)


async def test_logout_with_another_sessions_access_token_is_403(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    anonymous, customer = await logged_in(bridge, shop)
    other_anonymous, other = await logged_in(bridge, shop)
    response = await logout(
        bridge, "shopa", customer["access_token"], accessToken=other["access_token"]
    )
    assert_problem(response, 403, "access_denied")
    for token in live_tokens(anonymous, customer) + live_tokens(other_anonymous, other):
        assert await active(bridge, token)


async def test_logout_with_an_inactive_bearer_is_401(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    _anonymous, customer = await logged_in(bridge, shop)
    # Unknown, refresh token, and (after the clock moves) expired bearers.
    for bearer in ("not-a-token", customer["refresh_token"]):
        response = await logout(bridge, "shopa", bearer, accessToken=customer["access_token"])
        assert_unauthorized(response)
    bridge.harness.clock.advance(14400 + 1)
    response = await logout(bridge, "shopa", customer["access_token"])
    assert_unauthorized(response)
    # Nothing was revoked: the refresh tokens still live.
    assert await active(bridge, customer["refresh_token"])


async def test_logout_with_a_revoked_bearer_is_401(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    _anonymous, customer = await logged_in(bridge, shop)
    first = await logout(bridge, "shopa", customer["access_token"])
    assert first.status_code == 204, first.text
    again = await logout(bridge, "shopa", customer["access_token"])
    assert_unauthorized(again)


async def test_logout_without_bearer_is_401(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    _, customer = await logged_in(bridge, shop)
    response = await logout(bridge, "shopa", None, accessToken=customer["access_token"])
    assert_unauthorized(response)
    assert await active(bridge, customer["access_token"])


async def test_logout_on_another_tenants_path_is_401_and_revokes_nothing(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    await bridge.harness.shop("shopb")
    anonymous, customer = await logged_in(bridge, shop)
    response = await logout(bridge, "shopb", customer["access_token"])
    assert_unauthorized(response)
    for token in live_tokens(anonymous, customer):
        assert await active(bridge, token)


async def test_logout_never_answers_204_while_the_session_stays_active(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    other = await bridge.harness.shop("shopb")
    _, customer = await logged_in(bridge, shop)
    _, foreign = await logged_in(bridge, other)
    for access_token in ("not-a-token", foreign["access_token"]):
        response = await logout(bridge, "shopa", customer["access_token"], accessToken=access_token)
        if response.status_code == 204:
            # A 204 tells the storefront the customer is logged out: it must be true.
            assert not await active(bridge, customer["access_token"])
        else:
            assert_problem(response, 403, "access_denied")
            assert await active(bridge, customer["access_token"])
        assert await active(bridge, foreign["access_token"])
