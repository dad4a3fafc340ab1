"""`tokenservice serve` (what `make run` starts) serves gRPC and the HTTP bridge from one process
over one store: a token issued over HTTP introspects over gRPC and the other way round. On
SIGTERM /readyz turns 503 while the HTTP requests already being served are still held, those
requests complete, and the process exits 0 within the grace period."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from pathlib import Path

import grpc
import httpx

from tests.support.http_clients import async_http_client
from tests.support.processes import (
    DELAY_SECONDS,
    GRACE_SECONDS,
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

BURST = 40
IN_FLIGHT_GAUGE = "tokenservice_http_requests_in_flight"


async def until_in_flight(http: httpx.AsyncClient, count: int, within: float = 30) -> None:
    """Waits until the bridge serves `count` requests besides the /metrics scrape asking."""
    deadline = time.monotonic() + within
    while True:
        text = (await http.get("/metrics")).text
        line = next(line for line in text.splitlines() if line.startswith(IN_FLIGHT_GAUGE))
        serving = float(line.split()[-1]) - 1
        if serving >= count:
            return
        assert time.monotonic() < deadline, f"only {serving:.0f} of {count} requests arrived"
        await asyncio.sleep(0.02)


async def until_not_ready(http: httpx.AsyncClient, within: float = 30) -> None:
    """Waits until /readyz answers 503."""
    deadline = time.monotonic() + within
    while (ready := await http.get("/readyz")).status_code != 503:
        assert ready.status_code == 200, ready.text
        assert time.monotonic() < deadline, "/readyz never turned 503 after SIGTERM"
        await asyncio.sleep(0.02)


async def test_one_process_serves_both_protocols_and_drains_http(tmp_path: Path) -> None:
    grpc_port, http_port = free_port(), free_port()
    db_path = tmp_path / "t.db"
    env = service_env(
        db_path,
        grpc_port,
        TOKENSERVICE_HTTP_ADDR=f"127.0.0.1:{http_port}",
        TOKENSERVICE_SQLITE_BUSY_TIMEOUT_MS="600000",  # writes wait for the test's lock
    )
    login_params = {"tenant": "shop", "client_id": await storefront_client(env, "shop")}
    target = f"127.0.0.1:{grpc_port}"
    process = await start_serve(env, tmp_path)
    try:
        await wait_until_serving(target, process, tmp_path / "stderr.txt")
        async with (
            async_http_client(base_url=f"http://127.0.0.1:{http_port}", timeout=20) as http,
            grpc.aio.insecure_channel(target) as channel,
        ):
            stub = pb_grpc.TokenServiceStub(channel)
            assert (await http.get("/readyz")).status_code == 200

            # HTTP-issued token, seen over gRPC; gRPC-issued token, validated over HTTP.
            over_http = (
                await http.get("/customerlogin/auth/anonymous/login", params=login_params)
            ).json()
            seen = await stub.IntrospectToken(
                pb.IntrospectTokenRequest(token=over_http["access_token"])
            )
            assert seen.active and seen.session_id == over_http["sessionId"]
            over_grpc = await stub.IssueToken(
                pb.IssueTokenRequest(anonymous=pb.AnonymousGrant(**login_params))
            )
            validated = await http.get(
                "/customer/shop/validateauthtoken",
                headers={"Authorization": f"Bearer {over_grpc.access_token}"},
            )
            assert validated.status_code == 200
            assert validated.json()["sessionId"] == over_grpc.session_id

            # A burst of HTTP logins, SIGTERM while they run: every one completes. The test
            # holds the database's write lock, so none can finish before it lets them; the
            # signal waits until the bridge reports every one of them being served.
            async def login() -> int:
                response = await http.get(
                    "/customerlogin/auth/anonymous/login", params=login_params
                )
                return response.status_code

            with writes_held(db_path) as release:
                burst = [asyncio.create_task(login()) for _ in range(BURST)]
                await until_in_flight(http, BURST)
                process.send_signal(signal.SIGTERM)
                signalled_at = time.monotonic()
                # The signal is handled on the service's loop, so the first /readyz may still
                # be answered before it: wait for the 503, which must come while every request
                # of the burst is still held, whatever the machine's speed.
                await until_not_ready(http)
                assert not any(call.done() for call in burst)
                release()
                outcomes = await asyncio.wait_for(asyncio.gather(*burst), GRACE_SECONDS + 5)
            assert outcomes == [200] * BURST, Counter(outcomes)
            assert time.monotonic() - signalled_at < DELAY_SECONDS + GRACE_SECONDS
        code = await asyncio.wait_for(process.wait(), timeout=GRACE_SECONDS + 5)
    finally:
        await stop_process(process)
    stderr = text_of(tmp_path / "stderr.txt")
    assert code == 0, f"exit code {code}:\n{stderr}"
    assert "Traceback" not in stderr, stderr
