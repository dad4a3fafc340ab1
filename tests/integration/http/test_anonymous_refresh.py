"""`GET /customerlogin/auth/anonymous/refresh` over the real bridge: a rotated refresh token on the
same session, the grace window for the previous refresh token and reuse detection after it
(ManualClock), client and tenant binding, session context updates, both forms after customer
login (anonymous tokens of the same session, never the customer's rights), both parameters at
once (the refresh token wins), and the deprecated `anonymous_token` form (no refresh token in
the answer, refused once expired or once the session has ended)."""

from __future__ import annotations

from typing import Any

import httpx

from server import admin
from server.records import ClientKind, SessionContext
from tests.integration.http.conftest import Bridge
from tests.integration.http.expect import ANONYMOUS_FIELDS as LOGIN_FIELDS
from tests.integration.http.expect import customer_problem as assert_problem
from tests.support.harness import Shop

PATH = "/customerlogin/auth/anonymous/refresh"
DEPRECATED_FIELDS = {"token_type", "access_token", "expires_in", "sessionId", "scope"}
GRACE = 10  # Settings.refresh_grace_seconds default


async def refresh(bridge: Bridge, shop: Shop, **params: str) -> httpx.Response:
    return await bridge.http.get(
        PATH, params={"tenant": shop.tenant, "client_id": shop.storefront_id, **params}
    )


async def refreshed(bridge: Bridge, shop: Shop, **params: str) -> dict[str, Any]:
    response = await refresh(bridge, shop, **params)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    return body


async def is_active(bridge: Bridge, token: str) -> bool:
    active: bool = (await bridge.harness.introspect(token)).active
    return active


