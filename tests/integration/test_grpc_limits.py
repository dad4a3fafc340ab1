"""gRPC limits against hostile and broken clients: a raw HTTP/2 client
(tests/support/raw_grpc.py) opens streams it never finishes, ends unary calls with no message or
half a message, opens more streams than allowed and pings too often, while ordinary grpcio
clients must keep being served.

Every limit is set small in the test's settings, and every test waits for the server to do
what it should, with a generous bound, instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from http_bridge.backend import RpcFailure
from http_bridge.channel import ChannelBackend
from server import metrics
from server.app import start_server
from tests.support import waiting
from tests.support.harness import Harness, error_reason
from tests.support.raw_grpc import (
    ENHANCE_YOUR_CALM,
    NO_ERROR,
    REFUSED_STREAM,
    WAIT_SECONDS,
    RawGrpcClient,
    StreamOutcome,
)
from tokenservice.v1 import token_service_pb2 as pb
from tokenservice.v1 import token_service_pb2_grpc as pb_grpc

INTROSPECT = "/tokenservice.v1.TokenService/IntrospectToken"
WATCH = "/grpc.health.v1.Health/Watch"
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]
DEADLINE_EXCEEDED = grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
NO_REQUEST = pb.IntrospectTokenRequest(token="not-a-token").SerializeToString()


@pytest.fixture
def database_kind() -> str:
    return "sqlite"  # these are about the transport, not the store


@pytest.fixture
async def raw(harness: Harness) -> AsyncIterator[Callable[[], Awaitable[RawGrpcClient]]]:
    """Opens raw connections to the harness server; closes them after the test."""
    clients: list[RawGrpcClient] = []

    async def connect() -> RawGrpcClient:
        client = await RawGrpcClient.connect(harness.running.port)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        await client.close()


def eventually(condition: Callable[[], bool | Awaitable[bool]], what: str) -> Awaitable[None]:
    """Waits until `condition()` holds, at most WAIT_SECONDS."""
    return waiting.eventually(condition, what, within=WAIT_SECONDS)


def calls_in_flight() -> float:
    """The gauge, as /metrics shows it (every server of this process adds into it)."""
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        if family.name == "tokenservice_grpc_calls_in_flight":
            return float(family.samples[0].value)
    raise AssertionError("no tokenservice_grpc_calls_in_flight in /metrics")


async def introspect_works(harness: Harness) -> bool:
    try:
        return not (await harness.introspect("not-a-token")).active
    except grpc.aio.AioRpcError:
        return False


# --- the message of a unary call -----------------------------------------------------------------


@pytest.mark.parametrize("ends_with_headers", [True, False], ids=["headers-end", "empty-data"])
async def test_a_unary_call_without_a_message_gets_invalid_argument(
    harness: Harness, raw: Callable[[], Awaitable[RawGrpcClient]], ends_with_headers: bool
) -> None:
    client = await raw()
    stream = client.start_call(INTROSPECT, end_stream=ends_with_headers)
    if not ends_with_headers:
        client.end_stream(stream)
    await client.flush()
    outcome = await client.outcome(stream)
    assert outcome.grpc_status == INVALID_ARGUMENT
    assert outcome.error_reason == "invalid_request"
    assert outcome.grpc_message == "a unary call needs exactly one request message"


@pytest.mark.parametrize(
    "data",
    [b"\x00\x00\x00", b"\x00\x00\x00\x00\x40" + NO_REQUEST],
    ids=["3-of-5-prefix-bytes", "shorter-than-its-prefix"],
)
async def test_a_truncated_message_gets_invalid_argument(
    harness: Harness, raw: Callable[[], Awaitable[RawGrpcClient]], data: bytes
) -> None:
    client = await raw()
    stream = client.start_call(INTROSPECT)
    client.send_data(stream, data, end_stream=True)
    await client.flush()
    outcome = await client.outcome(stream)
    assert outcome.grpc_status == INVALID_ARGUMENT
    assert outcome.error_reason == "invalid_request"


@pytest.mark.parametrize("settings_overrides", [{"grpc_message_timeout_seconds": 0.3}])
async def test_a_header_only_stream_gets_deadline_exceeded_after_the_message_timeout(
    harness: Harness,
    raw: Callable[[], Awaitable[RawGrpcClient]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = calls_in_flight()
    client = await raw()
    unary = client.start_call(INTROSPECT)
    watch = client.start_call(WATCH)
    await client.flush()
    with caplog.at_level(logging.WARNING):
        for stream in (unary, watch):
            outcome = await client.outcome(stream)
            assert outcome.grpc_status == DEADLINE_EXCEEDED, outcome.trailers or outcome.headers
            assert outcome.error_reason == "invalid_request"
            assert "did not arrive within 0.3 s" in outcome.grpc_message
        # Cancelling the pending read left nothing behind: no call task, no warning.
        await eventually(lambda: calls_in_flight() == before and not _rpc_tasks(), "no calls left")
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert await introspect_works(harness)  # and the server goes on serving


@pytest.mark.parametrize("settings_overrides", [{"grpc_message_timeout_seconds": 0.5}])
async def test_calls_that_send_their_message_in_time_are_served_beside_stalled_ones(
    harness: Harness, raw: Callable[[], Awaitable[RawGrpcClient]]
) -> None:
    client = await raw()
    for _ in range(2):  # the second round after the first's deadline has passed
        stalled = client.start_call(INTROSPECT)
        prompt = client.start_call(INTROSPECT)
        client.send_message(prompt, NO_REQUEST)
        await client.flush()
        assert (await client.outcome(prompt)).grpc_status == 0
        assert (await client.outcome(stalled)).grpc_status == DEADLINE_EXCEEDED


def _rpc_tasks() -> list[asyncio.Task[object]]:
    # grpcio names each call's tasks "rpc_task" and "HandleExceptions[<method>]".
    return [
        task
        for task in asyncio.all_tasks()
        if task.get_name() == "rpc_task" or task.get_name().startswith("HandleExceptions[")
    ]


async def test_health_watch_still_streams_and_needs_its_message(
    harness: Harness, raw: Callable[[], Awaitable[RawGrpcClient]]
) -> None:
    health = health_pb2_grpc.HealthStub(harness.channel)
    watch = health.Watch(health_pb2.HealthCheckRequest(service=""))
    first = await asyncio.wait_for(watch.read(), WAIT_SECONDS)
    assert first.status == health_pb2.HealthCheckResponse.SERVING
    watch.cancel()
    client = await raw()
    stream = client.start_call(WATCH, end_stream=True)
    await client.flush()
    assert (await client.outcome(stream)).grpc_status == INVALID_ARGUMENT


# --- calls in handlers ---------------------------------------------------------------------------


# Waiting calls never old enough to give their place: what is refused is refused.
NO_EVICTION = {"grpc_max_concurrent_rpcs": 3, "grpc_evictable_after_seconds": 3600}


@pytest.mark.parametrize("settings_overrides", [NO_EVICTION])
async def test_calls_beyond_the_concurrent_limit_are_refused_until_calls_end(
    harness: Harness, raw: Callable[[], Awaitable[RawGrpcClient]]
) -> None:
    before = calls_in_flight()
    client = await raw()
    held = [client.start_call(INTROSPECT) for _ in range(3)]  # waiting for their messages
    await client.flush()
    await eventually(lambda: calls_in_flight() == before + 3, "3 calls in flight")

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await harness.introspect("not-a-token")
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_reason(refused.value) == "rate_limited"
    assert "limit of concurrent calls" in (refused.value.details() or "")
    extra = client.start_call(INTROSPECT)  # a raw call is refused at once too, with RetryInfo
    await client.flush()
    outcome = await client.outcome(extra)
    assert (outcome.grpc_status, outcome.retry_delay_seconds) == (RESOURCE_EXHAUSTED, 1)
    assert calls_in_flight() == before + 3  # a refused call never counted

    for stream in held:
        client.reset(stream)
    await client.flush()
    await eventually(lambda: calls_in_flight() == before, "the held calls ended")
    assert await introspect_works(harness)


@pytest.mark.parametrize(
    "settings_overrides", [{"grpc_max_concurrent_rpcs": 3, "grpc_evictable_after_seconds": 0}]
)
async def test_at_the_limit_a_call_waiting_for_its_message_gives_way_to_a_new_one(
    harness: Harness, raw: Callable[[], Awaitable[RawGrpcClient]], caplog: pytest.LogCaptureFixture
) -> None:
    """Header-only streams that fill the limit cannot hold it against real calls: a new call
    ends the longest-waiting one (RESOURCE_EXHAUSTED, RetryInfo), oldest first, and the
    evictions are summarised in the log, not written one line per call."""
    before = calls_in_flight()
    client = await raw()
    held = [client.start_call(INTROSPECT) for _ in range(3)]
    await client.flush()
    await eventually(lambda: calls_in_flight() == before + 3, "3 calls in flight")

    with caplog.at_level(logging.INFO, logger="tokenservice.rpc"):
        evicted: list[StreamOutcome] = []
        for _ in range(2):
            assert not (await harness.introspect("not-a-token")).active  # served at the limit
            evicted.append(await client.outcome(held[len(evicted)]))  # the oldest gave way
            await eventually(lambda: calls_in_flight() == before + 2, "the evicted call ended")
            held.append(client.start_call(INTROSPECT))  # the limit is full again
            await client.flush()
            await eventually(lambda: calls_in_flight() == before + 3, "3 calls in flight")
        assert [(o.grpc_status, o.retry_delay_seconds) for o in evicted] == [
            (RESOURCE_EXHAUSTED, 1)
        ] * 2
        assert all("request message had not arrived" in o.grpc_message for o in evicted)
        assert not any(client.stream(stream).ended.is_set() for stream in held[2:])
    # One summary line for the first eviction; the second waits for the end of its interval.
    lines = [r.getMessage() for r in caplog.records if "evicted" in r.getMessage()]
    assert len(lines) == 1 and "1 evicted waiting for its message" in lines[0], lines
    assert not [r for r in caplog.records if "code=RESOURCE_EXHAUSTED" in r.getMessage()]
    for stream in held[2:]:
        client.reset(stream)
    await client.flush()
    await eventually(lambda: calls_in_flight() == before, "the held calls ended")


# --- HTTP/2 and connection limits ----------------------------------------------------------------


@pytest.mark.parametrize("settings_overrides", [{"grpc_max_concurrent_streams": 4}])
async def test_streams_beyond_the_advertised_limit_are_refused(
    harness: Harness, raw: Callable[[], Awaitable[RawGrpcClient]]
) -> None:
    client = await raw()
    assert client.remote_settings[0x3] == 4  # SETTINGS_MAX_CONCURRENT_STREAMS
    streams = [client.start_call(INTROSPECT) for _ in range(8)]
    await client.flush()
    for stream in streams[4:]:
        assert (await client.outcome(stream)).reset_code == REFUSED_STREAM
    assert not any(client.stream(stream).ended.is_set() for stream in streams[:4])
    assert await introspect_works(harness)  # another connection is served meanwhile
    for stream in streams[:4]:  # and this one still takes calls once streams are free
        client.reset(stream)
    await client.flush()
    later = client.start_call(INTROSPECT)
    client.send_message(later, NO_REQUEST)
    await client.flush()

    outcome = await client.outcome(later)
    assert outcome.grpc_status == 0


@pytest.mark.parametrize("settings_overrides", [{"grpc_max_concurrent_streams": 20}])
async def test_a_burst_beyond_the_stream_limit_on_one_channel_waits_instead_of_failing(
    harness: Harness,
) -> None:
    # An ordinary client queues the streams over the advertised limit itself; the server must
    # not refuse one it could not know was over (grpcio does not retry REFUSED_STREAM).
    async with grpc.aio.insecure_channel(harness.target) as channel:  # a fresh connection
        stub = pb_grpc.TokenServiceStub(channel)
        request = pb.IntrospectTokenRequest(token="not-a-token")
        answers = await asyncio.gather(
            *(stub.IntrospectToken(request) for _ in range(300)), return_exceptions=True
        )
    failures = [answer for answer in answers if isinstance(answer, BaseException)]
    assert failures == [], failures[:3]


async def test_the_default_stream_limit_is_advertised(
    harness: Harness, raw: Callable[[], Awaitable[RawGrpcClient]]
) -> None:
    client = await raw()
    assert client.remote_settings[0x3] == harness.core.settings.grpc_max_concurrent_streams == 100


@pytest.mark.parametrize("settings_overrides", [{"grpc_max_connections": 2}])
async def test_connections_beyond_the_limit_are_closed_at_once(
    harness: Harness, raw: Callable[[], Awaitable[RawGrpcClient]]
) -> None:
    first = await raw()
    await raw()
    with pytest.raises(ConnectionError):
        await raw()
    await first.close()

    async def connects() -> bool:
        try:
            await raw()
        except ConnectionError:
            return False
        return True

    await eventually(connects, "a connection accepted once another closed")


async def test_start_server_takes_a_lower_effective_connection_limit(harness: Harness) -> None:
    running = await start_server(harness.core, "127.0.0.1:0", max_connections=1)
    try:
        only = await RawGrpcClient.connect(running.port)
        with pytest.raises(ConnectionError):
            await RawGrpcClient.connect(running.port)
        await only.close()
    finally:
        await running.stop(0)


@pytest.mark.parametrize("settings_overrides", [{"grpc_max_metadata_bytes": 4096}])
async def test_metadata_over_the_limit_is_refused_by_grpc_core(harness: Harness) -> None:
    request = pb.IntrospectTokenRequest(token="not-a-token")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await harness.stub.IntrospectToken(request, metadata=(("x-padding", "a" * 8192),))
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "metadata size exceeds hard limit" in (refused.value.details() or "")
    answer = await harness.stub.IntrospectToken(request, metadata=(("x-padding", "a" * 1024),))
    assert not answer.active


@pytest.mark.parametrize("settings_overrides", [{"grpc_keepalive_min_interval_seconds": 0.3}])
async def test_pings_within_the_interval_are_welcome_and_a_ping_flood_gets_goaway(
    harness: Harness, raw: Callable[[], Awaitable[RawGrpcClient]]
) -> None:
    polite, rude = await raw(), await raw()
    # One ping a second: even if a busy machine delivered two of them closer together than
    # the minimum interval, that is one strike of the two allowed (grpc core's default
    # interval, 5 minutes, would end this connection at the 4th ping).
    for number in range(4):
        polite.ping(bytes([number]) * 8)
        await polite.flush()

        def polite_answered(n: int = number) -> bool:
            return polite.ping_acks > n

        await eventually(polite_answered, "ping answered")
        await asyncio.sleep(1.0)  # the client's own pace, not a wait for the server
    assert polite.goaway is None and not polite.closed.is_set()

    for number in range(8):  # back to back: the first is free, then strikes
        rude.ping(bytes([number]) * 8)
        with contextlib.suppress(ConnectionError):
            await rude.flush()

        def rude_answered_or_closed(n: int = number) -> bool:
            return rude.ping_acks > n or rude.closed.is_set()

        await eventually(rude_answered_or_closed, "ping answered")
        if rude.closed.is_set():
            break
    await rude.wait_closed()
    assert rude.goaway is not None
    assert (rude.goaway.error_code, rude.goaway.debug_data) == (
        ENHANCE_YOUR_CALM,
        b"too_many_pings",
    )
    assert rude.ping_acks >= 4  # the first is free, strikes 1 and 2 are borne, the 3rd ends it


@pytest.mark.parametrize("settings_overrides", [{"grpc_max_connection_idle_seconds": 0.3}])
async def test_an_idle_connection_is_closed_after_the_idle_limit(
    harness: Harness, raw: Callable[[], Awaitable[RawGrpcClient]]
) -> None:
    client = await raw()
    await client.wait_closed()
    assert client.goaway is not None and client.goaway.debug_data == b"connection idle"


@pytest.mark.parametrize(
    "settings_overrides",
    [{"grpc_max_connection_age_seconds": 0.3, "grpc_max_connection_age_grace_seconds": 0.3}],
)
async def test_a_connection_past_its_age_is_told_to_go_and_closed_after_the_grace(
    harness: Harness, raw: Callable[[], Awaitable[RawGrpcClient]]
) -> None:
    client = await raw()
    stream = client.start_call(INTROSPECT)  # never finished: the grace runs out on it
    await client.flush()
    await client.wait_closed()
    assert client.goaway is not None
    assert (client.goaway.error_code, client.goaway.debug_data) == (NO_ERROR, b"max_age")
    assert client.stream(stream).ended.is_set()


@pytest.mark.parametrize(
    "settings_overrides",
    [{"grpc_keepalive_time_seconds": 0.3, "grpc_keepalive_timeout_seconds": 0.5}],
)
async def test_keepalive_closes_a_peer_that_stops_answering_pings(harness: Harness) -> None:
    alive = await RawGrpcClient.connect(harness.running.port)
    dead = await RawGrpcClient.connect(harness.running.port, answer_pings=False)
    try:
        await dead.wait_closed()
        assert dead.goaway is not None
        assert (dead.goaway.error_code, dead.goaway.debug_data) == (
            ENHANCE_YOUR_CALM,
            b"ping_timeout",
        )
        await eventually(lambda: alive.pings_received >= 3, "pings to the live peer")
        assert not alive.closed.is_set()
    finally:
        await alive.close()
        await dead.close()


@pytest.mark.parametrize("settings_overrides", [{"grpc_max_connection_idle_seconds": 0.3}])
async def test_the_bridge_channel_carries_on_across_idle_closes(harness: Harness) -> None:
    shop = await harness.shop("idlebridge")
    token = (await harness.anonymous(shop)).access_token
    backend = ChannelBackend(harness.target)
    try:
        request = pb.IntrospectTokenRequest(token=token, tenant=shop.tenant)
        assert (await backend.introspect_token(request)).active
        channel = backend._channel  # the server closes its idle connection: the channel sees it
        await asyncio.wait_for(_until_idle(channel), WAIT_SECONDS)
        try:
            assert (await backend.introspect_token(request)).active
        except RpcFailure as failure:  # pragma: no cover - the message says what went wrong
            raise AssertionError(f"the bridge failed after an idle close: {failure}") from None
    finally:
        await backend.close()


async def _until_idle(channel: grpc.aio.Channel) -> None:
    state = channel.get_state()
    while state != grpc.ChannelConnectivity.IDLE:
        await channel.wait_for_state_change(state)
        state = channel.get_state()
