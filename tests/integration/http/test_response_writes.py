"""One socket write per response (http_bridge/response_writes.py), counted on the real asyncio
transports of the bridge served by uvicorn on port 0 and called by httpx: every answer, a
token, an error, a HEAD, leaves in a single transport write, where the same server with the
joining turned off takes two. A response whose body waits (a stream) still sends its head at
once, and a held head is written before a close and dropped with an abort."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from http_bridge.app import build_app
from http_bridge.connection_limits import HttpLimits
from http_bridge.response_writes import HeadWithBody
from http_bridge.server import RunningHttp, start_http
from launcher.in_process import InProcessBackend
from tests.support.harness import Harness
from tests.support.http_clients import async_http_client
from tests.support.raw_http import WITHIN

Transport: Any = asyncio.selector_events._SelectorSocketTransport  # type: ignore[attr-defined]


@dataclasses.dataclass
class Writes:
    count: int = 0


@contextlib.contextmanager
def writes_from_port(monkeypatch: pytest.MonkeyPatch, port_of: list[int]) -> Iterator[Writes]:
    """Counts the real transport writes whose socket's local port is the server's: what the
    server sent, not what the client did."""
    counted = Writes()
    write = Transport.write

    def counting_write(self: Any, data: bytes) -> None:
        local = self.get_extra_info("sockname")
        if port_of and local and local[1] == port_of[0]:
            counted.count += 1
        write(self, data)

    monkeypatch.setattr(Transport, "write", counting_write)
    yield counted


@contextlib.asynccontextmanager
async def serving(app: Any, one_write: bool) -> AsyncIterator[RunningHttp]:
    running = await start_http(
        app,
        "127.0.0.1:0",
        grace_seconds=1,
        limits=HttpLimits(),
        implementation="limited" if one_write else "limited_split",
    )
    try:
        yield running
    finally:
        await running.stop()


@pytest.mark.parametrize("database_kind", ["sqlite"])  # about HTTP, not the store
@pytest.mark.parametrize("one_write", [True, False], ids=["joined", "off"])
async def test_every_answer_is_one_write(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, one_write: bool
) -> None:
    shop = await harness.shop("shop")
    port: list[int] = []
    app = build_app(InProcessBackend(harness.core), harness.core.settings)
    with writes_from_port(monkeypatch, port) as counted:
        async with serving(app, one_write) as running:
            port.append(running.port)
            base = f"http://127.0.0.1:{running.port}"
            # One connection per request, so each request's writes are counted on their own.
            async with async_http_client(base_url=base, timeout=WITHIN) as http:
                login = {"tenant": shop.tenant, "client_id": shop.storefront_id}
                for method, path, params, form, status, unjoined in (
                    ("GET", "/customerlogin/auth/anonymous/login", login, None, 200, 2),
                    ("POST", "/oauth/introspect", None, {"token": "x"}, 401, 2),
                    ("GET", "/no/such/route", None, None, 404, 2),
                    ("HEAD", "/healthz", None, None, 200, 1),  # a head and no body either way
                ):
                    before = counted.count
                    answer = await http.request(
                        method, path, params=params, data=form, headers={"Connection": "close"}
                    )
                    assert answer.status_code == status, (path, answer.text)
                    if status == 200 and method == "GET":
                        assert answer.json()["access_token"]
                    writes = 1 if one_write else unjoined
                    assert counted.count - before == writes, (method, path)


async def test_a_stream_sends_its_head_before_its_body() -> None:
    """The held head goes out at the end of the event loop's turn, not with the first chunk."""
    release = asyncio.Event()

    async def chunks() -> AsyncIterator[bytes]:
        await release.wait()
        yield b"data: one\n\n"

    async def feed(_: Request) -> StreamingResponse:
        return StreamingResponse(chunks(), media_type="text/event-stream")

    app = Starlette(routes=[Route("/feed", feed)])
    async with (
        serving(app, one_write=True) as running,
        async_http_client(base_url=f"http://127.0.0.1:{running.port}", timeout=WITHIN) as http,
        http.stream("GET", "/feed") as answer,
    ):
        # The headers are here while the body has not been sent.
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        assert not release.is_set()
        release.set()
        body = b"".join([chunk async for chunk in answer.aiter_bytes()])
    assert body == b"data: one\n\n"


@dataclasses.dataclass
class Pair:
    wrapped: HeadWithBody
    transport: asyncio.Transport
    peer: socket.socket

    def read_all(self) -> bytes:
        self.peer.settimeout(WITHIN)
        data = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := self.peer.recv(65536):
                data += chunk
        return data


@contextlib.asynccontextmanager
async def wrapped_pair() -> AsyncIterator[Pair]:
    loop = asyncio.get_running_loop()
    ours, peer = socket.socketpair()
    transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
    try:
        yield Pair(HeadWithBody(transport, loop), transport, peer)
    finally:
        transport.abort()
        peer.close()


HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


async def test_a_held_head_is_written_before_a_close() -> None:
    async with wrapped_pair() as pair:
        pair.wrapped.write(HEAD)
        pair.wrapped.close()
        await asyncio.sleep(0)  # the transport closes on the next turn
        assert await asyncio.to_thread(pair.read_all) == HEAD


async def test_an_abort_drops_a_held_head() -> None:
    async with wrapped_pair() as pair:
        pair.wrapped.write(HEAD)
        pair.wrapped.abort()
        await asyncio.sleep(0)
        assert await asyncio.to_thread(pair.read_all) == b""


async def test_writes_that_are_not_a_head_pass_in_order() -> None:
    async with wrapped_pair() as pair:
        pair.wrapped.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # held, then joined
        pair.wrapped.write(HEAD)  # joined to the 100, not held again
        pair.wrapped.write(b"ok")
        assert pair.wrapped.get_write_buffer_size() == pair.transport.get_write_buffer_size()
        pair.wrapped.write_eof()
        assert (
            await asyncio.to_thread(pair.read_all)
            == b"HTTP/1.1 100 Continue\r\n\r\n" + HEAD + b"ok"
        )
