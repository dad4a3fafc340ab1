"""Several service processes on one database.

Two replicas (two `tokenservice serve` processes, one PostgreSQL database, one secret,
provisioned beforehand by the admin functions the CLI calls): a token issued by one is
introspected, refreshed and revoked by the other, over gRPC and over HTTP; a customer's
sessions ended on one (or by the CLI) are inactive on the other within the cache bound; a SaaS
token signed by one verifies with the other's JWKS; 100 simultaneous refreshes of one token
spread over both all succeed on one live session. `serve --workers 2`: two worker processes
(children of the parent) serve the same ports, SIGTERM to the parent stops them all with exit
0, a worker's death stops the rest with a non-zero exit, and on the embedded SQLite store it is
refused at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import math
import os
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import jwt
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from server import admin
from server.core import build_core
from server.records import ClientKind, KeyStatus
from server.startup import open_core
from server.store.factory import open_store
from server.tokens import KeyedDigest
from tests.support.defaults import TEST_SECRET
from tests.support.harness import harness_settings, lifetimes_apart
from tests.support.http_clients import async_http_client
from tests.support.ports import free_ports
from tests.support.processes import (
    DELAY_SECONDS,
    GRACE_SECONDS,
    TOKENSERVICE,
    cli,
    serve_refused,
    service_env,
    stop_process,
    text_of,
    wait_until_serving,
)
from tokenservice.v1 import token_service_pb2 as pb
from tokenservice.v1 import token_service_pb2_grpc as pb_grpc

TENANT = "shop"
EMAIL = "ann@shop.example"
PASSWORD = "correct horse battery staple"
ISSUER = "http://localhost:8080"  # the default TOKENSERVICE_ISSUER, the same on both replicas
REFRESHES_PER_REPLICA = 50
# A burst against `serve --workers 2`: fresh connections, so the kernel spreads them.
BURST_CONNECTIONS = 24
BURST_REQUESTS = 48
ANONYMOUS = pb.TokenKind.TOKEN_KIND_ANONYMOUS
CUSTOMER = pb.TokenKind.TOKEN_KIND_CUSTOMER
SERVICE = pb.TokenKind.TOKEN_KIND_SERVICE


# --- helpers ------------------------------------------------------------------------------------


@dataclasses.dataclass
class Provisioned:
    storefront_id: str
    service_id: str
    service_secret: str


# How long a replica may keep serving a token another replica revoked (its token cache).
CACHE_SECONDS = 1.0


def postgres_env(tmp_path: Path, url: str, grpc_port: int, http_port: int) -> dict[str, str]:
    return service_env(
        tmp_path / "unused.db",
        grpc_port,
        TOKENSERVICE_DATABASE_URL=url,
        TOKENSERVICE_SECRET_KEY=TEST_SECRET.decode(),
        TOKENSERVICE_HTTP_ADDR=f"127.0.0.1:{http_port}",
        TOKENSERVICE_TOKEN_CACHE_SECONDS=str(CACHE_SECONDS),
    )


async def within_cache_bound(inactive: Callable[[], Awaitable[bool]], what: str) -> None:
    """`inactive()` holds now or within CACHE_SECONDS of now (the revocation has committed).

    What is judged is when each check was *sent*, not when its answer came: every cache entry
    that could still say "active" was filled before the revocation committed, so it has expired
    for any request sent CACHE_SECONDS later, however long that request then takes on a busy
    machine. (Both processes read the same monotonic clock.)"""
    bound = time.monotonic() + CACHE_SECONDS + 0.05
    while True:
        sent = time.monotonic()
        if await inactive():
            return
        assert sent <= bound, f"{what}: still active when asked {sent - bound:.2f}s past the bound"
        await asyncio.sleep(0.05)


async def provision(postgres_url: str) -> Provisioned:
    """The tenant, a storefront client, a service client and a customer, made by the admin
    functions the CLI calls, in this process (the CLI has tests of its own; four CLI processes
    cost every test here four interpreter starts). No signing key: the replicas, starting
    together, create the one they share."""
    core = await open_core(harness_settings(postgres_url))
    try:
        await admin.create_tenant(core, TENANT)
        storefront, _ = await admin.create_client(core, TENANT, ClientKind.STOREFRONT, ())
        service, secret = await admin.create_client(
            core, TENANT, ClientKind.SERVICE, ("catalog.read", "orders.read")
        )
        await admin.create_customer(
            core, TENANT, EMAIL, PASSWORD, ("customer.read",), ("le-1", "le-2")
        )
        assert not await core.store.list_signing_keys()
    finally:
        await core.outbound.close()
        await core.store.close()
    assert secret is not None
    return Provisioned(
        storefront_id=storefront.client_id,
        service_id=service.client_id,
        service_secret=secret,
    )


async def start(env: dict[str, str], logs: Path, *args: str) -> asyncio.subprocess.Process:
    """`tokenservice serve ARGS...`, its stdout and stderr going to files under `logs`."""
    make_dir(logs)
    with (logs / "stdout.txt").open("ab") as out, (logs / "stderr.txt").open("ab") as err:
        return await asyncio.create_subprocess_exec(
            str(TOKENSERVICE), "serve", *args, env=env, stdout=out, stderr=err
        )


async def terminate(process: asyncio.subprocess.Process) -> int:
    """SIGTERM, then the exit code (waiting at most the drain time plus a margin)."""
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(process.wait(), timeout=DELAY_SECONDS + GRACE_SECONDS + 5)


def make_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)


async def query(url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    """Rows of `sql`, read on a connection of this test's own."""
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            return [tuple(row) for row in (await conn.execute(text(sql), params)).all()]
    finally:
        await engine.dispose()


