"""What the process-level tests share: the real `tokenservice` executable run against a SQLite
file (provisioning with the CLI, `tokenservice serve`, waiting until it serves, stopping it), a
free port (tests/support/ports.py), and holding the file's write lock so that calls are
provably in flight on any machine, however fast or loaded."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from server import admin
from server.records import ClientKind
from server.settings import Settings
from server.startup import open_core
from tests.support.defaults import FAST_ARGON2_ENV
from tests.support.ports import free_port as free_port  # re-exported for the process tests

TOKENSERVICE = Path(sys.executable).parent / "tokenservice"
# The shutdown timings every process-level test starts the service with (service_env).
GRACE_SECONDS = 5
DELAY_SECONDS = 1
SERVING = health_pb2.HealthCheckResponse.SERVING


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


async def storefront_client(env: dict[str, str], tenant: str) -> str:
    """A tenant with a storefront client, written into the database `env` names in this
    process as `tokenservice tenant create` and `client create --kind storefront` write them
    (the commands have tests of their own: a process each is not what the callers test); the
    client id."""
    core = await open_core(Settings.from_env(env))
    try:
        await admin.create_tenant(core, tenant)
        client, _ = await admin.create_client(core, tenant, ClientKind.STOREFRONT, ())
    finally:
        await core.close()
    return client.client_id


async def cli(env: dict[str, str], *args: str, stdin: str = "") -> str:
    """Runs `tokenservice ARGS...` to completion, `stdin` on its standard input; its stdout, or
    a failure naming stderr."""
    process = await asyncio.create_subprocess_exec(
        str(TOKENSERVICE),
        *args,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(stdin.encode()), timeout=30)
    assert process.returncode == 0, f"tokenservice {' '.join(args)}: {stderr.decode()}"
    return stdout.decode()


async def serve_refused(env: dict[str, str], *args: str) -> tuple[str, str]:
    """Runs `tokenservice serve ARGS...`, which must refuse to start: exit 2 (a setting is
    wrong). Its stdout and stderr, for the caller to check what it said."""
    process = await asyncio.create_subprocess_exec(
        str(TOKENSERVICE),
        "serve",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 2, f"exit {process.returncode}: {stderr.decode()}"
    return stdout.decode(), stderr.decode()


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


@contextlib.contextmanager
def writes_held(db_path: Path) -> Iterator[Callable[[], None]]:
    """Holds the SQLite file's write lock from this process (BEGIN IMMEDIATE on a connection of
    its own), so that every call of the server that writes waits on it, provably in flight, for
    as long as the test likes (the server's busy timeout is set far longer). Yields the release;
    leaving the block releases too."""
    conn = sqlite3.connect(db_path, isolation_level=None, timeout=30)
    conn.execute("BEGIN IMMEDIATE")

    def release() -> None:
        if conn.in_transaction:
            conn.execute("ROLLBACK")

    try:
        yield release
    finally:
        release()
        conn.close()
