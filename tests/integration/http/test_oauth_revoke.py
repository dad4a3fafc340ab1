"""`POST /oauth/revoke` (RFC 7009) over the real bridge: revoking an access token ends that token,
revoking a refresh token ends the whole session, an unknown or foreign token is a quiet 200 that
changes nothing, a caller revokes only what is its own (a storefront client the tokens issued to
it, a service client its tenant's), and client authentication is required."""

from __future__ import annotations

import httpx

from server import admin
from server.records import ClientKind
from tests.integration.http.conftest import Bridge
from tests.integration.http.expect import basic
from tests.integration.http.expect import oauth_problem as assert_error
from tests.support.harness import Shop

REVOKE = "/oauth/revoke"


async def revoke_as_service(bridge: Bridge, shop: Shop, token: str, **extra: str) -> httpx.Response:
    return await bridge.http.post(
        REVOKE,
        data={
            "token": token,
            "client_id": shop.service_id,
            "client_secret": shop.service_secret,
            **extra,
        },
    )


async def revoke_as_storefront(bridge: Bridge, client_id: str, token: str) -> httpx.Response:
    return await bridge.http.post(REVOKE, data={"token": token, "client_id": client_id})


def assert_revoke_answer(response: httpx.Response) -> None:
    """RFC 7009 section 2.2: 200 with no content, whether or not anything was revoked."""
    assert response.status_code == 200, response.text
    assert response.content == b""
    assert response.headers["Cache-Control"] == "no-store"


async def active(bridge: Bridge, token: str) -> bool:
    introspected: bool = (await bridge.harness.introspect(token)).active
    return introspected


async def test_revoking_an_access_token_leaves_the_sessions_refresh_token(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("revaccess")
    login = await bridge.anonymous_login(shop)
    assert_revoke_answer(await revoke_as_service(bridge, shop, login["access_token"]))
    assert not await active(bridge, login["access_token"])
    assert await active(bridge, login["refresh_token"])


async def test_revoking_a_refresh_token_ends_the_whole_session(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("revrefresh")
    login = await bridge.customer_login(shop)
    assert await active(bridge, login["access_token"])
    assert_revoke_answer(
        await revoke_as_service(
            bridge, shop, login["refresh_token"], token_type_hint="refresh_token"
        )
    )
    assert not await active(bridge, login["refresh_token"])
    assert not await active(bridge, login["access_token"])


async def test_revoking_a_service_token_with_http_basic(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("revbasic")
    token = (await bridge.service_token(shop))["access_token"]
    response = await bridge.http.post(
        REVOKE, data={"token": token}, headers=basic(shop.service_id, shop.service_secret)
    )
    assert_revoke_answer(response)
    assert not await active(bridge, token)


async def test_json_body_is_accepted(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("revjson")
    token = (await bridge.anonymous_login(shop))["access_token"]
    response = await bridge.http.post(
        REVOKE,
        json={"token": token, "client_id": shop.service_id, "client_secret": shop.service_secret},
    )
    assert_revoke_answer(response)
    assert not await active(bridge, token)


async def test_unknown_token_is_200(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("revunknown")
    assert_revoke_answer(await revoke_as_service(bridge, shop, "no-such-token-" + "x" * 30))


async def test_another_tenants_token_is_200_and_stays_active(bridge: Bridge) -> None:
    mine = await bridge.harness.shop("revmine")
    theirs = await bridge.harness.shop("revtheirs")
    login = await bridge.customer_login(theirs)
    service = (await bridge.service_token(theirs))["access_token"]
    for token in (login["access_token"], login["refresh_token"], service):
        assert_revoke_answer(await revoke_as_service(bridge, mine, token))
        assert_revoke_answer(await revoke_as_storefront(bridge, mine.storefront_id, token))
        assert await active(bridge, token)


async def test_storefront_client_revokes_tokens_issued_to_it(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("revpub")
    login = await bridge.anonymous_login(shop)
    response = await revoke_as_storefront(bridge, shop.storefront_id, login["refresh_token"])
    assert_revoke_answer(response)
    assert not await active(bridge, login["refresh_token"])
    assert not await active(bridge, login["access_token"])
    refreshed = await bridge.http.get(
        "/customerlogin/auth/anonymous/refresh",
        params={
            "tenant": shop.tenant,
            "client_id": shop.storefront_id,
            "refresh_token": login["refresh_token"],
        },
    )
    assert refreshed.status_code == 400, refreshed.text
    assert refreshed.json()["type"] == "invalid_grant"


async def test_storefront_client_cannot_revoke_another_clients_tokens(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("revpubtwo")
    other, _ = await admin.create_client(
        bridge.harness.core, "revpubtwo", ClientKind.STOREFRONT, ()
    )
    login = await bridge.anonymous_login(shop)
    service = (await bridge.service_token(shop))["access_token"]
    for token in (login["access_token"], login["refresh_token"], service):
        assert_revoke_answer(await revoke_as_storefront(bridge, other.client_id, token))
        assert await active(bridge, token)


async def test_service_client_revokes_its_tenants_tokens(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("revserv")
    anonymous = await bridge.anonymous_login(shop)
    customer = await bridge.customer_login(shop)
    other_service, secret = await admin.create_client(
        bridge.harness.core, "revserv", ClientKind.SERVICE, ("catalog.read",)
    )
    assert secret is not None
    foreign_service = await bridge.http.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": other_service.client_id,
            "client_secret": secret,
        },
    )
    service_token = foreign_service.json()["access_token"]
    for token in (anonymous["access_token"], customer["access_token"], service_token):
        assert await active(bridge, token)
        assert_revoke_answer(await revoke_as_service(bridge, shop, token))
        assert not await active(bridge, token)


async def test_platform_admin_revokes_any_tenants_tokens(bridge: Bridge) -> None:
    await bridge.harness.shop("revplatform")
    other = await bridge.harness.shop("revother")
    client, secret = await admin.create_client(
        bridge.harness.core, "revplatform", ClientKind.SERVICE, ("tokenservice.platform_admin",)
    )
    assert secret is not None
    token = (await bridge.anonymous_login(other))["access_token"]
    response = await bridge.http.post(
        REVOKE, data={"token": token}, headers=basic(client.client_id, secret)
    )
    assert_revoke_answer(response)
    assert not await active(bridge, token)


async def test_missing_client_authentication_is_401_and_revokes_nothing(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("revnoauth")
    token = (await bridge.anonymous_login(shop))["access_token"]
    response = await bridge.http.post(REVOKE, data={"token": token})
    assert_error(response, 401, "invalid_client")
    assert response.headers["WWW-Authenticate"] == 'Basic realm="tokenservice"'
    assert await active(bridge, token)


async def test_wrong_secret_is_401_and_revokes_nothing(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("revbadsec")
    token = (await bridge.anonymous_login(shop))["access_token"]
    response = await revoke_as_service(bridge, shop, token, client_secret="not-the-secret")
    assert_error(response, 401, "invalid_client")
    assert await active(bridge, token)


async def test_missing_token_is_400(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("revnotoken")
    response = await bridge.http.post(
        REVOKE, data={"client_id": shop.service_id, "client_secret": shop.service_secret}
    )
    assert_error(response, 400, "invalid_request")
    assert "token" in response.json()["error_description"]