def verify_saas(token: str, jwks: dict[str, Any]) -> dict[str, Any]:
    """What a relying party does: the key named by the header's kid, ES256 only."""
    kid = jwt.get_unverified_header(token)["kid"]
    keys = {member["kid"]: jwt.PyJWK(member) for member in jwks["keys"]}
    assert kid in keys, f"kid {kid} is not in this JWKS: {sorted(keys)}"
    return jwt.decode(token, key=keys[kid], algorithms=["ES256"], audience="saas", issuer=ISSUER)


def children_of(pid: int) -> dict[int, str]:
    """The live child processes of `pid` (from /proc) with their command lines."""
    children = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # it exited meanwhile
        # pid (comm) state ppid ...: comm may hold spaces and parentheses, so split after it.
        state, ppid = stat.rpartition(")")[2].split()[:2]
        if int(ppid) == pid and state != "Z":
            children[int(entry.name)] = cmdline.strip()
    return children


# --- two replicas -------------------------------------------------------------------------------


@dataclasses.dataclass
class Replica:
    name: str
    process: asyncio.subprocess.Process
    logs: Path
    stub: pb_grpc.TokenServiceStub
    http: httpx.AsyncClient

    async def introspect(self, token: str) -> pb.IntrospectTokenResponse:
        return await self.stub.IntrospectToken(pb.IntrospectTokenRequest(token=token))

    async def validate(self, token: str) -> httpx.Response:
        return await self.http.get(
            f"/customer/{TENANT}/validateauthtoken", headers={"Authorization": f"Bearer {token}"}
        )


@dataclasses.dataclass
class Replicas:
    a: Replica
    b: Replica
    clients: Provisioned
    postgres_url: str


