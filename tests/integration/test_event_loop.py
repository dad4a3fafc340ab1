"""`tokenservice serve` runs on uvloop unless TOKENSERVICE_EVENT_LOOP says asyncio
(launcher/event_loop.py), and serves both protocols on either; a value it does not know is
refused at start, exit 2, naming the setting. Every other process-level test runs the default,
so the whole of that suite runs the service on uvloop."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from tests.support.http_clients import async_http_client
from tests.support.processes import (
    free_port,
    serve_refused,
    service_env,
    start_serve,
    stop_process,
    storefront_client,
    text_of,
    wait_until_serving,
)
from tokenservice.v1 import token_service_pb2 as pb
from tokenservice.v1 import token_service_pb2_grpc as pb_grpc


@pytest.mark.parametrize(
    ("setting", "running"),
    [({}, "uvloop"), ({"TOKENSERVICE_EVENT_LOOP": "asyncio"}, "asyncio")],
    ids=["default", "asyncio"],
)
async def test_serve_runs_on_the_chosen_loop_and_serves_both_protocols(
    tmp_path: Path, setting: dict[str, str], running: str
) -> None:
    grpc_port, http_port = free_port(), free_port()
    env = service_env(
        tmp_path / "t.db", grpc_port, TOKENSERVICE_HTTP_ADDR=f"127.0.0.1:{http_port}", **setting
    )
    client_id = await storefront_client(env, "shop")
    process = await start_serve(env, tmp_path)
    try:
        target = f"127.0.0.1:{grpc_port}"
        await wait_until_serving(target, process, tmp_path / "stderr.txt")
        async with (
            grpc.aio.insecure_channel(target) as channel,
            async_http_client(base_url=f"http://127.0.0.1:{http_port}", timeout=20) as http,
        ):
            stub = pb_grpc.TokenServiceStub(channel)
            grant = pb.AnonymousGrant(tenant="shop", client_id=client_id)
            issued = await stub.IssueToken(pb.IssueTokenRequest(anonymous=grant), timeout=20)
            login = await http.get(
                "/customerlogin/auth/anonymous/login",
                params={"tenant": "shop", "client_id": client_id},
            )
            assert login.status_code == 200, login.text
            seen = await http.get(
                "/customer/shop/validateauthtoken",
                headers={"Authorization": f"Bearer {issued.access_token}"},
            )
            assert seen.status_code == 200, seen.text
            assert seen.json()["sessionId"] == issued.session_id
    finally:
        await stop_process(process)
    assert f"event loop {running}" in text_of(tmp_path / "stderr.txt")


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["one", "supervisor"])
async def test_an_unknown_loop_is_refused_at_start(tmp_path: Path, workers: list[str]) -> None:
    """The supervisor itself runs on asyncio (launcher/event_loop.py says why), so it checks the
    setting before it starts the first worker rather than leave each worker to fail."""
    env = service_env(tmp_path / "t.db", free_port(), TOKENSERVICE_EVENT_LOOP="tornado")
    _, message = await serve_refused(env, *workers)
    assert "TOKENSERVICE_EVENT_LOOP must be one of uvloop, asyncio" in message
    assert "Traceback" not in message
    assert "worker" not in message.lower()  # no worker was started, none died
    assert not (tmp_path / "t.db").exists()  # refused before anything was opened
