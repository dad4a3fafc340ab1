"""`GET /customer/{tenant}/refreshauthtoken` over the real bridge: new customer tokens (and SaaS
token) on the same session with the deprecated twins, switching to one of the customer's legal
entities (and not to a foreign one), and the bearer binding: an access token of the same session,
anonymous or customer, expired or not, but never a revoked one; or an active anonymous access
token of the same tenant, of any session (the storefront SDK's bearer, also after a page reload),
but never an expired or revoked one, one of another tenant, or a customer token of another
session."""

from __future__ import annotations

from typing import Any

import httpx

from tests.integration.http.conftest import Bridge
from tests.integration.http.expect import CUSTOMER_FIELDS, INVALID_TOKEN_CHALLENGE, TWINS
from tests.integration.http.expect import customer_problem as assert_problem
from tests.support.harness import Shop


async def refresh(bridge: Bridge, tenant: str, bearer: str | None, **params: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer is not None else {}
    return await bridge.http.get(
        f"/customer/{tenant}/refreshauthtoken", params=params, headers=headers
    )


async def refreshed(bridge: Bridge, tenant: str, bearer: str, **params: str) -> dict[str, Any]:
    response = await refresh(bridge, tenant, bearer, **params)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    return body


async def validate(bridge: Bridge, tenant: str, token: str) -> httpx.Response:
    return await bridge.http.get(
        f"/customer/{tenant}/validateauthtoken", headers={"Authorization": f"Bearer {token}"}
    )


async def logged_in(bridge: Bridge, shop: Shop) -> tuple[dict[str, Any], dict[str, Any]]:
    """(anonymous login body, customer login body) of one session."""
    anonymous = await bridge.anonymous_login(shop)
    customer = await bridge.customer_login(shop, anonymous["access_token"])
    return anonymous, customer


async def test_refresh_gives_new_tokens_on_the_same_session(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    _, login = await logged_in(bridge, shop)
    body = await refreshed(
        bridge, "shopa", login["access_token"], refreshToken=login["refresh_token"]
    )
    assert set(body) == CUSTOMER_FIELDS | set(TWINS)
    for twin, name in TWINS.items():
        assert body[twin] == body[name], twin
    assert body["session_id"] == login["session_id"]
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 14400
    assert body["refresh_token_expires_in"] == 86400
    assert body["scope"] == login["scope"]
    assert body["access_token"] != login["access_token"]
    assert body["refresh_token"] != login["refresh_token"]
    assert body["saas_token"] and body["saas_token"] != login["saas_token"]
    info = await bridge.harness.introspect(body["access_token"])
    assert info.active
    assert info.session_id == login["session_id"]
    assert info.customer_id == shop.customer_id
    # The new refresh token works in turn, with the new access token as bearer.
    again = await refreshed(
        bridge, "shopa", body["access_token"], refreshToken=body["refresh_token"]
    )
    assert again["session_id"] == login["session_id"]


async def test_legal_entity_of_the_customer_is_taken_and_kept(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    _, login = await logged_in(bridge, shop)
    before = await validate(bridge, "shopa", login["access_token"])
    assert "legalEntityId" not in before.json()  # two legal entities: none chosen at login
    body = await refreshed(
        bridge,
        "shopa",
        login["access_token"],
        refreshToken=login["refresh_token"],
        legalEntityId="le-2",
    )
    shown = await validate(bridge, "shopa", body["access_token"])
    assert shown.status_code == 200, shown.text
    assert shown.json()["legalEntityId"] == "le-2"
    session = await bridge.harness.core.store.get_session(login["session_id"])
    assert session is not None and session.legal_entity_id == "le-2"
    # A refresh without legalEntityId keeps it.
    kept = await refreshed(
        bridge, "shopa", body["access_token"], refreshToken=body["refresh_token"]
    )
    assert (await validate(bridge, "shopa", kept["access_token"])).json()["legalEntityId"] == (
        "le-2"
    )


async def test_foreign_legal_entity_is_403_and_changes_nothing(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    _, login = await logged_in(bridge, shop)
    response = await refresh(
        bridge,
        "shopa",
        login["access_token"],
        refreshToken=login["refresh_token"],
        legalEntityId="le-999",
    )
    assert_problem(response, 403, "access_denied", "legalEntityId")
    session = await bridge.harness.core.store.get_session(login["session_id"])
    assert session is not None and session.legal_entity_id is None
    # The refresh token was not spent.
    body = await refreshed(
        bridge, "shopa", login["access_token"], refreshToken=login["refresh_token"]
    )
    assert body["session_id"] == login["session_id"]


async def test_customer_bearer_of_another_session_is_401(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    _, login = await logged_in(bridge, shop)
    _, other_login = await logged_in(bridge, shop)
    response = await refresh(
        bridge, "shopa", other_login["access_token"], refreshToken=login["refresh_token"]
    )
    assert_problem(response, 401, "invalid_token", "Authorization")
    assert response.headers["www-authenticate"] == INVALID_TOKEN_CHALLENGE
    # Refused before the exchange: the refresh token still works with the right bearer.
    assert (
        await refreshed(bridge, "shopa", login["access_token"], refreshToken=login["refresh_token"])
    )["session_id"] == login["session_id"]


async def test_active_anonymous_bearer_of_another_session_is_accepted(bridge: Bridge) -> None:
    """After a page reload the storefront SDK holds only the customer refresh token and a new
    anonymous session; its anonymous access token is the bearer."""
    shop = await bridge.harness.shop("shopa")
    _, login = await logged_in(bridge, shop)
    reloaded = await bridge.anonymous_login(shop)
    assert reloaded["sessionId"] != login["session_id"]
    body = await refreshed(
        bridge, "shopa", reloaded["access_token"], refreshToken=login["refresh_token"]
    )
    assert body["session_id"] == login["session_id"]
    assert body["saas_token"]
    shown = await validate(bridge, "shopa", body["access_token"])
    assert shown.status_code == 200, shown.text
    assert shown.json()["email"] == shop.email
    # The bearer's session stays the anonymous one it was.
    assert "email" not in (await validate(bridge, "shopa", reloaded["access_token"])).json()


async def test_anonymous_bearer_of_another_tenant_is_403(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    rival = await bridge.harness.shop("shopb")
    _, login = await logged_in(bridge, shop)
    foreign = await bridge.anonymous_login(rival)
    response = await refresh(
        bridge, "shopa", foreign["access_token"], refreshToken=login["refresh_token"]
    )
    assert_problem(response, 403, "access_denied", "Authorization")
    assert (await bridge.harness.introspect(login["refresh_token"])).active


async def test_revoked_or_expired_anonymous_bearer_of_another_session_is_401(
    bridge: Bridge,
) -> None:
    shop = await bridge.harness.shop("shopa")
    _, login = await logged_in(bridge, shop)
    revoked = await bridge.anonymous_login(shop)
    answer = await bridge.http.post(
        "/oauth/revoke", data={"token": revoked["access_token"], "client_id": shop.storefront_id}
    )
    assert answer.status_code == 200, answer.text
    expiring = await bridge.anonymous_login(shop)
    bridge.harness.clock.advance(3600)  # the anonymous access token's lifetime
    assert (await validate(bridge, "shopa", expiring["access_token"])).status_code == 401
    for bearer in (revoked["access_token"], expiring["access_token"]):
        response = await refresh(bridge, "shopa", bearer, refreshToken=login["refresh_token"])
        assert_problem(response, 401, "invalid_token", "Authorization")
        assert response.headers["www-authenticate"] == INVALID_TOKEN_CHALLENGE
    live = await bridge.anonymous_login(shop)
    assert (
        await refreshed(bridge, "shopa", live["access_token"], refreshToken=login["refresh_token"])
    )["session_id"] == login["session_id"]


async def test_customer_refresh_token_reuse_revokes_the_anonymous_tokens_too(
    bridge: Bridge,
) -> None:
    """Reuse detection is unchanged by the anonymous bearer: replaying a rotated customer
    refresh token after the grace window ends the session, its anonymous refresh token too."""
    shop = await bridge.harness.shop("shopa")
    anonymous, login = await logged_in(bridge, shop)
    reloaded = await bridge.anonymous_login(shop)
    body = await refreshed(
        bridge, "shopa", reloaded["access_token"], refreshToken=login["refresh_token"]
    )
    bridge.harness.clock.advance(10 + 1)  # Settings.refresh_grace_seconds, and a second
    response = await refresh(
        bridge, "shopa", reloaded["access_token"], refreshToken=login["refresh_token"]
    )
    assert_problem(response, 400, "invalid_grant", "refreshToken")
    for token in (
        body["access_token"],
        body["refresh_token"],
        anonymous["access_token"],
        anonymous["refresh_token"],
    ):
        assert not (await bridge.harness.introspect(token)).active
    # The bearer's own anonymous session is not the one revoked.
    assert (await bridge.harness.introspect(reloaded["access_token"])).active


async def test_service_token_or_refresh_token_as_bearer_is_401(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    _, login = await logged_in(bridge, shop)
    service = await bridge.service_token(shop)
    for bearer in (service["access_token"], login["refresh_token"], "not-a-token"):
        response = await refresh(bridge, "shopa", bearer, refreshToken=login["refresh_token"])
        assert_problem(response, 401, "invalid_token", "Authorization")


async def test_anonymous_token_of_the_same_session_is_an_accepted_bearer(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    anonymous, login = await logged_in(bridge, shop)
    body = await refreshed(
        bridge, "shopa", anonymous["access_token"], refreshToken=login["refresh_token"]
    )
    assert body["session_id"] == anonymous["sessionId"]
    assert body["saas_token"]
    info = await bridge.harness.introspect(body["access_token"])
    assert info.active and info.customer_id == shop.customer_id


async def test_expired_customer_bearer_of_the_same_session_is_accepted(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    _, login = await logged_in(bridge, shop)
    bridge.harness.clock.advance(14400 + 1)
    assert (await validate(bridge, "shopa", login["access_token"])).status_code == 401
    body = await refreshed(
        bridge, "shopa", login["access_token"], refreshToken=login["refresh_token"]
    )
    assert body["session_id"] == login["session_id"]
    assert (await validate(bridge, "shopa", body["access_token"])).status_code == 200


async def test_revoked_customer_bearer_is_401(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    anonymous, login = await logged_in(bridge, shop)
    revoked = await bridge.http.post(
        "/oauth/revoke",
        data={"token": login["access_token"], "client_id": shop.storefront_id},
    )
    assert revoked.status_code == 200, revoked.text
    assert not (await bridge.harness.introspect(login["access_token"])).active
    response = await refresh(
        bridge, "shopa", login["access_token"], refreshToken=login["refresh_token"]
    )
    assert_problem(response, 401, "invalid_token", "Authorization")
    assert response.headers["www-authenticate"] == INVALID_TOKEN_CHALLENGE
    # Only that access token was revoked: the session refreshes with another bearer.
    body = await refreshed(
        bridge, "shopa", anonymous["access_token"], refreshToken=login["refresh_token"]
    )
    assert body["session_id"] == login["session_id"]


async def test_missing_refresh_token_is_400_naming_it(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    _, login = await logged_in(bridge, shop)
    assert_problem(
        await refresh(bridge, "shopa", login["access_token"]),
        400,
        "invalid_request",
        "refreshToken",
    )
    assert_problem(
        await refresh(bridge, "shopa", login["access_token"], refreshToken=""),
        400,
        "invalid_request",
        "refreshToken",
    )


async def test_unknown_refresh_token_is_400_invalid_grant(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    _, login = await logged_in(bridge, shop)
    response = await refresh(bridge, "shopa", login["access_token"], refreshToken="nope")
    assert_problem(response, 400, "invalid_grant", "refreshToken")


async def test_an_anonymous_refresh_token_is_400_invalid_grant(bridge: Bridge) -> None:
    """The anonymous refresh token a storefront holds beside the customer's is no customer
    refresh token: refused, saying which it is, and the session goes on."""
    shop = await bridge.harness.shop("shopa")
    anonymous, login = await logged_in(bridge, shop)
    response = await refresh(
        bridge, "shopa", login["access_token"], refreshToken=anonymous["refresh_token"]
    )
    assert_problem(response, 400, "invalid_grant", "refreshToken")
    assert "anonymous refresh token" in response.json()["message"]
    assert (await validate(bridge, "shopa", login["access_token"])).status_code == 200


async def test_missing_bearer_is_401(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    _, login = await logged_in(bridge, shop)
    response = await refresh(bridge, "shopa", None, refreshToken=login["refresh_token"])
    assert_problem(response, 401, "invalid_token")
    assert response.headers["www-authenticate"] == INVALID_TOKEN_CHALLENGE


async def test_another_tenants_path_is_403(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    await bridge.harness.shop("shopb")
    _, login = await logged_in(bridge, shop)
    response = await refresh(
        bridge, "shopb", login["access_token"], refreshToken=login["refresh_token"]
    )
    assert_problem(response, 403, "access_denied", "refreshToken")
    assert (await bridge.harness.introspect(login["refresh_token"])).active


async def test_refresh_after_logout_is_refused(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    _, login = await logged_in(bridge, shop)
    out = await bridge.http.get(
        "/customer/shopa/logout", headers={"Authorization": f"Bearer {login['access_token']}"}
    )
    assert out.status_code == 204, out.text
    response = await refresh(
        bridge, "shopa", login["access_token"], refreshToken=login["refresh_token"]
    )
    assert_problem(response, 401, "invalid_token", "Authorization")


async def test_error_details_name_this_routes_parameters(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    _, login = await logged_in(bridge, shop)
    foreign = await refresh(
        bridge,
        "shopa",
        login["access_token"],
        refreshToken=login["refresh_token"],
        legalEntityId="le-999",
    )
    assert_problem(foreign, 403, "access_denied", "legalEntityId")
    unknown = await refresh(bridge, "shopa", login["access_token"], refreshToken="nope")
    assert_problem(unknown, 400, "invalid_grant", "refreshToken")
