"""Configuration from the environment and the server secret's origin."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from server.secret_key import (
    SecretKeyError,
    SecretKeyMissing,
    create_key_file,
    load_secret_key,
)
from server.settings import DEFAULT_DATABASE_URL, ConfigError, Settings
from server.store.listener import RevocationListener
from server.store.sqlite_file import sqlite_file as sqlite_file_path
from server.store.token_cache import TokenCache


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
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_reading_never_creates_a_key_file_and_creating_makes_a_private_one(
    tmp_path: Path,
) -> None:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/data/t.db")
    key_file = tmp_path / "data" / "t.db.key"
    with pytest.raises(SecretKeyMissing) as caught:
        load_secret_key(settings)
    assert caught.value.path == key_file
    assert not key_file.exists()

    first = create_key_file(key_file)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(first) >= 32
    assert load_secret_key(settings) == first
    assert create_key_file(key_file) == first  # another process's file is kept, not replaced


def key_file(tmp_path: Path, mode: int) -> Path:
    path = tmp_path / "secret.key"
    path.write_text("k" * 40)
    path.chmod(mode)
    return path


@pytest.mark.parametrize(
    ("mode", "complaint"),
    [
        (0o644, "other users can read it"),
        (0o604, "other users can read it"),
        (0o620, "users besides its owner can write it"),
        (0o602, "users besides its owner can write it"),
        (0o666, "other users can read it"),
    ],
)
def test_a_key_file_others_can_read_or_write_is_refused(
    tmp_path: Path, mode: int, complaint: str
) -> None:
    path = key_file(tmp_path, mode)
    with pytest.raises(SecretKeyError) as caught:
        load_secret_key(Settings(secret_key_file=str(path)))
    message = str(caught.value)
    assert f"has mode {mode:04o}" in message and complaint in message
    assert f"chmod 600 {path}" in message
    assert "k" * 40 not in message


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o640, 0o440])
def test_a_private_or_group_readable_key_file_is_accepted(tmp_path: Path, mode: int) -> None:
    path = key_file(tmp_path, mode)
    assert load_secret_key(Settings(secret_key_file=str(path))) == b"k" * 40


def test_the_mode_checked_is_the_symlink_targets(tmp_path: Path) -> None:
    """As Kubernetes mounts a secret: `key -> ..data/key`; the link itself is always 0777."""
    data = tmp_path / "..data"
    data.mkdir()
    target = data / "key"
    target.write_text("k" * 40)
    link = tmp_path / "key"
    link.symlink_to(target)
    settings = Settings(secret_key_file=str(link))
    target.chmod(0o400)
    assert load_secret_key(settings) == b"k" * 40
    target.chmod(0o644)
    with pytest.raises(SecretKeyError, match="has mode 0644"):
        load_secret_key(settings)


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


@pytest.mark.parametrize("url", ["sqlite+aiosqlite:///./t.db", "not a url", "mysql://db/x"])
def test_a_listener_url_that_is_not_postgresql_is_refused_without_echoing_it(url: str) -> None:
    with pytest.raises(ConfigError) as refused:
        RevocationListener(url, TokenCache(capacity=1, max_age=1))
    assert "TOKENSERVICE_REVOCATION_LISTENER_URL" in str(refused.value)
    assert url not in str(refused.value)
