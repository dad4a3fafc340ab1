"""The bridge's own refusals, on every endpoint family: unknown path 404, wrong method 405 with
`Allow`, unsupported media type 415, oversized body 413 (declared or streamed), bodies and
parameters that do not parse 400, malformed HTTP Basic 401. Each answer is JSON in its family's
shape (RFC 6749 outside /customer, the customer API's ErrorMessage under it), none is a 5xx, and a
refused request changes nothing that is stored."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from server import admin
from server.records import ClientKind
from tests.integration.http.conftest import Bridge
from tests.support.harness import Shop

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
JSON = {"Content-Type": "application/json"}
BEARER = {"Authorization": "Bearer some-opaque-token-value"}
OAUTH, CUSTOMER = "oauth", "customer"


def assert_problem(response: httpx.Response, status: int, error: str, family: str) -> Any:
    """A JSON error of `family`'s shape with `status` and `error`; returns the body."""
    where = f"{response.request.method} {response.request.url.path}: {response.text}"
    assert response.status_code == status, where
    assert response.headers["content-type"].startswith("application/json"), where
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    if family == OAUTH:
        assert set(body) == {"error", "error_description"}
        assert body["error"] == error, where
        assert isinstance(body["error_description"], str) and body["error_description"]
    else:
        fault = {"fault"} if status == 401 else set()  # the reference's 401 fault
        assert set(body) == {"status", "type", "message", "details", *fault}, where
        assert (body["status"], body["type"]) == (status, error), where
        assert isinstance(body["message"], str) and body["message"]
        assert isinstance(body["details"], list)
        for detail in body["details"]:
            assert set(detail) == {"field", "type", "message"}
    return body


def customer_fields(body: dict[str, Any]) -> list[str]:
    return [detail["field"] for detail in body["details"]]


def basic_header(raw: bytes) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


async def chunks(payload: bytes, size: int = 4096) -> AsyncIterator[bytes]:
    """A body httpx can only send chunked: no Content-Length."""
    for start in range(0, len(payload), size):
        yield payload[start : start + size]


def limit(bridge: Bridge) -> int:
    return bridge.harness.core.settings.max_message_bytes


def padded_form(fields: dict[str, str], size: int) -> bytes:
    """A form body of exactly `size` bytes: `fields` plus an ignored padding parameter."""
    head = str(httpx.QueryParams(fields)) + "&pad="
    assert len(head) < size
    return (head + "x" * (size - len(head))).encode()


# --- 404 -------------------------------------------------------------------------------------


async def test_unknown_path_is_404_in_the_familys_shape(bridge: Bridge) -> None:
    for path, family in (
        ("/nothing-here", OAUTH),
        ("/oauth/authorize", OAUTH),
        ("/.well-known/openid-configuration", OAUTH),
        ("/customer/acme/nothing", CUSTOMER),
        ("/customerlogin/auth/customer/login", CUSTOMER),
    ):
        body = assert_problem(await bridge.http.get(path), 404, "not_found", family)
        if family == CUSTOMER:
            assert body["details"] == []


# --- 405 -------------------------------------------------------------------------------------


async def test_wrong_method_is_405_with_allow(bridge: Bridge) -> None:
    for method, path, allowed, family in (
        ("GET", "/oauth/token", {"POST"}, OAUTH),
        ("PUT", "/oauth/introspect", {"POST"}, OAUTH),
        ("DELETE", "/oauth/revoke", {"POST"}, OAUTH),
        ("POST", "/.well-known/jwks.json", {"GET", "HEAD"}, OAUTH),
        ("POST", "/healthz", {"GET", "HEAD"}, OAUTH),
        ("POST", "/customerlogin/auth/anonymous/login", {"GET", "HEAD"}, CUSTOMER),
        ("GET", "/customer/acme/login", {"POST"}, CUSTOMER),
        ("POST", "/customer/acme/logout", {"GET", "HEAD"}, CUSTOMER),
    ):
        response = await bridge.http.request(method, path)
        assert_problem(response, 405, "method_not_allowed", family)
        assert {item.strip() for item in response.headers["Allow"].split(",")} == allowed


# --- 415 -------------------------------------------------------------------------------------


async def test_other_media_types_on_oauth_endpoints_are_415(bridge: Bridge) -> None:
    for path in ("/oauth/token", "/oauth/introspect", "/oauth/revoke"):
        for content_type in ("text/plain", "multipart/form-data; boundary=x", "application/xml"):
            response = await bridge.http.post(
                path,
                content=b"grant_type=client_credentials",
                headers={"Content-Type": content_type},
            )
            assert_problem(response, 415, "invalid_request", OAUTH)
        missing = await bridge.http.post(path, content=b"grant_type=client_credentials")
        assert_problem(missing, 415, "invalid_request", OAUTH)


