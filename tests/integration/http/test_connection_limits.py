"""The HTTP bridge's connection limits (http_bridge/connection_limits.py) against the real
bridge app served by uvicorn on port 0, probed with raw sockets that do what an attacker does:
send a head or a body one byte at a time, send heads too large or with too many headers,
hold connections idle, fill the connection cap.

Deadlines are tiny (0.5 s) so the tests are quick; every wait is for a condition (an answer,
end of file), bounded by WITHIN seconds, never a sleep standing in for one. The only sleep
waits out the minimum age a connection must reach before it may be evicted, which is a
duration by definition."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from http_bridge.app import build_app
from http_bridge.connection_limits import HttpLimits, LimitedHttpToolsProtocol
from http_bridge.server import RunningHttp, start_http
from launcher.in_process import InProcessBackend
from server.settings import Settings
from tests.support.harness import Harness
from tests.support.http_clients import async_http_client
from tests.support.raw_http import WITHIN, parse, read_response, read_to_eof

pytestmark = pytest.mark.parametrize("database_kind", ["sqlite"])  # about HTTP, not the store

LIMITS = HttpLimits(
    max_connections=50,
    header_timeout_seconds=0.5,
    body_timeout_seconds=0.5,
    max_header_bytes=16384,
    max_headers=100,
    keepalive_timeout_seconds=0.5,
    min_evictable_age_seconds=0.2,
)
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: test\r\n"
Reader = asyncio.StreamReader
Writer = asyncio.StreamWriter


@contextlib.asynccontextmanager
async def serving(harness: Harness, limits: HttpLimits = LIMITS) -> AsyncIterator[RunningHttp]:
    app = build_app(InProcessBackend(harness.core), harness.core.settings)
    running = await start_http(app, "127.0.0.1:0", grace_seconds=1, limits=limits)
    try:
        yield running
    finally:
        await running.stop()


async def connect(running: RunningHttp) -> tuple[Reader, Writer]:
    return await asyncio.open_connection("127.0.0.1", running.port)


async def trickle(writer: Writer, data: bytes, every: float = 0.1) -> None:
    """Sends `data` one byte every `every` seconds until done or the server hangs up."""
    with contextlib.suppress(ConnectionError):
        for byte in data:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(every)


async def events(running: RunningHttp) -> dict[str, float]:
    """tokenservice_http_connection_events_total by event, scraped over a new connection."""
    async with async_http_client(base_url=f"http://127.0.0.1:{running.port}") as http:
        text = (await http.get("/metrics")).text
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "tokenservice_http_connection_events_total":
                counts[sample.labels["event"]] = sample.value
    return counts


def moved(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {
        event: after[event] - before.get(event, 0)
        for event in after
        if after[event] != before.get(event, 0)
    }


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WITHIN
    while not condition():
        assert time.monotonic() < deadline, f"not within {WITHIN} s: {what}"
        await asyncio.sleep(0.01)


def protocol_of(running: RunningHttp) -> type[LimitedHttpToolsProtocol]:
    cls = running.server.config.http_protocol_class
    assert issubclass(cls, LimitedHttpToolsProtocol)
    return cls


def connections(running: RunningHttp) -> int:
    return len(running.server.server_state.connections)


@pytest.fixture(autouse=True)
def no_traceback_or_error_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.INFO)
    yield
    records = caplog.get_records("setup") + caplog.get_records("call")
    bad = [r for r in records if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, [r.getMessage() for r in bad]


# --- deadlines -----------------------------------------------------------------------------------


async def test_slow_header_sender_gets_408_and_is_closed_while_others_are_served(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    async with serving(harness) as running:
        before = await events(running)
        senders = [await connect(running) for _ in range(5)]
        endless_head = HEALTHZ + b"x-padding: " + b"a" * 1000
        trickles = [asyncio.create_task(trickle(w, endless_head)) for _, w in senders]
        async with async_http_client(base_url=f"http://127.0.0.1:{running.port}") as http:
            assert (await http.get("/healthz")).status_code == 200

        for reader, writer in senders:
            status, headers, body = parse(await read_to_eof(reader))
            assert status == 408
            assert headers["connection"] == "close"
            assert json.loads(body) == {
                "error": "invalid_request",
                "error_description": "request headers not received within 0.5 s",
            }
            writer.close()
        for task in trickles:
            await task
        assert moved(before, await events(running)) == {"header_timeout": 5}
    summaries = [r for r in caplog.records if "HTTP connection limits" in r.getMessage()]
    assert 1 <= len(summaries) <= 2, [r.getMessage() for r in summaries]  # never one per socket


async def test_slow_body_sender_is_cut_off(harness: Harness) -> None:
    async with serving(harness) as running:
        before = await events(running)
        reader, writer = await connect(running)
        writer.write(
            b"POST /oauth/token HTTP/1.1\r\nHost: test\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n"
        )
        sending = asyncio.create_task(trickle(writer, b"grant_type=client_credentials&" * 40))
        status, _, body = parse(await read_to_eof(reader))
        assert status == 408
        assert json.loads(body)["error_description"] == "request body not received within 0.5 s"
        writer.close()
        await sending
        assert moved(before, await events(running)) == {"body_timeout": 1}


async def test_idle_keepalive_connection_is_closed_after_the_keepalive_timeout(
    harness: Harness,
) -> None:
    async with serving(harness) as running:
        reader, writer = await connect(running)
        for _ in range(3):  # a connection in use stays open
            writer.write(HEALTHZ + b"\r\n")
            status, _, _ = await read_response(reader)
            assert status == 200
        assert await read_to_eof(reader) == b""  # idle, it is closed
        writer.close()


async def test_the_keepalive_timeout_is_the_setting_not_uvicorns_default(harness: Harness) -> None:
    app = build_app(InProcessBackend(harness.core), Settings())
    running = await start_http(app, "127.0.0.1:0", grace_seconds=1)
    try:
        assert running.server.config.timeout_keep_alive == 75
        assert protocol_of(running).limits == HttpLimits.from_settings(Settings())
    finally:
        await running.stop()


# --- head size and header count ------------------------------------------------------------------


async def test_a_one_mib_header_is_431_and_the_answer_does_not_echo_it(harness: Harness) -> None:
    async with (
        serving(harness) as running,
        async_http_client(base_url=f"http://127.0.0.1:{running.port}", timeout=WITHIN) as http,
    ):
        before = await events(running)
        response = await http.get("/healthz", headers={"x-big": "b" * (1024 * 1024)})
        assert response.status_code == 431
        assert response.headers["connection"] == "close"
        assert response.json() == {
            "error": "invalid_request",
            "error_description": "request headers larger than 16384 bytes",
        }
        assert moved(before, await events(running)) == {"header_too_large": 1}


async def test_ten_thousand_headers_are_431(harness: Harness) -> None:
    async with (
        serving(harness) as running,
        async_http_client(base_url=f"http://127.0.0.1:{running.port}", timeout=WITHIN) as http,
    ):
        before = await events(running)
        headers = [(f"x-h{i}", "v") for i in range(10_000)]
        response = await http.get("/healthz", headers=headers)
        assert response.status_code == 431
        assert response.json()["error_description"] == "more than 100 headers"
        assert moved(before, await events(running)) == {"too_many_headers": 1}


def head_of(size: int, count: int) -> bytes:
    """A GET /healthz head whose URL plus header names and values are exactly `size` bytes, in
    exactly `count` header lines."""
    url = b"/healthz"
    names_values = [(b"host", b"test")] + [(b"x-%d" % i, b"v") for i in range(count - 2)]
    used = len(url) + sum(len(n) + len(v) for n, v in names_values) + len(b"x-last")
    names_values.append((b"x-last", b"p" * (size - used)))
    lines = b"".join(n + b": " + v + b"\r\n" for n, v in names_values)
    return b"GET " + url + b" HTTP/1.1\r\n" + lines + b"\r\n"


@pytest.mark.parametrize("piece", [None, 1000], ids=["one packet", "in pieces"])
async def test_the_limits_are_exact_and_the_same_however_the_head_arrives(
    harness: Harness, piece: int | None
) -> None:
    async def status_of(head: bytes) -> int:
        reader, writer = await connect(running)
        for start in range(0, len(head), piece or len(head)):
            writer.write(head[start : start + (piece or len(head))])
            await writer.drain()
            await asyncio.sleep(0.01 if piece else 0)  # separate reads on the server
        status, _, _ = await read_response(reader)
        writer.close()
        return status

    async with serving(harness) as running:
        assert await status_of(head_of(16384, 100)) == 200
        assert await status_of(head_of(16385, 100)) == 431
        assert await status_of(head_of(16384, 101)) == 431


async def test_a_64_mib_header_is_refused_long_before_it_is_sent(harness: Harness) -> None:
    async def stream_header(running: RunningHttp) -> tuple[int, bytes]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", running.port))
        reader, writer = await asyncio.open_connection(sock=sock)
        answer = asyncio.create_task(read_to_eof(reader))
        writer.write(HEALTHZ + b"x-huge: ")
        chunk, sent = b"h" * 65536, 0
        with contextlib.suppress(ConnectionError):
            while sent < 64 * 1024 * 1024:
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
        writer.close()
        return sent, await answer

    async with serving(harness) as running:
        before = await events(running)
        results = await asyncio.gather(*(stream_header(running) for _ in range(4)))
        for sent, answer in results:
            assert sent < 16 * 1024 * 1024, f"the server read {sent} bytes of one header"
            assert parse(answer)[0] == 431
        assert moved(before, await events(running)) == {"header_too_large": 4}


# --- the connection cap --------------------------------------------------------------------------


async def test_at_the_cap_the_oldest_slow_header_sender_is_evicted_for_a_new_connection(
    harness: Harness,
) -> None:
    limits = HttpLimits(
        max_connections=2, header_timeout_seconds=WITHIN * 2, min_evictable_age_seconds=0.2
    )
    async with serving(harness, limits) as running:
        before = await events(running)
        old_reader, old_writer = await connect(running)
        old_writer.write(HEALTHZ)
        await wait_until(lambda: connections(running) == 1, "the old sender is connected")
        young_reader, young_writer = await connect(running)
        young_writer.write(HEALTHZ)
        await wait_until(lambda: connections(running) == 2, "the young sender is connected")
        await asyncio.sleep(limits.min_evictable_age_seconds)  # both are old enough now

        new_reader, new_writer = await connect(running)
        new_writer.write(HEALTHZ + b"Connection: close\r\n\r\n")
        assert (await read_response(new_reader))[0] == 200
        evicted = await read_to_eof(old_reader)
        assert parse(evicted)[0] == 408
        young_writer.write(b"\r\n")  # the young one was left alone: it completes its request
        assert (await read_response(young_reader))[0] == 200
        for writer in (old_writer, young_writer, new_writer):
            writer.close()
        await wait_until(lambda: connections(running) == 0, "the test's connections closed")
        assert moved(before, await events(running)) == {"evicted_head": 1}


async def test_when_every_connection_is_serving_a_new_one_gets_503_with_retry_after(
    harness: Harness,
) -> None:
    limits = HttpLimits(max_connections=2, body_timeout_seconds=WITHIN * 2)
    async with serving(harness, limits) as running:
        before = await events(running)
        busy: list[Writer] = []
        for _ in range(2):  # each sends its head and part of its body: being served
            _, writer = await connect(running)
            writer.write(
                b"POST /oauth/token HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n\r\ngrant_type="
            )
            busy.append(writer)
        table = protocol_of(running).table
        await wait_until(
            lambda: connections(running) == 2 and not table.heads and not table.idle,
            "both connections are serving a request",
        )

        reader, writer = await connect(running)
        writer.write(HEALTHZ + b"\r\n")
        status, headers, body = parse(await read_to_eof(reader))
        assert status == 503
        assert headers["retry-after"] == "1"
        assert headers["connection"] == "close"
        assert json.loads(body)["error"] == "temporarily_unavailable"
        for w in (*busy, writer):
            w.close()
        await wait_until(lambda: connections(running) == 0, "the test's connections closed")
        assert moved(before, await events(running)) == {"refused": 1}


async def test_a_fresh_connection_is_not_evicted_before_the_minimum_age(harness: Harness) -> None:
    limits = HttpLimits(max_connections=1, min_evictable_age_seconds=WITHIN * 10)
    async with serving(harness, limits) as running:
        first_reader, first_writer = await connect(running)
        await wait_until(lambda: connections(running) == 1, "the first connection is in")
        refused = []
        for _ in range(5):
            reader, writer = await connect(running)
            writer.write(HEALTHZ + b"\r\n")
            assert parse(await read_to_eof(reader))[0] == 503
            refused.append(writer)
            # A refused connection that has not closed yet counts, but only one at a time.
            assert connections(running) <= limits.max_connections + 1
        first_writer.write(HEALTHZ + b"\r\n")  # the first one, head not yet sent, was kept
        assert (await read_response(first_reader))[0] == 200
        for w in (first_writer, *refused):
            w.close()