@pytest.fixture
async def replicas(tmp_path: Path, postgres_url: str) -> AsyncIterator[Replicas]:
    """Two `tokenservice serve` processes on one freshly provisioned database, started at the
    same time (as an orchestrator starts replicas); stopped with SIGTERM afterwards, which must
    give exit 0 and no traceback."""
    ports = free_ports(4)
    envs = {
        "a": postgres_env(tmp_path, postgres_url, ports[0], ports[1]),
        "b": postgres_env(tmp_path, postgres_url, ports[2], ports[3]),
    }
    clients = await provision(postgres_url)
    processes = {name: await start(env, tmp_path / name) for name, env in envs.items()}
    try:
        async with contextlib.AsyncExitStack() as stack:
            built = []
            for name, env in envs.items():
                target = env["TOKENSERVICE_GRPC_ADDR"]
                await wait_until_serving(target, processes[name], tmp_path / name / "stderr.txt")
                channel = await stack.enter_async_context(grpc.aio.insecure_channel(target))
                http = await stack.enter_async_context(
                    async_http_client(
                        base_url=f"http://{env['TOKENSERVICE_HTTP_ADDR']}", timeout=30
                    )
                )
                stub = pb_grpc.TokenServiceStub(channel)
                built.append(Replica(name, processes[name], tmp_path / name, stub, http))
            yield Replicas(built[0], built[1], clients, postgres_url)
        codes = await asyncio.gather(*(terminate(process) for process in processes.values()))
    finally:
        for process in processes.values():
            await stop_process(process)
    for name, code in zip(processes, codes, strict=True):
        stderr = text_of(tmp_path / name / "stderr.txt")
        assert code == 0, f"replica {name} exited {code}:\n{stderr}"
        assert "Traceback" not in stderr, stderr


async def _inactive_on(replica: Replica, token: str) -> bool:
    return not (await replica.introspect(token)).active


def anonymous_grant(clients: Provisioned) -> pb.IssueTokenRequest:
    return pb.IssueTokenRequest(
        anonymous=pb.AnonymousGrant(tenant=TENANT, client_id=clients.storefront_id)
    )


@pytest.mark.postgres
async def test_grpc_tokens_of_one_replica_are_introspected_refreshed_and_revoked_by_the_other(
    replicas: Replicas,
) -> None:
    a, b, clients = replicas.a, replicas.b, replicas.clients

    # anonymous: issued on A, introspected and refreshed on B
    anonymous = await a.stub.IssueToken(anonymous_grant(clients))
    seen = await b.introspect(anonymous.access_token)
    assert seen.active and seen.kind == ANONYMOUS and seen.session_id == anonymous.session_id
    refreshed = await b.stub.RefreshToken(
        pb.RefreshTokenRequest(
            tenant=TENANT, client_id=clients.storefront_id, refresh_token=anonymous.refresh_token
        )
    )
    assert refreshed.session_id == anonymous.session_id
    assert refreshed.access_token != anonymous.access_token
    assert (await a.introspect(refreshed.access_token)).active

    # customer: logs in on B continuing that session, introspected and refreshed on A
    customer = await b.stub.IssueToken(
        pb.IssueTokenRequest(
            customer_password=pb.CustomerPasswordGrant(
                tenant=TENANT,
                email=EMAIL,
                password=PASSWORD,
                anonymous_token=refreshed.access_token,
            )
        )
    )
    assert customer.session_id == anonymous.session_id
    seen = await a.introspect(customer.access_token)
    assert seen.active and seen.kind == CUSTOMER and seen.email == EMAIL
    switched = await a.stub.RefreshToken(
        pb.RefreshTokenRequest(
            tenant=TENANT,
            refresh_token=customer.refresh_token,
            legal_entity_id="le-2",
            access_token=customer.access_token,
        )
    )
    assert switched.session_id == customer.session_id
    assert (await b.introspect(switched.access_token)).legal_entity_id == "le-2"

    # service: issued on A, introspected on B
    service = await a.stub.IssueToken(
        pb.IssueTokenRequest(
            client_credentials=pb.ClientCredentialsGrant(
                client_id=clients.service_id, client_secret=clients.service_secret
            )
        )
    )
    seen = await b.introspect(service.access_token)
    assert seen.active and seen.kind == SERVICE and seen.client_id == clients.service_id

    # revoked on B (the customer's refresh token ends the session): inactive on both
    ended = await b.stub.RevokeToken(pb.RevokeTokenRequest(token=switched.refresh_token))
    assert ended.revoked
    assert (await b.stub.RevokeToken(pb.RevokeTokenRequest(token=service.access_token))).revoked
    revoked = [customer.access_token, switched.access_token, switched.refresh_token]
    for token in (*revoked, service.access_token):
        # At once on B, which revoked; on A (which had introspected some of them, and caches
        # what it introspects) within the cache bound.
        assert not (await b.introspect(token)).active, token[:6]
        await within_cache_bound(functools.partial(_inactive_on, a, token), f"A, token {token[:6]}")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await a.stub.RefreshToken(
            pb.RefreshTokenRequest(
                tenant=TENANT,
                refresh_token=switched.refresh_token,
                access_token=switched.access_token,
            )
        )
    # The whole session is revoked: its access token is no bearer any more.
    assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED, refused.value