async def test_form_on_customer_login_is_415(bridge: Bridge) -> None:
    response = await bridge.http.post(
        "/customer/acme/login",
        data={"email": "ann@acme.example", "password": "whatever-it-is"},
        headers=BEARER,
    )
    assert_problem(response, 415, "invalid_request", CUSTOMER)


# --- 413 -------------------------------------------------------------------------------------


async def test_body_of_exactly_the_limit_is_read(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("atlimit")
    fields = {
        "grant_type": "client_credentials",
        "client_id": shop.service_id,
        "client_secret": shop.service_secret,
    }
    response = await bridge.http.post(
        "/oauth/token", content=padded_form(fields, limit(bridge)), headers=FORM
    )
    assert response.status_code == 200, response.text


async def test_body_over_the_limit_with_content_length_is_413(bridge: Bridge) -> None:
    body = padded_form({"grant_type": "client_credentials"}, limit(bridge) + 1)
    response = await bridge.http.post("/oauth/token", content=body, headers=FORM)
    assert "content-length" in response.request.headers
    assert_problem(response, 413, "invalid_request", OAUTH)


async def test_streamed_body_over_the_limit_is_413(bridge: Bridge) -> None:
    body = padded_form({"grant_type": "client_credentials"}, limit(bridge) + 1)
    response = await bridge.http.post("/oauth/token", content=chunks(body), headers=FORM)
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert_problem(response, 413, "invalid_request", OAUTH)


async def test_customer_login_body_over_the_limit_is_413_in_both_ways(bridge: Bridge) -> None:
    padding = "x" * limit(bridge)
    body = f'{{"email": "ann@acme.example", "password": "{padding}"}}'.encode()
    declared = await bridge.http.post(
        "/customer/acme/login", content=body, headers={**JSON, **BEARER}
    )
    assert_problem(declared, 413, "invalid_request", CUSTOMER)
    streamed = await bridge.http.post(
        "/customer/acme/login", content=chunks(body), headers={**JSON, **BEARER}
    )
    assert_problem(streamed, 413, "invalid_request", CUSTOMER)


# --- 400: bodies that do not parse -----------------------------------------------------------


async def test_malformed_json_is_400(bridge: Bridge) -> None:
    for content in (b"{", b'{"grant_type": "client_credentials",}', b"", b"nul", b'{"a": "\xff"}'):
        response = await bridge.http.post("/oauth/token", content=content, headers=JSON)
        assert_problem(response, 400, "invalid_request", OAUTH)


async def test_json_that_is_not_an_object_is_400(bridge: Bridge) -> None:
    for content in (b'[["token", "a-token"]]', b'"a-token"', b"42", b"null", b"[]"):
        response = await bridge.http.post("/oauth/introspect", content=content, headers=JSON)
        body = assert_problem(response, 400, "invalid_request", OAUTH)
        assert "object" in body["error_description"]


async def test_non_string_json_value_is_400_naming_the_field(bridge: Bridge) -> None:
    for value in (42, 1.5, True, ["a"], {"a": "b"}):
        response = await bridge.http.post(
            "/oauth/token", json={"grant_type": "client_credentials", "client_id": value}
        )
        body = assert_problem(response, 400, "invalid_request", OAUTH)
        assert "client_id" in body["error_description"]


async def test_non_string_json_value_on_customer_login_names_the_field(bridge: Bridge) -> None:
    response = await bridge.http.post(
        "/customer/acme/login", json={"email": 7, "password": "x" * 10}, headers=BEARER
    )
    body = assert_problem(response, 400, "invalid_request", CUSTOMER)
    assert customer_fields(body) == ["email"]


async def test_malformed_json_on_customer_login_is_400(bridge: Bridge) -> None:
    for content in (b'{"email": ', b'["ann@acme.example"]'):
        response = await bridge.http.post(
            "/customer/acme/login", content=content, headers={**JSON, **BEARER}
        )
        assert_problem(response, 400, "invalid_request", CUSTOMER)


async def test_form_body_that_is_not_utf8_is_400(bridge: Bridge) -> None:
    for content in (
        b"grant_type=client_credentials&client_id=\xff\xfe",  # raw bytes
        b"grant_type=client_%FF%FE",  # percent-encoded bytes
    ):
        response = await bridge.http.post("/oauth/token", content=content, headers=FORM)
        assert_problem(response, 400, "invalid_request", OAUTH)


async def test_json_key_given_twice_is_400(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("dupjson")
    pairs = [
        ("grant_type", "client_credentials"),
        ("client_id", shop.service_id),
        ("client_secret", shop.service_secret),
        ("scope", "orders.read"),
        ("scope", "catalog.read"),
    ]
    content = (
        "{" + ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in pairs) + "}"
    ).encode()
    response = await bridge.http.post("/oauth/token", content=content, headers=JSON)
    assert_problem(response, 400, "invalid_request", OAUTH)


# --- 400: parameters given twice -------------------------------------------------------------


async def test_form_parameter_given_twice_is_400(bridge: Bridge) -> None:
    content = b"token=a-token-value&token=another-token-value&client_id=someone"
    response = await bridge.http.post("/oauth/introspect", content=content, headers=FORM)
    body = assert_problem(response, 400, "invalid_request", OAUTH)
    assert "token" in body["error_description"]


async def test_query_parameter_given_twice_is_400_naming_it(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("dupquery")
    response = await bridge.http.get(
        "/customerlogin/auth/anonymous/login",
        params=[
            ("tenant", shop.tenant),
            ("client_id", shop.storefront_id),
            ("currency", "EUR"),
            ("currency", "USD"),
        ],
    )
    body = assert_problem(response, 400, "invalid_request", CUSTOMER)
    assert customer_fields(body) == ["currency"]


# --- 401: malformed HTTP Basic ---------------------------------------------------------------


async def test_malformed_http_basic_is_401_invalid_client(bridge: Bridge) -> None:
    malformed = (
        "Basic !!!not-base64!!!",
        "Basic",
        basic_header(b"no-colon-here")["Authorization"],
        basic_header(b"\xff\xfe:\xfd")["Authorization"],  # not UTF-8
    )
    for path in ("/oauth/token", "/oauth/introspect", "/oauth/revoke"):
        for authorization in malformed:
            response = await bridge.http.post(
                path,
                data={"grant_type": "client_credentials", "token": "a-token-value"},
                headers={"Authorization": authorization},
            )
            assert_problem(response, 401, "invalid_client", OAUTH)
            assert response.headers["WWW-Authenticate"] == 'Basic realm="tokenservice"'


# --- no 5xx for anything the client got wrong ------------------------------------------------


async def test_no_malformed_request_is_answered_with_a_5xx(bridge: Bridge) -> None:
    """A sweep of odd requests: each is a 4xx with a JSON body of its family's shape."""
    latin1 = {"Content-Type": "application/json; charset=latin-1"}
    long_secret = {"token": "t", "client_id": "someone", "client_secret": "s" * 5000}
    anonymous = "/customerlogin/auth/anonymous"
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/oauth/token", {"content": b"\x00\x01\x02", "headers": FORM}),
        ("POST", "/oauth/token", {"content": b"=&=&&==", "headers": FORM}),
        ("POST", "/oauth/token", {"content": b"%", "headers": FORM}),
        ("POST", "/oauth/token", {"json": {"grant_type": "client_credentials" * 5000}}),
        ("POST", "/oauth/token", {"content": b"{}", "headers": latin1}),
        ("POST", "/oauth/introspect", {"data": {"token": "x" * 5000, "client_id": "someone"}}),
        ("POST", "/oauth/introspect", {"data": {"token": "t", "client_id": "bad id!"}}),
        ("POST", "/oauth/revoke", {"data": {"token": "t", "client_id": "x" * 1000}}),
        ("POST", "/oauth/revoke", {"json": long_secret}),
        ("GET", f"{anonymous}/login", {"params": {"tenant": "NOT A TENANT", "client_id": "x"}}),
        ("GET", f"{anonymous}/login", {"params": {"tenant": "acme", "currency": "\x00"}}),
        ("GET", f"{anonymous}/refresh", {"params": {"tenant": "acme", "client_id": "x"}}),
        ("GET", "/customer/NOT-A-TENANT/validateauthtoken", {"headers": BEARER}),
        ("GET", "/customer/acme/validateauthtoken", {"headers": {"Authorization": "Bearer"}}),
        ("GET", "/customer/acme/refreshauthtoken", {"headers": BEARER}),
        ("GET", "/customer/acme/logout", {"headers": {"Authorization": "Basic abc"}}),
        ("POST", "/customer/acme/login", {"json": {"email": "not an email", "password": "x"}}),
        ("POST", "/customer/acme/login", {"json": {}, "headers": BEARER}),
    ]
    for method, path, options in requests:
        response = await bridge.http.request(method, path, **options)
        where = (method, path, response.status_code, response.text)
        assert 400 <= response.status_code < 500, where
        body = response.json()
        if path.startswith("/customer"):
            fault = {"fault"} if response.status_code == 401 else set()
            assert set(body) == {"status", "type", "message", "details", *fault}, where
            assert body["status"] == response.status_code, where
        else:
            assert set(body) == {"error", "error_description"}, where


# --- a refused request changes nothing -------------------------------------------------------


async def refresh_anonymous(bridge: Bridge, shop: Shop, refresh_token: str) -> httpx.Response:
    return await bridge.http.get(
        "/customerlogin/auth/anonymous/refresh",
        params={
            "tenant": shop.tenant,
            "client_id": shop.storefront_id,
            "refresh_token": refresh_token,
        },
    )


async def test_refused_refreshes_leave_the_session_and_its_refresh_token(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("refusedref")
    other, _ = await admin.create_client(
        bridge.harness.core, shop.tenant, ClientKind.STOREFRONT, ()
    )
    login = await bridge.anonymous_login(shop)
    refusals = [
        # parameter given twice: refused by the bridge before any call
        [
            ("tenant", shop.tenant),
            ("client_id", shop.storefront_id),
            ("refresh_token", login["refresh_token"]),
            ("refresh_token", login["refresh_token"]),
        ],
        # another client of the tenant: refused by the service
        [
            ("tenant", shop.tenant),
            ("client_id", other.client_id),
            ("refresh_token", login["refresh_token"]),
        ],
        # an invalid session-context field: refused by the service
        [
            ("tenant", shop.tenant),
            ("client_id", shop.storefront_id),
            ("refresh_token", login["refresh_token"]),
            ("currency", "\x07"),
        ],
    ]
    for params in refusals:
        response = await bridge.http.get("/customerlogin/auth/anonymous/refresh", params=params)
        assert 400 <= response.status_code < 500, response.text
        assert response.json()["type"] in ("invalid_request", "invalid_grant")
    # Past the rotation grace window: had any refusal rotated the token, reuse detection
    # would now revoke the session.
    bridge.harness.clock.advance(bridge.harness.core.settings.refresh_grace_seconds + 1)
    assert (await bridge.harness.introspect(login["access_token"])).active
    refreshed = await refresh_anonymous(bridge, shop, login["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["sessionId"] == login["sessionId"]


async def test_refused_customer_refresh_leaves_the_session(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("refusedcus")
    login = await bridge.customer_login(shop)
    bearer = {"Authorization": f"Bearer {login['access_token']}"}
    path = f"/customer/{shop.tenant}/refreshauthtoken"
    foreign_entity = await bridge.http.get(
        path,
        params={"refreshToken": login["refresh_token"], "legalEntityId": "le-9"},
        headers=bearer,
    )
    assert foreign_entity.status_code == 403, foreign_entity.text
    twice = await bridge.http.get(
        path,
        params=[
            ("refreshToken", login["refresh_token"]),
            ("legalEntityId", "le-1"),
            ("legalEntityId", "le-2"),
        ],
        headers=bearer,
    )
    assert_problem(twice, 400, "invalid_request", CUSTOMER)
    bridge.harness.clock.advance(bridge.harness.core.settings.refresh_grace_seconds + 1)
    refreshed = await bridge.http.get(
        path,
        params={"refreshToken": login["refresh_token"], "legalEntityId": "le-2"},
        headers=bearer,
    )
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["session_id"] == login["session_id"]
    seen = await bridge.harness.introspect(refreshed.json()["access_token"])
    assert seen.legal_entity_id == "le-2"


async def test_refused_revocations_leave_the_token_active(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("refusedrev")
    login = await bridge.anonymous_login(shop)
    token = login["refresh_token"]
    auth = {"client_id": shop.service_id, "client_secret": shop.service_secret}
    fields = {"token": token, **auth}
    too_large = padded_form(fields, limit(bridge) + 1)
    refusals: list[dict[str, Any]] = [
        {"content": too_large, "headers": FORM},
        {"content": chunks(too_large), "headers": FORM},
        {"content": str(httpx.QueryParams([*fields.items(), ("token", token)])), "headers": FORM},
        {"json": {**fields, "token_type_hint": 1}},
        {"content": b'{"token": "%s", ' % token.encode(), "headers": JSON},
        {"content": str(httpx.QueryParams(fields)), "headers": {"Content-Type": "text/plain"}},
        {"data": fields, "headers": {"Authorization": "Basic !!!"}},
    ]
    for options in refusals:
        response = await bridge.http.post("/oauth/revoke", **options)
        assert 400 <= response.status_code < 500, response.text
    assert (await bridge.harness.introspect(token)).active
    assert (await bridge.harness.introspect(login["access_token"])).active


async def test_refused_logout_leaves_the_session(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("refusedout")
    login = await bridge.customer_login(shop)
    response = await bridge.http.get(
        f"/customer/{shop.tenant}/logout",
        params=[("accessToken", login["access_token"]), ("accessToken", login["access_token"])],
        headers={"Authorization": f"Bearer {login['access_token']}"},
    )
    assert_problem(response, 400, "invalid_request", CUSTOMER)
    assert (await bridge.harness.introspect(login["access_token"])).active
    assert (await bridge.harness.introspect(login["refresh_token"])).active
