"""`tokenservice serve` at `ulimit -n 512` under a slowloris of 600 sockets that each send a
header byte every half second and reconnect when cut off (tests/support/slowloris.py, a
process of its own): the HTTP connection cap, fitted into the open-file limit at start,
refuses or evicts instead of running out of descriptors, so gRPC and an ordinary HTTP client
keep being answered, new HTTP connections get a clean 503 or are admitted by evicting a slow
one, and the log stays small (no "socket.accept() out of system resource" flood: before the
limits, this attack wrote about 10,000 tracebacks a second and neither protocol answered).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections import Counter
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import attack_process
from tests.support.processes import (
    TOKENSERVICE,
    free_port,
    service_env,
    stop_process,
    storefront_client,
    text_of,
    wait_until_serving,
)
from tests.support.raw_http import Streams, exchange
from tokenservice.v1 import token_service_pb2 as pb
from tokenservice.v1 import token_service_pb2_grpc as pb_grpc

OPEN_FILES = 512
ATTACKERS = 600
ATTACK_SECONDS = 4  # after every attacking socket has connected once
ROUND_SECONDS = 0.2  # the ordinary clients' pause between calls
MAX_STDERR_BYTES = 20_000
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n"


async def start_limited_serve(env: dict[str, str], logs: Path) -> asyncio.subprocess.Process:
    """`tokenservice serve` with RLIMIT_NOFILE 512 soft and hard (set, then exec'd)."""
    limit_then_exec = (
        "import os, resource, sys; "
        f"resource.setrlimit(resource.RLIMIT_NOFILE, ({OPEN_FILES}, {OPEN_FILES})); "
        "os.execv(sys.argv[1], sys.argv[1:])"
    )
    with (logs / "stdout.txt").open("ab") as out, (logs / "stderr.txt").open("ab") as err:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-c", limit_then_exec, str(TOKENSERVICE), "serve",
            env=env, stdout=out, stderr=err,
        )  # fmt: skip


def connection_events(metrics_text: str) -> dict[str, float]:
    return {
        sample.labels["event"]: sample.value
        for family in text_string_to_metric_families(metrics_text)
        for sample in family.samples
        if sample.name == "tokenservice_http_connection_events_total"
    }


async def ordinary_http(ordinary: Streams, stop: asyncio.Event) -> int:
    """Requests on one keep-alive connection, back to back with short pauses, as a busy back end
    does: the connection is never idle long enough to be evicted."""
    answered = 0
    while not stop.is_set():
        assert (await exchange(ordinary, HEALTHZ))[0] == 200
        answered += 1
        await asyncio.sleep(ROUND_SECONDS)
    return answered


async def ordinary_grpc(
    stub: pb_grpc.TokenServiceStub, grant: pb.IssueTokenRequest, stop: asyncio.Event
) -> int:
    answered = 0
    while not stop.is_set():
        token = (await stub.IssueToken(grant, timeout=10)).access_token
        seen = await stub.IntrospectToken(pb.IntrospectTokenRequest(token=token), timeout=10)
        assert seen.active
        answered += 1
        await asyncio.sleep(ROUND_SECONDS)
    return answered


async def newcomers(port: int, stop: asyncio.Event) -> Counter[int]:
    """New HTTP connections during the attack: each answered 200 (admitted by evicting a slow
    sender) or 503 with Retry-After, never left hanging or reset."""
    statuses: Counter[int] = Counter()
    request = HEALTHZ.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
    while not stop.is_set():
        async with asyncio.timeout(10):
            newcomer = await asyncio.open_connection("127.0.0.1", port)
        status, headers, _ = await exchange(newcomer, request)
        newcomer[1].close()
        assert status in (200, 503), status
        if status == 503:
            assert headers["retry-after"] == "1"
        statuses[status] += 1
        await asyncio.sleep(ROUND_SECONDS)
    return statuses


@pytest.mark.timeout(180)
@pytest.mark.slow  # a whole service in processes; make test-fast leaves it out
async def test_serve_at_512_open_files_keeps_answering_through_600_slow_sockets(
    tmp_path: Path,
) -> None:
    attack_process.own_open_files(2 * ATTACKERS)
    grpc_port, http_port = free_port(), free_port()
    env = service_env(tmp_path / "t.db", grpc_port, TOKENSERVICE_HTTP_ADDR=f"127.0.0.1:{http_port}")
    client_id = await storefront_client(env, "shop")
    grant = pb.IssueTokenRequest(anonymous=pb.AnonymousGrant(tenant="shop", client_id=client_id))
    process = await start_limited_serve(env, tmp_path)
    stderr_path = tmp_path / "stderr.txt"
    attack: asyncio.subprocess.Process | None = None
    try:
        target = f"127.0.0.1:{grpc_port}"
        await wait_until_serving(target, process, stderr_path)
        # An ordinary HTTP client's keep-alive connection, opened before the attack.
        ordinary = await asyncio.open_connection("127.0.0.1", http_port)
        assert (await exchange(ordinary, HEALTHZ))[0] == 200
        async with grpc.aio.insecure_channel(target) as channel:
            stub = pb_grpc.TokenServiceStub(channel)
            assert (await stub.IssueToken(grant, timeout=10)).access_token

            attack = await attack_process.start(
                "tests.support.slowloris", str(http_port), str(ATTACKERS)
            )
            stop = asyncio.Event()
            clients = asyncio.gather(
                ordinary_http(ordinary, stop),
                ordinary_grpc(stub, grant, stop),
                newcomers(http_port, stop),
            )
            # Until every attacking socket has connected at least once, and a while after.
            while await attack_process.tick(attack) < ATTACKERS:
                assert not clients.done(), clients
            for _ in range(ATTACK_SECONDS * 2):
                await attack_process.tick(attack)
            stop.set()
            http_answered, grpc_answered, admitted = await clients
            outcomes = (await attack_process.finish(attack)).outcomes

        # On a connection of its own: the ordinary one went idle when its client stopped, and
        # at the cap an idle keep-alive connection is what the server evicts first
        # (http_bridge/connection_limits.py), however long the attack took to wind down.
        ordinary[1].close()
        after = await asyncio.open_connection("127.0.0.1", http_port)
        status, _, metrics_body = await exchange(
            after, b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n"
        )
        after[1].close()
        assert status == 200
        events = connection_events(metrics_body.decode())
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), timeout=30)
    finally:
        if attack is not None and attack.returncode is None:
            attack.kill()
            await attack.wait()
        await stop_process(process)
    stderr = text_of(stderr_path)
    print(
        f"HTTP {http_answered} and gRPC {grpc_answered} ordinary calls answered, newcomers "
        f"{dict(admitted)}, attack {outcomes}, events {events}"
    )
    assert http_answered >= ATTACK_SECONDS and grpc_answered >= ATTACK_SECONDS
    assert events["evicted_head"] + events["refused"] > 0, events  # the cap was reached
    assert "out of system resource" not in stderr
    assert stderr.count("accept() failed") <= 2  # should the budget fall short: one per 10 s
    assert "Traceback" not in stderr, stderr[-5000:]
    assert "HTTP connections capped at" in stderr and "raise `ulimit -n`" in stderr
    assert len(stderr.encode()) < MAX_STDERR_BYTES, stderr[-3000:]
    assert code == 0, stderr[-3000:]
