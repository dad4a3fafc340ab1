"""The janitor against the real server, on SQLite and PostgreSQL: once tokens expire (the
ManualClock moves), a sweep removes them and the sessions they kept alive, while a live session
keeps refreshing, with an expired access token of it as the bearer too. `tokenservice janitor
--json` in a subprocess reports what it removed, and `tokenservice serve` sweeps on its own every
TOKENSERVICE_JANITOR_INTERVAL_SECONDS and stops doing so cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import time
from pathlib import Path

import grpc
import pytest

from launcher import cli as launcher_cli
from server import janitor
from server.records import PurgeReport
from tests.support.defaults import TEST_SECRET
from tests.support.harness import Harness, Shop, error_reason
from tests.support.processes import (
    cli,
    free_port,
    service_env,
    start_serve,
    stop_process,
    text_of,
    wait_until_serving,
)
from tokenservice.v1 import token_service_pb2 as pb

HOUR = 3600
DAY = 86400


async def session_ids(harness: Harness) -> set[str]:
    return {row[0] for row in await harness.query("SELECT session_id FROM sessions")}


async def token_count(harness: Harness) -> int:
    return int((await harness.query("SELECT count(*) FROM tokens"))[0][0])


async def customer_refresh(
    harness: Harness, shop: Shop, refresh_token: str, access_token: str = ""
) -> pb.TokenResponse:
    return await harness.stub.RefreshToken(
        pb.RefreshTokenRequest(
            tenant=shop.tenant, refresh_token=refresh_token, access_token=access_token
        )
    )


async def test_a_sweep_removes_what_expired_and_live_sessions_keep_working(
    harness: Harness,
) -> None:
    shop = await harness.shop("acme")
    visitor = await harness.anonymous(shop)  # access 1 h, refresh 1 day
    login = await harness.customer(shop)  # access 4 h, refresh 1 day
    await harness.service(shop)  # 4 h, no session
    logout = await harness.anonymous(shop)
    await harness.stub.RevokeToken(pb.RevokeTokenRequest(token=logout.refresh_token))
    tokens_at_start = await token_count(harness)
    assert await session_ids(harness) == {
        visitor.session_id,
        login.session_id,
        logout.session_id,
    }

    # Five hours on: the service token and every access token have expired, no refresh token.
    harness.clock.advance(5 * HOUR)
    report = await janitor.sweep(harness.core)
    assert report == PurgeReport(tokens_removed=3, sessions_removed=1)  # service + logout's 2
    assert await session_ids(harness) == {visitor.session_id, login.session_id}
    assert await token_count(harness) == tokens_at_start - 3
    # The customer refreshes with its expired access token as the bearer: still accepted.
    refreshed = await customer_refresh(
        harness, shop, login.refresh_token, access_token=login.access_token
    )
    assert refreshed.session_id == login.session_id

    # A day after the start the visitor's refresh token has expired, the customer's new one
    # (issued at 5 h) has not: the visitor's session goes, the customer's stays whole.
    harness.clock.advance(DAY - 5 * HOUR)
    before = await token_count(harness)
    report = await janitor.sweep(harness.core)
    assert report.sessions_removed == 1
    assert await session_ids(harness) == {login.session_id}
    assert await token_count(harness) == before - report.tokens_removed
    # The live session refreshes on, its first (long expired) access token still the bearer.
    again = await customer_refresh(
        harness, shop, refreshed.refresh_token, access_token=login.access_token
    )
    assert again.session_id == login.session_id
    # A minute later a sweep keeps the refresh token that just rotated away (it has not
    # expired): presenting it again, after the grace window, is detected as reuse.
    harness.clock.advance(60)
    assert await janitor.sweep(harness.core) == PurgeReport(0, 0)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await customer_refresh(
            harness, shop, refreshed.refresh_token, access_token=again.access_token
        )
    assert error_reason(caught.value) == "invalid_grant"
    assert "already used" in (caught.value.details() or "")
    # Reuse revoked the session: the next sweep removes it with all its tokens.
    report = await janitor.sweep(harness.core)
    assert report.sessions_removed == 1
    assert await session_ids(harness) == set()
    assert await token_count(harness) == 0


async def test_a_session_refreshed_before_its_tokens_expire_is_never_swept(
    harness: Harness,
) -> None:
    shop = await harness.shop("acme")
    login = await harness.customer(shop)
    refresh_token, bearer = login.refresh_token, login.access_token
    for _ in range(3):  # each day: expired access token as bearer, then a sweep
        harness.clock.advance(DAY - HOUR)
        refreshed = await customer_refresh(harness, shop, refresh_token, access_token=bearer)
        refresh_token, bearer = refreshed.refresh_token, refreshed.access_token
        await janitor.sweep(harness.core)
        assert await session_ids(harness) == {login.session_id}
        assert (await harness.introspect(bearer)).active


async def test_cli_janitor_reports_what_it_removed(harness: Harness, tmp_path: Path) -> None:
    """The subprocess runs on the real clock: tokens issued two days in the past have expired."""
    shop = await harness.shop("acme")
    harness.clock.advance(-2 * DAY)
    await harness.anonymous(shop)
    await harness.service(shop)
    harness.clock.advance(2 * DAY)
    live = await harness.anonymous(shop)
    env = service_env(harness.db_path, free_port())
    if harness.database_kind == "postgres":
        env.update(
            TOKENSERVICE_DATABASE_URL=harness.database_url,
            TOKENSERVICE_SECRET_KEY=TEST_SECRET.decode(),
        )

    first = json.loads(await cli(env, "janitor", "--json", "--batch-size", "1"))
    assert first == {"tokens_removed": 3, "sessions_removed": 1}
    assert await session_ids(harness) == {live.session_id}
    assert await cli(env, "janitor") == "removed 0 tokens and 0 sessions\n"


@pytest.mark.parametrize("database_kind", ["sqlite"])
async def test_serve_sweeps_every_interval_and_stops_cleanly_on_sigterm(
    harness: Harness, tmp_path: Path
) -> None:
    """`tokenservice serve` over a SQLite file holding an expired service token (issued, with
    the harness's clock, two days in the past)."""
    shop = await harness.shop("acme")
    harness.clock.advance(-2 * DAY)
    await harness.service(shop)
    harness.clock.advance(2 * DAY)
    live = await harness.service(shop)
    assert await token_count(harness) == 2
    port = free_port()
    env = service_env(
        harness.db_path,
        port,
        TOKENSERVICE_JANITOR_INTERVAL_SECONDS="0.2",
        TOKENSERVICE_SHUTDOWN_DELAY_SECONDS="0",
    )
    log = tmp_path / "stderr.txt"
    process = await start_serve(env, tmp_path)
    try:
        await wait_until_serving(f"127.0.0.1:{port}", process, log)
        watch = LogWatch(log, process)
        await watch.until("janitor: removed 1 tokens and 0 sessions")
        await watch.until("janitor: removed 0 tokens and 0 sessions")  # and again
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), timeout=30)
    finally:
        await stop_process(process)
    stderr = text_of(log)
    assert code == 0, stderr
    assert "Traceback" not in stderr and "Task was destroyed" not in stderr, stderr
    assert stderr.rstrip().endswith("stopped"), stderr
    with sqlite3.connect(harness.db_path) as db:
        assert db.execute("SELECT count(*) FROM tokens").fetchone() == (1,)
    db.close()
    assert (await harness.introspect(live.access_token)).active


