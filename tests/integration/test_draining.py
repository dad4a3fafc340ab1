"""The server's drain (server/app.py RunningServer.stop), in-process over a real SQLite file:
once the shutdown delay is over, a new call is refused by the service itself with UNAVAILABLE
(cause `shutting_down`, which clients retry elsewhere), never CANCELLED as grpc core's own stop
answers calls no handler took yet (grpc/grpc#41785); the calls in flight finish; and the stop
returns as soon as they have, not at the end of the grace."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.harness import Harness, error_info
from tests.support.processes import writes_held
from tests.support.waiting import eventually

pytestmark = pytest.mark.parametrize("database_kind", ["sqlite"])  # the write lock is SQLite's
GRACE = 60.0  # far longer than the test: the stop must end when the calls do


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    # The held writes wait on the test's lock, not on a timeout.
    return {"sqlite_busy_timeout_ms": 600_000}


async def test_a_drain_refuses_new_calls_with_unavailable_and_finishes_those_in_flight(
    harness: Harness,
) -> None:
    shop = await harness.shop("drain")
    health = health_pb2_grpc.HealthStub(harness.channel)
    watch = health.Watch(health_pb2.HealthCheckRequest(service=""))
    assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
    with writes_held(harness.db_path) as release:
        held = [asyncio.create_task(harness.anonymous(shop)) for _ in range(3)]
        calls = harness.running.calls
        await eventually(lambda: calls.count - calls.streams == len(held), "3 calls in handlers")
        stopping = asyncio.create_task(harness.running.stop(GRACE))
        await eventually(lambda: calls.draining, "the drain")

        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await harness.service(shop)
        assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
        info = error_info(refused.value)
        assert (info.reason, info.metadata["cause"]) == ("temporarily_unavailable", "shutting_down")
        assert not stopping.done() and not any(call.done() for call in held)

        release()
        answers = await asyncio.wait_for(asyncio.gather(*held), timeout=30)
        assert all(answer.access_token for answer in answers)
        # The open Watch stream is not waited for: the stop ends once the unary calls have.
        await asyncio.wait_for(stopping, timeout=GRACE / 2)
    watch.cancel()