async def test_refresh_token_gives_a_new_pair_on_the_same_session(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    first = await bridge.anonymous_login(shop)
    second = await refreshed(bridge, shop, refresh_token=first["refresh_token"])
    assert set(second) == LOGIN_FIELDS
    assert second["sessionId"] == first["sessionId"]
    assert second["token_type"] == "Bearer"
    assert second["expires_in"] == 3600
    assert second["refresh_token_expires_in"] == 86400
    assert second["scope"] == "tenant=shopa"
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"] != first["refresh_token"]
    new_access = await bridge.harness.introspect(second["access_token"])
    assert new_access.active and new_access.session_id == first["sessionId"]
    # The rotated refresh token is the one that keeps working.
    third = await refreshed(bridge, shop, refresh_token=second["refresh_token"])
    assert third["sessionId"] == first["sessionId"]


async def test_previous_refresh_token_works_within_the_grace_window(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    first = await bridge.anonymous_login(shop)
    await refreshed(bridge, shop, refresh_token=first["refresh_token"])
    bridge.harness.clock.advance(GRACE)
    again = await refreshed(bridge, shop, refresh_token=first["refresh_token"])
    assert again["sessionId"] == first["sessionId"]
    assert await is_active(bridge, again["access_token"])


async def test_previous_refresh_token_after_the_grace_window_revokes_the_session(
    bridge: Bridge,
) -> None:
    shop = await bridge.harness.shop("shopa")
    first = await bridge.anonymous_login(shop)
    second = await refreshed(bridge, shop, refresh_token=first["refresh_token"])
    bridge.harness.clock.advance(GRACE + 1)
    response = await refresh(bridge, shop, refresh_token=first["refresh_token"])
    assert_problem(response, 400, "invalid_grant", "refresh_token")
    for token in (
        first["access_token"],
        second["access_token"],
        second["refresh_token"],
    ):
        assert not await is_active(bridge, token)
    session = await bridge.harness.core.store.get_session(first["sessionId"])
    assert session is not None and session.revoked_at is not None
    # The legitimate holder's current refresh token is dead too.
    response = await refresh(bridge, shop, refresh_token=second["refresh_token"])
    assert_problem(response, 400, "invalid_grant", "refresh_token")


async def test_grace_use_does_not_extend_the_window(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    first = await bridge.anonymous_login(shop)
    await refreshed(bridge, shop, refresh_token=first["refresh_token"])
    bridge.harness.clock.advance(5)
    await refreshed(bridge, shop, refresh_token=first["refresh_token"])
    bridge.harness.clock.advance(GRACE - 5 + 1)
    response = await refresh(bridge, shop, refresh_token=first["refresh_token"])
    assert_problem(response, 400, "invalid_grant", "refresh_token")


async def test_refresh_token_of_another_client_is_400(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    other_client, _ = await admin.create_client(
        bridge.harness.core, "shopa", ClientKind.STOREFRONT, ()
    )
    first = await bridge.anonymous_login(shop)
    for client_id in (other_client.client_id, shop.service_id, "no-such-client"):
        response = await bridge.http.get(
            PATH,
            params={
                "tenant": "shopa",
                "client_id": client_id,
                "refresh_token": first["refresh_token"],
            },
        )
        assert_problem(response, 400, "invalid_grant", "client_id")
    # The refusals did not consume the token.
    assert (await refreshed(bridge, shop, refresh_token=first["refresh_token"]))["sessionId"]


async def test_refresh_token_on_another_tenant_is_403(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    other = await bridge.harness.shop("shopb")
    first = await bridge.anonymous_login(shop)
    response = await refresh(bridge, other, refresh_token=first["refresh_token"])
    assert_problem(response, 403, "access_denied", "refresh_token")
    assert await is_active(bridge, first["refresh_token"])


async def test_missing_parameters_are_400_naming_them(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    first = await bridge.anonymous_login(shop)
    assert_problem(await refresh(bridge, shop), 400, "invalid_request", "refresh_token")
    assert_problem(
        await refresh(bridge, shop, refresh_token=""), 400, "invalid_request", "refresh_token"
    )
    response = await bridge.http.get(
        PATH, params={"client_id": shop.storefront_id, "refresh_token": first["refresh_token"]}
    )
    assert_problem(response, 400, "invalid_request", "tenant")
    response = await bridge.http.get(
        PATH, params={"tenant": "shopa", "refresh_token": first["refresh_token"]}
    )
    assert_problem(response, 400, "invalid_request", "client_id")


async def test_unknown_refresh_token_is_400_invalid_grant(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    response = await refresh(bridge, shop, refresh_token="not-a-real-token")
    assert_problem(response, 400, "invalid_grant", "refresh_token")


async def test_access_token_as_refresh_token_is_400_invalid_grant(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    first = await bridge.anonymous_login(shop)
    response = await refresh(bridge, shop, refresh_token=first["access_token"])
    assert_problem(response, 400, "invalid_grant", "refresh_token")


async def test_expired_refresh_token_is_400_invalid_grant(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    first = await bridge.anonymous_login(shop)
    bridge.harness.clock.advance(86400 + 1)
    response = await refresh(bridge, shop, refresh_token=first["refresh_token"])
    assert_problem(response, 400, "invalid_grant", "refresh_token")


async def test_refresh_updates_only_the_given_context_fields(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    first = await bridge.anonymous_login(shop, currency="EUR", language="de")
    await refreshed(
        bridge, shop, refresh_token=first["refresh_token"], currency="USD", siteCode="us"
    )
    session = await bridge.harness.core.store.get_session(first["sessionId"])
    assert session is not None
    assert session.context == SessionContext(currency="USD", site_code="us", language="de")


async def test_refresh_with_an_over_long_context_value_is_400(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    first = await bridge.anonymous_login(shop)
    response = await refresh(
        bridge, shop, refresh_token=first["refresh_token"], targetLocation="x" * 65
    )
    assert_problem(response, 400, "invalid_request", "targetLocation")
    # Refused before any exchange: the refresh token was not rotated.
    assert (await refreshed(bridge, shop, refresh_token=first["refresh_token"]))["sessionId"]


async def test_deprecated_anonymous_token_form_answers_without_refresh_token(
    bridge: Bridge,
) -> None:
    shop = await bridge.harness.shop("shopa")
    first = await bridge.anonymous_login(shop)
    body = await refreshed(bridge, shop, anonymous_token=first["access_token"])
    assert set(body) == DEPRECATED_FIELDS
    assert body["sessionId"] == first["sessionId"]
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == "tenant=shopa"
    assert body["access_token"] != first["access_token"]
    new_access = await bridge.harness.introspect(body["access_token"])
    assert new_access.active and new_access.session_id == first["sessionId"]
    validated = await bridge.http.get(
        "/customer/shopa/validateauthtoken",
        headers={"Authorization": f"Bearer {body['access_token']}"},
    )
    assert validated.status_code == 200, validated.text
    assert validated.json()["sessionId"] == first["sessionId"]


async def test_deprecated_anonymous_token_form_updates_the_context(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    first = await bridge.anonymous_login(shop, currency="EUR")
    await refreshed(bridge, shop, anonymous_token=first["access_token"], language="fr")
    session = await bridge.harness.core.store.get_session(first["sessionId"])
    assert session is not None
    assert session.context == SessionContext(currency="EUR", language="fr")


async def test_expired_anonymous_token_is_400_invalid_grant(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    first = await bridge.anonymous_login(shop)
    bridge.harness.clock.advance(3600 + 1)
    response = await refresh(bridge, shop, anonymous_token=first["access_token"])
    assert_problem(response, 400, "invalid_grant", "anonymous_token")


async def test_anonymous_token_form_with_a_refresh_token_is_400_invalid_grant(
    bridge: Bridge,
) -> None:
    shop = await bridge.harness.shop("shopa")
    first = await bridge.anonymous_login(shop)
    response = await refresh(bridge, shop, anonymous_token=first["refresh_token"])
    assert_problem(response, 400, "invalid_grant", "anonymous_token")


async def test_anonymous_token_form_on_another_tenant_is_403(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    other = await bridge.harness.shop("shopb")
    first = await bridge.anonymous_login(shop)
    response = await refresh(bridge, other, anonymous_token=first["access_token"])
    assert_problem(response, 403, "access_denied", "anonymous_token")


async def assert_anonymous_only(bridge: Bridge, shop: Shop, access_token: str) -> None:
    """An active anonymous access token of the tenant: no customer, email, legal entity or
    customer scope, and not taken where a customer token is required."""
    shown = await bridge.http.get(
        f"/customer/{shop.tenant}/validateauthtoken",
        headers={"Authorization": f"Bearer {access_token}"},
    )
    assert shown.status_code == 200, shown.text
    body = shown.json()
    assert "email" not in body and "legalEntityId" not in body
    assert body["scope"] == f"tenant={shop.tenant}"
    info = await bridge.harness.introspect(access_token)
    assert info.active and info.customer_id == "" and info.email == ""


async def test_anonymous_token_form_keeps_working_after_customer_login(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    first = await bridge.anonymous_login(shop)
    await bridge.customer_login(shop, first["access_token"])
    body = await refreshed(bridge, shop, anonymous_token=first["access_token"])
    assert set(body) == DEPRECATED_FIELDS
    assert body["sessionId"] == first["sessionId"]
    await assert_anonymous_only(bridge, shop, body["access_token"])


async def test_anonymous_refresh_token_keeps_working_after_customer_login(bridge: Bridge) -> None:
    """The storefront SDK refreshes its anonymous token with the refresh token it got before
    login: the same session, an anonymous token, never the customer's rights, and not a
    customer refresh token either."""
    shop = await bridge.harness.shop("shopa")
    first = await bridge.anonymous_login(shop)
    login = await bridge.customer_login(shop, first["access_token"])
    switched = await bridge.http.get(
        "/customer/shopa/refreshauthtoken",
        params={"refreshToken": login["refresh_token"], "legalEntityId": "le-2"},
        headers={"Authorization": f"Bearer {first['access_token']}"},
    )
    assert switched.status_code == 200, switched.text
    second = await refreshed(bridge, shop, refresh_token=first["refresh_token"])
    assert set(second) == LOGIN_FIELDS
    assert second["sessionId"] == first["sessionId"]
    assert second["scope"] == "tenant=shopa"
    await assert_anonymous_only(bridge, shop, second["access_token"])
    third = await refreshed(bridge, shop, refresh_token=second["refresh_token"])
    assert third["sessionId"] == first["sessionId"]
    as_customer = await bridge.http.get(
        "/customer/shopa/refreshauthtoken",
        params={"refreshToken": third["refresh_token"]},
        headers={"Authorization": f"Bearer {third['access_token']}"},
    )
    assert as_customer.status_code == 400, as_customer.text
    assert await is_active(bridge, third["refresh_token"])


async def test_after_login_the_grace_window_holds_and_reuse_revokes_the_customer_too(
    bridge: Bridge,
) -> None:
    shop = await bridge.harness.shop("shopa")
    first = await bridge.anonymous_login(shop)
    login = await bridge.customer_login(shop, first["access_token"])
    second = await refreshed(bridge, shop, refresh_token=first["refresh_token"])
    bridge.harness.clock.advance(GRACE)
    assert (await refreshed(bridge, shop, refresh_token=first["refresh_token"]))["sessionId"]
    bridge.harness.clock.advance(1)
    response = await refresh(bridge, shop, refresh_token=first["refresh_token"])
    assert_problem(response, 400, "invalid_grant", "refresh_token")
    for token in (
        second["access_token"],
        second["refresh_token"],
        login["access_token"],
        login["refresh_token"],
        login["saas_token"],
    ):
        assert not await is_active(bridge, token)
    session = await bridge.harness.core.store.get_session(first["sessionId"])
    assert session is not None and session.revoked_at is not None


async def test_both_refresh_token_and_anonymous_token_the_refresh_token_wins(
    bridge: Bridge,
) -> None:
    """Both reference specs mark both parameters required, so generated clients send both."""
    shop = await bridge.harness.shop("shopa")
    first = await bridge.anonymous_login(shop)
    other = await bridge.anonymous_login(shop)
    body = await refreshed(
        bridge,
        shop,
        refresh_token=first["refresh_token"],
        anonymous_token=other["access_token"],
    )
    assert set(body) == LOGIN_FIELDS  # the refresh token's answer: a new refresh token
    assert body["sessionId"] == first["sessionId"]
    assert await is_active(bridge, body["refresh_token"])
    assert await is_active(bridge, other["access_token"])
    # The ignored value is still checked for its shape, as it would be alone.
    response = await refresh(
        bridge, shop, refresh_token=body["refresh_token"], anonymous_token="x" * 513
    )
    assert_problem(response, 400, "invalid_request", "anonymous_token")
    assert (await refreshed(bridge, shop, refresh_token=body["refresh_token"]))["sessionId"]


async def test_customer_refresh_token_is_not_exchanged_here(bridge: Bridge) -> None:
    """The anonymous endpoint refreshes anonymous sessions; a customer refresh token belongs on
    `/customer/{tenant}/refreshauthtoken`, which binds the call to the session's bearer and
    answers with the SaaS token."""
    shop = await bridge.harness.shop("shopa")
    customer = await bridge.customer_login(shop)
    response = await refresh(bridge, shop, refresh_token=customer["refresh_token"])
    assert_problem(response, 400, "invalid_grant", "refresh_token")
