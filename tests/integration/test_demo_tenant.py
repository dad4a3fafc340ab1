"""The demo tenant: provisioned only on an empty store, secrets only in a 0600 file, never in
the banner."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from launcher import demo
from server import admin
from server.core import Core, build_core
from server.grants import client_credentials
from server.records import ClientKind
from server.settings import Settings
from server.store.memory import MemoryStore

FAST = {"argon2_time_cost": 1, "argon2_memory_kib": 1024, "argon2_parallelism": 1}


def make_core(database_url: str, **overrides: Any) -> Core:
    settings = Settings(database_url=database_url, **{**FAST, **overrides})
    return build_core(settings, MemoryStore(), secret=b"x" * 32)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "tokens.db"


@pytest.fixture
def core(db_path: Path) -> Core:
    return make_core(f"sqlite+aiosqlite:///{db_path}")


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


async def test_provisions_the_demo_tenant_on_an_empty_store(core: Core, db_path: Path) -> None:
    creds = await demo.provision_demo(core)
    assert creds is not None
    assert creds.path == db_path.with_name("tokens.db.demo.json")
    assert [t.name for t in await admin.list_tenants(core)] == ["demo"]
    storefront = await core.store.get_client("demo-storefront")
    service = await core.store.get_client("demo-service")
    assert storefront is not None and storefront.kind is ClientKind.STOREFRONT
    assert service is not None and service.kind is ClientKind.SERVICE
    assert service.scopes == ("tokenservice.admin", "catalog.read", "catalog.write")
    issued = await client_credentials.issue(core, "demo-service", creds.service_client_secret)
    assert issued.scope == "tokenservice.admin catalog.read catalog.write tenant=demo"
    customer = await core.store.find_customer("demo", "demo@example.com")
    assert customer is not None
    assert customer.scopes == ("customer.read", "customer.write")
    assert customer.legal_entity_ids == ("le-demo-1", "le-demo-2")
    assert len(creds.customer_password) == 20
    assert await core.passwords.verify(customer.password_hash, creds.customer_password)


async def test_credentials_file_is_owner_only_and_loadable(
    core: Core, db_path: Path, permissive_umask: None
) -> None:
    creds = await demo.provision_demo(core)
    assert creds is not None
    assert stat.S_IMODE(creds.path.stat().st_mode) == 0o600
    data = json.loads(creds.path.read_text())
    assert data["service_client_secret"] == creds.service_client_secret
    assert data["customer_password"] == creds.customer_password
    assert demo.load_credentials(core.settings) == creds


async def test_stale_credentials_file_is_replaced_owner_only(
    core: Core, db_path: Path, permissive_umask: None
) -> None:
    stale = db_path.with_name("tokens.db.demo.json")
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")
    stale.chmod(0o644)
    creds = await demo.provision_demo(core)
    assert creds is not None and creds.path == stale
    assert stat.S_IMODE(stale.stat().st_mode) == 0o600
    assert json.loads(stale.read_text())["service_client_secret"] == creds.service_client_secret


async def test_no_provisioning_when_any_tenant_exists(core: Core, db_path: Path) -> None:
    await admin.create_tenant(core, "acme")
    assert await demo.provision_demo(core) is None
    assert await core.store.get_tenant("demo") is None
    assert not db_path.with_name("tokens.db.demo.json").exists()


async def test_second_start_provisions_nothing(core: Core) -> None:
    first = await demo.provision_demo(core)
    assert first is not None
    before = first.path.read_text()
    assert await demo.provision_demo(core) is None
    assert first.path.read_text() == before
    assert len(await admin.list_clients(core, "demo")) == 2


@pytest.mark.parametrize(
    "database_url",
    [
        "sqlite+aiosqlite:///:memory:",
        "sqlite+aiosqlite://",
        "postgresql+asyncpg://user:pw@db.example/tokens",
    ],
)
async def test_only_sqlite_file_databases_get_a_demo(database_url: str) -> None:
    core = make_core(database_url)
    assert await demo.provision_demo(core) is None
    assert await admin.list_tenants(core) == []


async def test_disabled_by_setting(db_path: Path) -> None:
    core = make_core(f"sqlite+aiosqlite:///{db_path}", provision_demo=False)
    assert await demo.provision_demo(core) is None
    assert await admin.list_tenants(core) == []


async def test_load_credentials_without_a_file_is_not_found(core: Core) -> None:
    from server.errors import NotFound

    with pytest.raises(NotFound, match="no demo credentials"):
        demo.load_credentials(core.settings)


async def test_banner_names_everything_but_no_secret(core: Core) -> None:
    creds = await demo.provision_demo(core)
    assert creds is not None
    banner = demo.demo_banner(creds, "0.0.0.0:50051")
    assert creds.service_client_secret not in banner
    assert creds.customer_password not in banner
    assert creds.service_client_secret not in repr(creds)
    assert creds.customer_password not in repr(creds)
    for expected in (
        "demo-storefront",
        "demo-service",
        "demo@example.com",
        str(creds.path),
        f'eval "$({demo.tool("tokenservice")} demo env)"',
        f"{demo.tool('grpcurl')} -plaintext localhost:50051 list",
        "tokenservice.v1.TokenService/IssueToken",
        "tokenservice.v1.TokenService/IntrospectToken",
        "tokenservice.v1.TokenService/RefreshToken",
        "tokenservice.v1.TokenService/RevokeToken",
        '"clientCredentials": {"clientId": "demo-service"',
        '"anonymous": {"tenant": "demo", "clientId": "demo-storefront"}',
        "$DEMO_SERVICE_CLIENT_SECRET",
        "$DEMO_CUSTOMER_PASSWORD",
        "$ANON_TOKEN",
    ):
        assert expected in banner, expected
    assert "-proto" not in banner and "-import-path" not in banner


def test_tools_are_the_ones_beside_the_interpreter_wherever_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The banner's commands name the grpcurl and tokenservice installed with the running
    interpreter: relative inside the working directory, absolute outside it, the bare name
    (PATH) when none is installed there. Nothing assumes a ./.venv."""
    bin_dir = tmp_path / "venv dir" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "grpcurl").touch()
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python3"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert demo.tool("grpcurl") == shlex.quote(str(bin_dir / "grpcurl"))
    assert demo.tool("tokenservice") == "tokenservice"  # not installed beside it: PATH
    monkeypatch.chdir(tmp_path)
    assert demo.tool("grpcurl") == "'venv dir/bin/grpcurl'"
    monkeypatch.chdir(bin_dir)
    assert demo.tool("grpcurl") == "./grpcurl"


