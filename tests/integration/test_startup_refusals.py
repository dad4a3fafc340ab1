"""The service refuses to run with a secret that is not its database's, and keeps its files
private (server/startup.py, server/secret_key.py, server/store/sqlite_file.py).

Most tests run the real `tokenservice` command (`serve`, and `tenant list` for the provisioning
CLI) over a real database that holds data, break its secret the ways an operator does (key file
deleted, replaced by another valid key, left readable by others; another TOKENSERVICE_SECRET_KEY
on PostgreSQL), and check that it exits 2 with `error: <what to do>` on stderr, no traceback, the
secret nowhere in the output, and nothing created or changed. Then: a fresh start creates every
file 0600; a database from before migration 0004 gets its canary when its signing keys prove
the secret, and is refused when they do not; replicas starting together agree on one canary.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import sqlite3
import stat
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import create_engine, insert

from server.secret_key import SecretKeyError
from server.settings import Settings
from server.signing import KeyCipher, new_signing_key
from server.startup import CANARY, open_core
from server.store.migrate import run_on_url, upgrade_connection
from server.store.schema import signing_keys, tenants
from server.tokens import KeyedDigest
from tests.support.defaults import FAST_ARGON2
from tests.support.postgres import PostgresServer
from tests.support.processes import (
    TOKENSERVICE,
    free_port,
    service_env,
    stop_process,
    text_of,
    wait_until_serving,
)

OTHER_SECRET = "another-valid-secret-key-of-48-characters-abcdefgh"
PG_SECRET = "the-postgres-secret-key-of-at-least-32-characters"
# `serve` and a provisioning command: both start through server.startup.open_core.
COMMANDS = [pytest.param(("serve",), id="serve"), pytest.param(("tenant", "list"), id="cli")]
REFUSED_WITHIN_SECONDS = 60  # a bound for a failing test; a refusal takes about a second


# --- helpers ------------------------------------------------------------------------------------


@dataclasses.dataclass
class Install:
    """A SQLite database that holds data (a tenant and a signing key), its key file, and the
    environment `tokenservice` runs with."""

    db: Path
    env: dict[str, str]

    @property
    def key_file(self) -> Path:
        return self.db.with_name(self.db.name + ".key")

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return tokenservice(self.env | env, *args)

    def files(self) -> dict[str, bytes]:
        """What lies in the database's directory (SQLite's -wal and -shm come and go)."""
        return {
            path.name: path.read_bytes()
            for path in sorted(self.db.parent.iterdir())
            if not path.name.endswith(("-wal", "-shm"))
        }

    def rows(self) -> dict[str, list[tuple[object, ...]]]:
        with sqlite3.connect(self.db) as conn:
            return {
                table: sorted(conn.execute(f"SELECT * FROM {table}").fetchall())  # noqa: S608
                for table in ("tenants", "signing_keys", "service_meta", "tokens")
            }


def tokenservice(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TOKENSERVICE), *args],
        env=env,
        text=True,
        capture_output=True,
        timeout=REFUSED_WITHIN_SECONDS,
        stdin=subprocess.DEVNULL,
    )


def refused(done: subprocess.CompletedProcess[str], *secrets: str) -> str:
    """Asserts a clean refusal (exit 2, an `error:` line last, no traceback, no secret);
    returns the message."""
    output = done.stdout + done.stderr
    assert done.returncode == 2, (done.returncode, output)
    assert "Traceback" not in output, output
    last = done.stderr.splitlines()[-1] if done.stderr else ""
    assert last.startswith("error: "), done.stderr  # after `serve`'s log lines, if any
    for secret in secrets:
        assert secret not in output
    return last.removeprefix("error: ")


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder the real CLI provisioned (a tenant, a signing key, the canary), made once
    per module and copied for each test, not made again with two CLI processes per test."""
    data = tmp_path_factory.mktemp("installed") / "data"
    data.mkdir()
    db = data / "t.db"
    template = Install(db, service_env(db, free_port()))
    assert template.run("tenant", "create", "acme").returncode == 0
    assert template.run("keys", "rotate").returncode == 0
    assert template.rows()["service_meta"], "the first start recorded no canary"
    return data


@pytest.fixture
def install(tmp_path: Path, installed: Path) -> Install:
    data = tmp_path / "data"
    shutil.copytree(installed, data)  # with the files' modes (the key file's 0600)
    db = data / "t.db"
    return Install(db, service_env(db, free_port()))


