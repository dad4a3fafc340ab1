"""The customer's own sessions over HTTP, over both bridge backends: `GET
/customer/{tenant}/me/sessions` (pages, camelCase fields, RFC 3339 times, the current one),
`DELETE /customer/{tenant}/me/sessions/{sessionId}` and `DELETE /customer/{tenant}/me/sessions`
(with and without keepCurrent). Another customer's session id answers exactly like an unknown
one; every refusal is a clear 4xx in the customer API's error shape and changes nothing; each
ending is seen by validateauthtoken at once; a browser page of the tenant's origin may call
them (CORS)."""

from __future__ import annotations

import datetime
from typing import Any

import httpx
import pytest

from server import admin
from tests.integration.http.conftest import Bridge
from tests.support.harness import Shop

ORIGIN = "https://shop.example"


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"token_cache_seconds": 3600.0, "sessions_page_size": 2}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def sessions_path(shop: Shop, session_id: str = "") -> str:
    return f"/customer/{shop.tenant}/me/sessions" + (f"/{session_id}" if session_id else "")


async def valid(bridge: Bridge, shop: Shop, token: str) -> bool:
    response = await bridge.http.get(
        f"/customer/{shop.tenant}/validateauthtoken", headers=bearer(token)
    )
    assert response.status_code in (200, 401), response.text
    return response.status_code == 200


async def listed_ids(bridge: Bridge, shop: Shop, token: str) -> list[str]:
    ids: list[str] = []
    params: dict[str, str] = {}
    while True:
        response = await bridge.http.get(sessions_path(shop), params=params, headers=bearer(token))
        assert response.status_code == 200, response.text
        body = response.json()
        ids += [s["id"] for s in body["sessions"]]
        if "nextPageToken" not in body:
            return ids
        params = {"pageToken": body["nextPageToken"]}


