"""Which migration is the newest, and the start on a current schema that skips alembic
(server/store/migrate.py): HEAD_REVISION, read from the file names, must be alembic's own head,
or a database one migration behind would be taken for current."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from alembic.script import ScriptDirectory

from server.store.migrate import HEAD_REVISION, MIGRATIONS_DIR, alembic_config
from tests.support.databases import copy_sqlite_template, sqlite_url


def test_the_head_from_the_file_names_is_alembics_head() -> None:
    scripts = ScriptDirectory.from_config(alembic_config())
    assert scripts.get_heads() == [HEAD_REVISION]
    for script in scripts.walk_revisions():
        assert script.path is not None
        assert Path(script.path).name.startswith(f"{script.revision}_"), script.path
    names = sorted(p.name for p in (MIGRATIONS_DIR / "versions").glob("*.py"))
    assert len(names) == len(list(scripts.walk_revisions())), names


def upgrade_in_a_new_process(path: Path) -> tuple[bool, str]:
    """Runs `migrate.upgrade` on the SQLite file `path` as a starting process does: whether it
    loaded alembic, and the revision the database is at afterwards."""
    program = (
        "import asyncio, sys\n"
        "from server.store.migrate import upgrade\n"
        f"asyncio.run(upgrade({sqlite_url(path)!r}))\n"
        "print('alembic' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True
    )
    with sqlite3.connect(path) as db:
        (revision,) = db.execute("SELECT version_num FROM alembic_version").fetchone()
    db.close()
    return done.stdout.strip() == "True", revision


def test_a_current_database_is_recognised_without_alembic(
    tmp_path: Path, sqlite_template: Path
) -> None:
    current = tmp_path / "current.db"
    copy_sqlite_template(sqlite_template, current)
    assert upgrade_in_a_new_process(current) == (False, HEAD_REVISION)


def test_a_database_behind_the_head_is_migrated_by_alembic(tmp_path: Path) -> None:
    behind = tmp_path / "behind.db"
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import asyncio\n"
            "from server.store.migrate import run_on_url, upgrade_connection\n"
            f"asyncio.run(run_on_url({sqlite_url(behind)!r}, "
            "lambda c: upgrade_connection(c, '0007')))\n",
        ],
        check=True,
        timeout=60,
    )
    assert upgrade_in_a_new_process(behind) == (True, HEAD_REVISION)
    assert upgrade_in_a_new_process(behind) == (False, HEAD_REVISION)
