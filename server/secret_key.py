"""Where the server secret comes from, and the checks on a key file.

TOKENSERVICE_SECRET_KEY wins; then TOKENSERVICE_SECRET_KEY_FILE; for the embedded SQLite
default, a key file beside the database file (`<db>.key`). Other databases need the secret
configured explicitly, because every replica must share it.

Reading never creates anything: a missing key file is `SecretKeyMissing`, and only start-up
(server/startup.py), which can ask the database whether it holds data made with some secret,
decides to create one (`create_key_file`). A key file is refused when users other than its
owner (and its group) can read it, or anyone but its owner can write it. Group read is allowed,
as PostgreSQL allows 0640 for its key file: a Kubernetes secret volume with an fsGroup, or a
deployment's own group, is an operator's deliberate choice, while "other" is every account on
the machine. The mode is that of the file a symlink points to (Kubernetes mounts secrets as
symlinks into a `..data` directory).
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import stat
from pathlib import Path

from server.settings import Settings
from server.store.sqlite_file import sqlite_file as sqlite_file_path

MIN_SECRET_CHARS = 32
# Other users may not read; nobody but the owner may write. Group read is allowed (above).
FORBIDDEN_KEY_MODE = stat.S_IROTH | stat.S_IWOTH | stat.S_IWGRP


class SecretKeyError(RuntimeError):
    """The secret key is missing, unusable, or not the database's (a start-up configuration
    error: `tokenservice` prints it as `error: ...` and exits 2). Never contains the secret."""


class SecretKeyMissing(SecretKeyError):
    """The key file does not exist; start-up creates it only over a database with no data."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"the secret key file {path} does not exist")
        self.path = path


@dataclasses.dataclass(frozen=True)
class SecretSource:
    """Where the secret is configured, as an operator would name it in a message."""

    path: Path | None  # the key file, or None for TOKENSERVICE_SECRET_KEY / an in-memory db
    setting: str  # "TOKENSERVICE_SECRET_KEY", "TOKENSERVICE_SECRET_KEY_FILE" or "<db>.key"

    def describe(self) -> str:
        if self.path is None:
            return self.setting
        if self.setting == "TOKENSERVICE_SECRET_KEY_FILE":
            return f"the key file {self.path} (TOKENSERVICE_SECRET_KEY_FILE)"
        return f"the key file {self.path}"


def secret_source(settings: Settings) -> SecretSource:
    if settings.secret_key:
        return SecretSource(None, "TOKENSERVICE_SECRET_KEY")
    if settings.secret_key_file:
        return SecretSource(Path(settings.secret_key_file), "TOKENSERVICE_SECRET_KEY_FILE")
    db_path = sqlite_file_path(settings.database_url)
    if db_path is not None:
        return SecretSource(db_path.with_name(db_path.name + ".key"), "<db>.key")
    if settings.is_sqlite:
        return SecretSource(None, "an in-memory database's random secret")
    raise SecretKeyError(
        "TOKENSERVICE_SECRET_KEY (or TOKENSERVICE_SECRET_KEY_FILE) must be set for "
        "this database, and be the same on every replica"
    )


def load_secret_key(settings: Settings) -> bytes:
    """The configured secret. Raises SecretKeyMissing for a key file that does not exist, and
    SecretKeyError for one that is too short or that others can read or write."""
    if settings.secret_key:
        return _checked(settings.secret_key, "TOKENSERVICE_SECRET_KEY")
    source = secret_source(settings)
    if source.path is None:
        return secrets.token_bytes(32)  # in-memory database: nothing outlives the process
    return read_key_file(source.path)


def read_key_file(path: Path) -> bytes:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)  # follows symlinks
    except FileNotFoundError:
        raise SecretKeyMissing(path) from None
    check_key_file_mode(path, mode)
    return _checked(path.read_text(), f"the secret key file {path}")


def check_key_file_mode(path: Path, mode: int) -> None:
    """Refuses a key file that other users can read, or anyone but its owner can write."""
    if not mode & FORBIDDEN_KEY_MODE:
        return
    who = (
        "other users can read it" if mode & stat.S_IROTH else "users besides its owner can write it"
    )
    raise SecretKeyError(
        f"the secret key file {path} has mode {mode:04o}: {who}. Run `chmod 600 {path}` "
        "(0640 if a group must read it); for a mounted secret set its mode, e.g. Kubernetes "
        "defaultMode 0400"
    )


def create_key_file(path: Path) -> bytes:
    """Writes a new random secret to `path` (mode 0600) and returns it; when another process
    created the file first, returns what that one wrote."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_key_file(path)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(48))
    return read_key_file(path)


def _checked(value: str, source: str) -> bytes:
    value = value.strip()
    if len(value) < MIN_SECRET_CHARS:
        raise SecretKeyError(f"{source} must be at least {MIN_SECRET_CHARS} characters long")
    return value.encode()
