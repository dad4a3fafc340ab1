"""The embedded database's file: created by us, private to its owner, before SQLite opens it.

SQLite would create a missing database file itself with mode 0644 (less the umask), readable by
every account on the machine, although it holds e-mail addresses and password hashes. So the
file is created here first, empty and 0600 (an empty file is an empty database to SQLite). Its
unix VFS gives the `-wal`, `-shm` and `-journal` files it creates later the database file's own
permissions, so those are 0600 too. A database file that exists already is left as it is: its
mode is the operator's (start-up warns when others can read it: server/startup.py).
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from sqlalchemy.engine import make_url

# Group or other may read or write it.
EXPOSED_MODE = stat.S_IRWXG | stat.S_IRWXO


def sqlite_file(database_url: str) -> Path | None:
    """The file a SQLite URL names, or None (another database, :memory:, a `file:` URI)."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.query.get("uri"):
        return None
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database).expanduser()


def ensure_sqlite_file(database_url: str) -> None:
    """Creates the directory and, when missing, the database file (empty, mode 0600)."""
    path = sqlite_file(database_url)
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def exposed_files(database_url: str) -> list[tuple[Path, int]]:
    """The database file and its `-wal` and `-shm` files that exist and that group or other
    users may access, with their modes."""
    path = sqlite_file(database_url)
    if path is None:
        return []
    found = []
    for candidate in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            mode = stat.S_IMODE(candidate.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & EXPOSED_MODE:
            found.append((candidate, mode))
    return found
