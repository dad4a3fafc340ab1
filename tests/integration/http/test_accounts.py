"""The account endpoints over the real bridge (both backends), with httpx: sign-up (201 with the
id, 409), double opt-in (GET .../signup/optin/{token} answering a customer token, 202 resend),
password change and reset (204), e-mail change and confirm (204); the reference's error shape
on every refusal, bounded bodies, and CORS like every other /customer/{tenant}/* route. Mail
goes to the outbox folder, read back as `tokenservice mail` reads it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from server import admin
from server.mail import outbox
from tests.integration.http.conftest import Bridge
from tests.integration.http.expect import CUSTOMER_FIELDS, TWINS, assert_no_store
from tests.integration.http.expect import customer_problem as assert_problem
from tests.integration.http.test_cors import assert_admitted, preflight
from tests.support.harness import Shop
from tests.support.mail import token_in

PASSWORD = "a long and unusual passphrase"
NEW_PASSWORD = "another long passphrase"
SHOP_ORIGIN = "https://shop-a.example"


@pytest.fixture
def settings_overrides(tmp_path: Path) -> dict[str, object]:
    return {"mail_outbox_dir": str(tmp_path / "outbox"), "account_requests_per_email": 3}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def post(bridge: Bridge, path: str, token: str, body: Any) -> httpx.Response:
    return await bridge.http.post(path, json=body, headers=bearer(token))


async def anonymous(bridge: Bridge, shop: Shop) -> str:
    token: str = (await bridge.anonymous_login(shop))["access_token"]
    return token


async def delivered(bridge: Bridge) -> list[outbox.StoredMessage]:
    await bridge.harness.core.mail.settled()
    return outbox.list_messages(Path(bridge.harness.core.settings.mail_outbox_dir))


async def login(bridge: Bridge, shop: Shop, email: str, password: str) -> httpx.Response:
    return await post(
        bridge,
        f"/customer/{shop.tenant}/login",
        await anonymous(bridge, shop),
        {"email": email, "password": password},
    )


async def test_sign_up_answers_201_with_the_id_and_409_for_a_taken_email(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    token = await anonymous(bridge, shop)
    body = {
        "email": "New@shopa.example",
        "password": PASSWORD,
        "customerDetails": {"firstName": "John", "lastName": "Doe"},  # ignored
        "customerAddress": {"city": "Berlin", "tags": ["BILLING"]},
    }
    created = await post(bridge, "/customer/shopa/signup", token, body)
    assert created.status_code == 201, created.text
    assert_no_store(created)
    assert set(created.json()) == {"id"} and created.json()["id"]
    assert (await login(bridge, shop, "new@shopa.example", PASSWORD)).status_code == 200
    taken = await post(bridge, "/customer/shopa/signup", token, body)
    problem = assert_problem(taken, 409, "already_exists", "email")
    assert "new@shopa.example" not in taken.text.lower()
    assert problem["message"] == "a customer with this email already exists"


@pytest.mark.parametrize(
    ("body", "status", "error", "field"),
    [
        ({"password": PASSWORD}, 400, "invalid_request", "email"),
        ({"email": "x@shopa.example"}, 400, "invalid_request", "password"),
        ({"email": "x@shopa.example", "password": "short"}, 400, "invalid_request", "password"),
        (
            {"email": "x@shopa.example", "password": "password123"},
            400,
            "invalid_request",
            "password",
        ),
        ({"email": 5, "password": PASSWORD}, 400, "invalid_request", "email"),
        ({"email": "not an email", "password": PASSWORD}, 400, "invalid_request", "email"),
    ],
)
async def test_a_refused_sign_up_says_why_and_stores_nothing(
    bridge: Bridge, body: dict[str, Any], status: int, error: str, field: str
) -> None:
    shop = await bridge.harness.shop("shopa")
    token = await anonymous(bridge, shop)
    before = await bridge.harness.row_counts()
    answer = await post(bridge, "/customer/shopa/signup", token, body)
    assert_problem(answer, status, error, field)
    assert "password123" not in answer.text and PASSWORD not in answer.text
    assert await bridge.harness.row_counts() == before


async def test_sign_up_needs_an_anonymous_token_and_a_bounded_json_body(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    body = {"email": "x@shopa.example", "password": PASSWORD}
    missing = await bridge.http.post("/customer/shopa/signup", json=body)
    assert_problem(missing, 401, "invalid_token")
    customer = (await bridge.customer_login(shop))["access_token"]
    assert_problem(
        await post(bridge, "/customer/shopa/signup", customer, body), 401, "invalid_token"
    )
    token = await anonymous(bridge, shop)
    assert_problem(await post(bridge, "/customer/shopb/signup", token, body), 403, "access_denied")
    limit = bridge.harness.core.settings.max_message_bytes
    huge = await bridge.http.post(
        "/customer/shopa/signup",
        content=b'{"email": "' + b"x" * limit + b'"}',
        headers={**bearer(token), "Content-Type": "application/json"},
    )
    assert huge.status_code == 413
    form = await bridge.http.post("/customer/shopa/signup", data=body, headers=bearer(token))
    assert form.status_code == 415
    assert await bridge.harness.core.store.find_customer("shopa", "x@shopa.example") is None


async def test_double_opt_in_over_http(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    await admin.set_account_policy(bridge.harness.core, "shopa", double_opt_in=True)
    token = await anonymous(bridge, shop)
    body = {"email": "new@shopa.example", "password": PASSWORD}
    assert (await post(bridge, "/customer/shopa/signup", token, body)).status_code == 201
    refused = await login(bridge, shop, "new@shopa.example", PASSWORD)
    assert_problem(refused, 403, "account_not_confirmed")
    resend = await post(
        bridge, "/customer/shopa/signup/optin/refresh_token", token, {"email": body["email"]}
    )
    assert resend.status_code == 202 and resend.content == b""
    unknown = await post(
        bridge, "/customer/shopa/signup/optin/refresh_token", token, {"email": "no@shopa.example"}
    )
    assert unknown.status_code == 202
    first, second = await delivered(bridge)
    stale = await bridge.http.get(
        f"/customer/shopa/signup/optin/{token_in(first.body)}", headers=bearer(token)
    )
    assert_problem(stale, 400, "invalid_grant", "token")
    confirmed = await bridge.http.get(
        f"/customer/shopa/signup/optin/{token_in(second.body)}", headers=bearer(token)
    )
    assert confirmed.status_code == 200, confirmed.text
    assert_no_store(confirmed)
    answer = confirmed.json()
    assert set(answer) == CUSTOMER_FIELDS | set(TWINS)
    assert answer["session_id"] == (await bridge.harness.introspect(token)).session_id
    assert (await login(bridge, shop, "new@shopa.example", PASSWORD)).status_code == 200


async def test_password_reset_over_http_ends_every_session(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    sessions = [await bridge.customer_login(shop) for _ in range(2)]
    token = await anonymous(bridge, shop)
    for email in (shop.email, "nobody@shopa.example"):
        answer = await post(bridge, "/customer/shopa/password/reset", token, {"email": email})
        assert answer.status_code == 204 and answer.content == b""
    [message] = await delivered(bridge)
    assert message.to == shop.email
    reset = token_in(message.body)
    weak = await post(
        bridge, "/customer/shopa/password/reset/update", token, {"token": reset, "password": "abc"}
    )
    assert_problem(weak, 400, "invalid_request", "password")
    update = {"token": reset, "password": NEW_PASSWORD}
    done = await post(bridge, "/customer/shopa/password/reset/update", token, update)
    assert done.status_code == 204, done.text
    for issued in sessions:
        assert not (await bridge.harness.introspect(issued["access_token"])).active
    again = await post(bridge, "/customer/shopa/password/reset/update", token, update)
    assert_problem(again, 400, "invalid_grant", "token")
    assert (await login(bridge, shop, shop.email, shop.password)).status_code == 401
    assert (await login(bridge, shop, shop.email, NEW_PASSWORD)).status_code == 200


async def test_password_reset_is_throttled_per_email(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    token = await anonymous(bridge, shop)
    for _ in range(3):  # account_requests_per_email
        answer = await post(bridge, "/customer/shopa/password/reset", token, {"email": shop.email})
        assert answer.status_code == 204
    limited = await post(bridge, "/customer/shopa/password/reset", token, {"email": shop.email})
    assert_problem(limited, 429, "rate_limited")
    assert int(limited.headers["Retry-After"]) > 0
    assert len(await delivered(bridge)) == 3


async def test_password_change_over_http(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    here, other = [await bridge.customer_login(shop) for _ in range(2)]
    path = "/customer/shopa/password/change"
    wrong = await post(
        bridge,
        path,
        here["access_token"],
        {"currentPassword": "wrong!", "newPassword": NEW_PASSWORD},
    )
    assert_problem(wrong, 401, "invalid_grant", errorcode="tokenservice.invalid_credentials")
    anonymous_token = await anonymous(bridge, shop)
    body = {"currentPassword": shop.password, "newPassword": NEW_PASSWORD}
    assert_problem(await post(bridge, path, anonymous_token, body), 401, "invalid_token")
    assert (await bridge.harness.introspect(other["access_token"])).active
    changed = await post(bridge, path, here["access_token"], body)
    assert changed.status_code == 204, changed.text
    assert (await bridge.harness.introspect(here["access_token"])).active
    assert not (await bridge.harness.introspect(other["access_token"])).active
    assert (await login(bridge, shop, shop.email, NEW_PASSWORD)).status_code == 200


async def test_email_change_over_http(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("shopa")
    session = await bridge.customer_login(shop)
    path = "/customer/shopa/me/accounts/internal/email/change"
    body = {"email": shop.email, "password": shop.password, "newEmail": "ann.new@shopa.example"}
    asked = await post(bridge, path, session["access_token"], body)
    assert asked.status_code == 204, asked.text
    [message] = await delivered(bridge)
    assert message.to == "ann.new@shopa.example"
    token = await anonymous(bridge, shop)
    confirm = f"{path}/confirm"
    bad = await post(bridge, confirm, token, {"token": "x" * 43})
    assert_problem(bad, 400, "invalid_grant", "token")
    done = await post(bridge, confirm, token, {"token": token_in(message.body)})
    assert done.status_code == 204, done.text
    assert (await login(bridge, shop, shop.email, shop.password)).status_code == 401
    assert (await login(bridge, shop, "ann.new@shopa.example", shop.password)).status_code == 200
    validated = await bridge.http.get(
        "/customer/shopa/validateauthtoken", headers=bearer(session["access_token"])
    )
    assert validated.json()["email"] == "ann.new@shopa.example"


@pytest.mark.parametrize(
    "path",
    [
        "/customer/shopa/signup",
        "/customer/shopa/signup/optin/refresh_token",
        "/customer/shopa/password/change",
        "/customer/shopa/password/reset",
        "/customer/shopa/password/reset/update",
        "/customer/shopa/me/accounts/internal/email/change",
        "/customer/shopa/me/accounts/internal/email/change/confirm",
    ],
)
async def test_the_tenants_shop_may_call_the_account_routes_from_its_pages(
    bridge: Bridge, path: str
) -> None:
    await bridge.harness.shop("shopa")
    await admin.set_allowed_origins(bridge.harness.core, "shopa", [SHOP_ORIGIN])
    answer = await preflight(bridge.http, path, SHOP_ORIGIN)
    assert answer.status_code == 200, answer.text
    assert_admitted(answer, SHOP_ORIGIN)
    assert "POST" in answer.headers["access-control-allow-methods"]
    optin = await preflight(bridge.http, "/customer/shopa/signup/optin/abc", SHOP_ORIGIN, "GET")
    assert_admitted(optin, SHOP_ORIGIN)