@pytest.mark.postgres
async def test_http_tokens_of_one_replica_are_validated_refreshed_and_revoked_by_the_other(
    replicas: Replicas,
) -> None:
    a, b, clients = replicas.a, replicas.b, replicas.clients
    storefront = {"tenant": TENANT, "client_id": clients.storefront_id}
    service_auth = {"client_id": clients.service_id, "client_secret": clients.service_secret}

    # anonymous: logged in on A, validated and refreshed on B
    login = await a.http.get("/customerlogin/auth/anonymous/login", params=storefront)
    assert login.status_code == 200, login.text
    anonymous = login.json()
    validated = await b.validate(anonymous["access_token"])
    assert validated.status_code == 200, validated.text
    assert validated.json()["sessionId"] == anonymous["sessionId"]
    refresh = await b.http.get(
        "/customerlogin/auth/anonymous/refresh",
        params={**storefront, "refresh_token": anonymous["refresh_token"]},
    )
    assert refresh.status_code == 200, refresh.text
    assert refresh.json()["sessionId"] == anonymous["sessionId"]

    # customer: logs in on B with the anonymous token of A, refreshes on A, validated on B
    login = await b.http.post(
        f"/customer/{TENANT}/login",
        json={"email": EMAIL, "password": PASSWORD},
        headers={"Authorization": f"Bearer {refresh.json()['access_token']}"},
    )
    assert login.status_code == 200, login.text
    customer = login.json()
    assert customer["session_id"] == anonymous["sessionId"]
    refresh = await a.http.get(
        f"/customer/{TENANT}/refreshauthtoken",
        params={"refreshToken": customer["refresh_token"], "legalEntityId": "le-2"},
        headers={"Authorization": f"Bearer {customer['access_token']}"},
    )
    assert refresh.status_code == 200, refresh.text
    switched = refresh.json()
    validated = await b.validate(switched["access_token"])
    assert validated.status_code == 200, validated.text
    assert validated.json()["email"] == EMAIL
    assert validated.json()["legalEntityId"] == "le-2"

    # service: token on A, introspected (RFC 7662) on B
    issued = await a.http.post(
        "/oauth/token", data={"grant_type": "client_credentials", **service_auth}
    )
    assert issued.status_code == 200, issued.text
    service_token = issued.json()["access_token"]
    introspected = await b.http.post(
        "/oauth/introspect", data={"token": service_token, **service_auth}
    )
    assert introspected.status_code == 200, introspected.text
    assert introspected.json()["active"] is True
    assert introspected.json()["kind"] == "service"

    # revoked: the customer logs out on B, the service token is revoked on A; inactive on both
    logout = await b.http.get(
        f"/customer/{TENANT}/logout",
        headers={"Authorization": f"Bearer {switched['access_token']}"},
    )
    assert logout.status_code == 204, logout.text
    revoked = await a.http.post("/oauth/revoke", data={"token": service_token, **service_auth})
    assert revoked.status_code == 200, revoked.text

    async def refused_by(replica: Replica, token: str) -> bool:
        return (await replica.validate(token)).status_code == 401

    async def service_inactive_on(replica: Replica) -> bool:
        answer = await replica.http.post(
            "/oauth/introspect", data={"token": service_token, **service_auth}
        )
        return bool(answer.json() == {"active": False})

    # At once where revoked (the customer's tokens on B, the service token on A), on the other
    # replica within the cache bound.
    for token in (customer["access_token"], switched["access_token"]):
        assert await refused_by(b, token)
        await within_cache_bound(functools.partial(refused_by, a, token), "A, customer token")
    assert await service_inactive_on(a)
    await within_cache_bound(lambda: service_inactive_on(b), "B, service token")
    refused = await a.http.get(
        f"/customer/{TENANT}/refreshauthtoken",
        params={"refreshToken": switched["refresh_token"]},
        headers={"Authorization": f"Bearer {switched['access_token']}"},
    )
    assert refused.status_code in (400, 401), refused.text


