"""A private, throw-away PostgreSQL cluster for fault tests: `initdb` + `pg_ctl` from the
machine's PostgreSQL binaries, in a temp directory, on a free port, on 127.0.0.1 only, trust
auth, no fsync (but synchronous commits). A test may stop and start it at will; `destroy` stops
it and removes it.

initdb and postgres refuse to run as root: as root (this sandbox, CI), every PostgreSQL program
runs as the `postgres` OS user (`runuser`), and the directory belongs to that user.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.support.ports import free_port

PROGRAMS = ("initdb", "pg_ctl", "postgres")
OS_USER = "postgres"
# Fast and private, but durable against what the fault tests do: they stop PostgreSQL (even with
# `-m immediate`, a crash of its processes), never the machine. fsync and full page writes guard
# against a crash of the operating system, so they stay off. synchronous_commit stays on: with it
# off, PostgreSQL acknowledges a commit before writing its WAL, and an immediate stop then loses
# commits the service already answered for; a client holding the tokens of such a refresh is
# refused forever (the soak of tests/reliability/test_database_faults.py found exactly that).
SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "synchronous_commit": "on",
    "full_page_writes": "off",
    "max_connections": "100",
    "shared_buffers": "16MB",
    "log_min_messages": "warning",
}


class ClusterUnavailable(Exception):
    """The machine cannot run a private cluster (no binaries, no `postgres` user, ...)."""


def find_bindir() -> Path:
    """The directory holding initdb, pg_ctl and postgres: `pg_config --bindir`, else the newest
    /usr/lib/postgresql/*/bin."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            candidates.append(Path(out))
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    versions.sort(key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0)
    candidates.extend(Path(p) for p in reversed(versions))
    for bindir in candidates:
        if all(os.access(bindir / program, os.X_OK) for program in PROGRAMS):
            return bindir
    raise ClusterUnavailable(
        "no PostgreSQL server binaries (initdb, pg_ctl, postgres) in `pg_config --bindir` "
        "or /usr/lib/postgresql/*/bin"
    )


@dataclasses.dataclass
class PrivateCluster:
    bindir: Path
    root: Path  # owned by the OS user that runs PostgreSQL; holds data, socket and log
    port: int

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "socket"

    @property
    def log_file(self) -> Path:
        return self.root / "postgres.log"

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the cluster's `postgres` database (trust auth)."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def dsn(self) -> str:
        """The same for asyncpg itself."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, program: str, *args: str, timeout: float = 60) -> None:
        command = [str(self.bindir / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", OS_USER, "--", *command]
        result = subprocess.run(
            command,
            cwd=self.root,  # the OS user must be able to stay in its working directory
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise ClusterUnavailable(
                f"{program} {' '.join(args)} exited {result.returncode}: "
                f"{(result.stderr or result.stdout).strip()[-2000:]}\n{self.server_log()}"
            )

    def init(self) -> None:
        self.socket_dir.mkdir()
        self._chown(self.socket_dir)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        )
        settings = {
            **SETTINGS,
            "port": str(self.port),
            "unix_socket_directories": f"'{self.socket_dir}'",
        }
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("\n# tests/support/pg_cluster.py\n")
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())

    def start(self) -> None:
        """Starts the server and waits until it accepts connections."""
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log_file), "-w", "-t", "30", "start"
        )

    def stop(self, mode: str = "fast") -> None:
        """Stops the server (`fast`: disconnects every client, aborting their transactions)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def destroy(self) -> None:
        """Stops the server if it runs (immediately) and removes everything."""
        try:
            if self.running():
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def server_log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def _chown(self, path: Path) -> None:
        if os.geteuid() == 0:
            user = pwd.getpwnam(OS_USER)
            os.chown(path, user.pw_uid, user.pw_gid)


@contextlib.contextmanager
def private_cluster() -> Iterator[PrivateCluster]:
    """A started private cluster, stopped and removed on exit; ClusterUnavailable when this
    machine cannot run one."""
    bindir = find_bindir()
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(OS_USER)
        except KeyError:
            raise ClusterUnavailable(
                f"running as root and there is no `{OS_USER}` OS user to run PostgreSQL as"
            ) from None
        if shutil.which("runuser") is None:
            raise ClusterUnavailable("running as root and `runuser` is not installed")
    # Not under pytest's tmp_path: its parents are private to root, and the server's user
    # must reach its own directory.
    root = Path(tempfile.mkdtemp(prefix="tokenservice-pg-"))
    cluster = PrivateCluster(bindir=bindir, root=root, port=free_port())
    try:
        cluster._chown(root)
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()
