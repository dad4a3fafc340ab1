"""`tokenservice serve --workers N`: N processes serving gRPC and the HTTP bridge on the same
ports (SO_REUSEPORT: the kernel spreads new connections over them), on one PostgreSQL database.

The parent (the supervisor) checks that it can run (PostgreSQL, fixed free ports), migrates the
database and creates the first signing key once, then starts the workers as fresh processes
(`python -m launcher serve --worker-index K`, the parent's environment): no process with gRPC or
an event loop running is ever forked. A worker opens the store without migrating and serves
exactly as a single `tokenservice serve` process does, its log lines tagged `[worker K]`.

Stopping: SIGTERM or SIGINT to the parent is forwarded to every worker, and each drains as a
single process does (NOT_SERVING, the shutdown delay, in-flight calls finish within the grace
period). The parent waits for them and exits 0 when all exited cleanly. A worker still running
`delay + grace + 5` seconds after being told to stop is killed (and the exit is non-zero).

A worker that exits while no stop was asked for (a crash, a failed bind, an OOM kill) is not
restarted: the parent logs it, stops the other workers the same way and exits 1, so that the
orchestrator (systemd, Kubernetes, ...) restarts the whole service and a crash loop stays
visible there. Restarting in place would hide it and need a backoff policy of its own.

Each worker's stdin is a pipe from the parent that is never written to: if the parent dies
without stopping the workers (SIGKILL), the pipe closes and the workers drain and exit instead
of serving on unsupervised. Workers run in their own process group, so a terminal's Ctrl-C
reaches them only through the parent.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import sys

from http_bridge.server import bind
from launcher.process import configure_logging
from launcher.serve import prepare_store, serve_core
from server.settings import Settings
from server.startup import open_core

log = logging.getLogger("tokenservice.workers")

# After delay + grace, how long a stopping worker may still take before it is killed.
KILL_MARGIN_SECONDS = 5.0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130  # a worker interrupted by SIGINT before its handlers were installed


class CannotRunWorkers(Exception):
    """A configuration that `serve --workers N` refuses before starting anything."""


def check_can_run(settings: Settings, count: int) -> None:
    """Raises CannotRunWorkers, with a one-line reason, when `count` workers cannot serve."""
    if count < 1:
        raise CannotRunWorkers(f"--workers must be at least 1, not {count}")
    if count == 1:
        return
    if settings.is_sqlite:
        raise CannotRunWorkers(
            f"{count} workers need PostgreSQL: the embedded SQLite store serves one process; "
            "set TOKENSERVICE_DATABASE_URL to a postgresql+asyncpg:// database, or run 1 worker"
        )
    for name, address in (("GRPC_ADDR", settings.grpc_addr), ("HTTP_ADDR", settings.http_addr)):
        if address:
            _check_port_is_free(f"TOKENSERVICE_{name}", address)


def _check_port_is_free(name: str, address: str) -> None:
    """A fixed port nobody listens on yet: port 0 would give every worker a port of its own,
    and the workers' SO_REUSEPORT would join a port that another instance of the service (same
    user) already serves instead of failing as a single process does."""
    if address.rpartition(":")[2] in ("0", ""):
        raise CannotRunWorkers(f"several workers need a fixed port, not {name}={address}")
    bind(address).close()  # OSError "cannot listen on ADDRESS: ..." when it is taken


# --- the parent ---------------------------------------------------------------------------------


async def supervise(settings: Settings, count: int) -> int:
    """Prepares the database once, runs `count` workers until a signal or a worker's death,
    and returns the exit status: 0 when every worker stopped cleanly when asked to."""
    configure_logging(settings, label="supervisor")
    core = await open_core(settings)  # migrates, and refuses a secret not the database's
    try:
        await prepare_store(core)
    finally:
        await core.close()
    supervisor = Supervisor(settings)
    return await supervisor.run(count)


@dataclasses.dataclass
class Worker:
    index: int
    process: asyncio.subprocess.Process

    @property
    def name(self) -> str:
        return f"worker {self.index} (pid {self.process.pid})"

    def send(self, signum: int) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)


@dataclasses.dataclass
class Supervisor:
    settings: Settings
    workers: list[Worker] = dataclasses.field(default_factory=list)
    # The signals forwarded to the workers, first one first; empty while serving.
    stop_signals: list[int] = dataclasses.field(default_factory=list)
    stop_started: float | None = None
    failed: bool = False

    async def run(self, count: int) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.on_signal, sig)
        for index in range(1, count + 1):
            if self.stop_signals:
                break
            worker = await start_worker(index)
            self.workers.append(worker)
            log.info("started %s", worker.name)
            if self.stop_signals:  # arrived while it started: it missed the forwarding
                worker.send(self.stop_signals[0])
        await self.wait_for_workers()
        if self.failed:
            log.error("stopped after a worker failure: exit %d", EXIT_FAILED)
            return EXIT_FAILED
        log.info("stopped: all %d workers exited cleanly", len(self.workers))
        return 0

    def on_signal(self, signum: int) -> None:
        if not self.stop_signals:
            log.info(
                "received %s: stopping %d workers", signal.Signals(signum).name, len(self.workers)
            )
        self.stop(signum)

    def stop(self, signum: int) -> None:
        if self.stop_started is None:
            self.stop_started = asyncio.get_running_loop().time()
        self.stop_signals.append(signum)
        for worker in self.workers:
            worker.send(signum)

    async def wait_for_workers(self) -> None:
        loop = asyncio.get_running_loop()
        waits = {asyncio.ensure_future(w.process.wait()): w for w in self.workers}
        pending = set(waits)
        killed = False
        while pending:
            timeout = None
            if self.stop_started is not None and not killed:
                settings = self.settings
                allowed = (
                    settings.shutdown_delay_seconds
                    + settings.shutdown_grace_seconds
                    + KILL_MARGIN_SECONDS
                )
                timeout = max(0.0, self.stop_started + allowed - loop.time())
            done, pending = await asyncio.wait(
                pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if not done:
                for task in pending:
                    log.error("%s did not stop in time: killing it", waits[task].name)
                    waits[task].send(signal.SIGKILL)
                killed = True
                self.failed = True
                continue
            for task in done:
                self.on_exit(waits[task], task.result())

    def on_exit(self, worker: Worker, code: int) -> None:
        if self.stop_signals and self.clean(code):
            log.info("%s stopped", worker.name)
            return
        self.failed = True
        if self.stop_signals:
            log.error("%s stopped with %s", worker.name, describe_exit(code))
            return
        log.error(
            "%s exited unexpectedly with %s: stopping the other workers",
            worker.name,
            describe_exit(code),
        )
        self.stop(signal.SIGTERM)

    def clean(self, code: int) -> bool:
        """Exit 0, or killed by a signal the parent forwarded before the worker had its own
        handlers installed (it was still starting: nothing was in flight)."""
        if code == 0 or -code in self.stop_signals:
            return True
        return code == EXIT_INTERRUPTED and signal.SIGINT in self.stop_signals


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


async def start_worker(index: int) -> Worker:
    """`python -m launcher serve --worker-index INDEX`, a fresh interpreter with the parent's
    environment, stdout and stderr; its stdin is the lifeline pipe."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "launcher",
        "serve",
        "--worker-index",
        str(index),
        stdin=asyncio.subprocess.PIPE,
        process_group=0,
    )
    return Worker(index=index, process=process)


# --- a worker -----------------------------------------------------------------------------------


async def run_worker(settings: Settings, index: int) -> None:
    """One worker: the database is already migrated and provisioned by the parent."""
    configure_logging(settings, label=f"worker {index}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    _watch_lifeline(stop)
    core = await open_core(settings, migrate=False)
    try:
        await core.keys.ensure_active_key()  # the parent made it: this only loads it
        # One sweeper per machine is plenty: the first worker runs the janitor.
        await serve_core(core, reuse_port=True, stop=stop, sweep=index == 1)
    finally:
        await core.close()
    log.info("stopped")


def _watch_lifeline(stop: asyncio.Event) -> None:
    """Sets `stop` when stdin (the pipe from the parent) reaches end of file."""
    loop = asyncio.get_running_loop()
    fd = sys.stdin.fileno()

    def readable() -> None:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(fd)
            if not stop.is_set():
                log.warning("the supervisor went away: shutting down")
                stop.set()

    os.set_blocking(fd, False)
    loop.add_reader(fd, readable)
