"""`POST /oauth/introspect` (RFC 7662) over the real bridge: the exact answer for every kind and
use of token, `{"active": false}` and nothing else for whatever is not an active token of the
caller's tenant (unknown, expired, revoked, another tenant's), client authentication for service
and public storefront callers, and the platform-admin scope that sees every tenant."""

from __future__ import annotations

from typing import Any

import httpx

from server import admin
from server.records import ClientKind
from server.settings import Settings
from tests.integration.http.conftest import Bridge
from tests.integration.http.expect import basic
from tests.integration.http.expect import oauth_problem as assert_error
from tests.support.harness import Shop

INTROSPECT = "/oauth/introspect"
INACTIVE = {"active": False}
# What an active answer says a resource server may cache it for: the default setting.
HINT = Settings().introspection_cache_hint_seconds


async def introspect(bridge: Bridge, shop: Shop, token: str, **extra: str) -> httpx.Response:
    """As the shop's service client, credentials in the form body."""
    return await bridge.http.post(
        INTROSPECT,
        data={
            "token": token,
            "client_id": shop.service_id,
            "client_secret": shop.service_secret,
            **extra,
        },
    )


def answer(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"
    body: dict[str, Any] = response.json()
    return body


def now(bridge: Bridge) -> int:
    return bridge.harness.core.now()


# --- active tokens: the exact answer ---------------------------------------------------------


async def test_anonymous_access_token(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("anonshop")
    issued_at = now(bridge)
    login = await bridge.anonymous_login(shop)
    bridge.harness.clock.advance(100)
    body = answer(await introspect(bridge, shop, login["access_token"]))
    assert body == {
        "active": True,
        "scope": "tenant=anonshop",
        "client_id": shop.storefront_id,
        "token_type": "Bearer",
        "exp": issued_at + 3600,
        "iat": issued_at,
        "iss": bridge.harness.core.settings.issuer,
        "tenant": "anonshop",
        "kind": "anonymous",
        "token_use": "access",
        "expires_in": 3500,
        "cache_seconds": HINT,
        "session_id": login["sessionId"],
    }


async def test_anonymous_refresh_token(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("anonrefr")
    issued_at = now(bridge)
    login = await bridge.anonymous_login(shop)
    body = answer(await introspect(bridge, shop, login["refresh_token"]))
    assert body == {
        "active": True,
        "scope": "tenant=anonrefr",
        "client_id": shop.storefront_id,
        "token_type": "Bearer",
        "exp": issued_at + 86400,
        "iat": issued_at,
        "iss": bridge.harness.core.settings.issuer,
        "tenant": "anonrefr",
        "kind": "anonymous",
        "token_use": "refresh",
        "expires_in": 86400,
        "cache_seconds": HINT,
        "session_id": login["sessionId"],
    }


async def test_customer_access_and_refresh_tokens(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("custshop")
    issued_at = now(bridge)
    login = await bridge.customer_login(shop)
    common = {
        "active": True,
        "scope": "customer.read order.write tenant=custshop",
        "client_id": shop.storefront_id,
        "token_type": "Bearer",
        "iat": issued_at,
        "iss": bridge.harness.core.settings.issuer,
        "tenant": "custshop",
        "kind": "customer",
        "sub": shop.customer_id,
        "session_id": login["session_id"],
        "email": shop.email,
    }
    access = answer(await introspect(bridge, shop, login["access_token"]))
    assert access == {
        **common,
        "token_use": "access",
        "exp": issued_at + 14400,
        "expires_in": 14400,
        "cache_seconds": HINT,
    }
    refresh = answer(await introspect(bridge, shop, login["refresh_token"]))
    assert refresh == {
        **common,
        "token_use": "refresh",
        "exp": issued_at + 86400,
        "expires_in": 86400,
        "cache_seconds": HINT,
    }


async def test_customer_token_carries_its_legal_entity(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("legalent")
    login = await bridge.customer_login(shop)
    refreshed = await bridge.http.get(
        f"/customer/{shop.tenant}/refreshauthtoken",
        params={"refreshToken": login["refresh_token"], "legalEntityId": "le-2"},
        headers={"Authorization": f"Bearer {login['access_token']}"},
    )
    assert refreshed.status_code == 200, refreshed.text
    body = answer(await introspect(bridge, shop, refreshed.json()["access_token"]))
    assert body["legal_entity_id"] == "le-2"
    assert body["sub"] == shop.customer_id
    assert body["kind"] == "customer"
    assert body["token_use"] == "access"
    # The login's token predates the choice and names no legal entity.
    assert "legal_entity_id" not in answer(await introspect(bridge, shop, login["access_token"]))


async def test_service_token_with_http_basic(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("servshop")
    issued_at = now(bridge)
    token = (await bridge.service_token(shop, scope="catalog.read"))["access_token"]
    response = await bridge.http.post(
        INTROSPECT,
        data={"token": token},
        headers=basic(shop.service_id, shop.service_secret),
    )
    assert answer(response) == {
        "active": True,
        "scope": "catalog.read tenant=servshop",
        "client_id": shop.service_id,
        "token_type": "Bearer",
        "exp": issued_at + 14400,
        "iat": issued_at,
        "iss": bridge.harness.core.settings.issuer,
        "tenant": "servshop",
        "kind": "service",
        "token_use": "access",
        "expires_in": 14400,
        "cache_seconds": HINT,
    }


async def test_json_body_is_accepted(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("jsonintro")
    login = await bridge.anonymous_login(shop)
    response = await bridge.http.post(
        INTROSPECT,
        json={
            "token": login["access_token"],
            "client_id": shop.service_id,
            "client_secret": shop.service_secret,
        },
    )
    body = answer(response)
    assert body["active"] is True
    assert body["session_id"] == login["sessionId"]


async def test_a_misleading_token_type_hint_does_not_hide_the_token(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("hintshop")
    login = await bridge.anonymous_login(shop)
    access = answer(
        await introspect(bridge, shop, login["access_token"], token_type_hint="refresh_token")
    )
    refresh = answer(
        await introspect(bridge, shop, login["refresh_token"], token_type_hint="access_token")
    )
    assert (access["active"], access["token_use"]) == (True, "access")
    assert (refresh["active"], refresh["token_use"]) == (True, "refresh")


async def test_storefront_client_introspects_by_client_id_alone(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("pubshop")
    login = await bridge.anonymous_login(shop)
    response = await bridge.http.post(
        INTROSPECT, data={"token": login["access_token"], "client_id": shop.storefront_id}
    )
    body = answer(response)
    assert body["active"] is True
    assert body["tenant"] == "pubshop"
    assert body["session_id"] == login["sessionId"]


# --- inactive: {"active": false} and nothing else --------------------------------------------


async def test_unknown_token_is_inactive(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("unknowns")
    response = await introspect(bridge, shop, "no-such-token-" + "x" * 30)
    assert answer(response) == INACTIVE


async def test_expired_token_is_inactive(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("expiring")
    login = await bridge.anonymous_login(shop)
    bridge.harness.clock.advance(3599)
    last_second = answer(await introspect(bridge, shop, login["access_token"]))
    assert last_second["expires_in"] == 1
    assert last_second["cache_seconds"] == 1  # never past the token's expiry
    bridge.harness.clock.advance(1)
    assert answer(await introspect(bridge, shop, login["access_token"])) == INACTIVE


async def test_revoked_token_is_inactive(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("revoked")
    token = (await bridge.service_token(shop))["access_token"]
    assert answer(await introspect(bridge, shop, token))["active"] is True
    revoked = await bridge.http.post(
        "/oauth/revoke",
        data={"token": token},
        headers=basic(shop.service_id, shop.service_secret),
    )
    assert revoked.status_code == 200
    assert answer(await introspect(bridge, shop, token)) == INACTIVE


async def test_another_tenants_token_is_inactive_for_a_service_client(bridge: Bridge) -> None:
    mine = await bridge.harness.shop("mineserv")
    theirs = await bridge.harness.shop("theirserv")
    tokens = [
        (await bridge.anonymous_login(theirs))["access_token"],
        (await bridge.customer_login(theirs))["refresh_token"],
        (await bridge.service_token(theirs))["access_token"],
    ]
    for token in tokens:
        assert answer(await introspect(bridge, mine, token)) == INACTIVE
        assert answer(await introspect(bridge, theirs, token))["active"] is True


async def test_another_tenants_token_is_inactive_for_a_storefront_client(bridge: Bridge) -> None:
    mine = await bridge.harness.shop("minepub")
    theirs = await bridge.harness.shop("theirpub")
    token = (await bridge.anonymous_login(theirs))["access_token"]
    foreign = await bridge.http.post(
        INTROSPECT, data={"token": token, "client_id": mine.storefront_id}
    )
    assert answer(foreign) == INACTIVE
    own = await bridge.http.post(
        INTROSPECT, data={"token": token, "client_id": theirs.storefront_id}
    )
    assert answer(own)["active"] is True


# --- platform admin --------------------------------------------------------------------------


async def test_platform_admin_sees_every_tenants_tokens(bridge: Bridge) -> None:
    await bridge.harness.shop("platform")
    other = await bridge.harness.shop("othershop")
    admin_client, secret = await admin.create_client(
        bridge.harness.core, "platform", ClientKind.SERVICE, ("tokenservice.platform_admin",)
    )
    assert secret is not None
    login = await bridge.customer_login(other)
    response = await bridge.http.post(
        INTROSPECT,
        data={"token": login["access_token"]},
        headers=basic(admin_client.client_id, secret),
    )
    body = answer(response)
    assert body["active"] is True
    assert body["tenant"] == "othershop"
    assert body["sub"] == other.customer_id


# --- refusals --------------------------------------------------------------------------------


async def test_missing_client_authentication_is_401(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("noauth")
    token = (await bridge.anonymous_login(shop))["access_token"]
    assert_error(await bridge.http.post(INTROSPECT, data={"token": token}), 401, "invalid_client")


async def test_wrong_secret_is_401(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("badsecret")
    token = (await bridge.anonymous_login(shop))["access_token"]
    in_body = await introspect(bridge, shop, token, client_secret="not-the-secret")
    assert_error(in_body, 401, "invalid_client")
    in_basic = await bridge.http.post(
        INTROSPECT, data={"token": token}, headers=basic(shop.service_id, "not-the-secret")
    )
    assert_error(in_basic, 401, "invalid_client")


async def test_storefront_client_with_a_secret_is_401(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("pubsecret")
    token = (await bridge.anonymous_login(shop))["access_token"]
    response = await bridge.http.post(
        INTROSPECT,
        data={"token": token, "client_id": shop.storefront_id, "client_secret": "a-secret"},
    )
    assert_error(response, 401, "invalid_client")


async def test_missing_token_is_400(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("notoken")
    response = await bridge.http.post(
        INTROSPECT, data={"client_id": shop.service_id, "client_secret": shop.service_secret}
    )
    assert_error(response, 400, "invalid_request")
    assert "token" in response.json()["error_description"]
