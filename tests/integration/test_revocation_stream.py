"""WatchRevocations against a real server on port 0 (SQLite file and PostgreSQL): what a
resource server watching the revocation feed is told, from where it may resume, and who may
watch at all.

The feed's own poll is set to 30 s here, longer than any wait below, so every event that
arrives was delivered by the wake of the revocation itself (this process's, or on PostgreSQL
another replica's notice), not by the poll that backs it up.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib

import grpc
import pytest

from server import admin
from server.app import start_server
from server.clock import ManualClock
from server.records import ClientKind
from server.startup import open_core
from tests.support.harness import Harness, Shop, error_reason, harness_settings
from tokenservice.v1 import token_service_pb2 as pb
from tokenservice.v1 import token_service_pb2_grpc as pb_grpc

WAIT = 10.0  # seconds: a bound for what must arrive, never a duration that is measured


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"revocation_feed_poll_seconds": 30.0}


def sha256_of(token: str) -> str:
    """What a resource server computes from the token it holds (RFC 4648 base64url, no '=')."""
    return base64.urlsafe_b64encode(hashlib.sha256(token.encode()).digest()).rstrip(b"=").decode()


def watch(
    stub: pb_grpc.TokenServiceStub, shop: Shop, after: str = "", secret: str | None = None
) -> grpc.aio.UnaryStreamCall[pb.WatchRevocationsRequest, pb.RevocationEvent]:
    caller = pb.ClientAuthentication(
        client_id=shop.service_id,
        client_secret=shop.service_secret if secret is None else secret,
    )
    return stub.WatchRevocations(pb.WatchRevocationsRequest(caller=caller, after=after))


async def next_event(
    call: grpc.aio.UnaryStreamCall[pb.WatchRevocationsRequest, pb.RevocationEvent],
) -> pb.RevocationEvent:
    """The next event that is not a heartbeat."""
    while True:
        event = await asyncio.wait_for(call.read(), WAIT)
        assert isinstance(event, pb.RevocationEvent), event
        if not event.heartbeat:
            return event


async def revoke(harness: Harness, shop: Shop, token: str) -> None:
    caller = pb.ClientAuthentication(client_id=shop.service_id, client_secret=shop.service_secret)
    answer = await harness.stub.RevokeToken(pb.RevokeTokenRequest(token=token, caller=caller))
    assert answer.revoked


async def test_a_fresh_stream_resets_then_names_each_revocation(harness: Harness) -> None:
    shop = await harness.shop("acme")
    call = watch(harness.stub, shop)
    first = await next_event(call)
    assert first.reset and first.position.isdigit()
    service_token = (await harness.service(shop)).access_token
    customer = await harness.customer(shop)

    await revoke(harness, shop, service_token)
    by_token = await next_event(call)
    assert list(by_token.token_sha256) == [sha256_of(service_token)]
    assert not by_token.session_ids and not by_token.reset
    assert by_token.revoked_at == harness.core.now()
    assert int(by_token.position) > int(first.position)

    await revoke(harness, shop, customer.refresh_token)  # a refresh token ends its session
    by_session = await next_event(call)
    assert list(by_session.session_ids) == [customer.session_id]
    assert not by_session.token_sha256
    assert int(by_session.position) > int(by_token.position)
    call.cancel()


async def test_each_tenant_sees_its_own_revocations_only(harness: Harness) -> None:
    acme, other = await harness.shop("acme"), await harness.shop("other")
    call = watch(harness.stub, acme)
    assert (await next_event(call)).reset
    others_token = (await harness.service(other)).access_token
    acme_token = (await harness.service(acme)).access_token
    await revoke(harness, other, others_token)
    await revoke(harness, acme, acme_token)
    # Events arrive in position order: had the other tenant's been sent, it would come first.
    assert list((await next_event(call)).token_sha256) == [sha256_of(acme_token)]
    call.cancel()


async def test_a_resume_gets_what_it_missed_and_nothing_twice(harness: Harness) -> None:
    shop = await harness.shop("acme")
    tokens = [(await harness.service(shop)).access_token for _ in range(3)]
    call = watch(harness.stub, shop)
    assert (await next_event(call)).reset
    await revoke(harness, shop, tokens[0])
    seen = await next_event(call)
    call.cancel()

    await revoke(harness, shop, tokens[1])  # while nobody watches
    await revoke(harness, shop, tokens[2])
    resumed = watch(harness.stub, shop, after=seen.position)
    missed = [await next_event(resumed), await next_event(resumed)]
    assert [list(e.token_sha256) for e in missed] == [[sha256_of(t)] for t in tokens[1:]]
    assert not any(e.reset for e in missed)
    resumed.cancel()

    # From the latest position, nothing is missed: the first message is a heartbeat there.
    caught_up = watch(harness.stub, shop, after=missed[-1].position)
    first = await asyncio.wait_for(caught_up.read(), WAIT)
    assert isinstance(first, pb.RevocationEvent)
    assert first.heartbeat and first.position == missed[-1].position and not first.reset
    caught_up.cancel()


async def test_a_resume_from_a_pruned_or_unknown_position_is_told_to_reset(
    harness: Harness,
) -> None:
    shop = await harness.shop("acme")
    tokens = [(await harness.service(shop)).access_token for _ in range(2)]
    await revoke(harness, shop, tokens[0])
    await revoke(harness, shop, tokens[1])
    events = await harness.core.store.revocation_events(0, tenant="acme", limit=10)
    assert [e.fingerprints for e in events] == [(sha256_of(t),) for t in tokens]
    harness.clock.advance(10)
    assert await harness.core.store.prune_revocation_events(harness.core.now()) == 2

    stale = watch(harness.stub, shop, after=str(events[0].position))
    told = await next_event(stale)
    assert told.reset and int(told.position) >= events[-1].position
    stale.cancel()
    unknown = watch(harness.stub, shop, after=str(events[-1].position + 1000))
    assert (await next_event(unknown)).reset
    unknown.cancel()


async def test_only_a_service_client_with_its_secret_may_watch(harness: Harness) -> None:
    shop = await harness.shop("acme")
    cases = {
        "wrong secret": (watch(harness.stub, shop, secret="not-the-secret"), "UNAUTHENTICATED"),
        "no secret": (watch(harness.stub, shop, secret=""), "UNAUTHENTICATED"),
        "not a position": (watch(harness.stub, shop, after="12a"), "INVALID_ARGUMENT"),
    }
    storefront = pb.ClientAuthentication(client_id=shop.storefront_id)
    cases["a storefront client"] = (
        harness.stub.WatchRevocations(pb.WatchRevocationsRequest(caller=storefront)),
        "UNAUTHENTICATED",
    )
    for name, (call, code) in cases.items():
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await asyncio.wait_for(call.read(), WAIT)
        assert refused.value.code().name == code, name
        assert "not-the-secret" not in (refused.value.details() or "")
    assert error_reason(refused.value) == "invalid_client"


@pytest.mark.parametrize(
    "settings_overrides",
    [{"revocation_feed_poll_seconds": 30.0, "revocation_stream_heartbeat_seconds": 0.05}],
)
async def test_a_quiet_stream_sends_heartbeats_at_its_position(harness: Harness) -> None:
    shop = await harness.shop("acme")
    call = watch(harness.stub, shop)
    reset = await next_event(call)
    beat = await asyncio.wait_for(call.read(), WAIT)
    assert isinstance(beat, pb.RevocationEvent)
    assert beat.heartbeat and not beat.reset and beat.position == reset.position
    call.cancel()


@pytest.mark.parametrize(
    "settings_overrides", [{"revocation_feed_poll_seconds": 30.0, "revocation_streams_max": 1}]
)
async def test_watchers_beyond_the_limit_are_refused_and_a_drain_ends_the_rest(
    harness: Harness,
) -> None:
    shop = await harness.shop("acme")
    first = watch(harness.stub, shop)
    assert (await next_event(first)).reset
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await asyncio.wait_for(watch(harness.stub, shop).read(), WAIT)
    assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED

    await harness.running.stop(grace=0)
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        await asyncio.wait_for(first.read(), WAIT)
    assert ended.value.code() is grpc.StatusCode.UNAVAILABLE


@pytest.mark.postgres
async def test_a_watcher_on_one_replica_hears_a_revocation_on_another(postgres_url: str) -> None:
    """Two replicas on one PostgreSQL database: a revocation on the first reaches a watcher of
    the second through the notice its transaction sent (the second's poll is 30 s away)."""
    settings = harness_settings(postgres_url, revocation_feed_poll_seconds=30.0)
    cores = [await open_core(settings, clock=ManualClock()) for _ in range(2)]
    servers = [await start_server(core, "127.0.0.1:0") for core in cores]
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{s.port}") for s in servers]
    try:
        stubs = [pb_grpc.TokenServiceStub(channel) for channel in channels]
        core = cores[0]
        await admin.create_tenant(core, "acme")
        client, secret = await admin.create_client(core, "acme", ClientKind.SERVICE, ())
        assert secret is not None
        caller = pb.ClientAuthentication(client_id=client.client_id, client_secret=secret)
        call = stubs[1].WatchRevocations(pb.WatchRevocationsRequest(caller=caller))
        assert (await next_event(call)).reset
        issued = await stubs[0].IssueToken(
            pb.IssueTokenRequest(
                client_credentials=pb.ClientCredentialsGrant(
                    client_id=client.client_id, client_secret=secret
                )
            )
        )
        await stubs[0].RevokeToken(pb.RevokeTokenRequest(token=issued.access_token, caller=caller))
        assert list((await next_event(call)).token_sha256) == [sha256_of(issued.access_token)]
        call.cancel()
    finally:
        for channel in channels:
            await channel.close()
        for server in servers:
            await server.stop(0)
        for core in cores:
            await core.close()
