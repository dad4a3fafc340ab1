"""`GET /oauth/revocations`: the revocation feed as Server-Sent Events, read by httpx-sse (an
SSE client we did not write), over both backends of the bridge.

The feed's poll is 30 s away, so what arrives within the waits below was pushed by the
revocation itself.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from httpx_sse import ServerSentEvent, aconnect_sse

from tests.integration.http.conftest import Bridge
from tests.support.harness import Shop

WAIT = 10.0  # seconds: a bound for what must arrive, never a measured duration


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"revocation_feed_poll_seconds": 30.0}


def sha256_of(token: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(token.encode()).digest()).rstrip(b"=").decode()


def auth(shop: Shop, secret: str | None = None) -> httpx.BasicAuth:
    return httpx.BasicAuth(shop.service_id, shop.service_secret if secret is None else secret)


async def next_event(events: AsyncIterator[ServerSentEvent]) -> ServerSentEvent:
    """The next event that is not a heartbeat."""
    while True:
        event = await asyncio.wait_for(anext(events), WAIT)
        if event.event != "heartbeat":
            return event


async def revoke(bridge: Bridge, shop: Shop, token: str) -> None:
    response = await bridge.http.post("/oauth/revoke", data={"token": token}, auth=auth(shop))
    assert response.status_code == 200


async def test_events_name_each_revocation_and_a_reconnect_resumes(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("acme")
    tokens = [(await bridge.service_token(shop))["access_token"] for _ in range(3)]
    async with aconnect_sse(bridge.http, "GET", "/oauth/revocations", auth=auth(shop)) as source:
        assert source.response.status_code == 200
        assert source.response.headers["content-type"].startswith("text/event-stream")
        assert source.response.headers["cache-control"] == "no-store"
        events = source.aiter_sse()
        reset = await next_event(events)
        assert reset.event == "reset" and reset.id.isdigit() and reset.retry == 1000
        await revoke(bridge, shop, tokens[0])
        first = await next_event(events)
        assert first.event == "revocation"
        assert json.loads(first.data) == {
            "token_sha256": [sha256_of(tokens[0])],
            "session_ids": [],
            "revoked_at": bridge.harness.core.now(),
        }
        assert int(first.id) > int(reset.id)

    await revoke(bridge, shop, tokens[1])  # while disconnected
    await revoke(bridge, shop, tokens[2])
    # What an EventSource sends when it reconnects: the last id it saw.
    resumed = {"Last-Event-ID": first.id}
    async with aconnect_sse(
        bridge.http, "GET", "/oauth/revocations", auth=auth(shop), headers=resumed
    ) as source:
        events = source.aiter_sse()
        missed = [await next_event(events), await next_event(events)]
    assert [e.event for e in missed] == ["revocation", "revocation"]
    assert [json.loads(e.data)["token_sha256"] for e in missed] == [
        [sha256_of(t)] for t in tokens[1:]
    ]


async def test_a_logout_is_announced_by_its_session(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("acme")
    login = await bridge.customer_login(shop)
    async with aconnect_sse(bridge.http, "GET", "/oauth/revocations", auth=auth(shop)) as source:
        events = source.aiter_sse()
        assert (await next_event(events)).event == "reset"
        await revoke(bridge, shop, login["refresh_token"])
        ended = await next_event(events)
    assert json.loads(ended.data)["session_ids"] == [login["session_id"]]


@pytest.mark.parametrize(
    ("credentials", "query", "status", "error"),
    [
        (None, "", 401, "invalid_client"),
        ("wrong-secret", "", 401, "invalid_client"),
        ("", "?after=not-a-position", 400, "invalid_request"),
    ],
)
async def test_refusals_are_error_answers_not_streams(
    bridge: Bridge, credentials: str | None, query: str, status: int, error: str
) -> None:
    shop = await bridge.harness.shop("acme")
    basic = None if credentials is None else auth(shop, credentials or None)
    response = await bridge.http.get(f"/oauth/revocations{query}", auth=basic)
    assert response.status_code == status
    assert response.json()["error"] == error
    assert not response.headers["content-type"].startswith("text/event-stream")
    assert shop.service_secret not in response.text


async def test_an_event_source_that_is_not_authenticated_is_not_served(bridge: Bridge) -> None:
    """Client credentials in the query string are not accepted: they would land in logs."""
    shop = await bridge.harness.shop("acme")
    response = await bridge.http.get(
        "/oauth/revocations",
        params={"client_id": shop.service_id, "client_secret": shop.service_secret},
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
