"""The revocation feed's rows (schema.py `revocation_events`), for the SQL store.

`record` runs inside the revoking transaction, as `notices.announce` does: an event exists
exactly when its revocation committed. Positions must be read in the order they commit, or a
reader that has passed position N could later find N - 1 committed behind it and never deliver
it. SQLite has one writer, so they do. On PostgreSQL two transactions can take positions in
one order and commit in the other; `record` therefore takes a transaction-scoped advisory lock
first (statements.FEED_LOCK), which makes the revoking transactions commit one after the other
from that point. It is the last thing each of them does (every caller records after its last
UPDATE), so a transaction holding it waits for no other lock, and none deadlocks on it. A
position a rolled-back transaction took is simply never seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Connection

from server.records import FeedBounds, RevocationEvent
from server.store import statements


def record(
    conn: Connection,
    tenant: str,
    now: int,
    *,
    fingerprints: Sequence[str] = (),
    sessions: Sequence[str] = (),
    everything: bool = False,
) -> None:
    """Inside the revoking transaction: the event resource servers will be told of; nothing
    when nothing was revoked."""
    if not (fingerprints or sessions or everything):
        return
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(statements.FEED_LOCK)
    conn.execute(
        statements.INSERT_REVOCATION_EVENT,
        {
            "tenant": tenant,
            "revoked_at": now,
            "fingerprints": " ".join(fingerprints),
            "sessions": " ".join(sessions),
            "everything": everything,
        },
    )


def events(conn: Connection, after: int, tenant: str | None, limit: int) -> list[RevocationEvent]:
    if tenant is None:
        found = conn.execute(statements.REVOCATION_EVENTS, {"after": after, "limit": limit})
    else:
        params = {"after": after, "tenant": tenant, "limit": limit}
        found = conn.execute(statements.REVOCATION_EVENTS_OF_TENANT, params)
    return [_event(row) for row in found]


def bounds(conn: Connection) -> FeedBounds:
    pruned = conn.execute(statements.META, {"meta_name": statements.FEED_PRUNED_THROUGH}).scalar()
    pruned_through = int(pruned) if pruned is not None else 0
    head = conn.execute(statements.FEED_HEAD).scalar()
    return FeedBounds(pruned_through, int(head) if head is not None else pruned_through)


def prune(conn: Connection, before: int) -> int:
    """Deletes the events recorded before `before`, and every position before the last of them
    (a position is never reused, so nothing after it goes), remembering that last position."""
    through = conn.execute(statements.LAST_EVENT_BEFORE, {"before": before}).scalar()
    if through is None:
        return 0
    removed = int(conn.execute(statements.PRUNE_REVOCATION_EVENTS, {"through": through}).rowcount)
    params = {"meta_name": statements.FEED_PRUNED_THROUGH, "meta_value": str(through)}
    conn.execute(statements.SET_META[conn.dialect.name], params)
    return removed


def _event(row: Any) -> RevocationEvent:
    return RevocationEvent(
        position=int(row.position),
        tenant=row.tenant,
        revoked_at=int(row.revoked_at),
        fingerprints=tuple(row.fingerprints.split()),
        sessions=tuple(row.sessions.split()),
        everything=bool(row.everything),
    )
