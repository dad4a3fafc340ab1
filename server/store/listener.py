"""One replica's ear for the others' revocations (server/store/notices.py), on PostgreSQL.

A connection of its own (asyncpg, outside the pool) LISTENs on the notices' channel; each notice
drops what it names from this replica's token cache, on the event loop, before any later
introspection reads the cache. Correctness rests on two rules.

**The cache is used only while the listener is known to be listening.** Until the first LISTEN
succeeds, and from the moment the connection is found lost until a new LISTEN is proven to hear,
the cache is suspended (emptied, and neither read nor filled: every token is read from the
store); on listening again it starts empty, since notices sent meanwhile were missed. A LISTEN
is proven by hearing a probe (a notice naming nothing) sent on another connection, as another
replica's notice would be: a connection pooler in transaction mode (PgBouncer) accepts LISTEN
and then hands the notices to whichever client holds the server connection at the time, and a
listener behind one must not pass for listening; the log tells the operator to point
TOKENSERVICE_REVOCATION_LISTENER_URL at PostgreSQL itself.

**An entry is answered only while the listener has proven, within the last `max_lag` seconds,
that it had heard every revocation committed until then.** Listening is not enough: a notice
can be late while the connection stays up (PostgreSQL's backend for the connection not
scheduled on a busy machine, a slow network), and a late notice must not leave a revoked token
active past the bound. The proof is a heartbeat: the listening connection notifies a channel
of its own (`SELECT pg_notify`), and PostgreSQL delivers every listener's notices in the order
their transactions committed, so when the heartbeat sent at time T is heard, every revocation
that committed before T has been heard, and applied (asyncpg runs the callbacks in order), too.
Hearing it confirms the cache until T + max_lag (TokenCache.confirm); past that, lookups go to
the store until the next heartbeat is heard, so a revocation committed at t0 is never answered
active from this cache by a lookup after t0 + max_lag, however late its notice. Heartbeats are
sent every `max_lag / 4` while the cache is consulted, and every `probe_seconds` when it is not
(so that an idle replica costs the database next to nothing); the heartbeat's transaction
commits asynchronously (`synchronous_commit = off` on this connection, once the probe has shown
it to be PostgreSQL's own: a heartbeat writes nothing that needs to survive a crash).

A connection is found lost when asyncpg reports it closed (the server ended it,
pg_terminate_backend, a reset) or when a heartbeat is not heard within `probe_seconds`; that
bounds how long a connection that died silently (a network path that drops packets) is kept,
while the heartbeat's confirmation has already sent lookups to the store. The cache's own
lifetime (TOKENSERVICE_TOKEN_CACHE_SECONDS) stays the last line of defence.

Reconnecting waits `retry_seconds`, doubling to `max_retry_seconds`, so an outage costs the
database one attempt per interval per replica; each change of state is one log line. The
connection says what it is in pg_stat_activity (`application_name` APPLICATION_NAME), so that an
operator, or a test, can tell it from the pool's connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from server.settings import ConfigError
from server.store.notices import CHANNEL, Notice
from server.store.token_cache import TokenCache

log = logging.getLogger("tokenservice.store")

APPLICATION_NAME = "tokenservice-listener"
PROBE_APPLICATION_NAME = "tokenservice-listener-probe"
NOT_HEARING = (
    "the listening connection did not hear a probe notice (a connection pooler in "
    "transaction mode between this replica and PostgreSQL?): set "
    "TOKENSERVICE_REVOCATION_LISTENER_URL to PostgreSQL itself"
)


class NotHearing(Exception):
    """LISTEN succeeded, but the probe notice sent on another connection never arrived."""


def asyncpg_dsn(database_url: str) -> str:
    """The libpq-style DSN asyncpg takes, from the service's SQLAlchemy URL."""
    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class RevocationListener:
    """Keeps `cache` in step with the revocations every replica announces."""

    def __init__(
        self,
        database_url: str,
        cache: TokenCache,
        *,
        probe_seconds: float = 1.0,
        max_lag_seconds: float = 0.08,
        retry_seconds: float = 0.1,
        max_retry_seconds: float = 5.0,
        connect_timeout_seconds: float = 5.0,
    ) -> None:
        if probe_seconds <= 0:
            raise ConfigError(
                "TOKENSERVICE_REVOCATION_LISTENER_PROBE_SECONDS must be greater than 0"
            )
        if max_lag_seconds <= 0:
            raise ConfigError("TOKENSERVICE_REVOCATION_MAX_LAG_SECONDS must be greater than 0")
        try:
            postgresql = make_url(database_url).get_backend_name() == "postgresql"
        except ArgumentError:
            postgresql = False
        if not postgresql:  # the URL is not echoed: it may hold a password
            raise ConfigError(
                "TOKENSERVICE_REVOCATION_LISTENER_URL must be a postgresql:// URL of the "
                "service's database"
            )
        self._dsn = asyncpg_dsn(database_url)
        self._cache = cache
        self._probe_seconds = probe_seconds
        self._max_lag = max_lag_seconds
        self._beat_interval = max_lag_seconds / 4
        self._retry_seconds = retry_seconds
        self._max_retry_seconds = max_retry_seconds
        self._connect_timeout = connect_timeout_seconds
        self._task: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()
        self.listening = asyncio.Event()  # set while the cache may be used
        self.notices = 0  # received, for tests and /metrics
        self._probes: dict[str, asyncio.Event] = {}  # this listener's own, by nonce
        self.backend_pid: int | None = None  # the listening connection's server process
        self._sequence = 0
        self._beat: tuple[str, float, asyncio.Future[None]] | None = None  # payload, sent, heard
        cache.require_confirmation()
        cache.suspend()

    async def start(self) -> None:
        """Starts listening in the background; waits for the first LISTEN, up to the connect
        timeout (the service starts either way, reading every token from the store until it
        listens)."""
        self._task = asyncio.create_task(self._run(), name="revocation-listener")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.listening.wait(), timeout=self._connect_timeout)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._cache.suspend()

    async def _run(self) -> None:
        delay = self._retry_seconds
        was_listening = False
        while True:
            connection: Any = None
            try:
                import asyncpg  # only on PostgreSQL: a process on SQLite never loads it

                connection = await asyncpg.connect(
                    self._dsn,
                    timeout=self._connect_timeout,
                    server_settings={"application_name": APPLICATION_NAME},
                )
                self._lost.clear()
                connection.add_termination_listener(lambda _conn: self._lost.set())
                await connection.add_listener(CHANNEL, self._heard)
                beats = f"{CHANNEL}_beat_{secrets.token_hex(8)}"  # this connection's own
                await connection.add_listener(beats, self._heard_a_heartbeat)
                await self._hear_a_probe()
                # The heartbeats need no durability; set only now, on PostgreSQL itself (through
                # a transaction pooler the setting would stay with a pooled server connection).
                await connection.execute("SET synchronous_commit = off")
                self._cache.resume()
                await self._heartbeat(connection, beats)  # confirmed from the start
                self.backend_pid = connection.get_server_pid()
                self.listening.set()
                if not was_listening:
                    log.info("listening for other replicas' revocations")
                was_listening, delay = True, self._retry_seconds
                await self._until_lost(connection, beats)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                # Not only the network's and the server's errors: one asyncpg raises for its own
                # reasons (a protocol or internal client error) would otherwise end this task
                # and leave the cache suspended for good, without a word.
                if was_listening or delay == self._retry_seconds:
                    log.warning(
                        "not listening for other replicas' revocations (%s): every token is "
                        "read from the database until listening again",
                        NOT_HEARING if isinstance(error, NotHearing) else type(error).__name__,
                    )
            finally:
                self._deaf()
                if connection is not None:
                    with contextlib.suppress(Exception):
                        connection.terminate()
            was_listening = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max_retry_seconds)

    async def _hear_a_probe(self) -> None:
        """Returns once the listening connection has heard a probe sent on a connection of its
        own; raises NotHearing when it does not within the connect timeout. The payload is
        inlined (a simple query: no prepared statement for a pooler to lose), and is hex and
        JSON punctuation only."""
        import asyncpg  # loaded already by _run

        nonce = secrets.token_hex(8)
        heard = self._probes[nonce] = asyncio.Event()
        try:
            sender = await asyncpg.connect(
                self._dsn,
                timeout=self._connect_timeout,
                server_settings={"application_name": PROBE_APPLICATION_NAME},
            )
            try:
                payload = Notice(probe=nonce).payload()
                await sender.execute(f"SELECT pg_notify('{CHANNEL}', '{payload}')")
            finally:
                await sender.close()
            try:
                await asyncio.wait_for(heard.wait(), timeout=self._connect_timeout)
            except TimeoutError:
                raise NotHearing(NOT_HEARING) from None
        finally:
            self._probes.pop(nonce, None)

    async def _until_lost(self, connection: Any, beats: str) -> None:
        """Sends heartbeats, often while the cache is consulted and every probe_seconds when it
        is not; returns (raising) when the connection is found closed or a heartbeat is not
        heard in time."""
        clock = self._cache.now
        idle_until = clock() + self._probe_seconds
        while not self._lost.is_set():
            with contextlib.suppress(TimeoutError):  # woken at once by a closed connection
                await asyncio.wait_for(self._lost.wait(), timeout=self._beat_interval)
            if self._lost.is_set():
                break
            if self._cache.consulted or clock() >= idle_until:
                self._cache.consulted = False
                await self._heartbeat(connection, beats)
                idle_until = clock() + self._probe_seconds
        raise ConnectionResetError("the listening connection was closed")

    async def _heartbeat(self, connection: Any, channel: str) -> None:
        """Notifies this connection's own channel and waits until it hears it; raises
        TimeoutError when that takes more than probe_seconds."""
        self._sequence += 1
        payload = str(self._sequence)
        heard = asyncio.get_running_loop().create_future()
        self._beat = (payload, self._cache.now(), heard)
        try:
            async with asyncio.timeout(self._probe_seconds):
                await connection.execute("SELECT pg_notify($1, $2)", channel, payload)
                await heard
        finally:
            self._beat = None

    def _heard_a_heartbeat(
        self, _connection: object, _pid: int, _channel: str, payload: str
    ) -> None:
        beat = self._beat
        if beat is None or beat[0] != payload or beat[2].done():
            return  # a heartbeat given up on (timed out): it proves nothing about now
        self._cache.confirm(beat[1] + self._max_lag)
        beat[2].set_result(None)

    def _deaf(self) -> None:
        self.listening.clear()
        self.backend_pid = None
        self._cache.require_confirmation()  # a new connection proves itself afresh
        self._cache.suspend()

    def _heard(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        notice = Notice.parse(payload)
        if notice.probe:  # a listener proving its connection, this one or another's
            probe = self._probes.get(notice.probe)
            if probe is not None:
                probe.set()
            return
        self.notices += 1
        if notice.everything:
            self._cache.clear()
        else:
            for digest in notice.tokens:
                self._cache.drop_token(digest)
            for session_id in notice.sessions:
                self._cache.drop_session(session_id)
        self._cache.revoked()