# --- the key file ---------------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
def test_a_missing_key_file_over_a_database_with_data_is_refused_and_not_created(
    install: Install, command: tuple[str, ...]
) -> None:
    install.key_file.unlink()
    before = (install.files(), install.rows())

    message = refused(install.run(*command))

    assert f"the secret key file {install.key_file} is missing" in message
    assert str(install.db) in message and "Restore" in message
    assert not install.key_file.exists()
    assert (install.files(), install.rows()) == before  # nothing created, nothing changed


@pytest.mark.parametrize("command", COMMANDS)
def test_a_key_file_replaced_by_another_valid_key_is_refused(
    install: Install, command: tuple[str, ...]
) -> None:
    original = install.key_file.read_text()
    install.key_file.write_text(OTHER_SECRET)
    before = (install.files(), install.rows())

    message = refused(install.run(*command), OTHER_SECRET, original)

    assert "the secret key does not open the database" in message
    assert f"Restore the original key ({install.key_file})" in message
    assert (install.files(), install.rows()) == before
    # With the original key back, the same database serves again, nothing lost.
    install.key_file.write_text(original)
    listed = install.run("tenant", "list")
    assert listed.returncode == 0 and listed.stdout == "acme\n", listed.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_a_key_file_others_can_read_is_refused(install: Install, command: tuple[str, ...]) -> None:
    install.key_file.chmod(0o644)
    secret = install.key_file.read_text()
    message = refused(install.run(*command), secret)
    assert f"the secret key file {install.key_file} has mode 0644" in message
    assert f"chmod 600 {install.key_file}" in message
    install.key_file.chmod(0o640)  # group read is allowed (as PostgreSQL allows for its key)
    assert install.run("tenant", "list").returncode == 0


@pytest.mark.postgres
@pytest.mark.parametrize("command", COMMANDS)
async def test_another_secret_key_on_postgres_is_refused(
    tmp_path: Path, postgres_server: PostgresServer, command: tuple[str, ...]
) -> None:
    url = await postgres_server.create()
    try:
        env = service_env(tmp_path / "unused.db", free_port())
        env |= {"TOKENSERVICE_DATABASE_URL": url, "TOKENSERVICE_SECRET_KEY": PG_SECRET}
        created = await asyncio.to_thread(tokenservice, env, "tenant", "create", "acme")
        assert created.returncode == 0, created.stderr

        env["TOKENSERVICE_SECRET_KEY"] = OTHER_SECRET
        done = await asyncio.to_thread(tokenservice, env, *command)
        message = refused(done, OTHER_SECRET, PG_SECRET)
        assert "the secret key does not open the database" in message
        assert "TOKENSERVICE_SECRET_KEY" in message
        assert "Restore the original secret" in message
    finally:
        await postgres_server.drop(url)


# --- a fresh start ----------------------------------------------------------------------------


async def test_a_fresh_start_creates_every_file_private(tmp_path: Path) -> None:
    """Database, WAL, shared-memory index, key file and demo credentials: all 0600, even under
    a umask that would let everyone read them."""
    db = tmp_path / "fresh" / "t.db"
    port = free_port()
    env = service_env(db, port, TOKENSERVICE_PROVISION_DEMO="true")
    with (tmp_path / "stdout.txt").open("wb") as out, (tmp_path / "stderr.txt").open("wb") as err:
        process = await asyncio.create_subprocess_exec(
            str(TOKENSERVICE), "serve", env=env, stdout=out, stderr=err, umask=0
        )
    try:
        await wait_until_serving(f"127.0.0.1:{port}", process, tmp_path / "stderr.txt")
        names = ("t.db", "t.db-wal", "t.db-shm", "t.db.key", "t.db.demo.json")
        modes = {name: oct(mode_of(db.with_name(name))) for name in names}
    finally:
        await stop_process(process)
    assert modes == dict.fromkeys(names, oct(0o600)), text_of(tmp_path / "stderr.txt")


def test_an_existing_database_others_can_read_is_warned_about(install: Install) -> None:
    """An operator's file keeps its mode (it is theirs), but the start says what to run."""
    install.db.chmod(0o644)
    done = install.run("tenant", "list")
    assert done.returncode == 0, done.stderr
    assert f"the database file {install.db} has mode 0644" in done.stderr
    assert f"chmod 600 {install.db}" in done.stderr
    assert mode_of(install.db) == 0o644


# --- a database from before the canary (migration 0004) --------------------------------------