def sample_credentials() -> demo.DemoCredentials:
    return demo.DemoCredentials(
        path=Path("tokens.db.demo.json"),
        tenant="demo",
        storefront_client_id="demo-storefront",
        service_client_id="demo-service",
        service_client_secret="s",
        customer_email="demo@example.com",
        customer_password="p",
    )


def test_banner_commands_are_valid_shell() -> None:
    creds = sample_credentials()
    banner = demo.demo_banner(creds, "127.0.0.1:50051")
    lines = banner.splitlines()
    start = next(i for i, line in enumerate(lines) if "eval " in line)
    script = "\n".join(line.strip() for line in lines[start:] if line.startswith("  "))
    assert script.count("grpcurl") == 7
    checked = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
    assert checked.returncode == 0, checked.stderr


def test_banner_splices_variables_into_the_json() -> None:
    """The grpcurl -d argument, run through the shell, is JSON carrying the variable's value."""
    creds = sample_credentials()
    banner = demo.demo_banner(creds, "localhost:50051")
    line = next(line for line in banner.splitlines() if "clientCredentials" in line)
    argument = line.split(" -d ", 1)[1].rsplit(" localhost:50051 ", 1)[0]
    echoed = subprocess.run(
        ["bash", "-c", f"printf %s {argument}"],
        env={"DEMO_SERVICE_CLIENT_SECRET": "the-secret-value", "PATH": os.environ["PATH"]},
        text=True,
        capture_output=True,
        check=True,
    )
    assert json.loads(echoed.stdout) == {
        "clientCredentials": {"clientId": "demo-service", "clientSecret": "the-secret-value"}
    }


def test_env_lines_are_shell_quoted() -> None:
    creds = dataclasses.replace(
        sample_credentials(),
        service_client_secret="abc-_123",
        customer_password='it\'s $HOME; `rm -rf` "q"',
    )
    lines = demo.env_lines(creds)
    assert all(line.startswith("export DEMO_") for line in lines.splitlines())
    shown = subprocess.run(
        ["bash", "-c", 'eval "$1"; printf %s "$DEMO_CUSTOMER_PASSWORD"', "_", lines],
        text=True,
        capture_output=True,
        check=True,
    )
    assert shown.stdout == creds.customer_password
    assert dataclasses.asdict(creds)["service_client_secret"] in lines


@pytest.mark.parametrize(
    ("listen", "connect"),
    [
        ("0.0.0.0:50051", "localhost:50051"),
        ("[::]:50051", "localhost:50051"),
        (":50051", "localhost:50051"),
        ("127.0.0.1:6000", "127.0.0.1:6000"),
    ],
)
def test_client_address(listen: str, connect: str) -> None:
    assert demo.client_address(listen) == connect