@pytest.mark.postgres
async def test_a_saas_token_signed_by_one_replica_verifies_with_the_jwks_of_the_other(
    replicas: Replicas,
) -> None:
    a, b, clients = replicas.a, replicas.b, replicas.clients
    jwks = {}
    for replica in (a, b):
        response = await replica.http.get("/.well-known/jwks.json")
        assert response.status_code == 200, response.text
        jwks[replica.name] = response.json()
        over_grpc = await replica.stub.GetJwks(pb.GetJwksRequest())
        assert {key.kid for key in over_grpc.keys} == {k["kid"] for k in jwks[replica.name]["keys"]}

    for signer, verifier in ((a, b), (b, a)):
        anonymous = await signer.stub.IssueToken(anonymous_grant(clients))
        customer = await signer.stub.IssueToken(
            pb.IssueTokenRequest(
                customer_password=pb.CustomerPasswordGrant(
                    tenant=TENANT,
                    email=EMAIL,
                    password=PASSWORD,
                    anonymous_token=anonymous.access_token,
                )
            )
        )
        claims = verify_saas(customer.saas_token, jwks[verifier.name])
        assert claims["sid"] == customer.session_id and claims["tenant"] == TENANT


@pytest.mark.postgres
async def test_a_hundred_simultaneous_refreshes_over_two_replicas_keep_one_session(
    replicas: Replicas,
) -> None:
    a, b, clients = replicas.a, replicas.b, replicas.clients
    first = await a.stub.IssueToken(anonymous_grant(clients))
    request = pb.RefreshTokenRequest(
        tenant=TENANT, client_id=clients.storefront_id, refresh_token=first.refresh_token
    )

    async def refresh(replica: Replica) -> pb.TokenResponse | grpc.StatusCode:
        try:
            return await replica.stub.RefreshToken(request, timeout=30)
        except grpc.aio.AioRpcError as error:
            return error.code()

    started = time.monotonic()
    results = await asyncio.gather(
        *(refresh(replica) for _ in range(REFRESHES_PER_REPLICA) for replica in (a, b))
    )
    elapsed = math.ceil(time.monotonic() - started)
    failures = Counter(r for r in results if isinstance(r, grpc.StatusCode))
    assert not failures, failures  # in particular no INTERNAL, UNKNOWN or UNAVAILABLE
    tokens = [r for r in results if isinstance(r, pb.TokenResponse)]
    assert len(tokens) == 2 * REFRESHES_PER_REPLICA
    assert {t.session_id for t in tokens} == {first.session_id}
    # One exchange, on whichever replica won: every caller, on either replica, is answered
    # with the one successor pair it saved.
    newest = min(tokens, key=lambda t: t.expires_in)
    assert all(lifetimes_apart(t, newest) in range(elapsed + 1) for t in tokens)

    # In the database: one session ever, live; the presented token rotated; the answer's
    # refresh token stored in that session, and no other.
    url = replicas.postgres_url
    assert await query(url, "SELECT session_id, revoked_at FROM sessions") == [
        (first.session_id, None)
    ]
    [(rotated_at, revoked_at)] = await query(
        url,
        "SELECT rotated_at, revoked_at FROM tokens WHERE digest = :digest",
        digest=KeyedDigest(TEST_SECRET).token(first.refresh_token),
    )
    assert rotated_at is not None and revoked_at is None
    stored = await query(
        url,
        "SELECT digest FROM tokens WHERE session_id = :sid AND use = 'refresh'",
        sid=first.session_id,
    )
    assert sorted(digest for (digest,) in stored) == sorted(
        KeyedDigest(TEST_SECRET).token(t) for t in (first.refresh_token, tokens[0].refresh_token)
    )

    # The family lives on: the successor refreshes on A, and its retry on B gets A's answer.
    follow = [
        await replica.stub.RefreshToken(
            pb.RefreshTokenRequest(
                tenant=TENANT,
                client_id=clients.storefront_id,
                refresh_token=tokens[0].refresh_token,
            )
        )
        for replica in (a, b)
    ]
    assert follow[0].session_id == first.session_id
    assert lifetimes_apart(follow[0], follow[1]) in (0, 1)


