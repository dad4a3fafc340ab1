"""The pieces of CORS that need no server: what counts as an origin (server/origins.py), the
settings refused at start, and the bridge's cache of tenants' origins (http_bridge/cors.py):
fresh for its max age, bounded in size, one call for concurrent misses, and the last known
origins while the core cannot answer."""

from __future__ import annotations

import asyncio
import dataclasses

import grpc
import pytest

from http_bridge.backend import RpcFailure
from http_bridge.cors import TenantOrigins, process_origins, tenant_of
from server import origins
from server.clock import ManualClock
from server.errors import InvalidRequest
from server.settings import ConfigError, Settings


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://shop.example", "https://shop.example"),
        ("HTTPS://Shop.Example", "https://shop.example"),
        ("https://shop.example:443", "https://shop.example"),
        ("http://shop.example:80", "http://shop.example"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://[::1]:5173", "http://[::1]:5173"),
        ("https://xn--bcher-kva.example:8443", "https://xn--bcher-kva.example:8443"),
    ],
)
def test_origins_are_taken_in_the_form_browsers_send(value: str, expected: str) -> None:
    assert origins.origin(value) == expected


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("", "empty"),
        ("https://shop.example/", "path, not even '/'"),
        ("https://shop.example/app", "path"),
        ("https://shop.example?x=1", "query"),
        ("https://shop.example#top", "fragment"),
        ("*", "wildcard"),
        ("https://*.shop.example", "wildcard"),
        ("shop.example", "not an origin"),
        ("null", "not an origin"),
        ("ftp://shop.example", "http or https"),
        ("https://ann@shop.example", "not an origin"),
        ("https://shop..example", "host name"),
        ("https://-shop.example", "host name"),
        ("https://bücher.example", "host name"),
        ("http://[1::2::3]:80", "IPv6"),
        ("https://shop.example:0", "1-65535"),
        ("https://shop.example:65536", "1-65535"),
        ("https://shop.example:0443", "1-65535"),
        ("https://" + "a" * 250 + ".example", "longer than"),
    ],
)
def test_anything_else_is_refused_saying_what_an_origin_is(value: str, complaint: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        origins.origins(["https://fine.example", value])
    assert complaint in refused.value.description
    assert refused.value.field == "allowed_origins[1]"
    if value:
        assert value not in refused.value.description


def test_origin_lists_keep_order_drop_duplicates_and_are_bounded() -> None:
    assert origins.origins(["https://b.example", "https://a.example", "HTTPS://B.example"]) == (
        "https://b.example",
        "https://a.example",
    )
    assert origins.origin_list(" https://a.example ,, http://b.example:81 ", "X") == (
        "https://a.example",
        "http://b.example:81",
    )
    many = [f"https://s{n}.example" for n in range(origins.MAX_ORIGINS + 1)]
    with pytest.raises(InvalidRequest, match="at most"):
        origins.origins(many)
    with pytest.raises(InvalidRequest, match="must be a list"):
        origins.origins("https://a.example")


@pytest.mark.parametrize(
    "overrides",
    [
        {"cors_allowed_origins": "https://a.example,https://b.example/"},
        {"cors_max_age_seconds": -1},
        {"cors_tenant_cache_size": -1},
    ],
)
def test_malformed_cors_settings_are_refused_at_start(overrides: dict[str, object]) -> None:
    # The field is a parameter of the test, so mypy cannot match the value to its type.
    settings = dataclasses.replace(Settings(), **overrides)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="TOKENSERVICE_CORS_"):
        process_origins(settings)


def test_the_process_wide_setting_is_read_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "TOKENSERVICE_CORS_ALLOWED_ORIGINS": "https://a.example, http://127.0.0.1:3000",
            "TOKENSERVICE_CORS_MAX_AGE_SECONDS": "120",
        }
    )
    assert process_origins(settings) == {"https://a.example", "http://127.0.0.1:3000"}
    assert settings.cors_max_age_seconds == 120
    assert process_origins(Settings()) == frozenset()


