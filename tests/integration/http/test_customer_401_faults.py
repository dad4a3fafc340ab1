"""The 2026 reference's 401 `fault` on the customer routes, over the real bridge (both backends:
the channel one is what a standalone bridge runs, so the cause "expired" crosses gRPC as
ErrorInfo metadata).

A bearer token that is missing, malformed, unknown, revoked, of the wrong use or tenant, or
purged by the janitor is `oauth.v2.InvalidAccessToken`; an access token that would do but has
expired is `keymanagement.service.access_token_expired`. Both keep the existing `{status, type,
message, details}` and the `invalid_token` challenge. Time moves by the harness's clock, never by
sleeping. Plain introspection (gRPC and `POST /oauth/introspect`) still says only
`active: false`, and the `/oauth/*` error bodies keep the RFC 6749 shape.
"""

from __future__ import annotations

from typing import Any

import grpc
import httpx
import pytest

from server import janitor
from tests.integration.http.conftest import Bridge
from tests.integration.http.expect import (
    ACCESS_TOKEN_EXPIRED,
    INVALID_ACCESS_TOKEN,
    INVALID_TOKEN_CHALLENGE,
    customer_problem,
)
from tests.support.harness import Shop, error_info
from tokenservice.v1 import token_service_pb2 as pb

ANONYMOUS_TTL = 3600
CUSTOMER_TTL = 14400
REFRESH_TTL = 86400
ROUTES = ("login", "refreshauthtoken", "validateauthtoken", "logout")


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token is not None else {}


async def call(
    bridge: Bridge,
    shop: Shop,
    route: str,
    token: str | None,
    refresh_token: str = "",
    *,
    authorization: str | None = None,
) -> httpx.Response:
    """`route` of `shop`'s tenant with `token` as the bearer (None: no Authorization, or the
    raw `authorization` header when given)."""
    path = f"/customer/{shop.tenant}/{route}"
    headers = bearer(token) if authorization is None else {"Authorization": authorization}
    if route == "login":
        body = {"email": shop.email, "password": shop.password}
        return await bridge.http.post(path, json=body, headers=headers)
    params = {"refreshToken": refresh_token} if route == "refreshauthtoken" else {}
    return await bridge.http.get(path, params=params, headers=headers)


def assert_fault(
    response: httpx.Response, errorcode: str, field: str | None = None
) -> dict[str, Any]:
    """A 401 `invalid_token` with the existing fields, the challenge, and `errorcode`."""
    body = customer_problem(response, 401, "invalid_token", field, errorcode=errorcode)
    assert response.headers["www-authenticate"] == INVALID_TOKEN_CHALLENGE
    return body


def refresh_field(route: str) -> str | None:
    """The refresh route names the bearer it refuses (`Authorization`); the others name none."""
    return "Authorization" if route == "refreshauthtoken" else None


async def customer_session(bridge: Bridge, shop: Shop) -> tuple[dict[str, Any], dict[str, Any]]:
    anonymous = await bridge.anonymous_login(shop)
    return anonymous, await bridge.customer_login(shop, anonymous["access_token"])


# --- oauth.v2.InvalidAccessToken -----------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
async def test_a_missing_bearer_is_an_invalid_access_token(bridge: Bridge, route: str) -> None:
    shop = await bridge.harness.shop("shopa")
    _, customer = await customer_session(bridge, shop)
    for authorization in (None, "Bearer", "Basic abc", "bearer-without-a-scheme"):
        response = await call(
            bridge, shop, route, None, customer["refresh_token"], authorization=authorization
        )
        assert_fault(response, INVALID_ACCESS_TOKEN)


@pytest.mark.parametrize("route", ROUTES)
async def test_an_unknown_bearer_is_an_invalid_access_token(bridge: Bridge, route: str) -> None:
    shop = await bridge.harness.shop("shopa")
    _, customer = await customer_session(bridge, shop)
    response = await call(bridge, shop, route, "not-a-token", customer["refresh_token"])
    body = assert_fault(response, INVALID_ACCESS_TOKEN, refresh_field(route))
    assert body["fault"]["faultstring"] == "Invalid access token"
    assert "not-a-token" not in response.text


