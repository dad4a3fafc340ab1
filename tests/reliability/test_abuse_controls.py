"""Abuse controls end to end (server/abuse.py): customer-login lockout per account (shared by
replicas through the store) and per client address (per process), and the per-client quota on
anonymous tokens, over a real gRPC server on port 0 and the real HTTP bridge, on a SQLite file
and on PostgreSQL. Time moves by the harness's ManualClock, never by sleeping.

Small exact numbers throughout (3 failures lock, 60 s increments): the same in `make test` and
under TOKENSERVICE_SOAK=1.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2, status_pb2

from http_bridge.app import build_app
from http_bridge.backend import TokenBackend
from http_bridge.channel import ChannelBackend
from http_bridge.server import start_http
from launcher.in_process import InProcessBackend
from server import admin, metrics
from server.app import start_server
from server.core import build_core
from server.store.factory import open_store
from tests.reliability.support import LEDGER
from tests.support.harness import PASSWORD, Harness, Shop
from tests.support.http_clients import async_http_client
from tokenservice.v1 import token_service_pb2 as pb
from tokenservice.v1 import token_service_pb2_grpc as pb_grpc

WRONG = "not the password at all"
STATUS_DETAILS = "grpc-status-details-bin"
# Per account: the 3rd failure locks for 60 s, the 4th for 120 s, at most 150 s.
ACCOUNT = {
    "login_max_failures_per_account": 3,
    "login_max_failures_per_address": 0,
    "login_lock_wait_increment_seconds": 60,
    "login_lock_max_wait_seconds": 150,
    "login_failure_reset_seconds": 3600,
}
ADDRESS = {**ACCOUNT, "login_max_failures_per_account": 0, "login_max_failures_per_address": 4}
OFF = {**ACCOUNT, "login_max_failures_per_account": 0, "login_max_failures_per_address": 0}
QUOTA = {"anonymous_tokens_per_second": 0.5, "anonymous_tokens_burst": 2}

Answer = tuple[grpc.StatusCode, str, tuple[Any, ...]]

LEDGER.secret(PASSWORD, WRONG)


# --- helpers ------------------------------------------------------------------------------------
async def login(
    h: Harness, shop: Shop, password: str, *, email: str = "", stub: Any = None
) -> pb.TokenResponse | Answer:
    """The customer login over gRPC: the response, or the failed call's whole answer (code,
    message, rich status bytes)."""
    stub = stub or h.stub
    anonymous = await stub.IssueToken(
        pb.IssueTokenRequest(
            anonymous=pb.AnonymousGrant(tenant=shop.tenant, client_id=shop.storefront_id)
        )
    )
    request = pb.IssueTokenRequest(
        customer_password=pb.CustomerPasswordGrant(
            tenant=shop.tenant,
            email=email or shop.email,
            password=password,
            anonymous_token=anonymous.access_token,
        )
    )
    try:
        response: pb.TokenResponse = await stub.IssueToken(request)
    except grpc.aio.AioRpcError as error:
        LEDGER.error_text("abuse controls gRPC", error.details() or "")
        details = tuple((k, v) for k, v in error.trailing_metadata() or () if k == STATUS_DETAILS)
        return error.code(), error.details() or "", details
    return response


def refused(answer: pb.TokenResponse | Answer) -> Answer:
    assert isinstance(answer, tuple), "expected a refusal, the login succeeded"
    return answer


def succeeded(answer: pb.TokenResponse | Answer) -> pb.TokenResponse:
    assert isinstance(answer, pb.TokenResponse), f"expected a login, got {answer[:2]}"
    return answer


def rich_details(answer: Answer) -> tuple[str, int | None]:
    """(ErrorInfo reason, RetryInfo seconds or None) of a refusal."""
    status = status_pb2.Status.FromString(answer[2][0][1])
    reason, retry = "", None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry_info = error_details_pb2.RetryInfo()
            detail.Unpack(retry_info)
            retry = retry_info.retry_delay.seconds
    return reason, retry


async def login_failures_rows(h: Harness) -> int:
    return int((await h.query("SELECT count(*) FROM login_failures"))[0][0])


# --- per account, over gRPC ---------------------------------------------------------------------
@pytest.mark.parametrize("settings_overrides", [ACCOUNT])
async def test_the_account_locks_after_n_failures_and_the_wait_grows(harness: Harness) -> None:
    h = harness
    shop = await h.shop("acme")
    wrong = [refused(await login(h, shop, WRONG)) for _ in range(3)]
    assert wrong[0][0] is grpc.StatusCode.UNAUTHENTICATED
    assert rich_details(wrong[0]) == ("invalid_grant", None)
    assert wrong[0] == wrong[1] == wrong[2]

    # Locked: the right password gets, byte for byte, the wrong password's answer, and changes
    # nothing that was stored.
    before = await h.row_counts()
    assert refused(await login(h, shop, PASSWORD)) == wrong[0]
    assert refused(await login(h, shop, WRONG)) == wrong[0]
    h.clock.advance(59)
    assert refused(await login(h, shop, PASSWORD)) == wrong[0]
    after = await h.row_counts()
    # Only the anonymous logins each attempt starts with are new.
    assert {k: v for k, v in after.items() if k not in ("sessions", "tokens")} == {
        k: v for k, v in before.items() if k not in ("sessions", "tokens")
    }
    assert after["sessions"] - before["sessions"] == 3
    assert after["tokens"] - before["tokens"] == 6
    assert (await h.query("SELECT count(*) FROM sessions WHERE customer_id IS NOT NULL")) == [(0,)]

    # The wait ran out; one more failure locks for two increments (failures while locked did
    # not count).
    h.clock.advance(1)
    refused(await login(h, shop, WRONG))
    h.clock.advance(119)
    assert refused(await login(h, shop, PASSWORD)) == wrong[0]
    h.clock.advance(1)
    succeeded(await login(h, shop, PASSWORD))


@pytest.mark.parametrize("settings_overrides", [ACCOUNT])
async def test_a_successful_login_resets_the_count(harness: Harness) -> None:
    h = harness
    shop = await h.shop("acme")
    for _ in range(2):
        refused(await login(h, shop, WRONG))
    assert await login_failures_rows(h) == 1
    succeeded(await login(h, shop, PASSWORD))
    assert await login_failures_rows(h) == 0
    for _ in range(2):  # two more are not the third
        refused(await login(h, shop, WRONG))
    succeeded(await login(h, shop, PASSWORD))


@pytest.mark.parametrize("settings_overrides", [ACCOUNT])
async def test_a_quiet_period_forgets_the_count(harness: Harness) -> None:
    h = harness
    shop = await h.shop("acme")
    for _ in range(2):
        refused(await login(h, shop, WRONG))
    h.clock.advance(3600)
    refused(await login(h, shop, WRONG))  # the first of a new count, not the third
    succeeded(await login(h, shop, PASSWORD))


@pytest.mark.parametrize("settings_overrides", [ACCOUNT])
async def test_unknown_emails_are_counted_and_locked_without_a_customer_row(
    harness: Harness,
) -> None:
    h = harness
    shop = await h.shop("acme")
    ghost = "nobody@acme.example"
    answers = [refused(await login(h, shop, WRONG, email=ghost)) for _ in range(5)]
    known = refused(await login(h, shop, WRONG))
    assert all(answer == known for answer in answers)  # no way to tell it is unknown
    assert await login_failures_rows(h) == 2  # the ghost's counter and the customer's
    counted = await h.query("SELECT failures, subject FROM login_failures ORDER BY failures")
    assert [row[0] for row in counted] == [1, 3]
    assert all(ghost not in str(row) and "acme.example" not in str(row) for row in counted)
    assert (await h.row_counts())["customers"] == 1


@pytest.mark.parametrize("settings_overrides", [ACCOUNT])
async def test_a_locked_customer_keeps_refreshing_an_existing_session(harness: Harness) -> None:
    """Refresh needs no password: as in Keycloak, a temporary lock does not end sessions, and
    an attacker typing wrong passwords cannot log the customer out."""
    h = harness
    shop = await h.shop("acme")
    tokens = succeeded(await login(h, shop, PASSWORD))
    for _ in range(3):
        refused(await login(h, shop, WRONG))
    refreshed = await h.stub.RefreshToken(
        pb.RefreshTokenRequest(
            tenant=shop.tenant,
            refresh_token=tokens.refresh_token,
            access_token=tokens.access_token,
        )
    )
    assert refreshed.session_id == tokens.session_id


async def test_the_lock_is_shared_by_two_replicas_on_one_database(harness: Harness) -> None:
    """A second server process's worth (its own store, core and gRPC server) on the same
    database: failures on one lock the account on the other, and a success on the other
    clears them for both. Default settings: 5 failures per account."""
    h = harness
    shop = await h.shop("acme")
    store = await open_store(h.core.settings)
    other = build_core(h.core.settings, store, clock=h.clock)
    running = await start_server(other, "127.0.0.1:0")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    try:
        stub = pb_grpc.TokenServiceStub(channel)
        for i in range(5):
            refused(await login(h, shop, WRONG, stub=h.stub if i % 2 else stub))
        locked = refused(await login(h, shop, PASSWORD, stub=stub))
        assert locked == refused(await login(h, shop, PASSWORD))
        assert rich_details(locked) == ("invalid_grant", None)
        h.clock.advance(60)
        succeeded(await login(h, shop, PASSWORD, stub=stub))
        for i in range(4):
            refused(await login(h, shop, WRONG, stub=h.stub if i % 2 else stub))
        succeeded(await login(h, shop, PASSWORD))  # the count started again on both
    finally:
        await channel.close()
        await running.stop(0)
        await store.close()


# --- per client address -------------------------------------------------------------------------
@pytest.mark.parametrize("settings_overrides", [ADDRESS])
async def test_one_address_is_throttled_across_many_accounts(harness: Harness) -> None:
    h = harness
    shop = await h.shop("acme")
    emails = [f"c{i}@acme.example" for i in range(3)]
    for email in emails:
        await admin.create_customer(h.core, shop.tenant, email, PASSWORD, (), ())
    # One failure each on three accounts and one unknown email: the address's fourth.
    for email in [*emails, "ghost@acme.example"]:
        refused(await login(h, shop, WRONG, email=email))
    throttled = refused(await login(h, shop, PASSWORD))
    assert throttled[0] is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert rich_details(throttled) == ("rate_limited", 60)
    before = await login_failures_rows(h)
    h.clock.advance(59)
    assert rich_details(refused(await login(h, shop, PASSWORD))) == ("rate_limited", 1)
    h.clock.advance(1)
    succeeded(await login(h, shop, PASSWORD))
    assert await login_failures_rows(h) == before == 0  # per-account counting is off
    # A success does not reset the address: the next failure locks it for two increments.
    refused(await login(h, shop, WRONG))
    assert rich_details(refused(await login(h, shop, PASSWORD))) == ("rate_limited", 120)


@pytest.mark.parametrize("settings_overrides", [OFF])
async def test_zero_turns_the_login_controls_off(harness: Harness) -> None:
    h = harness
    shop = await h.shop("acme")
    for _ in range(12):
        refused(await login(h, shop, WRONG))
    succeeded(await login(h, shop, PASSWORD))
    assert await login_failures_rows(h) == 0


# --- anonymous quota ----------------------------------------------------------------------------
async def anonymous(h: Harness, shop: Shop) -> pb.TokenResponse | Answer:
    try:
        return await h.anonymous(shop)
    except grpc.aio.AioRpcError as error:
        details = tuple((k, v) for k, v in error.trailing_metadata() or () if k == STATUS_DETAILS)
        return error.code(), error.details() or "", details


@pytest.mark.parametrize("settings_overrides", [QUOTA])
async def test_the_anonymous_quota_answers_resource_exhausted_with_retry_info(
    harness: Harness,
) -> None:
    h = harness
    shop, other = await h.shop("acme"), await h.shop("globex")
    for _ in range(2):
        succeeded(await anonymous(h, shop))
    before = await h.row_counts()
    over = refused(await anonymous(h, shop))
    assert over[0] is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert rich_details(over) == ("rate_limited", 2)  # one token at 0.5 per second
    assert await h.row_counts() == before  # no session, no token
    succeeded(await anonymous(h, other))  # per client
    h.clock.advance(2)
    succeeded(await anonymous(h, shop))
    refused(await anonymous(h, shop))


async def test_no_anonymous_quota_by_default(harness: Harness) -> None:
    shop = await harness.shop("acme")
    for _ in range(30):
        succeeded(await anonymous(harness, shop))


# --- over HTTP ----------------------------------------------------------------------------------
@pytest.fixture(params=["in_process", "channel"])
async def http_bridge(
    request: pytest.FixtureRequest, harness: Harness
) -> AsyncIterator[tuple[str, str]]:
    """The bridge (in-process or standalone, over a channel) on port 0: (base URL, which)."""
    backend: TokenBackend
    if request.param == "in_process":
        backend = InProcessBackend(harness.core)
    else:
        if harness.database_kind == "postgres":
            pytest.skip("the channel bridge does not depend on the database")
        backend = ChannelBackend(harness.target)
    running = await start_http(
        build_app(backend, harness.core.settings), "127.0.0.1:0", grace_seconds=1
    )
    try:
        yield f"http://127.0.0.1:{running.port}", request.param
    finally:
        await running.stop()
        await backend.close()


async def http_login(
    h: Harness,
    base_url: str,
    shop: Shop,
    password: str,
    *,
    source: str = "127.0.0.1",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST /customer/{tenant}/login from the local address `source` (any 127.x.y.z)."""
    transport = httpx.AsyncHTTPTransport(local_address=source)
    async with async_http_client(base_url=base_url, transport=transport, timeout=30) as http:
        anonymous = await http.get(
            "/customerlogin/auth/anonymous/login",
            params={"tenant": shop.tenant, "client_id": shop.storefront_id},
        )
        assert anonymous.status_code == 200, anonymous.text
        token = anonymous.json()["access_token"]
        response = await http.post(
            f"/customer/{shop.tenant}/login",
            json={"email": shop.email, "password": password},
            headers={"Authorization": f"Bearer {token}", **(headers or {})},
        )
    if response.status_code >= 400:
        LEDGER.error_text("abuse controls HTTP", response.text)
    return response


