"""The standalone bridge as its own process: `tokenservice serve` runs gRPC only (no HTTP), and
`tokenservice bridge --grpc-target` serves the documented HTTP endpoints in front of it, with no
database of its own. A storefront's whole journey and a back end's service token go through it;
when the gRPC server goes away the bridge says so (`/readyz` 503, token requests 503
`temporarily_unavailable`, never a 500 or a credentials error); and SIGTERM stops it cleanly
(exit 0).

Both run as real subprocesses on free loopback ports; the database is provisioned beforehand
in this process, as the `tokenservice` CLI would write it. Their stderr goes to files that every
failure message includes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import aconnect_sse

from server import admin
from server.records import ClientKind
from server.settings import Settings
from server.startup import open_core
from tests.support.http_clients import async_http_client
from tests.support.processes import (
    TOKENSERVICE,
    free_port,
    service_env,
    start_serve,
    stop_process,
    text_of,
    wait_until_serving,
)

TENANT = "standalone"
EMAIL = "ann@standalone.example"
PASSWORD = "a long enough password for ann"
STOP_WITHIN_SECONDS = 10
HEAVY_LIBRARIES = ("sqlalchemy", "alembic", "argon2")  # what a bridge with no database never needs


class Processes:
    """The two subprocesses and where their output went, for failure messages."""

    def __init__(self, root: Path) -> None:
        self.server_logs = root / "server"
        self.bridge_logs = root / "bridge"
        self.server_logs.mkdir()
        self.bridge_logs.mkdir()

    def output(self) -> str:
        parts = []
        for name, logs in (("server", self.server_logs), ("bridge", self.bridge_logs)):
            for stream in ("stdout", "stderr"):
                parts.append(f"--- {name} {stream}:\n{text_of(logs / f'{stream}.txt')}")
        return "\n".join(parts)


async def provision(env: dict[str, str]) -> dict[str, str]:
    """The tenant, its clients and its customer, written into the database `env` names as the
    CLI writes them (a process per command is not what these tests are about; test_cli.py
    runs the commands)."""
    core = await open_core(Settings.from_env(env))
    try:
        await admin.create_tenant(core, TENANT)
        storefront, _ = await admin.create_client(core, TENANT, ClientKind.STOREFRONT, ())
        # Its access tokens expire within a second or two: the server's clock is the real one.
        short_lived, _ = await admin.create_client(
            core, TENANT, ClientKind.STOREFRONT, (), access_token_ttl=1
        )
        service, secret = await admin.create_client(
            core, TENANT, ClientKind.SERVICE, ("catalog.read", "orders.read")
        )
        customer = await admin.create_customer(
            core, TENANT, EMAIL, PASSWORD, ("customer.read",), ("le-1", "le-2")
        )
    finally:
        await core.close()
    assert secret is not None
    return {
        "storefront_id": storefront.client_id,
        "short_lived_storefront_id": short_lived.client_id,
        "service_id": service.client_id,
        "service_secret": secret,
        "customer_id": customer.id,
    }


async def start_bridge(
    env: dict[str, str], grpc_target: str, http_addr: str, logs: Path
) -> asyncio.subprocess.Process:
    with (logs / "stdout.txt").open("ab") as out, (logs / "stderr.txt").open("ab") as err:
        return await asyncio.create_subprocess_exec(
            str(TOKENSERVICE),
            "bridge",
            "--grpc-target",
            grpc_target,
            "--http-addr",
            http_addr,
            env=env,
            stdout=out,
            stderr=err,
        )


async def wait_until_ready(
    http: httpx.AsyncClient, process: asyncio.subprocess.Process, processes: Processes
) -> None:
    """Polls /readyz until 200; fails early if the bridge exits."""
    deadline = time.monotonic() + 30
    while True:
        assert process.returncode is None, f"the bridge exited early:\n{processes.output()}"
        try:
            if (await http.get("/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            pass  # not listening yet
        assert time.monotonic() < deadline, f"bridge not ready after 30s:\n{processes.output()}"
        await asyncio.sleep(0.1)


async def terminate(process: asyncio.subprocess.Process, processes: Processes) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return await asyncio.wait_for(process.wait(), timeout=STOP_WITHIN_SECONDS)
    except TimeoutError:
        raise AssertionError(
            f"no exit {STOP_WITHIN_SECONDS}s after SIGTERM:\n{processes.output()}"
        ) from None


def ok(response: httpx.Response, processes: Processes, status: int = 200) -> Any:
    assert response.status_code == status, (
        f"{response.request.method} {response.request.url.path}: {response.status_code} "
        f"{response.text}\n{processes.output()}"
    )
    return response.json() if response.content else None


def basic(client_id: str, secret: str) -> dict[str, str]:
    encoded = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


async def storefront_journey(
    http: httpx.AsyncClient, ids: dict[str, str], processes: Processes
) -> list[str]:
    """Anonymous login and refresh, customer login on the same session, validation, a refresh
    that switches the legal entity, logout; returns every token it saw."""
    anonymous = ok(
        await http.get(
            "/customerlogin/auth/anonymous/login",
            params={"tenant": TENANT, "client_id": ids["storefront_id"], "currency": "EUR"},
        ),
        processes,
    )
    session_id = anonymous["sessionId"]
    assert session_id and anonymous["scope"] == f"tenant={TENANT}"

    refreshed = ok(
        await http.get(
            "/customerlogin/auth/anonymous/refresh",
            params={
                "tenant": TENANT,
                "client_id": ids["storefront_id"],
                "refresh_token": anonymous["refresh_token"],
            },
        ),
        processes,
    )
    assert refreshed["sessionId"] == session_id
    assert refreshed["access_token"] != anonymous["access_token"]

    customer = ok(
        await http.post(
            f"/customer/{TENANT}/login",
            json={"email": EMAIL, "password": PASSWORD},
            headers={"Authorization": f"Bearer {refreshed['access_token']}"},
        ),
        processes,
    )
    assert customer["session_id"] == session_id  # the customer continues the visitor's session
    assert customer["saas_token"].count(".") == 2

    valid = ok(
        await http.get(
            f"/customer/{TENANT}/validateauthtoken",
            headers={"Authorization": f"Bearer {customer['access_token']}"},
        ),
        processes,
    )
    assert valid["email"] == EMAIL
    assert valid["sessionId"] == session_id

    switched = ok(
        await http.get(
            f"/customer/{TENANT}/refreshauthtoken",
            params={"refreshToken": customer["refresh_token"], "legalEntityId": "le-2"},
            headers={"Authorization": f"Bearer {customer['access_token']}"},
        ),
        processes,
    )
    assert switched["session_id"] == session_id
    assert switched["access_token"] != customer["access_token"]
    valid = ok(
        await http.get(
            f"/customer/{TENANT}/validateauthtoken",
            headers={"Authorization": f"Bearer {switched['access_token']}"},
        ),
        processes,
    )
    assert valid["legalEntityId"] == "le-2"
    assert valid["email"] == EMAIL

    bearer = {"Authorization": f"Bearer {switched['access_token']}"}
    logout = await http.get(f"/customer/{TENANT}/logout", headers=bearer)
    assert logout.status_code == 204, f"{logout.text}\n{processes.output()}"
    assert logout.content == b""
    gone = await http.get(f"/customer/{TENANT}/validateauthtoken", headers=bearer)
    assert gone.status_code == 401, f"{gone.text}\n{processes.output()}"
    assert gone.json()["type"] == "invalid_token"
    assert gone.json()["fault"]["detail"]["errorcode"] == "oauth.v2.InvalidAccessToken"

    return [
        anonymous["access_token"],
        anonymous["refresh_token"],
        refreshed["access_token"],
        refreshed["refresh_token"],
        customer["access_token"],
        customer["refresh_token"],
        customer["saas_token"],
        switched["access_token"],
        switched["refresh_token"],
        switched["saas_token"],
    ]


async def expired_bearer_answers(
    http: httpx.AsyncClient, ids: dict[str, str], processes: Processes
) -> list[str]:
    """An anonymous token of the short-lived client, once it has expired, is refused as expired
    by validate, customer login and logout: the cause crossed gRPC from the server to the
    bridge process. Waits for the expiry by asking, never by a fixed sleep."""
    anonymous = ok(
        await http.get(
            "/customerlogin/auth/anonymous/login",
            params={"tenant": TENANT, "client_id": ids["short_lived_storefront_id"]},
        ),
        processes,
    )
    bearer = {"Authorization": f"Bearer {anonymous['access_token']}"}
    validate = f"/customer/{TENANT}/validateauthtoken"
    deadline = time.monotonic() + 30
    while (answer := await http.get(validate, headers=bearer)).status_code == 200:
        assert time.monotonic() < deadline, f"never expired:\n{processes.output()}"
        await asyncio.sleep(0.05)
    refusals = [
        answer,
        await http.post(
            f"/customer/{TENANT}/login", json={"email": EMAIL, "password": PASSWORD}, headers=bearer
        ),
        await http.get(f"/customer/{TENANT}/logout", headers=bearer),
    ]
    for refused in refusals:
        where = f"{refused.request.url.path}: {refused.text}\n{processes.output()}"
        assert refused.status_code == 401, where
        body = refused.json()
        assert body["type"] == "invalid_token", where
        assert body["fault"] == {
            "faultstring": "Access Token expired",
            "detail": {"errorcode": "keymanagement.service.access_token_expired"},
        }, where
    return [anonymous["access_token"], anonymous["refresh_token"]]


async def service_token_round_trip(
    http: httpx.AsyncClient, ids: dict[str, str], processes: Processes
) -> str:
    issued = ok(
        await http.post(
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": ids["service_id"],
                "client_secret": ids["service_secret"],
            },
        ),
        processes,
    )
    assert issued["refresh_token"] == ""
    assert issued["scope"] == f"catalog.read orders.read tenant={TENANT}"
    seen = ok(
        await http.post(
            "/oauth/introspect",
            data={"token": issued["access_token"]},
            headers=basic(ids["service_id"], ids["service_secret"]),
        ),
        processes,
    )
    assert seen["active"] is True
    assert seen["kind"] == "service"
    assert seen["tenant"] == TENANT
    assert seen["client_id"] == ids["service_id"]
    assert seen["scope"] == issued["scope"]
    return str(issued["access_token"])


@dataclasses.dataclass
class Pair:
    """A provisioned `serve` (gRPC only) and a `tokenservice bridge` in front of it, ready."""

    ids: dict[str, str]
    processes: Processes
    server: asyncio.subprocess.Process
    bridge: asyncio.subprocess.Process
    http: httpx.AsyncClient


@contextlib.asynccontextmanager
async def server_and_bridge(tmp_path: Path, **bridge_settings: str) -> AsyncIterator[Pair]:
    """Both processes on free ports, the bridge's database pointed nowhere usable (to prove it
    opens none), `bridge_settings` added to its environment; both stopped at the end."""
    grpc_port, http_port = free_port(), free_port()
    grpc_target = f"127.0.0.1:{grpc_port}"
    server_env = service_env(
        tmp_path / "t.db",
        grpc_port,
        TOKENSERVICE_HTTP_ADDR="",  # gRPC only: HTTP comes from the separate bridge
        TOKENSERVICE_SHUTDOWN_DELAY_SECONDS="0.2",
    )
    bridge_env = service_env(tmp_path / "absent" / "never.db", grpc_port, **bridge_settings)
    ids = await provision(server_env)
    processes = Processes(tmp_path)
    server = await start_serve(server_env, processes.server_logs)
    bridge: asyncio.subprocess.Process | None = None
    try:
        await wait_until_serving(grpc_target, server, processes.server_logs / "stderr.txt")
        bridge = await start_bridge(
            bridge_env, grpc_target, f"127.0.0.1:{http_port}", processes.bridge_logs
        )
        async with async_http_client(base_url=f"http://127.0.0.1:{http_port}", timeout=15) as http:
            await wait_until_ready(http, bridge, processes)
            yield Pair(ids, processes, server, bridge, http)
    finally:
        await stop_process(server)
        if bridge is not None:
            await stop_process(bridge)
    assert "Traceback" not in text_of(processes.bridge_logs / "stderr.txt"), processes.output()
    assert "Traceback" not in text_of(processes.server_logs / "stderr.txt"), processes.output()


async def test_standalone_bridge_in_front_of_a_grpc_server(tmp_path: Path) -> None:
    async with server_and_bridge(
        tmp_path, TOKENSERVICE_SHUTDOWN_DELAY_SECONDS="0.2", TOKENSERVICE_LOG_LEVEL="DEBUG"
    ) as pair:
        http, ids, processes = pair.http, pair.ids, pair.processes
        secrets = await storefront_journey(http, ids, processes)
        secrets.append(await service_token_round_trip(http, ids, processes))
        secrets += await expired_bearer_answers(http, ids, processes)

        # The gRPC server goes away: the bridge is not ready, and says "retry later".
        assert await terminate(pair.server, processes) == 0, processes.output()
        ready = await http.get("/readyz")
        assert ready.status_code == 503, f"{ready.text}\n{processes.output()}"
        assert ready.json() == {"status": "unavailable"}
        refused = await http.post(
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": ids["service_id"],
                "client_secret": ids["service_secret"],
            },
        )
        assert refused.status_code == 503, f"{refused.text}\n{processes.output()}"
        assert refused.json()["error"] == "temporarily_unavailable"
        assert int(refused.headers["Retry-After"]) >= 1
        assert pair.bridge.returncode is None, processes.output()
        assert await terminate(pair.bridge, processes) == 0, processes.output()

    bridge_stderr = text_of(processes.bridge_logs / "stderr.txt")
    # The bridge logged every request (masked) and never a token, secret or password.
    assert '"GET /customerlogin/auth/anonymous/refresh?' in bridge_stderr, processes.output()
    assert "refresh_token=***" in bridge_stderr, processes.output()
    assert "refreshToken=***" in bridge_stderr, processes.output()
    assert 'auth="Bearer ***"' in bridge_stderr, processes.output()
    assert 'auth="Basic ***"' in bridge_stderr, processes.output()
    assert not (tmp_path / "absent").exists()  # the bridge opened no database
    output = processes.output()
    for index, value in enumerate([*secrets, ids["service_secret"], PASSWORD]):
        assert value not in output, f"secret #{index} appears in a process's output"


async def test_sigterm_ends_the_revocation_streams_instead_of_waiting_for_them(
    tmp_path: Path,
) -> None:
    """An open `GET /oauth/revocations` never ends by itself: on SIGTERM the bridge ends it
    (the client sees the stream end, as from a draining server) and exits within
    STOP_WITHIN_SECONDS, not after its 300 s grace period."""
    async with server_and_bridge(
        tmp_path, TOKENSERVICE_SHUTDOWN_DELAY_SECONDS="0", TOKENSERVICE_SHUTDOWN_GRACE_SECONDS="300"
    ) as pair:
        auth = httpx.BasicAuth(pair.ids["service_id"], pair.ids["service_secret"])
        async with aconnect_sse(pair.http, "GET", "/oauth/revocations", auth=auth) as source:
            events = source.aiter_sse()
            assert (await anext(events)).event == "reset", pair.processes.output()
            exited = asyncio.ensure_future(terminate(pair.bridge, pair.processes))
            try:
                async with asyncio.timeout(STOP_WITHIN_SECONDS):
                    rest = [event.event async for event in events]  # until it ends
            finally:
                code = await exited  # fails with the logs when the stream held the exit
            assert code == 0, pair.processes.output()
    assert set(rest) <= {"heartbeat"}, rest


async def test_the_standalone_bridge_applies_the_http_limits_from_its_settings(
    tmp_path: Path,
) -> None:
    """The same limits as `serve`: a slow head is cut off (408), too many headers are 431."""
    http_port = free_port()
    env = service_env(
        tmp_path / "absent" / "never.db",
        free_port(),  # no gRPC server: /healthz and the limits need none
        TOKENSERVICE_HTTP_HEADER_TIMEOUT_SECONDS="0.5",
        TOKENSERVICE_HTTP_MAX_HEADERS="10",
    )
    processes = Processes(tmp_path)
    bridge = await start_bridge(env, "127.0.0.1:1", f"127.0.0.1:{http_port}", processes.bridge_logs)
    try:
        async with async_http_client(base_url=f"http://127.0.0.1:{http_port}", timeout=15) as http:
            deadline = time.monotonic() + 30
            while True:
                assert bridge.returncode is None, processes.output()
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, processes.output()
                await asyncio.sleep(0.1)
            crowded = await http.get("/healthz", headers=[(f"x-{i}", "v") for i in range(10)])
            assert crowded.status_code == 431, processes.output()

        reader, writer = await asyncio.open_connection("127.0.0.1", http_port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: test\r\n")  # and nothing more
        async with asyncio.timeout(10):
            answer = await reader.read()  # until the bridge closes the connection
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        writer.close()
        assert await terminate(bridge, processes) == 0, processes.output()
    finally:
        await stop_process(bridge)
    assert "open-file limit" in text_of(processes.bridge_logs / "stderr.txt")


async def test_tokenservice_bridge_loads_no_database_or_password_library(tmp_path: Path) -> None:
    """The real `tokenservice bridge` process, from its start through answering requests to its
    exit on SIGTERM, with Python listing every module it imports (PYTHONPROFILEIMPORTTIME): no
    SQLAlchemy, Alembic or argon2, since every decision is the gRPC server's (none listens here:
    the answers are the 503s of a server that cannot be reached)."""
    http_port = free_port()
    env = service_env(
        tmp_path / "absent" / "never.db",
        free_port(),
        TOKENSERVICE_SHUTDOWN_DELAY_SECONDS="0.2",
        PYTHONPROFILEIMPORTTIME="1",
    )
    processes = Processes(tmp_path)
    grpc_target = f"127.0.0.1:{free_port()}"  # nobody listens there
    bridge = await start_bridge(env, grpc_target, f"127.0.0.1:{http_port}", processes.bridge_logs)
    try:
        async with async_http_client(base_url=f"http://127.0.0.1:{http_port}", timeout=30) as http:
            deadline = time.monotonic() + 30
            while True:
                assert bridge.returncode is None, f"the bridge exited early:\n{processes.output()}"
                try:
                    live = await http.get("/healthz")
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, f"not listening:\n{processes.output()}"
                    await asyncio.sleep(0.1)
            ok(live, processes)
            ok(await http.get("/readyz"), processes, 503)
            login = await http.get(
                "/customerlogin/auth/anonymous/login",
                params={"tenant": TENANT, "client_id": "any-client", "currency": "EUR"},
            )
            assert ok(login, processes, 503)["type"] == "temporarily_unavailable"
        assert await terminate(bridge, processes) == 0, processes.output()
    finally:
        await stop_process(bridge)
    profile = text_of(processes.bridge_logs / "stderr.txt").splitlines()
    imported = {
        line.rpartition("|")[2].strip() for line in profile if line.startswith("import time:")
    }
    assert {"http_bridge.app", "http_bridge.channel", "launcher.standalone_bridge"} <= imported
    heavy = sorted(name for name in imported if name.split(".")[0] in HEAVY_LIBRARIES)
    assert heavy == [], f"tokenservice bridge imported {heavy}"
