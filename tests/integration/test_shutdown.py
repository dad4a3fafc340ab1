"""SIGTERM drains the real service: health turns NOT_SERVING first (a Health/Watch stream sees
it), calls already accepted finish, new ones are refused with UNAVAILABLE (never INTERNAL or
UNKNOWN), and the process exits 0 within the shutdown grace period.

The service runs as `tokenservice serve` in a subprocess, provisioned beforehand with the CLI on
the same SQLite file.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
from collections import Counter
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import FAST_ARGON2_ENV
from tokenservice.v1 import token_service_pb2 as pb
from tokenservice.v1 import token_service_pb2_grpc as pb_grpc

TOKENSERVICE = Path(sys.executable).parent / "tokenservice"
GRACE_SECONDS = 5
DELAY_SECONDS = 1
WORKERS = 400  # enough that group-committed writes are still running at SIGTERM
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


# --- helpers ------------------------------------------------------------------------------------


def free_port() -> int:
    """A port nobody listens on right now (bind port 0, read it, let it go)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def service_env(db_path: Path, port: int, **settings: str) -> dict[str, str]:
    """This process's environment minus any TOKENSERVICE_* it had, plus the test's settings."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("TOKENSERVICE")}
    env.update(FAST_ARGON2_ENV)
    env.update(
        TOKENSERVICE_DATABASE_URL=f"sqlite+aiosqlite:///{db_path}",
        TOKENSERVICE_GRPC_ADDR=f"127.0.0.1:{port}",
        TOKENSERVICE_HTTP_ADDR="",  # no HTTP bridge unless a test asks for one
        TOKENSERVICE_PROVISION_DEMO="false",
        TOKENSERVICE_SHUTDOWN_GRACE_SECONDS=str(GRACE_SECONDS),
        TOKENSERVICE_SHUTDOWN_DELAY_SECONDS=str(DELAY_SECONDS),
    )
    env.update(settings)
    return env


async def cli(env: dict[str, str], *args: str) -> str:
    """Runs `tokenservice ARGS...` to completion; its stdout, or a failure naming stderr."""
    process = await asyncio.create_subprocess_exec(
        str(TOKENSERVICE),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, f"tokenservice {' '.join(args)}: {stderr.decode()}"
    return stdout.decode()


def text_of(path: Path) -> str:
    return path.read_text() if path.exists() else ""


async def wait_until_serving(
    target: str, process: asyncio.subprocess.Process, log: Path, within: float = 30
) -> None:
    """Polls grpc.health.v1 Check("") until SERVING; fails early if the process dies."""
    deadline = time.monotonic() + within
    async with grpc.aio.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while True:
            assert process.returncode is None, f"the server exited early:\n{text_of(log)}"
            try:
                answer = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                if answer.status == SERVING:
                    return
            except grpc.aio.AioRpcError as error:
                if error.code() not in (
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                ):
                    raise
            assert time.monotonic() < deadline, f"not SERVING after {within}s:\n{text_of(log)}"
            await asyncio.sleep(0.1)


async def start_serve(env: dict[str, str], logs: Path) -> asyncio.subprocess.Process:
    """`tokenservice serve`, its stdout and stderr going to files under `logs`."""
    with (logs / "stdout.txt").open("ab") as out, (logs / "stderr.txt").open("ab") as err:
        return await asyncio.create_subprocess_exec(
            str(TOKENSERVICE), "serve", env=env, stdout=out, stderr=err
        )


async def stop_process(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.kill()
        await process.wait()


# --- the test -----------------------------------------------------------------------------------


async def test_sigterm_drains_in_flight_calls_and_exits_cleanly(tmp_path: Path) -> None:
    port = free_port()
    env = service_env(tmp_path / "t.db", port)
    target = f"127.0.0.1:{port}"
    await cli(env, "tenant", "create", "shop")
    created = json.loads(
        await cli(env, "client", "create", "--tenant", "shop", "--kind", "storefront", "--json")
    )
    client_id = created["client_id"]

    process = await start_serve(env, tmp_path)
    try:
        await wait_until_serving(target, process, tmp_path / "stderr.txt")
        async with grpc.aio.insecure_channel(target) as channel:
            signalled_at = await _drain_under_load(channel, process, client_id)
        deadline = GRACE_SECONDS + 5 - (time.monotonic() - signalled_at)
        code = await asyncio.wait_for(process.wait(), timeout=max(deadline, 0.1))
    finally:
        await stop_process(process)

    stderr = text_of(tmp_path / "stderr.txt")
    assert code == 0, f"exit code {code}:\n{stderr}"
    assert "Traceback" not in stderr, stderr


async def _drain_under_load(
    channel: grpc.aio.Channel, process: asyncio.subprocess.Process, client_id: str
) -> float:
    """Sends SIGTERM under load and checks what callers see; returns when it was sent."""
    stub = pb_grpc.TokenServiceStub(channel)
    health = health_pb2_grpc.HealthStub(channel)
    request = pb.IssueTokenRequest(anonymous=pb.AnonymousGrant(tenant="shop", client_id=client_id))

    async def issue() -> grpc.StatusCode:
        try:
            response = await stub.IssueToken(request, timeout=GRACE_SECONDS + 5)
        except grpc.aio.AioRpcError as error:
            return error.code()
        assert response.access_token and response.session_id
        return grpc.StatusCode.OK

    # The Watch stream is opened, and reports SERVING, before the signal. It also stays open
    # (an in-flight call the server must wait for) until the checks below are done.
    watch = health.Watch(health_pb2.HealthCheckRequest(service=""))
    first = await asyncio.wait_for(watch.read(), timeout=5)
    assert first.status == SERVING

    # 400 concurrent calls: their writes queue on SQLite's single writer, so many of them are
    # still running when SIGTERM arrives. Calls the server has not yet accepted (still queued
    # inside gRPC) are not "in flight" for the application, so wait until all are accepted:
    # the server takes the calls of one method in arrival order, so once a later IssueToken
    # (one with no grant, refused at once without touching the store) has been answered, the
    # 50 before it have all been handed to the service.
    burst = [asyncio.create_task(issue()) for _ in range(WORKERS)]
    await asyncio.sleep(0.01)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.IssueToken(pb.IssueTokenRequest(), timeout=5)
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT, refused.value
    in_flight = sum(not call.done() for call in burst)
    process.send_signal(signal.SIGTERM)
    signalled_at = time.monotonic()

    update = await asyncio.wait_for(watch.read(), timeout=GRACE_SECONDS)
    assert update is not grpc.aio.EOF, "the Watch stream ended without saying NOT_SERVING"
    assert update.status == NOT_SERVING

    outcomes = await asyncio.wait_for(asyncio.gather(*burst), timeout=GRACE_SECONDS + 5)
    assert in_flight >= 10, f"only {in_flight} calls were in flight at SIGTERM: inconclusive"
    # Drained, not dropped: every call the server had accepted completed successfully.
    assert outcomes == [grpc.StatusCode.OK] * WORKERS, Counter(outcomes)

    # During the shutdown delay the server is NOT_SERVING but still answers, so that callers
    # whose balancer has not yet noticed lose nothing ...
    during_delay = await asyncio.gather(*(issue() for _ in range(5)))
    assert during_delay == [grpc.StatusCode.OK] * 5, during_delay
    # ... after it, while the server still drains (the Watch stream holds it open), new calls
    # are refused, and refused with UNAVAILABLE, the status a client retries elsewhere.
    await asyncio.sleep(max(0.0, signalled_at + DELAY_SECONDS + 0.3 - time.monotonic()))
    assert process.returncode is None, "the server did not wait for the open Watch stream"
    late = await asyncio.gather(*(issue() for _ in range(5)))
    assert late == [grpc.StatusCode.UNAVAILABLE] * 5, late
    watch.cancel()
    return signalled_at
