"""SIGTERM drains the real service: health turns NOT_SERVING first (a Health/Watch stream sees
it), calls already accepted finish, new ones are refused with UNAVAILABLE (never INTERNAL or
UNKNOWN), and the process exits 0 within the shutdown grace period.

The service runs as `tokenservice serve` in a subprocess, provisioned beforehand with the CLI on
the same SQLite file. The test holds that file's write lock while it signals, so the calls it
counts as in flight are in flight on any machine, however fast or loaded.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.processes import (
    SERVING,
    free_port,
    service_env,
    start_serve,
    stop_process,
    storefront_client,
    text_of,
    wait_until_serving,
    writes_held,
)
from tokenservice.v1 import token_service_pb2 as pb
from tokenservice.v1 import token_service_pb2_grpc as pb_grpc

WORKERS = 400  # calls in flight at SIGTERM (held on the write lock until the checks are done)
# The drain test: long enough that a loaded machine takes a call within the delay, and that the
# held calls are never cut off by the grace period before the test releases them.
HELD_DELAY_SECONDS = 5
HELD_GRACE_SECONDS = 60
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def test_sigterm_drains_in_flight_calls_and_exits_cleanly(tmp_path: Path) -> None:
    port = free_port()
    db_path = tmp_path / "t.db"
    env = service_env(
        db_path,
        port,
        # The writes wait on the test's lock, not on a timeout: the lock decides when they run.
        TOKENSERVICE_SQLITE_BUSY_TIMEOUT_MS="600000",
        TOKENSERVICE_SHUTDOWN_DELAY_SECONDS=str(HELD_DELAY_SECONDS),
        TOKENSERVICE_SHUTDOWN_GRACE_SECONDS=str(HELD_GRACE_SECONDS),
        # All WORKERS calls, the Watch stream and the probes share one connection, and the
        # probe's proof (answered, so every call before it is in the service's hands) needs
        # them all on the server, not queued in the client behind the stream limit.
        TOKENSERVICE_GRPC_MAX_CONCURRENT_STREAMS=str(WORKERS + 50),
    )
    target = f"127.0.0.1:{port}"
    client_id = await storefront_client(env, "shop")

    process = await start_serve(env, tmp_path)
    try:
        await wait_until_serving(target, process, tmp_path / "stderr.txt")
        async with grpc.aio.insecure_channel(target) as channel:
            with writes_held(db_path) as release:
                await _drain_with_writes_held(channel, process, client_id, release)
        code = await asyncio.wait_for(process.wait(), timeout=HELD_GRACE_SECONDS + 10)
    finally:
        await stop_process(process)

    stderr = text_of(tmp_path / "stderr.txt")
    assert code == 0, f"exit code {code}:\n{stderr}"
    assert "Traceback" not in stderr, stderr


async def _drain_with_writes_held(
    channel: grpc.aio.Channel,
    process: asyncio.subprocess.Process,
    client_id: str,
    release: Callable[[], None],
) -> None:
    """SIGTERM while WORKERS calls wait on the held write lock, then what callers see."""
    stub = pb_grpc.TokenServiceStub(channel)
    health = health_pb2_grpc.HealthStub(channel)
    request = pb.IssueTokenRequest(anonymous=pb.AnonymousGrant(tenant="shop", client_id=client_id))

    async def issue() -> grpc.StatusCode:
        try:
            response = await stub.IssueToken(request, timeout=HELD_GRACE_SECONDS + 10)
        except grpc.aio.AioRpcError as error:
            return error.code()
        assert response.access_token and response.session_id
        return grpc.StatusCode.OK

    async def accepted_so_far() -> grpc.StatusCode:
        """An IssueToken with no grant, refused at once without touching the store. The server
        hands the calls of one channel to the service in arrival order, so once this one is
        answered INVALID_ARGUMENT, every call sent before it is in the service's hands;
        UNAVAILABLE says the server no longer takes calls."""
        try:
            await stub.IssueToken(pb.IssueTokenRequest(), timeout=10)
        except grpc.aio.AioRpcError as error:
            return error.code()
        raise AssertionError("an IssueToken without a grant succeeded")

    watch = health.Watch(health_pb2.HealthCheckRequest(service=""))
    first = await asyncio.wait_for(watch.read(), timeout=10)
    assert first.status == SERVING

    # Every call of the burst needs a write, so none can finish while the lock is held: once
    # the probe after them is answered, all WORKERS are in flight, whatever the machine's speed.
    burst = [asyncio.create_task(issue()) for _ in range(WORKERS)]
    assert await accepted_so_far() is grpc.StatusCode.INVALID_ARGUMENT
    assert not any(call.done() for call in burst), [c.result() for c in burst if c.done()]
    process.send_signal(signal.SIGTERM)
    signalled_at = time.monotonic()

    update = await asyncio.wait_for(watch.read(), timeout=10)
    assert update is not grpc.aio.EOF, "the Watch stream ended without saying NOT_SERVING"
    assert update.status == NOT_SERVING

    # During the shutdown delay the server is NOT_SERVING but still takes calls, so callers
    # whose balancer has not yet noticed lose nothing. (The delay is long enough here that the
    # probe is answered within it on any machine; should it not be, the assertion says so.)
    during_delay = [asyncio.create_task(issue()) for _ in range(5)]
    assert await accepted_so_far() is grpc.StatusCode.INVALID_ARGUMENT, (
        f"not taken within the {HELD_DELAY_SECONDS}s delay "
        f"({time.monotonic() - signalled_at:.1f}s after SIGTERM)"
    )

    # After the delay new calls are refused with UNAVAILABLE, the status a client retries
    # elsewhere, while the held calls keep the server draining.
    deadline = signalled_at + HELD_DELAY_SECONDS + 30
    while await accepted_so_far() is grpc.StatusCode.INVALID_ARGUMENT:
        assert time.monotonic() < deadline, "the server still takes calls long after the delay"
        await asyncio.sleep(0.05)
    late = await asyncio.gather(*(issue() for _ in range(5)))
    assert late == [grpc.StatusCode.UNAVAILABLE] * 5, late
    assert process.returncode is None, "the server stopped with calls in flight"

    # Drained, not dropped: once the writes may run, every accepted call completes.
    release()
    outcomes = await asyncio.wait_for(
        asyncio.gather(*burst, *during_delay), timeout=HELD_GRACE_SECONDS + 10
    )
    assert outcomes == [grpc.StatusCode.OK] * (WORKERS + 5), Counter(outcomes)
    watch.cancel()