async def customer_session(replica: Replica, clients: Provisioned) -> pb.TokenResponse:
    """A new customer session, logged in on `replica`."""
    visitor = await replica.stub.IssueToken(anonymous_grant(clients))
    return await replica.stub.IssueToken(
        pb.IssueTokenRequest(
            customer_password=pb.CustomerPasswordGrant(
                tenant=TENANT, email=EMAIL, password=PASSWORD, anonymous_token=visitor.access_token
            )
        )
    )


@pytest.mark.postgres
async def test_ending_a_customers_sessions_reaches_the_other_replica_within_the_cache_bound(
    replicas: Replicas, tmp_path: Path
) -> None:
    """Ended on one replica (over HTTP and over gRPC): inactive there at once, on the other
    within TOKENSERVICE_TOKEN_CACHE_SECONDS, although both had cached every token. Ended by the
    CLI (a third process, caching nothing): on both within the bound."""
    a, b, clients = replicas.a, replicas.b, replicas.clients
    here, there = await customer_session(a, clients), await customer_session(a, clients)
    elsewhere = await customer_session(b, clients)
    entity = await customer_session(b, clients)
    entity = await b.stub.RefreshToken(
        pb.RefreshTokenRequest(
            tenant=TENANT,
            refresh_token=entity.refresh_token,
            legal_entity_id="le-2",
            access_token=entity.access_token,
        )
    )
    sessions = (here, there, elsewhere, entity)
    for replica in (a, b):
        for session in sessions:
            assert (await replica.introspect(session.access_token)).active  # cached on both

    # The customer ends one session on B, over HTTP.
    ended = await b.http.delete(
        f"/customer/{TENANT}/me/sessions/{there.session_id}",
        headers={"Authorization": f"Bearer {here.access_token}"},
    )
    assert ended.status_code == 204, ended.text
    assert not (await b.introspect(there.access_token)).active
    await within_cache_bound(lambda: _inactive_on(a, there.access_token), "A, one session")

    # An admin's CLI ends the legal entity's sessions: no replica hears of it but by the bound.
    env = postgres_env(tmp_path, replicas.postgres_url, *free_ports(2))
    out = await cli(env, "legal-entity", "end-sessions", "--tenant", TENANT, "le-2", "--json")
    assert json.loads(out) == {"ended_sessions": 1}
    for replica in (a, b):
        await within_cache_bound(
            functools.partial(_inactive_on, replica, entity.access_token),
            f"{replica.name}, the legal entity's session",
        )

    # The customer logs out everywhere else on A, over gRPC.
    everywhere_else = await a.stub.EndOwnSessions(
        pb.EndOwnSessionsRequest(tenant=TENANT, bearer_token=here.access_token, keep_current=True)
    )
    assert everywhere_else.ended_count == 1
    assert not (await a.introspect(elsewhere.access_token)).active
    await within_cache_bound(lambda: _inactive_on(b, elsewhere.access_token), "B, all but one")
    for replica in (a, b):
        assert (await replica.introspect(here.access_token)).active
    listed = await b.stub.ListOwnSessions(
        pb.ListOwnSessionsRequest(tenant=TENANT, bearer_token=here.access_token)
    )
    assert [(s.session_id, s.current) for s in listed.sessions] == [(here.session_id, True)]

    # And the CLI ends the last one.
    out = await cli(env, "customer", "end-sessions", "--tenant", TENANT, "--email", EMAIL)
    assert out.strip() == "ended 1 sessions"
    for replica in (a, b):
        await within_cache_bound(
            functools.partial(_inactive_on, replica, here.access_token),
            f"{replica.name}, everywhere",
        )


