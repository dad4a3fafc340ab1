"""A real PgBouncer (Debian's) in transaction mode in front of the test PostgreSQL, for what a
connection pooler between the service and PostgreSQL changes: a LISTEN through it hears nothing
(server/store/listener.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from sqlalchemy.engine import make_url

from tests.support.outside_tools import need_pgbouncer
from tests.support.ports import free_port
from tests.support.waiting import eventually


def through(database_url: str, port: int) -> str:
    """`database_url` with its host and port those of the pooler."""
    url = make_url(database_url).set(host="127.0.0.1", port=port)
    return url.render_as_string(hide_password=False)


def _configuration(folder: Path, database_url: str, port: int) -> Path:
    """pgbouncer.ini in `folder`: transaction mode, any user let in, PostgreSQL behind."""
    upstream = make_url(database_url)
    folder.chmod(0o777)  # PgBouncer runs as postgres when the tests run as root, and logs here
    config = folder / "pgbouncer.ini"
    config.write_text(
        "[databases]\n"
        f"* = host={upstream.host or '127.0.0.1'} port={upstream.port or 5432} "
        f"user={upstream.username or 'postgres'}\n"
        "[pgbouncer]\n"
        "listen_addr = 127.0.0.1\n"
        f"listen_port = {port}\n"
        "unix_socket_dir =\n"
        "auth_type = any\n"
        "pool_mode = transaction\n"
        f"logfile = {folder / 'pgbouncer.log'}\n",
        encoding="utf-8",
    )
    config.chmod(0o644)
    return config


@contextlib.asynccontextmanager
async def pgbouncer(database_url: str) -> AsyncIterator[int]:
    """PgBouncer in transaction mode on a free port, passing every database through to the
    PostgreSQL of `database_url`; yields its port once it accepts connections. Its files are in
    a folder of its own outside pytest's (whose folders only root may enter)."""
    binary = need_pgbouncer()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="pgbouncer-") as folder:
        config = _configuration(Path(folder), database_url, port)
        async with _running(binary, config, port):
            yield port


@contextlib.asynccontextmanager
async def _running(binary: str, config: Path, port: int) -> AsyncIterator[None]:
    command = [binary, str(config)]
    if os.getuid() == 0:  # PgBouncer refuses to run as root
        command = ["runuser", "-u", "postgres", "--", *command]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )

    async def accepts() -> bool:
        assert process.returncode is None, "pgbouncer exited at start"
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return False
        writer.close()
        return True

    try:
        await eventually(accepts, "pgbouncer accepts connections")
        yield
    finally:
        if process.returncode is None:
            process.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), 10)
        if process.returncode is None:
            process.kill()
            await process.wait()