def same_answer(a: httpx.Response, b: httpx.Response) -> bool:
    def headers(r: httpx.Response) -> list[tuple[str, str]]:
        return sorted((k, v) for k, v in r.headers.items() if k != "date")

    return (a.status_code, headers(a), a.content) == (b.status_code, headers(b), b.content)


@pytest.mark.parametrize("settings_overrides", [ACCOUNT])
async def test_over_http_a_locked_account_answers_as_a_wrong_password_does(
    harness: Harness, http_bridge: tuple[str, str]
) -> None:
    h, (url, _) = harness, http_bridge
    shop = await h.shop("acme")
    wrong = [await http_login(h, url, shop, WRONG) for _ in range(3)]
    assert wrong[0].status_code == 401
    assert wrong[0].json()["type"] == "invalid_grant"
    locked = await http_login(h, url, shop, PASSWORD)
    assert same_answer(locked, wrong[0]), (locked.headers, locked.text, wrong[0].text)
    assert "retry-after" not in locked.headers
    h.clock.advance(60)
    assert (await http_login(h, url, shop, PASSWORD)).status_code == 200


@pytest.mark.parametrize("settings_overrides", [ADDRESS])
async def test_over_http_the_client_address_is_throttled_not_the_bridges(
    harness: Harness, http_bridge: tuple[str, str]
) -> None:
    """Two clients, 127.0.0.2 and 127.0.0.3: the in-process bridge passes each one's address
    to the core. A standalone bridge (channel) forwards it as metadata, which the server does
    not believe from an untrusted peer: there, both count as the bridge's own address."""
    h, (url, backend) = harness, http_bridge
    shop = await h.shop("acme")
    for _ in range(4):
        assert (await http_login(h, url, shop, WRONG, source="127.0.0.2")).status_code == 401
    throttled = await http_login(h, url, shop, PASSWORD, source="127.0.0.2")
    assert throttled.status_code == 429
    assert throttled.headers["retry-after"] == "60"
    assert throttled.json()["type"] == "rate_limited"
    other = await http_login(h, url, shop, PASSWORD, source="127.0.0.3")
    assert other.status_code == (200 if backend == "in_process" else 429)
    # A client-written X-Forwarded-For changes nothing without trusted proxies.
    spoofed = await http_login(
        h, url, shop, PASSWORD, source="127.0.0.2", headers={"X-Forwarded-For": "203.0.113.7"}
    )
    assert spoofed.status_code == 429


