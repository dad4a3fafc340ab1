"""A serving process's token cache and another process's commits on the same SQLite file
(server/store/runners.py, `watch_other_writers`): the CLI revoking a token while `serve` runs
empties the server's token cache within the watch interval; the server's own commits, which
drop exactly what they change, do not empty it."""

from __future__ import annotations

from pathlib import Path

from server.records import TenantRecord, TokenUse
from server.store.cached import CachedStore
from server.store.factory import open_store
from server.store.runners import SqliteRunner
from server.store.sql import SqlStore
from tests.support.databases import copy_sqlite_template, sqlite_url
from tests.support.harness import harness_settings
from tests.support.records import NOW, session, token
from tests.support.waiting import eventually


def runner_of(store: CachedStore) -> SqliteRunner:
    inner = store.inner
    assert isinstance(inner, SqlStore) and isinstance(inner._runner, SqliteRunner)
    return inner._runner


async def test_a_commit_by_another_process_empties_the_cache_and_our_own_do_not(
    tmp_path: Path, sqlite_template: Path
) -> None:
    db = tmp_path / "tokens.db"
    copy_sqlite_template(sqlite_template, db)
    server = await open_store(harness_settings(sqlite_url(db), token_cache_seconds=3600.0))
    assert isinstance(server, CachedStore)
    runner = runner_of(server)
    cli = await SqlStore.open(sqlite_url(db))  # another process's connections to the file
    try:
        await server.create_tenant(TenantRecord("demo", NOW))
        await server.save_tokens([token("t1", use=TokenUse.ACCESS), token("t2")], session())
        for digest in ("t1", "t2"):
            await server.find_token(digest)

        await server.revoke_token("t2", NOW)  # our own: drops t2 alone
        looks = runner.looks
        await eventually(lambda: runner.looks >= looks + 2, "the writer looked twice since")
        assert server.tokens.get("t1") is not None

        assert await cli.revoke_token("t1", NOW) == 1  # the CLI's, behind the server's back
        await eventually(lambda: server.tokens.get("t1") is None, "the server's cache emptied")
        found = await server.find_token("t1")
        assert found is not None and found.token.revoked_at == NOW
    finally:
        await cli.close()
        await server.close()


async def test_a_server_that_only_reads_still_hears_of_another_process_commits(
    tmp_path: Path, sqlite_template: Path
) -> None:
    """Introspection alone writes nothing: the writer thread looks all the same."""
    db = tmp_path / "tokens.db"
    copy_sqlite_template(sqlite_template, db)
    cli = await SqlStore.open(sqlite_url(db))
    await cli.create_tenant(TenantRecord("demo", NOW))
    await cli.save_tokens([token("t1", use=TokenUse.ACCESS)], session())
    server = await open_store(harness_settings(sqlite_url(db), token_cache_seconds=3600.0))
    assert isinstance(server, CachedStore)
    runner = runner_of(server)
    try:
        await eventually(lambda: runner.looks >= 1, "the writer took its first look")
        await server.find_token("t1")
        assert server.tokens.get("t1") is not None
        await cli.revoke_token("t1", NOW)
        await eventually(lambda: server.tokens.get("t1") is None, "the server's cache emptied")
    finally:
        await cli.close()
        await server.close()
