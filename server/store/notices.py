"""Revocation notices between replicas, through PostgreSQL itself (LISTEN/NOTIFY).

Every revoking transaction (a token, a session, every session of a customer or a legal entity, a
refresh-token reuse that ends its session, a password change or reset) also calls
`pg_notify(CHANNEL, payload)` naming what it revoked: token digests and session ids, never a
token. PostgreSQL delivers a notice when, and only when, its transaction commits, so nothing is
announced that did not happen, and nothing that happened goes unannounced to a replica that was
listening. Each replica listens on a connection of its own (server/store/listener.py) and drops
the entries its token cache holds for what a notice names, exactly as this replica's own
revocations drop them (server/store/cached.py).

A payload is at most 8,000 bytes (PostgreSQL's limit); a revocation naming more than fits is
announced as `everything`, and every listener drops its whole cache. A payload a listener cannot
read counts as `everything` too. On SQLite there is nothing to announce: the service runs as
one process on a file (`serve --workers N` is refused there), whose cache the store's own calls
keep exact, and a commit by another process on the file (the CLI) empties that cache within
about 0.1 s (server/store/runners.py, `watch_other_writers`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

from sqlalchemy.engine import Connection

from server.store import statements

CHANNEL = "tokenservice_revocations"
# PostgreSQL refuses a payload of 8,000 bytes or more; digests and session ids are ASCII.
MAX_PAYLOAD_BYTES = 7_900


@dataclasses.dataclass(frozen=True, slots=True)
class Notice:
    """What one committed revocation changed: tokens by digest, sessions by id, or everything."""

    tokens: tuple[str, ...] = ()
    sessions: tuple[str, ...] = ()
    everything: bool = False
    # A listener's own probe (server/store/listener.py): it names nothing, and a replica of an
    # earlier version reads it as naming nothing too.
    probe: str = ""

    def payload(self) -> str:
        if self.probe:
            return json.dumps({"t": [], "s": [], "p": self.probe}, separators=(",", ":"))
        if not self.everything:
            text = json.dumps(
                {"t": list(self.tokens), "s": list(self.sessions)}, separators=(",", ":")
            )
            if len(text) <= MAX_PAYLOAD_BYTES:
                return text
        return '{"all":true}'

    @classmethod
    def parse(cls, payload: str) -> Notice:
        """The notice in `payload`; one that cannot be read says `everything`."""
        try:
            data = json.loads(payload)
            if data.get("all") is True:
                return EVERYTHING
            tokens, sessions, probe = data["t"], data["s"], data.get("p", "")
            if not all(isinstance(x, str) for x in [*tokens, *sessions, probe]):
                return EVERYTHING
            return cls(tuple(tokens), tuple(sessions), probe=probe)
        except (ValueError, TypeError, KeyError, AttributeError):
            return EVERYTHING


EVERYTHING = Notice(everything=True)


def announce(
    conn: Connection,
    *,
    tokens: Sequence[str] = (),
    sessions: Sequence[str] = (),
    everything: bool = False,
) -> None:
    """Inside the revoking transaction: on PostgreSQL, a notice delivered at its commit; nothing
    on other databases, and nothing when nothing was revoked."""
    if conn.dialect.name != "postgresql" or not (tokens or sessions or everything):
        return
    notice = Notice(tuple(tokens), tuple(sessions), everything)
    conn.execute(statements.NOTIFY, {"nt_channel": CHANNEL, "nt_payload": notice.payload()})
