"""Configuration from the environment and the server secret's origin."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from server.errors import InvalidRequest
from server.secret_key import SecretKeyError, load_secret_key, sqlite_file_path
from server.settings import DEFAULT_DATABASE_URL, Settings


def test_defaults_are_the_documented_ones() -> None:
    settings = Settings.from_env({})
    assert settings.grpc_addr == "0.0.0.0:50051"
    assert settings.database_url == DEFAULT_DATABASE_URL == "sqlite+aiosqlite:///./tokenservice.db"
    assert (settings.anonymous_access_ttl, settings.anonymous_refresh_ttl) == (3600, 86400)
    assert (settings.customer_access_ttl, settings.service_access_ttl) == (14400, 14400)
    assert settings.refresh_grace_seconds == 10 and settings.session_idle_time == 120


def test_environment_overrides_with_types() -> None:
    settings = Settings.from_env(
        {
            "TOKENSERVICE_GRPC_ADDR": "127.0.0.1:6000",
            "TOKENSERVICE_REFRESH_GRACE_SECONDS": "3",
            "TOKENSERVICE_PROVISION_DEMO": "false",
            "TOKENSERVICE_SHUTDOWN_GRACE_SECONDS": "2.5",
        }
    )
    assert settings.grpc_addr == "127.0.0.1:6000"
    assert settings.refresh_grace_seconds == 3
    assert settings.provision_demo is False
    assert settings.shutdown_grace_seconds == 2.5


@pytest.mark.parametrize(
    ("name", "value"),
    [("TOKENSERVICE_REFRESH_GRACE_SECONDS", "ten"), ("TOKENSERVICE_PROVISION_DEMO", "maybe")],
)
def test_bad_values_say_which_variable(name: str, value: str) -> None:
    with pytest.raises(InvalidRequest, match=name):
        Settings.from_env({name: value})


def test_embedded_default_generates_a_private_key_file_once(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/data/t.db")
    first = load_secret_key(settings)
    key_file = tmp_path / "data" / "t.db.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(first) >= 32
    assert load_secret_key(settings) == first


def test_explicit_secret_wins_and_must_be_long_enough() -> None:
    url = "postgresql+asyncpg://localhost/tokens"
    assert load_secret_key(Settings(database_url=url, secret_key="k" * 32)) == b"k" * 32
    with pytest.raises(SecretKeyError, match="at least 32"):
        load_secret_key(Settings(database_url=url, secret_key="short"))


def test_a_shared_database_needs_an_explicit_secret() -> None:
    with pytest.raises(SecretKeyError, match="every replica"):
        load_secret_key(Settings(database_url="postgresql+asyncpg://localhost/tokens"))


def test_sqlite_file_path() -> None:
    assert sqlite_file_path("sqlite+aiosqlite:///./x.db") == Path("./x.db")
    assert sqlite_file_path("sqlite+aiosqlite:///:memory:") is None
    assert sqlite_file_path("postgresql+asyncpg://h/db") is None
