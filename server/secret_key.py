"""Where the server secret comes from.

TOKENSERVICE_SECRET_KEY wins; then TOKENSERVICE_SECRET_KEY_FILE; for the embedded SQLite
default, a key generated on first start beside the database file (`<db>.key`, mode 0600). Other
databases need the secret configured explicitly, because every replica must share it.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from sqlalchemy.engine import make_url

from server.settings import Settings

MIN_SECRET_CHARS = 32


class SecretKeyError(RuntimeError):
    """The secret key is missing or unusable (a start-up configuration error)."""


def load_secret_key(settings: Settings) -> bytes:
    if settings.secret_key:
        return _checked(settings.secret_key, "TOKENSERVICE_SECRET_KEY")
    if settings.secret_key_file:
        return _read_or_create(Path(settings.secret_key_file))
    db_path = sqlite_file_path(settings.database_url)
    if settings.is_sqlite and db_path is None:
        return secrets.token_bytes(32)  # in-memory database: nothing outlives the process
    if db_path is not None:
        return _read_or_create(db_path.with_name(db_path.name + ".key"))
    raise SecretKeyError(
        "TOKENSERVICE_SECRET_KEY (or TOKENSERVICE_SECRET_KEY_FILE) must be set for "
        "this database, and be the same on every replica"
    )


def sqlite_file_path(database_url: str) -> Path | None:
    """The file behind a SQLite URL, or None for anything else (or :memory:)."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if database in {"", ":memory:"} or database.startswith("file::memory:"):
        return None
    return Path(database)


def _checked(value: str, source: str) -> bytes:
    value = value.strip()
    if len(value) < MIN_SECRET_CHARS:
        raise SecretKeyError(f"{source} must be at least {MIN_SECRET_CHARS} characters long")
    return value.encode()


def _read_or_create(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _checked(path.read_text(), f"the secret key file {path}")
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(48))
    return _checked(path.read_text(), f"the secret key file {path}")