def database_at_0003(tmp_path: Path, secret: str, *, with_key: bool) -> Install:
    """A database migrated to 0003 (no service_meta), with a tenant and, `with_key`, a signing
    key sealed under `secret`, as the service of that version left it."""
    db = tmp_path / "old.db"
    url = f"sqlite+aiosqlite:///{db}"
    asyncio.run(run_on_url(url, lambda conn: upgrade_connection(conn, "0003")))
    engine = create_engine(f"sqlite:///{db}")
    try:
        with engine.begin() as conn:
            conn.execute(insert(tenants), {"name": "acme", "created_at": 1_700_000_000})
            if with_key:
                record = new_signing_key(KeyCipher(secret.encode()), 1_700_000_000)
                row = dataclasses.asdict(record) | {"status": record.status.value}
                conn.execute(insert(signing_keys), row)
    finally:
        engine.dispose()
    key_file = db.with_name(db.name + ".key")
    key_file.write_text(secret)
    key_file.chmod(0o600)
    return Install(db, service_env(db, free_port()))


def canary_of(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT name, value FROM service_meta").fetchall()


def test_a_database_from_before_the_canary_gets_it_when_its_keys_prove_the_secret(
    tmp_path: Path,
) -> None:
    old = database_at_0003(tmp_path, OTHER_SECRET, with_key=True)
    done = old.run("tenant", "list")
    assert done.returncode == 0 and done.stdout == "acme\n", done.stderr
    assert canary_of(old.db) == [(CANARY, KeyedDigest(OTHER_SECRET.encode()).canary())]
    assert old.run("tenant", "list").returncode == 0  # and the canary matches from then on


def test_a_database_from_before_the_canary_is_refused_when_its_keys_do_not_open(
    tmp_path: Path,
) -> None:
    old = database_at_0003(tmp_path, OTHER_SECRET, with_key=True)
    old.key_file.write_text(PG_SECRET)  # a valid key, but not the one the keys are sealed with
    message = refused(old.run("tenant", "list"), PG_SECRET, OTHER_SECRET)
    assert "the secret key does not open the database" in message
    assert canary_of(old.db) == []  # no canary recorded for the wrong secret


def test_a_database_from_before_the_canary_with_nothing_to_prove_it_logs_so(
    tmp_path: Path,
) -> None:
    old = database_at_0003(tmp_path, OTHER_SECRET, with_key=False)
    done = old.run("tenant", "list")
    assert done.returncode == 0, done.stderr
    assert "no canary and no signing key to prove the secret" in done.stderr
    assert OTHER_SECRET not in done.stderr
    again = old.run("tenant", "list")
    assert again.returncode == 0 and "no canary" not in again.stderr  # said once


# --- in process: replicas, and keys that do not decrypt ---------------------------------------


@pytest.mark.postgres
async def test_replicas_starting_together_agree_on_one_canary(
    postgres_server: PostgresServer,
) -> None:
    """Two replicas with the right secret and one with another start at once on a database
    with no canary yet: whichever writes it first, the two agree and the odd one is refused."""
    url = await postgres_server.create()
    try:
        settings = Settings(database_url=url, secret_key=PG_SECRET, **FAST_ARGON2)
        other = dataclasses.replace(settings, secret_key=OTHER_SECRET)
        results = await asyncio.gather(
            *(open_core(s, migrate=False) for s in (settings, settings, other)),
            return_exceptions=True,
        )
        cores = [r for r in results if not isinstance(r, BaseException)]
        failures = [r for r in results if isinstance(r, BaseException)]
        try:
            assert all(isinstance(f, SecretKeyError) for f in failures), failures
            accepted = [core.settings.secret_key for core in cores]
            # Either the right secret wrote the canary first (both its replicas run) or the
            # other one did (it alone runs): never both secrets.
            assert accepted in ([PG_SECRET, PG_SECRET], [OTHER_SECRET]), accepted
            canary = await cores[0].store.get_meta(CANARY)
            assert canary == KeyedDigest(accepted[0].encode()).canary()
        finally:
            for core in cores:
                await core.store.close()
    finally:
        await postgres_server.drop(url)


async def test_a_signing_key_that_does_not_decrypt_is_refused_at_start(tmp_path: Path) -> None:
    """The canary matches, but a key in the store was sealed under another secret (rotated by a
    process with another secret): found at start, never as a 500 at a customer login."""
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 't.db'}",
        **FAST_ARGON2,
    )
    core = await open_core(settings)
    try:
        await core.keys.ensure_active_key()
        foreign = new_signing_key(KeyCipher(OTHER_SECRET.encode()), core.now())
        await core.store.rotate_signing_key(foreign)
    finally:
        await core.store.close()
    with pytest.raises(SecretKeyError) as caught:
        await open_core(settings)
    message = str(caught.value)
    assert f"signing key {foreign.kid}" in message and "does not decrypt" in message
    key_file = tmp_path / "t.db.key"
    assert key_file.read_text() not in message and OTHER_SECRET not in message