def problem(response: httpx.Response, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert (body["status"], set(body) - {"fault"}) == (
        status,
        {"status", "type", "message", "details"},
    )
    if field is not None:
        assert [d["field"] for d in body["details"]] == [field], body
    return body


async def test_a_customer_lists_its_sessions_a_page_at_a_time(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("acme")
    sessions = []
    for _ in range(3):
        sessions.append(await bridge.customer_login(shop))
        bridge.harness.clock.advance(1)  # newest first means something
    me = sessions[-1]
    first = await bridge.http.get(sessions_path(shop), headers=bearer(me["access_token"]))
    assert first.status_code == 200, first.text
    assert first.headers["cache-control"] == "no-store"
    body = first.json()
    assert set(body) == {"sessions", "nextPageToken"} and len(body["sessions"]) == 2
    newest = body["sessions"][0]
    assert newest["id"] == me["session_id"] and newest["current"] is True
    assert set(newest) == {"id", "createdAt", "lastRefreshedAt", "expiresAt", "current", "clientId"}
    assert newest["clientId"] == shop.storefront_id
    times = [
        datetime.datetime.strptime(newest[name], "%Y-%m-%dT%H:%M:%SZ")
        for name in ("createdAt", "lastRefreshedAt", "expiresAt")
    ]
    assert times == sorted(times) and times[0] < times[2]
    assert body["sessions"][1]["current"] is False
    assert sorted(await listed_ids(bridge, shop, me["access_token"])) == sorted(
        s["session_id"] for s in sessions
    )
    one = await bridge.http.get(
        sessions_path(shop), params={"pageSize": "1"}, headers=bearer(me["access_token"])
    )
    assert len(one.json()["sessions"]) == 1
    for token in (me["access_token"], me["refresh_token"], me["saas_token"]):
        assert token not in first.text


async def test_ending_one_session_and_logging_out_everywhere(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("acme")
    here, there, elsewhere = [await bridge.customer_login(shop) for _ in range(3)]
    for session in (here, there, elsewhere):
        assert await valid(bridge, shop, session["access_token"])  # and cached by the server
    token = bearer(here["access_token"])
    ended = await bridge.http.delete(sessions_path(shop, there["session_id"]), headers=token)
    assert (ended.status_code, ended.content) == (204, b""), ended.text
    assert ended.headers["cache-control"] == "no-store"
    assert not await valid(bridge, shop, there["access_token"])
    problem(await bridge.http.delete(sessions_path(shop, there["session_id"]), headers=token), 404)

    kept = await bridge.http.delete(
        sessions_path(shop), params={"keepCurrent": "true"}, headers=token
    )
    assert kept.status_code == 204, kept.text
    assert not await valid(bridge, shop, elsewhere["access_token"])
    assert await listed_ids(bridge, shop, here["access_token"]) == [here["session_id"]]
    everywhere = await bridge.http.delete(sessions_path(shop), headers=token)
    assert everywhere.status_code == 204, everywhere.text
    assert not await valid(bridge, shop, here["access_token"])
    problem(await bridge.http.get(sessions_path(shop), headers=token), 401)


async def test_another_customers_session_is_not_found_like_an_unknown_one(bridge: Bridge) -> None:
    acme, globex = await bridge.harness.shop("acme"), await bridge.harness.shop("globex")
    ann, theirs = await bridge.customer_login(acme), await bridge.customer_login(globex)
    token = bearer(ann["access_token"])
    answers = [
        problem(await bridge.http.delete(sessions_path(acme, session_id), headers=token), 404)
        for session_id in (theirs["session_id"], "b1946ac9-2f4e-4c4b-9d43-000000000000")
    ]
    assert answers[0] == answers[1]
    assert await valid(bridge, globex, theirs["access_token"])


@pytest.mark.parametrize(
    ("method", "suffix", "params", "status", "field"),
    [
        ("GET", "", {"pageSize": "many"}, 400, "pageSize"),
        ("GET", "", {"pageSize": "-1"}, 400, "pageSize"),
        ("GET", "", {"pageSize": ""}, 400, "pageSize"),
        ("GET", "", {"pageToken": "not a page token"}, 400, "pageToken"),
        ("GET", "", {"pageToken": "x" * 300}, 400, "pageToken"),
        ("DELETE", "", {"keepCurrent": "maybe"}, 400, "keepCurrent"),
        ("DELETE", "/not%20an%20id", {}, 400, "sessionId"),
        ("DELETE", "/" + "a" * 129, {}, 400, "sessionId"),
    ],
)
async def test_bad_input_is_a_clear_400_and_changes_nothing(
    bridge: Bridge,
    method: str,
    suffix: str,
    params: dict[str, str],
    status: int,
    field: str,
) -> None:
    shop = await bridge.harness.shop("acme")
    me, other = await bridge.customer_login(shop), await bridge.customer_login(shop)
    response = await bridge.http.request(
        method, sessions_path(shop) + suffix, params=params, headers=bearer(me["access_token"])
    )
    body = problem(response, status, field)
    for value in params.values():
        assert not value or value not in body["message"]
    assert await valid(bridge, shop, me["access_token"])
    assert await valid(bridge, shop, other["access_token"])


async def test_only_the_customers_own_active_token_authorises(bridge: Bridge) -> None:
    acme, globex = await bridge.harness.shop("acme"), await bridge.harness.shop("globex")
    me = await bridge.customer_login(acme)
    visitor = (await bridge.anonymous_login(acme))["access_token"]
    service = (await bridge.service_token(acme))["access_token"]
    for method in ("GET", "DELETE"):
        path = sessions_path(acme)
        problem(await bridge.http.request(method, path), 401)
        problem(await bridge.http.request(method, path, headers=bearer("not-a-token")), 401)
        problem(await bridge.http.request(method, path, headers=bearer(me["refresh_token"])), 401)
        problem(await bridge.http.request(method, path, headers=bearer(visitor)), 403)
        problem(await bridge.http.request(method, path, headers=bearer(service)), 403)
        other_tenant = sessions_path(globex)
        problem(
            await bridge.http.request(method, other_tenant, headers=bearer(me["access_token"])), 401
        )
        problem(
            await bridge.http.request(
                method, "/customer/NotATenant/me/sessions", headers=bearer(me["access_token"])
            ),
            400,
        )
    assert await valid(bridge, acme, me["access_token"])


async def test_a_page_of_the_tenants_origin_may_end_sessions(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("acme")
    await admin.set_allowed_origins(bridge.harness.core, shop.tenant, [ORIGIN])
    me = await bridge.customer_login(shop)
    preflight = await bridge.http.options(
        sessions_path(shop, me["session_id"]),
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "DELETE",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert "DELETE" in preflight.headers["access-control-allow-methods"]
    ended = await bridge.http.delete(
        sessions_path(shop, me["session_id"]),
        headers={"Origin": ORIGIN, **bearer(me["access_token"])},
    )
    assert ended.status_code == 204, ended.text
    assert ended.headers["access-control-allow-origin"] == ORIGIN
    refused = await bridge.http.options(
        sessions_path(shop),
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "DELETE"},
    )
    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers
