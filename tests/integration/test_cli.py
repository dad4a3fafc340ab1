"""The `tokenservice` command against a real SQLite file: provisioning, `--json` output,
secrets shown once and never stored, and clean errors (exit 2, no traceback).

Most cases call `launcher.cli.main` in this interpreter (with the command's own environment,
working directory, stdin, stdout and stderr): a fresh interpreter per command cost about a
second each and the process boundary is not what they test. The cases that use `process_cli`
run the installed `tokenservice` executable: a success, the failure exit codes of bad
configuration, and the password read from a real stdin pipe.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import sqlite3
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher

from launcher.cli import build_parser, kids_as_values, main
from server.tokens import KeyedDigest

TOKENSERVICE = Path(sys.executable).parent / "tokenservice"
ACTIVATION = "TOKENSERVICE_SIGNING_KEY_ACTIVATION_SECONDS"
FAST_ARGON2_ENV = {
    "TOKENSERVICE_ARGON2_TIME_COST": "1",
    "TOKENSERVICE_ARGON2_MEMORY_KIB": "1024",
    "TOKENSERVICE_ARGON2_PARALLELISM": "1",
}


class Cli:
    """Runs `tokenservice` as a child process, with only the environment given here."""

    def __init__(self, tmp_path: Path) -> None:
        self.db = tmp_path / "cli.db"
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "TOKENSERVICE_DATABASE_URL": f"sqlite+aiosqlite:///{self.db}",
            **FAST_ARGON2_ENV,
        }
        self.cwd = tmp_path

    def run(
        self, *args: str, stdin: str = "", env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(TOKENSERVICE), *args],
            input=stdin,
            env={**self.env, **(env or {})},
            cwd=self.cwd,
            text=True,
            capture_output=True,
            timeout=60,
        )

    def ok(self, *args: str, stdin: str = "") -> str:
        done = self.run(*args, stdin=stdin)
        assert done.returncode == 0, done.stderr
        assert done.stderr == "" or "Traceback" not in done.stderr
        return done.stdout

    def json(self, *args: str, stdin: str = "") -> Any:
        return json.loads(self.ok(*args, "--json", stdin=stdin))

    def fails(self, *args: str, stdin: str = "") -> str:
        """Runs a command that must fail cleanly; returns its stderr."""
        done = self.run(*args, stdin=stdin)
        assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
        assert done.stderr.startswith(("error: ", "usage: ")), done.stderr
        return done.stderr

    def stored_bytes(self) -> bytes:
        """The database as it lies on disk, WAL included."""
        return b"".join(
            path.read_bytes()
            for path in (self.db, self.db.with_name(self.db.name + "-wal"))
            if path.exists()
        )

    def query(self, sql: str, *params: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.db) as conn:
            return conn.execute(sql, params).fetchall()


class InProcessCli(Cli):
    """Runs `launcher.cli.main` in this interpreter as the executable would run it: the same
    environment (nothing else of TOKENSERVICE_*), working directory and stdin, stdout and stderr
    captured, argparse's exits and uncaught exceptions (with their traceback on stderr, exit 1)
    turned into the exit status. Warnings logged go to its stderr, as Python's last-resort
    handler writes them in a process that configures no logging."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        super().__init__(tmp_path)
        self.monkeypatch = monkeypatch

    def run(
        self, *args: str, stdin: str = "", env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        stdout, stderr = io.StringIO(), io.StringIO()
        handler = logging.StreamHandler(stderr)
        handler.setLevel(logging.WARNING)
        root = logging.getLogger()
        with self.monkeypatch.context() as patch:
            for name in list(os.environ):
                if name.startswith("TOKENSERVICE_"):
                    patch.delenv(name)
            for name, value in {**self.env, **(env or {})}.items():
                patch.setenv(name, value)
            patch.chdir(self.cwd)
            patch.setattr(sys, "stdin", io.StringIO(stdin))
            root.addHandler(handler)
            try:
                with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                    try:
                        code = main(list(args))
                    except SystemExit as exit_:
                        code = exit_.code if isinstance(exit_.code, int) else 1
                    except Exception:
                        traceback.print_exc()
                        code = 1
            finally:
                root.removeHandler(handler)
        return subprocess.CompletedProcess(
            ["tokenservice", *args], code, stdout.getvalue(), stderr.getvalue()
        )


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    return InProcessCli(tmp_path, monkeypatch)


@pytest.fixture
def process_cli(tmp_path: Path) -> Cli:
    assert TOKENSERVICE.exists(), f"{TOKENSERVICE} is missing: run `make install`"
    return Cli(tmp_path)


def test_db_upgrade_is_idempotent(process_cli: Cli) -> None:
    cli = process_cli
    first = cli.ok("db", "upgrade")
    assert "newest schema" in first
    cli.ok("db", "upgrade")
    tables = {row[0] for row in cli.query("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"tenants", "clients", "customers", "tokens", "signing_keys"} <= tables


def test_tenant_create_and_list(cli: Cli) -> None:
    assert cli.ok("tenant", "create", "acme").strip() == "created tenant acme"
    created = cli.json("tenant", "create", "globex")
    assert created["name"] == "globex" and isinstance(created["created_at"], int)
    assert sorted(cli.ok("tenant", "list").split()) == ["acme", "globex"]
    listed = cli.json("tenant", "list")
    assert sorted(t["name"] for t in listed["tenants"]) == ["acme", "globex"]


def test_tenant_allowed_origins_are_set_shown_and_cleared(cli: Cli) -> None:
    cli.ok("tenant", "create", "acme")
    assert cli.json("tenant", "show", "acme")["allowed_origins"] == []
    shown = cli.ok("tenant", "set-origins", "acme", "https://Shop.example", "http://127.0.0.1:81")
    assert shown.splitlines() == [
        "acme",
        "allowed origins: https://shop.example http://127.0.0.1:81",
    ]
    assert cli.json("tenant", "show", "acme")["allowed_origins"] == [
        "https://shop.example",
        "http://127.0.0.1:81",
    ]
    listed = cli.json("tenant", "list")["tenants"]
    assert listed[0]["allowed_origins"] == ["https://shop.example", "http://127.0.0.1:81"]
    stderr = cli.fails("tenant", "set-origins", "acme", "https://ok.example", "https://a.example/")
    assert stderr.startswith("error: allowed_origins[1] must not have a path"), stderr
    assert "scheme://host[:port]" in stderr
    assert "wildcard" in cli.fails("tenant", "set-origins", "acme", "https://*.example")
    assert cli.json("tenant", "show", "acme")["allowed_origins"] == [
        "https://shop.example",
        "http://127.0.0.1:81",
    ]
    assert cli.json("tenant", "set-origins", "acme")["allowed_origins"] == []
    assert cli.fails("tenant", "show", "nosuch") == "error: unknown tenant 'nosuch'\n"
    assert "unknown tenant" in cli.fails("tenant", "set-origins", "nosuch", "https://a.example")


def test_duplicate_tenant_fails_with_a_clear_message(cli: Cli) -> None:
    cli.ok("tenant", "create", "acme")
    stderr = cli.fails("tenant", "create", "acme")
    assert stderr == "error: tenant 'acme' already exists\n"
    assert "must be 3 to 16" in cli.fails("tenant", "create", "NO")


def test_service_client_secret_is_printed_once_and_never_stored(cli: Cli) -> None:
    cli.ok("tenant", "create", "acme")
    created = cli.json(
        "client", "create", "--tenant", "acme", "--kind", "service", "--scopes", "a.read a.write"
    )
    secret = created["client_secret"]
    assert len(secret) >= 43
    assert created["kind"] == "service" and created["scopes"] == ["a.read", "a.write"]
    assert "secret_digest" not in created
    stored = cli.stored_bytes()
    assert secret.encode() not in stored
    key = cli.db.with_name("cli.db.key").read_text().strip().encode()
    assert KeyedDigest(key).client_secret(secret).encode() in stored  # only its digest is
    listed = cli.json("client", "list", "--tenant", "acme")
    assert [c["client_id"] for c in listed["clients"]] == [created["client_id"]]
    assert "client_secret" not in listed["clients"][0]
    assert secret not in cli.ok("client", "list", "--tenant", "acme")


def test_human_client_create_shows_the_secret_once(cli: Cli) -> None:
    cli.ok("tenant", "create", "acme")
    out = cli.ok("client", "create", "--tenant", "acme", "--kind", "service", "--client-id", "be")
    assert out.startswith("created service client be in tenant acme\nclient_secret: ")
    secret = out.split("client_secret: ", 1)[1].split()[0]
    assert secret.encode() not in cli.stored_bytes()


def test_storefront_client_options(cli: Cli) -> None:
    cli.ok("tenant", "create", "acme")
    created = cli.json(
        "client",
        "create",
        "--tenant",
        "acme",
        "--kind",
        "storefront",
        "--name",
        "Web shop",
        "--client-id",
        "web-shop",
        "--access-ttl",
        "600",
        "--refresh-ttl",
        "7200",
        "--no-refresh-rotation",
    )
    assert "client_secret" not in created
    assert (created["client_id"], created["name"]) == ("web-shop", "Web shop")
    assert (created["access_token_ttl"], created["refresh_token_ttl"]) == (600, 7200)
    assert created["refresh_rotation_disabled"] is True
    row = cli.query(
        "SELECT secret_digest, access_token_ttl, refresh_rotation_disabled FROM clients "
        "WHERE client_id = ?",
        "web-shop",
    )
    assert row == [(None, 600, 1)]


def test_client_create_errors(cli: Cli) -> None:
    cli.ok("tenant", "create", "acme")
    base = ("client", "create", "--tenant", "acme", "--kind", "storefront")
    assert "access_token_ttl must be between" in cli.fails(*base, "--access-ttl", "0")
    assert "unknown tenant 'nowhere'" in cli.fails(
        "client", "create", "--tenant", "nowhere", "--kind", "service"
    )
    assert "tenant=" in cli.fails(*base, "--scopes", "tenant=other")
    cli.ok(*base, "--client-id", "front")
    assert "client_id 'front' already exists" in cli.fails(*base, "--client-id", "front")
    assert "invalid choice" in cli.fails("client", "create", "--tenant", "acme", "--kind", "x")
    assert cli.query("SELECT count(*) FROM clients") == [(1,)]


def test_customer_create_reads_the_password_from_stdin(process_cli: Cli) -> None:
    cli = process_cli
    password = "correct horse battery staple"
    cli.ok("tenant", "create", "acme")
    created = cli.json(
        "customer",
        "create",
        "--tenant",
        "acme",
        "--email",
        "Ann@Acme.Example",
        "--password-stdin",
        "--scopes",
        "customer.read order.write",
        "--legal-entity",
        "le-1",
        "le-2",
        "--legal-entity",
        "le-3",
        stdin=password + "\n",
    )
    assert created["email"] == "ann@acme.example"
    assert created["scopes"] == ["customer.read", "order.write"]
    assert created["legal_entity_ids"] == ["le-1", "le-2", "le-3"]
    assert "password" not in json.dumps(created)
    assert password.encode() not in cli.stored_bytes()
    [(stored_hash,)] = cli.query("SELECT password_hash FROM customers WHERE id = ?", created["id"])
    assert stored_hash.startswith("$argon2id$")
    assert PasswordHasher().verify(stored_hash, password)  # the newline was stripped
    out = cli.ok(
        "customer",
        "create",
        "--tenant",
        "acme",
        "--email",
        "bob@acme.example",
        "--password-stdin",
        stdin=password + "\r\n",
    )
    assert out.startswith("created customer bob@acme.example")
    assert password not in out


def test_customer_create_errors(cli: Cli) -> None:
    cli.ok("tenant", "create", "acme")
    base = ("customer", "create", "--tenant", "acme", "--email", "ann@acme.example")
    assert "password is required" in cli.fails(*base, "--password-stdin", stdin="")
    stderr = cli.fails(*base, "--password-stdin", stdin="short\n")
    assert "at least 8" in stderr and "short" not in stderr.replace("at least", "")
    assert "--password-stdin" in cli.fails(*base)  # no password on the command line
    for scope in ("tokenservice.admin", "tokenservice.platform_admin"):
        stderr = cli.fails(
            *base, "--password-stdin", "--scopes", f"orders {scope}", stdin="long enough pw\n"
        )
        assert f"scopes must not contain {scope}" in stderr
    assert cli.query("SELECT count(*) FROM customers") == [(0,)]
    cli.ok(*base, "--password-stdin", stdin="long enough password\n")
    assert "already exists" in cli.fails(*base, "--password-stdin", stdin="another password\n")


@pytest.mark.parametrize("kid", ["-" + "A" * 42, "-h" + "B" * 41, "--" + "C" * 41])
def test_a_kid_starting_with_a_dash_is_taken_as_the_kid(kid: str) -> None:
    """One kid in 64 starts with "-" (base64url): argparse alone would take it for an unknown
    option, or "-h..." for the request for help."""
    for argv in (["keys", "retire", kid], ["keys", "retire", kid, "--json"]):
        args = build_parser().parse_args(kids_as_values(argv))
        assert args.kid == kid
    assert build_parser().parse_args(kids_as_values(["keys", "retire", "--json", kid])).json
    assert kids_as_values(["keys", "retire", "--", kid]) == ["keys", "retire", "--", kid]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["keys", "retire", kid, "--json"])  # why the move is needed


def test_keys_rotate_list_retire(cli: Cli) -> None:
    first = cli.json("keys", "rotate")
    second = cli.json("keys", "rotate")
    assert first["status"] == "active" and first["algorithm"] == "ES256"
    assert first["public_jwk"]["kid"] == first["kid"] and "d" not in first["public_jwk"]
    listed = cli.json("keys", "list")
    assert {k["kid"]: k["status"] for k in listed["keys"]} == {
        second["kid"]: "active",
        first["kid"]: "verifying",
    }
    created = [k["created_at"] for k in listed["keys"]]
    assert created == sorted(created, reverse=True)  # newest first (ties: same second)
    assert f"{second['kid']}  ES256  active" in cli.ok("keys", "list")
    # The first key still signs: the second is published but not yet long enough to sign.
    refused = cli.fails("keys", "retire", first["kid"])
    assert f"signing key '{first['kid']}' still signs" in refused
    assert re.search(r"TOKENSERVICE_SIGNING_KEY_ACTIVATION_SECONDS.*in 1[0-2][0-9] s$", refused)
    assert dict(cli.query("SELECT kid, status FROM signing_keys"))[first["kid"]] == "verifying"
    # Once the second key signs (here: an activation delay of 0), the first can be retired.
    done = cli.run("keys", "retire", first["kid"], "--json", env={ACTIVATION: "0"})
    assert done.returncode == 0, done.stderr
    retired = json.loads(done.stdout)
    assert retired["status"] == "retired" and isinstance(retired["retired_at"], int)
    assert "no signing key with kid 'nope'" in cli.fails("keys", "retire", "nope")
    assert "error: " in cli.fails("keys", "retire", second["kid"])  # the active key
    statuses = dict(cli.query("SELECT kid, status FROM signing_keys"))
    assert statuses == {first["kid"]: "retired", second["kid"]: "active"}


def test_demo_env_without_credentials_fails_cleanly(cli: Cli) -> None:
    assert "no demo credentials" in cli.fails("demo", "env")


def test_demo_env_prints_shell_exports(cli: Cli) -> None:
    creds = {
        "tenant": "demo",
        "storefront_client_id": "demo-storefront",
        "service_client_id": "demo-service",
        "service_client_secret": "s3cr3t",
        "customer_email": "demo@example.com",
        "customer_password": "it's a password",
    }
    cli.db.with_name("cli.db.demo.json").write_text(json.dumps(creds))
    out = cli.ok("demo", "env")
    assert "export DEMO_SERVICE_CLIENT_SECRET=s3cr3t\n" in out
    assert "export DEMO_CUSTOMER_PASSWORD='it'\"'\"'s a password'\n" in out


def test_bad_configuration_fails_cleanly(process_cli: Cli) -> None:
    cli = process_cli
    done = cli.run("tenant", "list", env={"TOKENSERVICE_ARGON2_TIME_COST": "many"})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr == "error: TOKENSERVICE_ARGON2_TIME_COST must be a number\n"
    done = cli.run("tenant", "list", env={"TOKENSERVICE_DATABASE_URL": "not a url"})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "TOKENSERVICE_DATABASE_URL" in done.stderr
    done = cli.run("tenant", "list", env={"TOKENSERVICE_SECRET_KEY": "too short"})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "at least 32 characters" in done.stderr