class LogWatch:
    """Follows a server's log file: `until(text)` returns once a line after the ones already
    matched ends with `text`."""

    def __init__(self, log: Path, process: asyncio.subprocess.Process) -> None:
        self.log = log
        self.process = process
        self.matched = 0

    async def until(self, text: str, within: float = 30) -> None:
        deadline = time.monotonic() + within
        while True:
            lines = text_of(self.log).splitlines()
            for index in range(self.matched, len(lines)):
                if lines[index].endswith(text):
                    self.matched = index + 1
                    return
            assert self.process.returncode is None, f"the server exited:\n{text_of(self.log)}"
            assert time.monotonic() < deadline, f"no {text!r} in {within}s:\n{text_of(self.log)}"
            await asyncio.sleep(0.05)


# --- the CLI command, in-process on a SQLite file -------------------------------------------------
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name, value in {
        "TOKENSERVICE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}",
        "TOKENSERVICE_PROVISION_DEMO": "false",
    }.items():
        monkeypatch.setenv(name, value)


def test_cli_janitor_prints_what_it_removed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_env(monkeypatch, tmp_path)
    assert launcher_cli.main(["janitor", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"tokens_removed": 0, "sessions_removed": 0}
    assert launcher_cli.main(["janitor", "--batch-size", "7"]) == 0
    assert capsys.readouterr().out == "removed 0 tokens and 0 sessions\n"


@pytest.mark.parametrize("size", ["0", "10001"])
def test_cli_janitor_refuses_a_batch_size_out_of_range(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    size: str,
) -> None:
    cli_env(monkeypatch, tmp_path)
    assert launcher_cli.main(["janitor", "--batch-size", size]) == launcher_cli.EXIT_ERROR
    assert capsys.readouterr().err == "error: batch_size must be between 1 and 10000\n"