@pytest.mark.postgres
async def test_replicas_starting_together_create_one_signing_key(postgres_url: str) -> None:
    """What every replica does at start (`ensure_active_key`), by two cores over two connection
    pools at once, on a database with no signing key yet."""
    settings = harness_settings(postgres_url)
    stores = [await open_store(settings, migrate=False) for _ in range(2)]
    try:
        for store in stores:
            await store.list_signing_keys()  # connected, as a replica is by then
        cores = [build_core(settings, store) for store in stores]
        await asyncio.gather(*(core.keys.ensure_active_key() for core in cores))
        keys = await stores[0].list_signing_keys()
        assert [key.status for key in keys] == [KeyStatus.ACTIVE], [(k.kid, k.status) for k in keys]
    finally:
        for store in stores:
            await store.close()


# --- serve --workers N --------------------------------------------------------------------------


async def wait_for_workers(process: asyncio.subprocess.Process, log: Path, count: int) -> list[int]:
    """The pids of the parent's `count` worker children, once each logged that it serves HTTP."""
    deadline = time.monotonic() + 30
    while True:
        assert process.returncode is None, f"the server exited early:\n{text_of(log)}"
        workers = [pid for pid, cmd in children_of(process.pid).items() if "--worker-index" in cmd]
        serving = text_of(log)
        ready = all(f"[worker {k}] tokenservice tokenservice: HTTP on" in serving for k in (1, 2))
        if len(workers) == count and ready:
            return sorted(workers)
        assert time.monotonic() < deadline, f"workers {workers} not ready:\n{serving}"
        await asyncio.sleep(0.1)