@pytest.mark.parametrize(
    ("path", "query", "tenant"),
    [
        ("/customer/acme/login", b"", "acme"),
        ("/customer/acme/logout", b"tenant=other", "acme"),
        ("/customer/Acme/login", b"", None),
        ("/customer/a%2Fb/login", b"", None),
        ("/customerlogin/auth/anonymous/login", b"tenant=acme&client_id=x", "acme"),
        ("/customerlogin/auth/anonymous/refresh", b"tenant=acme&tenant=acme", None),
        ("/customerlogin/auth/anonymous/login", b"client_id=x", None),
        ("/customerlogin/auth/anonymous/login", b"tenant=%FF%FE", None),
        ("/customerlogin/auth/anonymous/login", b"a&" * 100 + b"tenant=acme", None),
        ("/oauth/token", b"tenant=acme", None),
    ],
)
def test_the_tenant_comes_from_the_path_or_the_anonymous_query(
    path: str, query: bytes, tenant: str | None
) -> None:
    assert tenant_of({"path": path, "query_string": query}) == tenant


class FakeCore:
    """GetAllowedOrigins as the cache sees it: counted calls, a gate to hold them, failures."""

    def __init__(self) -> None:
        self.origins: dict[str, tuple[str, ...]] = {"acme": ("https://acme.example",)}
        self.calls: list[str] = []
        self.called = asyncio.Event()
        self.gate = asyncio.Event()
        self.gate.set()
        self.down = False

    async def fetch(self, tenant: str) -> tuple[str, ...]:
        self.calls.append(tenant)
        self.called.set()
        await self.gate.wait()
        if self.down:
            raise RpcFailure(grpc.StatusCode.UNAVAILABLE, "", "the token service is down")
        return self.origins.get(tenant, ())


def cache_over(core: FakeCore, clock: ManualClock, capacity: int = 3) -> TenantOrigins:
    return TenantOrigins(core.fetch, capacity=capacity, max_age=30, clock=clock.now)


async def test_an_entry_is_used_while_fresh_and_asked_for_again_after() -> None:
    core, clock = FakeCore(), ManualClock(0)
    cache = cache_over(core, clock)
    assert await cache.of("acme") == {"https://acme.example"}
    core.origins["acme"] = ("https://new.example",)
    clock.advance(29)
    assert await cache.of("acme") == {"https://acme.example"}
    assert core.calls == ["acme"]
    clock.advance(1)
    assert await cache.of("acme") == {"https://new.example"}
    assert core.calls == ["acme", "acme"]


async def test_the_cache_holds_at_most_its_capacity_least_recently_used_out_first() -> None:
    core, clock = FakeCore(), ManualClock(0)
    cache = cache_over(core, clock, capacity=3)
    await cache.of("acme")
    for number in range(50):
        assert await cache.of(f"fake{number}") == frozenset()  # unknown: none of its own
        assert len(cache) <= 3
        await cache.of("acme")  # kept: used most recently
    calls = len(core.calls)
    assert await cache.of("acme") == {"https://acme.example"}
    assert len(core.calls) == calls
    await cache.of("fake0")
    assert len(core.calls) == calls + 1  # evicted long ago


async def test_a_cache_of_size_zero_keeps_nothing() -> None:
    core, clock = FakeCore(), ManualClock(0)
    cache = cache_over(core, clock, capacity=0)
    assert await cache.of("acme") == {"https://acme.example"}
    assert await cache.of("acme") == {"https://acme.example"}
    assert len(cache) == 0 and core.calls == ["acme", "acme"]


async def test_concurrent_misses_for_one_tenant_share_one_call() -> None:
    core, clock = FakeCore(), ManualClock(0)
    cache = cache_over(core, clock)
    core.gate.clear()
    waiting = [asyncio.ensure_future(cache.of("acme")) for _ in range(20)]
    # The waiters were scheduled before the call they start, so once it runs all are waiting.
    await core.called.wait()
    core.gate.set()
    answers = await asyncio.gather(*waiting)
    assert answers == [frozenset({"https://acme.example"})] * 20
    assert core.calls == ["acme"]


async def test_a_core_that_cannot_answer_leaves_the_last_known_origins_or_none() -> None:
    core, clock = FakeCore(), ManualClock(0)
    cache = cache_over(core, clock)
    assert await cache.of("acme") == {"https://acme.example"}
    core.down = True
    clock.advance(31)
    assert await cache.of("acme") == {"https://acme.example"}
    assert await cache.of("other") == frozenset()
    assert len(cache) == 1  # a failure is not cached: the next request asks again
    core.down = False
    core.origins["acme"] = ()
    assert await cache.of("acme") == frozenset()