@pytest.mark.parametrize("settings_overrides", [{**ADDRESS, "trusted_proxies": "127.0.0.1"}])
async def test_over_http_a_trusted_proxy_names_the_client(
    harness: Harness, http_bridge: tuple[str, str]
) -> None:
    """With 127.0.0.1 trusted: its X-Forwarded-For names the client, over either backend (a
    standalone bridge on 127.0.0.1 is then trusted by the gRPC server too)."""
    h, (url, _) = harness, http_bridge
    shop = await h.shop("acme")
    one, two = {"X-Forwarded-For": "198.51.100.1"}, {"X-Forwarded-For": "198.51.100.2"}
    for _ in range(4):
        assert (await http_login(h, url, shop, WRONG, headers=one)).status_code == 401
    assert (await http_login(h, url, shop, PASSWORD, headers=one)).status_code == 429
    assert (await http_login(h, url, shop, PASSWORD, headers=two)).status_code == 200
    # The client cannot pick its address by writing its own X-Forwarded-For: the proxy's
    # entry (the right-most) is the one believed.
    spoof = {"X-Forwarded-For": "198.51.100.2, 198.51.100.1"}
    assert (await http_login(h, url, shop, PASSWORD, headers=spoof)).status_code == 429
    # An untrusted peer's header is ignored: 127.0.0.2 is itself the client.
    assert (
        await http_login(h, url, shop, PASSWORD, source="127.0.0.2", headers=one)
    ).status_code == 200


@pytest.mark.parametrize("settings_overrides", [QUOTA])
async def test_over_http_the_anonymous_quota_answers_429_with_retry_after(
    harness: Harness, http_bridge: tuple[str, str]
) -> None:
    h, (url, _) = harness, http_bridge
    shop = await h.shop("acme")
    refused_before = metrics._abuse["anonymous_refused"]
    async with async_http_client(base_url=url, timeout=30) as http:
        params = {"tenant": shop.tenant, "client_id": shop.storefront_id}
        for _ in range(2):
            ok = await http.get("/customerlogin/auth/anonymous/login", params=params)
            assert ok.status_code == 200
        before = await h.row_counts()
        over = await http.get("/customerlogin/auth/anonymous/login", params=params)
        assert over.status_code == 429
        assert over.headers["retry-after"] == "2"
        assert over.headers["cache-control"] == "no-store"
        body = over.json()
        assert body["status"] == 429 and body["type"] == "rate_limited"
        assert await h.row_counts() == before
        exposition = (await http.get("/metrics")).text
    assert metrics._abuse["anonymous_refused"] == refused_before + 1
    assert 'tokenservice_abuse_events_total{event="anonymous_refused"}' in exposition
