"""`GET /metrics`: Prometheus text that a real parser reads, with per-route and per-RPC request
counts and latency histograms that move by exactly the calls made, the introspection cache's
hits and misses, and labels that hold route templates only, never a value from a request.

The figures are per process and the suite shares one process, so every check compares two
scrapes taken around the calls it makes."""

from __future__ import annotations

import asyncio
import time

import httpx
from httpx_sse import aconnect_sse
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.http.conftest import Bridge
from tests.support.raw_grpc import RawGrpcClient
from tests.support.waiting import eventually

VALIDATE_ROUTE = "/customer/{tenant}/validateauthtoken"
INTROSPECT_METHOD = "/tokenservice.v1.TokenService/IntrospectToken"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(bridge: Bridge) -> Samples:
    response = await bridge.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_http_counts_and_histograms_move_by_the_calls_made(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("metricshttp")
    token = (await bridge.anonymous_login(shop))["access_token"]
    before = await scrape(bridge)

    headers = {"Authorization": f"Bearer {token}"}
    for _ in range(3):
        ok = await bridge.http.get(f"/customer/{shop.tenant}/validateauthtoken", headers=headers)
        assert ok.status_code == 200
    refused = await bridge.http.get(
        f"/customer/{shop.tenant}/validateauthtoken", headers={"Authorization": "Bearer nope"}
    )
    assert refused.status_code == 401

    after = await scrape(bridge)
    counts = "tokenservice_http_requests_total"
    labels = {"route": VALIDATE_ROUTE, "method": "GET"}
    assert (
        value(after, counts, **labels, status="200") - value(before, counts, **labels, status="200")
        == 3
    )
    assert (
        value(after, counts, **labels, status="401") - value(before, counts, **labels, status="401")
        == 1
    )
    observed = "tokenservice_http_request_seconds_count"
    assert (
        value(after, observed, route=VALIDATE_ROUTE) - value(before, observed, route=VALIDATE_ROUTE)
        == 4
    )
    infinite = value(
        after, "tokenservice_http_request_seconds_bucket", route=VALIDATE_ROUTE, le="+Inf"
    )
    assert infinite == value(after, observed, route=VALIDATE_ROUTE)


async def test_grpc_calls_and_cache_hits_are_counted(bridge: Bridge) -> None:
    harness = bridge.harness
    shop = await harness.shop("metricsgrpc")
    token = (await harness.anonymous(shop)).access_token
    before = await scrape(bridge)

    for _ in range(3):
        assert (await harness.introspect(token, shop.tenant)).active
    assert not (await harness.introspect("never-issued", shop.tenant)).active

    after = await scrape(bridge)
    counts = "tokenservice_grpc_requests_total"
    delta = value(after, counts, method=INTROSPECT_METHOD, code="OK") - value(
        before, counts, method=INTROSPECT_METHOD, code="OK"
    )
    assert delta == 4
    cache = "tokenservice_introspection_cache_total"
    hits = value(after, cache, result="hit") - value(before, cache, result="hit")
    misses = value(after, cache, result="miss") - value(before, cache, result="miss")
    unconfirmed = value(after, cache, result="unconfirmed") - value(
        before, cache, result="unconfirmed"
    )
    # Issuing does not fill the cache, so the first look misses and the next two hit; a token
    # never issued is a miss and is never cached. (SQLite: no listener to confirm.)
    assert (hits, misses, unconfirmed) == (2, 2, 0)
    assert (cache, frozenset({("result", "unconfirmed")})) in after  # exported all the same


async def test_no_request_value_becomes_a_label(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("metricslabels")
    token = (await bridge.anonymous_login(shop))["access_token"]
    missing = await bridge.http.get(f"/no-such-route/{token}", params={"access_token": token})
    assert missing.status_code == 404
    odd = await bridge.http.request("BREW", f"/customer/{token}/validateauthtoken")
    assert odd.status_code in (400, 405)

    response = await bridge.http.get("/metrics")
    assert token not in response.text
    assert shop.tenant not in response.text
    routes = {
        dict(labels).get("route")
        for (name, labels) in (await scrape(bridge))
        if name == "tokenservice_http_requests_total"
    }
    assert "unmatched" in routes
    assert all(
        route == "unmatched" or (route is not None and route.startswith("/")) for route in routes
    )
    assert not any(token in str(route) for route in routes)


async def test_the_calls_in_flight_gauge_follows_calls_waiting_in_handlers(bridge: Bridge) -> None:
    gauge = "tokenservice_grpc_calls_in_flight"
    before = value(await scrape(bridge), gauge)
    client = await RawGrpcClient.connect(bridge.harness.running.port)
    try:
        held = [client.start_call(INTROSPECT_METHOD) for _ in range(5)]  # no message yet
        await client.flush()
        await until_gauge(bridge, before + 5)
        for stream in held[:2]:
            client.reset(stream)
        await client.flush()
        await until_gauge(bridge, before + 3)
    finally:
        await client.close()
    await until_gauge(bridge, before)


async def until_gauge(bridge: Bridge, expected: float) -> None:
    """Scrapes until the calls-in-flight gauge reads `expected`, at most 10 s."""
    deadline = time.monotonic() + 10
    while True:
        seen = value(await scrape(bridge), "tokenservice_grpc_calls_in_flight")
        if seen == expected:
            return
        assert time.monotonic() < deadline, f"the gauge reads {seen}, not {expected}"
        await asyncio.sleep(0.02)


async def test_revocation_watchers_are_a_gauge_that_follows_the_streams(bridge: Bridge) -> None:
    shop = await bridge.harness.shop("metricsfeed")
    auth = httpx.BasicAuth(shop.service_id, shop.service_secret)
    gauge = "tokenservice_revocation_watchers"
    before = value(await scrape(bridge), gauge)
    async with aconnect_sse(bridge.http, "GET", "/oauth/revocations", auth=auth) as source:
        assert (await anext(source.aiter_sse())).event == "reset"  # the watcher is registered
        assert value(await scrape(bridge), gauge) == before + 1
    await eventually(
        lambda: bridge.harness.core.feed.watchers == 0, "the closed stream left the feed"
    )
    assert value(await scrape(bridge), gauge) == before
    resets = "tokenservice_revocation_feed_overflow_resets_total"
    assert {"slow_watcher", "backlog"} <= {
        dict(labels)["reason"] for name, labels in await scrape(bridge) if name == resets
    }
