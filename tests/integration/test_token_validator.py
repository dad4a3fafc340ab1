"""token_validator, the resource servers' library, against a real server on port 0 (SQLite file
and PostgreSQL): it asks only when its cache cannot answer, drops what the revocation feed
names, keeps answers past their hints only while it follows the feed, and picks the feed up
again from where it left it.

The server's calls are counted by a client interceptor on the validator's own channel, so
"answered from the cache" means no IntrospectToken call left the process. The validator's
clock is a manual one where staleness is the point.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest

from tests.support.harness import Harness, Shop
from tests.support.waiting import eventually
from token_validator import TokenValidator
from tokenservice.v1 import token_service_pb2 as pb


class CountingInterceptor(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Counts the unary calls sent, by method name."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        method = client_call_details.method
        name = method.decode() if isinstance(method, bytes) else method
        self.calls[name.rsplit("/", 1)[-1]] += 1
        return await continuation(client_call_details, request)


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    # The server says "do not keep this" (a hint of 0): only following the feed keeps answers.
    return {"introspection_cache_hint_seconds": 0, "revocation_feed_poll_seconds": 30.0}


@pytest.fixture
async def shop(harness: Harness) -> Shop:
    return await harness.shop("acme")


@pytest.fixture
def counter() -> CountingInterceptor:
    return CountingInterceptor()


@pytest.fixture
async def channel(
    harness: Harness, counter: CountingInterceptor
) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(harness.target, interceptors=[counter]) as channel:
        yield channel


def validator_for(channel: grpc.aio.Channel, shop: Shop, **options: Any) -> TokenValidator:
    return TokenValidator(channel, shop.service_id, shop.service_secret, **options)


@contextlib.asynccontextmanager
async def following(validator: TokenValidator) -> AsyncIterator[TokenValidator]:
    """The validator started and following the feed; closed afterwards."""
    await validator.start()
    try:
        await eventually(lambda: validator.following, "the validator follows the feed")
        yield validator
    finally:
        await validator.close()


async def revoke(harness: Harness, shop: Shop, token: str) -> None:
    caller = pb.ClientAuthentication(client_id=shop.service_id, client_secret=shop.service_secret)
    assert (
        await harness.stub.RevokeToken(pb.RevokeTokenRequest(token=token, caller=caller))
    ).revoked


async def test_while_following_answers_are_kept_and_a_revocation_drops_them_at_once(
    harness: Harness, shop: Shop, channel: grpc.aio.Channel, counter: CountingInterceptor
) -> None:
    validator = validator_for(channel, shop)
    async with following(validator):
        token = (await harness.service(shop)).access_token
        assert await validator.active(token)
        assert await validator.active(token)  # kept although its hint is 0
        assert counter.calls["IntrospectToken"] == 1

        await revoke(harness, shop, token)
        await eventually(lambda: validator.revocations == 1, "the revocation reached it")
        assert validator.cached() == 0
        assert not await validator.active(token)
        assert counter.calls["IntrospectToken"] == 2
        assert not await validator.active(token)  # an inactive answer is final: kept
        assert counter.calls["IntrospectToken"] == 2


async def test_a_session_ended_drops_every_token_of_it(
    harness: Harness, shop: Shop, channel: grpc.aio.Channel
) -> None:
    validator = validator_for(channel, shop)
    async with following(validator):
        customer = await harness.customer(shop)
        assert await validator.active(customer.access_token)
        assert await validator.active(customer.saas_token)
        assert validator.cached() == 2
        await revoke(harness, shop, customer.refresh_token)  # ends the session
        await eventually(lambda: validator.revocations == 1, "the revocation reached it")
        assert validator.cached() == 0
        assert not await validator.active(customer.access_token)
        assert not await validator.active(customer.saas_token)


async def test_without_the_feed_the_hint_is_the_bound(
    harness: Harness, shop: Shop, channel: grpc.aio.Channel, counter: CountingInterceptor
) -> None:
    validator = validator_for(channel, shop, follow_revocations=False)
    token = (await harness.service(shop)).access_token
    assert await validator.active(token)
    assert await validator.active(token)
    assert counter.calls["IntrospectToken"] == 2  # a hint of 0: asked every time


@pytest.mark.parametrize(
    "settings_overrides",
    [{"introspection_cache_hint_seconds": 5, "revocation_feed_poll_seconds": 30.0}],
)
async def test_a_silent_feed_falls_back_to_the_hints(
    harness: Harness, shop: Shop, channel: grpc.aio.Channel, counter: CountingInterceptor
) -> None:
    clock = ManualClock()
    validator = validator_for(channel, shop, clock=clock, stale_after=30.0)
    async with following(validator):
        token = (await harness.service(shop)).access_token
        assert await validator.active(token)
        clock.now += 10  # past the hint (5 s), within the staleness bound: still kept
        assert await validator.active(token)
        assert counter.calls["IntrospectToken"] == 1
        clock.now += 25  # 35 s without a message from the feed: it no longer counts
        assert not validator.following
        assert await validator.active(token)  # so the 5 s hint rules, and it asks again
        assert counter.calls["IntrospectToken"] == 2


async def test_after_a_pause_it_resumes_and_gets_what_it_missed(
    harness: Harness, shop: Shop, channel: grpc.aio.Channel, counter: CountingInterceptor
) -> None:
    validator = validator_for(channel, shop)
    async with following(validator):
        tokens = [(await harness.service(shop)).access_token for _ in range(2)]
        for token in tokens:
            assert await validator.active(token)
        position = validator.position
        await validator.close()  # the stream is gone; what it kept is not forgotten

        await revoke(harness, shop, tokens[0])
        await validator.start()
        await eventually(lambda: validator.revocations == 1, "the missed revocation arrived")
        await eventually(lambda: validator.following, "it follows again")
        assert int(validator.position) > int(position)
        assert not await validator.active(tokens[0])
        assert await validator.active(tokens[1])  # kept: nothing said otherwise
        assert counter.calls["IntrospectToken"] == 3


async def test_a_refused_client_raises_and_nothing_is_cached(
    harness: Harness, shop: Shop, channel: grpc.aio.Channel
) -> None:
    validator = TokenValidator(channel, shop.service_id, "not-the-secret", follow_revocations=False)
    token = (await harness.service(shop)).access_token
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await validator.active(token)
    assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert validator.cached() == 0


class RevokingWhileAnswering(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Holds the first IntrospectToken answer until `meanwhile` has run: an answer given
    before a revocation that reaches the validator after the revocation's event."""

    def __init__(self) -> None:
        self.meanwhile: Callable[[], Awaitable[None]] | None = None

    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        call = await continuation(client_call_details, request)
        answer = await call
        if self.meanwhile is not None:
            meanwhile, self.meanwhile = self.meanwhile, None
            await meanwhile()
        return answer


async def test_an_answer_that_crossed_a_revocation_is_used_once_and_not_kept(
    harness: Harness, shop: Shop
) -> None:
    holding = RevokingWhileAnswering()
    async with grpc.aio.insecure_channel(harness.target, interceptors=[holding]) as channel:
        validator = validator_for(channel, shop)
        async with following(validator):
            token = (await harness.service(shop)).access_token

            async def revoke_and_hear_it() -> None:
                await revoke(harness, shop, token)
                await eventually(lambda: validator.revocations == 1, "the event arrived")

            holding.meanwhile = revoke_and_hear_it
            assert await validator.active(token)  # answered before the revocation
            assert validator.cached() == 0  # but not kept: the event came after the question
            assert not await validator.active(token)