def process_exists(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def kill_leftovers(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


async def burst(grpc_target: str, http_base: str, clients: Provisioned) -> Counter[str]:
    """BURST_REQUESTS anonymous logins over gRPC on BURST_CONNECTIONS connections of their own,
    and as many over HTTP, each on a fresh connection; every token introspected over gRPC.
    Returns the count of each outcome."""
    options = [("grpc.use_local_subchannel_pool", 1)]  # a connection per channel
    channels = [
        grpc.aio.insecure_channel(grpc_target, options=options) for _ in range(BURST_CONNECTIONS)
    ]
    fresh = httpx.Limits(max_keepalive_connections=0)
    try:
        async with async_http_client(base_url=http_base, timeout=30, limits=fresh) as http:

            async def over_grpc(index: int) -> tuple[str, str]:
                stub = pb_grpc.TokenServiceStub(channels[index % BURST_CONNECTIONS])
                try:
                    issued = await stub.IssueToken(anonymous_grant(clients), timeout=30)
                except grpc.aio.AioRpcError as error:
                    return f"grpc {error.code().name}", ""
                return "grpc OK", issued.access_token

            async def over_http(_: int) -> tuple[str, str]:
                response = await http.get(
                    "/customerlogin/auth/anonymous/login",
                    params={"tenant": TENANT, "client_id": clients.storefront_id},
                )
                token = response.json().get("access_token", "") if response.is_success else ""
                return f"http {response.status_code}", token

            results = await asyncio.gather(
                *(call(i) for i in range(BURST_REQUESTS) for call in (over_grpc, over_http))
            )
        stub = pb_grpc.TokenServiceStub(channels[0])
        tokens = [token for _, token in results if token]
        assert len(set(tokens)) == len(tokens)
        seen = await asyncio.gather(
            *(stub.IntrospectToken(pb.IntrospectTokenRequest(token=t)) for t in tokens)
        )
        outcomes = Counter(outcome for outcome, _ in results)
        outcomes["active"] = sum(answer.active for answer in seen)
        return outcomes
    finally:
        for channel in channels:
            await channel.close()


def http_logins_by_worker(log: Path) -> Counter[str]:
    lines = text_of(log).splitlines()
    return Counter(
        line.split("[", 1)[1].split("]", 1)[0]
        for line in lines
        if "tokenservice.http.access" in line and "/customerlogin/auth/anonymous/login" in line
    )


@pytest.mark.postgres
async def test_two_workers_share_the_ports_and_all_stop_on_sigterm(
    tmp_path: Path, postgres_url: str
) -> None:
    grpc_port, http_port = free_ports(2)
    env = postgres_env(tmp_path, postgres_url, grpc_port, http_port)
    clients = await provision(postgres_url)
    log = tmp_path / "stderr.txt"
    process = await start(env, tmp_path, "--workers", "2")
    workers: list[int] = []
    try:
        await wait_until_serving(f"127.0.0.1:{grpc_port}", process, log)
        workers = await wait_for_workers(process, log, 2)

        outcomes = await burst(f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{http_port}", clients)
        assert outcomes == {
            "grpc OK": BURST_REQUESTS,
            "http 200": BURST_REQUESTS,
            "active": 2 * BURST_REQUESTS,
        }, outcomes
        # Both workers took connections on the shared HTTP port (48 fresh connections all
        # landing on one of two listeners: odds 2**-47).
        by_worker = http_logins_by_worker(log)
        assert set(by_worker) == {"worker 1", "worker 2"}, by_worker
        assert sum(by_worker.values()) == BURST_REQUESTS, by_worker

        code = await terminate(process)
    finally:
        await stop_process(process)
        kill_leftovers(workers)
    stderr = text_of(log)
    assert code == 0, f"exit code {code}:\n{stderr}"
    assert "Traceback" not in stderr, stderr
    for index, pid in enumerate(workers, start=1):
        assert not process_exists(pid), f"worker pid {pid} outlived the parent"
        assert f"[worker {index}] tokenservice shutting down: draining" in stderr, stderr
    assert stderr.count(") stopped\n") == 2, stderr
    assert "all 2 workers exited cleanly" in stderr, stderr


@pytest.mark.postgres
async def test_a_worker_that_dies_stops_the_other_and_the_parent_exits_non_zero(
    tmp_path: Path, postgres_url: str
) -> None:
    grpc_port, http_port = free_ports(2)
    env = postgres_env(tmp_path, postgres_url, grpc_port, http_port)
    log = tmp_path / "stderr.txt"
    process = await start(env, tmp_path, "--workers", "2")
    workers: list[int] = []
    try:
        await wait_until_serving(f"127.0.0.1:{grpc_port}", process, log)
        workers = await wait_for_workers(process, log, 2)
        crashed, survivor = workers
        os.kill(crashed, signal.SIGKILL)
        code = await asyncio.wait_for(process.wait(), timeout=DELAY_SECONDS + GRACE_SECONDS + 5)
    finally:
        await stop_process(process)
        kill_leftovers(workers)
    stderr = text_of(log)
    assert code == 1, f"exit code {code}:\n{stderr}"
    assert "Traceback" not in stderr, stderr
    assert f"(pid {crashed}) exited unexpectedly with signal SIGKILL" in stderr, stderr
    assert f"(pid {survivor}) stopped" in stderr, stderr
    assert not process_exists(survivor), "the other worker outlived the parent"


@pytest.mark.parametrize(
    ("args", "settings"), [(("--workers", "2"), {}), ((), {"TOKENSERVICE_WORKERS": "2"})]
)
async def test_two_workers_on_sqlite_are_refused_at_start(
    tmp_path: Path, args: tuple[str, ...], settings: dict[str, str]
) -> None:
    grpc_port, http_port = free_ports(2)
    env = service_env(
        tmp_path / "t.db", grpc_port, TOKENSERVICE_HTTP_ADDR=f"127.0.0.1:{http_port}", **settings
    )
    stdout, stderr = await serve_refused(env, *args)
    [line] = stderr.splitlines()
    assert line.startswith("error: 2 workers need PostgreSQL"), line
    assert "SQLite store serves one process" in line, line
    assert stdout == ""
    assert not (tmp_path / "t.db").exists(), "it migrated the database before refusing"
