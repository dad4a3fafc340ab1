"""`POST /customer/{tenant}/exchangeauthtoken` and `POST /customer/{tenant}/socialLogin` over
the real bridge, both backends, with httpx; the provider is tests/support/local_idp.py on
127.0.0.1 (node-oidc-provider's flows are in tests/integration/test_identity_provider_node.py).
The reference's fields, its error shape for every refusal, 503 for a provider that is down,
bounded bodies, and CORS like every /customer/{tenant}/* route."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from server import admin, identity_provider_admin
from tests.integration.http.conftest import Bridge
from tests.integration.http.expect import customer_problem as assert_problem
from tests.support.harness import Shop
from tests.support.local_idp import LocalIdp, pkce_pair

REDIRECT = "https://shop.example/callback"
SHOP_ORIGIN = "https://shop.example"
TOKEN_FIELDS = {
    "access_token",
    "saas_token",
    "refresh_token",
    "refresh_token_expires_in",
    "session_idle_time",
    "token_type",
    "expires_in",
    "scope",
    "session_id",
}


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"idp_allow_http_loopback": True}


@pytest.fixture
def idp() -> Iterator[LocalIdp]:
    with LocalIdp() as provider:
        yield provider


async def trusting(bridge: Bridge, idp: LocalIdp, tenant: str = "shopa") -> Shop:
    shop = await bridge.harness.shop(tenant)
    await identity_provider_admin.put_identity_provider(
        bridge.harness.core,
        idp.record(shop.tenant, create_customers=True),
    )
    return shop


async def exchange(
    bridge: Bridge, shop: Shop, bearer: str | None = "", **kwargs: Any
) -> httpx.Response:
    if bearer == "":
        bearer = (await bridge.anonymous_login(shop))["access_token"]
    headers = {"Authorization": f"Bearer {bearer}"} if bearer is not None else {}
    headers.update(kwargs.pop("headers", {}))
    return await bridge.http.post(
        f"/customer/{shop.tenant}/exchangeauthtoken", headers=headers, **kwargs
    )


async def test_exchange_answers_the_reference_fields(bridge: Bridge, idp: LocalIdp) -> None:
    shop = await trusting(bridge, idp)
    anonymous = await bridge.anonymous_login(shop)
    subject = idp.token(shop.email)
    answer = await exchange(
        bridge, shop, anonymous["access_token"], params={"subjectAccessToken": subject}
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert set(body) == {"subject_access_token", *TOKEN_FIELDS}
    assert body["subject_access_token"] == subject
    assert body["session_id"] == anonymous["sessionId"] and body["token_type"] == "Bearer"
    assert body["session_idle_time"] == 120 and body["scope"].endswith("tenant=shopa")
    valid = await bridge.http.get(
        f"/customer/{shop.tenant}/validateauthtoken",
        headers={"Authorization": f"Bearer {body['access_token']}"},
    )
    assert valid.status_code == 200 and valid.json()["email"] == shop.email
    # RFC 8693's names in a form body are read too.
    form = {
        "subject_token": idp.token(shop.email),
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
    }
    assert (await exchange(bridge, shop, data=form)).status_code == 200
    assert (await exchange(bridge, shop, json={"subjectAccessToken": subject})).status_code == 200


async def test_exchange_refusals_in_the_reference_error_shape(
    bridge: Bridge, idp: LocalIdp
) -> None:
    shop = await trusting(bridge, idp)
    good = {"subjectAccessToken": idp.token(shop.email)}
    assert_problem(await exchange(bridge, shop, None, params=good), 401, "invalid_token")
    assert_problem(await exchange(bridge, shop, "made-up", params=good), 401, "invalid_token")
    assert_problem(await exchange(bridge, shop), 400, "invalid_request", "subjectAccessToken")
    bad = {"subjectAccessToken": idp.token(shop.email, aud="elsewhere")}
    refused = await exchange(bridge, shop, params=bad)
    assert_problem(refused, 400, "invalid_request", "subjectAccessToken")
    assert bad["subjectAccessToken"] not in refused.text
    assert_problem(
        await exchange(bridge, shop, params={**good, "config": "site_PL"}),
        400,
        "invalid_request",
        "config",
    )
    twice = await exchange(bridge, shop, params=good, json=good)
    assert_problem(twice, 400, "invalid_request", "subjectAccessToken")
    assert_problem(
        await exchange(bridge, shop, params=good, json={"config": "x" * 70_000}),
        413,
        "invalid_request",
    )
    assert_problem(
        await exchange(bridge, shop, params=good, content=b"x", headers={"Content-Type": "text/x"}),
        415,
        "invalid_request",
    )
    other = await trusting(bridge, idp, "shopb")
    foreign = (await bridge.anonymous_login(other))["access_token"]
    assert_problem(await exchange(bridge, shop, foreign, params=good), 403, "access_denied")
    sessions = await bridge.harness.query(
        "SELECT count(*) FROM sessions WHERE customer_id IS NOT NULL"
    )
    assert sessions == [(0,)]


@pytest.mark.parametrize("mode", ["down", "huge", "redirect"])
async def test_a_provider_that_cannot_serve_is_a_503_with_retry_after(
    bridge: Bridge, idp: LocalIdp, mode: str
) -> None:
    shop = await trusting(bridge, idp)
    good = {"subjectAccessToken": idp.token(shop.email)}
    if mode == "down":
        idp.stop()
    else:
        idp.jwks_mode = mode
    answer = await exchange(bridge, shop, params=good)
    assert_problem(answer, 503, "temporarily_unavailable")
    assert answer.headers["retry-after"] == "1"


async def test_social_login_answers_the_provider_tokens_beside_the_customer_token(
    bridge: Bridge, idp: LocalIdp
) -> None:
    shop = await trusting(bridge, idp)
    verifier, _ = pkce_pair()
    code = idp.authorization_code("new@shopa.example", REDIRECT, verifier, nonce="n-1")
    anonymous = await bridge.anonymous_login(shop)
    query = {"code": code, "redirect_uri": REDIRECT, "code_verifier": verifier, "nonce": "n-1"}
    answer = await bridge.http.post(
        f"/customer/{shop.tenant}/socialLogin",
        params=query,
        headers={"Authorization": f"Bearer {anonymous['access_token']}", "session-id": "ignored"},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"social_access_token", "social_id_token", *TOKEN_FIELDS}
    assert body["social_id_token"].count(".") == 2 and body["social_access_token"]
    assert body["session_id"] == anonymous["sessionId"]

    again = await bridge.http.post(
        f"/customer/{shop.tenant}/socialLogin",
        params=query,
        headers={"Authorization": f"Bearer {anonymous['access_token']}"},
    )
    assert_problem(again, 400, "invalid_grant", "code")
    missing = await bridge.http.post(
        f"/customer/{shop.tenant}/socialLogin",
        params={"code": code},
        headers={"Authorization": f"Bearer {anonymous['access_token']}"},
    )
    assert_problem(missing, 400, "invalid_request", "redirect_uri")


async def test_the_new_routes_answer_cors_like_the_other_customer_routes(
    bridge: Bridge, idp: LocalIdp
) -> None:
    shop = await trusting(bridge, idp)
    await admin.set_allowed_origins(bridge.harness.core, shop.tenant, [SHOP_ORIGIN])
    for path in ("exchangeauthtoken", "socialLogin"):
        answer = await bridge.http.options(
            f"/customer/{shop.tenant}/{path}",
            headers={
                "Origin": SHOP_ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, session-id",
            },
        )
        assert answer.status_code == 200, answer.text
        assert answer.headers["access-control-allow-origin"] == SHOP_ORIGIN
        allowed = answer.headers["access-control-allow-headers"].lower()
        assert "authorization" in allowed and "session-id" in allowed
        stranger = await bridge.http.options(
            f"/customer/{shop.tenant}/{path}",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in stranger.headers