@pytest.mark.parametrize("route", ROUTES)
async def test_a_revoked_bearer_is_an_invalid_access_token(bridge: Bridge, route: str) -> None:
    """Revoked, and for good measure past its expiry too: revocation wins, since refreshing
    cannot bring it back."""
    shop = await bridge.harness.shop("shopa")
    anonymous, customer = await customer_session(bridge, shop)
    token = anonymous["access_token"] if route == "login" else customer["access_token"]
    await bridge.harness.stub.RevokeToken(pb.RevokeTokenRequest(token=token))
    response = await call(bridge, shop, route, token, customer["refresh_token"])
    assert_fault(response, INVALID_ACCESS_TOKEN, refresh_field(route))
    if route != "refreshauthtoken":  # the refresh token expires a day later
        bridge.harness.clock.advance(CUSTOMER_TTL + 1)
        response = await call(bridge, shop, route, token, customer["refresh_token"])
        assert_fault(response, INVALID_ACCESS_TOKEN, refresh_field(route))


async def test_an_expired_token_of_the_wrong_use_or_tenant_is_invalid_not_expired(
    bridge: Bridge,
) -> None:
    """ "Expired" only describes a token the route would otherwise accept."""
    shop = await bridge.harness.shop("shopa")
    other = await bridge.harness.shop("shopb")
    _, customer = await customer_session(bridge, shop)
    foreign = await bridge.anonymous_login(other)
    bridge.harness.clock.advance(REFRESH_TTL + 1)  # everything above has expired
    for route, token in [
        ("validateauthtoken", customer["refresh_token"]),
        ("logout", customer["refresh_token"]),
        ("validateauthtoken", foreign["access_token"]),
        ("logout", foreign["access_token"]),
        ("login", customer["access_token"]),  # a customer token is no anonymous token
    ]:
        assert_fault(await call(bridge, shop, route, token), INVALID_ACCESS_TOKEN)


async def test_a_token_the_janitor_purged_is_simply_invalid(bridge: Bridge) -> None:
    """Expired long enough for the janitor to delete its session: nothing is left to tell."""
    shop = await bridge.harness.shop("shopa")
    anonymous = await bridge.anonymous_login(shop)
    bridge.harness.clock.advance(REFRESH_TTL + 1)
    before = await call(bridge, shop, "validateauthtoken", anonymous["access_token"])
    assert_fault(before, ACCESS_TOKEN_EXPIRED)
    report = await janitor.sweep(bridge.harness.core)
    assert report.tokens_removed >= 2
    after = await call(bridge, shop, "validateauthtoken", anonymous["access_token"])
    assert_fault(after, INVALID_ACCESS_TOKEN)


# --- keymanagement.service.access_token_expired --------------------------------------------


async def test_validate_an_expired_access_token(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    anonymous, customer = await customer_session(bridge, shop)
    clock = bridge.harness.clock
    clock.advance(ANONYMOUS_TTL - 1)
    live = await call(bridge, shop, "validateauthtoken", anonymous["access_token"])
    assert live.status_code == 200, live.text
    clock.advance(1)  # expires_at == now: no longer live
    expired = await call(bridge, shop, "validateauthtoken", anonymous["access_token"])
    body = assert_fault(expired, ACCESS_TOKEN_EXPIRED)
    assert body["fault"] == {
        "faultstring": "Access Token expired",
        "detail": {"errorcode": "keymanagement.service.access_token_expired"},
    }
    assert body["message"]  # the existing fields are all still there
    clock.advance(CUSTOMER_TTL - ANONYMOUS_TTL)
    customer_expired = await call(bridge, shop, "validateauthtoken", customer["access_token"])
    assert_fault(customer_expired, ACCESS_TOKEN_EXPIRED)


async def test_customer_login_with_an_expired_anonymous_token(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    anonymous = await bridge.anonymous_login(shop)
    bridge.harness.clock.advance(ANONYMOUS_TTL + 1)
    response = await call(bridge, shop, "login", anonymous["access_token"])
    assert_fault(response, ACCESS_TOKEN_EXPIRED)
    # What a storefront does next: refresh the anonymous token, and log in with the new one.
    refreshed = await bridge.http.get(
        "/customerlogin/auth/anonymous/refresh",
        params={
            "tenant": shop.tenant,
            "client_id": shop.storefront_id,
            "refresh_token": anonymous["refresh_token"],
        },
    )
    assert refreshed.status_code == 200, refreshed.text
    again = await call(bridge, shop, "login", refreshed.json()["access_token"])
    assert again.status_code == 200, again.text


async def test_logout_with_an_expired_bearer_revokes_nothing(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    _, customer = await customer_session(bridge, shop)
    bridge.harness.clock.advance(CUSTOMER_TTL + 1)
    response = await call(bridge, shop, "logout", customer["access_token"])
    assert_fault(response, ACCESS_TOKEN_EXPIRED)
    assert (await bridge.harness.introspect(customer["refresh_token"])).active


async def test_refresh_takes_an_expired_bearer(bridge: Bridge) -> None:
    """Not a 401 at all: refreshing is what a client does once its access token has expired
    (the refresh token is the credential; server/grants/refresh.py)."""
    shop = await bridge.harness.shop("shopa")
    _, customer = await customer_session(bridge, shop)
    bridge.harness.clock.advance(CUSTOMER_TTL + 1)
    response = await call(
        bridge, shop, "refreshauthtoken", customer["access_token"], customer["refresh_token"]
    )
    assert response.status_code == 200, response.text


# --- the other 401s of the customer family -------------------------------------------------


async def test_wrong_password_has_its_own_errorcode(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    anonymous = await bridge.anonymous_login(shop)
    response = await bridge.http.post(
        f"/customer/{shop.tenant}/login",
        json={"email": shop.email, "password": "not the password"},
        headers=bearer(anonymous["access_token"]),
    )
    customer_problem(response, 401, "invalid_grant", errorcode="tokenservice.invalid_credentials")
    assert "not the password" not in response.text


async def test_an_unknown_client_on_the_anonymous_login(bridge: Bridge) -> None:
    """The anonymous routes are of the customer family: a 401 there carries a fault too."""
    shop = await bridge.harness.shop("shopa")
    response = await bridge.http.get(
        "/customerlogin/auth/anonymous/login",
        params={"tenant": shop.tenant, "client_id": "no-such-client"},
    )
    body = customer_problem(
        response, 401, "invalid_client", "client_id", errorcode="oauth.v2.InvalidClientIdentifier"
    )
    assert "no-such-client" not in body["fault"]["faultstring"]


# --- what must not change ------------------------------------------------------------------


async def test_introspection_still_says_only_inactive(bridge: Bridge) -> None:
    """RFC 7662 section 2.2: an expired token is `{"active": false}` and nothing more, over HTTP
    and over gRPC; only the holder's `as_bearer` question (validateauthtoken) is told why."""
    shop = await bridge.harness.shop("shopa")
    anonymous = await bridge.anonymous_login(shop)
    token = anonymous["access_token"]
    bridge.harness.clock.advance(ANONYMOUS_TTL + 1)
    response = await bridge.http.post(
        "/oauth/introspect", data={"token": token, "client_id": shop.storefront_id}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"active": False}
    stub = bridge.harness.stub
    plain = await stub.IntrospectToken(pb.IntrospectTokenRequest(token=token, tenant=shop.tenant))
    assert plain == pb.IntrospectTokenResponse(active=False)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.IntrospectToken(
            pb.IntrospectTokenRequest(token=token, tenant=shop.tenant, as_bearer=True)
        )
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    info = error_info(refused.value)
    assert (info.reason, info.metadata.get("cause")) == ("invalid_token", "expired")


async def test_oauth_401_bodies_keep_the_rfc_6749_shape(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    refusals = [
        await bridge.http.post(
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": shop.service_id,
                "client_secret": "wrong",
            },
        ),
        await bridge.http.post("/oauth/introspect", data={"token": "x"}),
        await bridge.http.post("/oauth/revoke", data={"token": "x", "client_id": "nobody"}),
    ]
    for response in refusals:
        assert response.status_code == 401, response.text
        assert set(response.json()) == {"error", "error_description"}, response.text
        assert response.json()["error"] == "invalid_client"
