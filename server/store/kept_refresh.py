"""A refresh with rotation off (the refresh token stays), as a unit of work that a group of
them can run as one (runners.Batch): on PostgreSQL one session's refreshes share a
transaction (runners.ServerRunner, the `session_group(id)` key), and run one at a time in it,
each of their statements a round trip while the session's row lock is held, they would hold
it longer than the refreshes queueing on it one after another did. Together, they read the
refresh token once, insert every new token in one statement and update the session once,
with what running the updates in turn would have left: so the lock is held for three round
trips and one commit, however many refreshes share it.

Alone, the order is the one that holds the lock least: the refresh token is read and the new
tokens inserted first (new rows: they lock nothing another transaction waits for), and the
session's UPDATE comes last. Its row count still decides: a session revoked or deleted
meanwhile (the UPDATE, having waited for the revocation's lock, reads the row as committed)
updates nothing, and the inserts are rolled back with it (RollBack)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from sqlalchemy.engine import Connection

from server.records import RefreshOutcome, SessionContext, SessionUpdate
from server.store import statements


class RollBack(Exception):
    """Leaves a write transaction, undoing it, with an outcome."""

    def __init__(self, outcome: RefreshOutcome) -> None:
        self.outcome = outcome


def insert_tokens(conn: Connection, token_rows: list[dict[str, Any]]) -> None:
    if token_rows:
        conn.execute(statements.INSERT_TOKEN, token_rows)


@dataclasses.dataclass(frozen=True)
class KeptRefresh:
    """One refresh that keeps its refresh token: KEPT, INVALID (its token is not a live refresh
    token of the session: nothing written), or RollBack(INVALID) (the session is no longer
    live: what it inserted is undone)."""

    session_id: str
    params: Mapping[str, Any]  # token_digest, sid and now, for LIVE_REFRESH
    update: SessionUpdate
    token_rows: list[dict[str, Any]]

    def __call__(self, conn: Connection) -> RefreshOutcome:
        return KeptRefresh.run_many(conn, [self])[0]

    @staticmethod
    def run_many(conn: Connection, units: list[KeptRefresh]) -> list[RefreshOutcome]:
        """Each unit's outcome, as if each had run in turn: the units of one session together
        (a refresh changes no other session, and nothing a later refresh of the same session
        reads but the session row, which only the last UPDATE leaves)."""
        outcomes: dict[int, RefreshOutcome] = {}
        by_session: dict[str, list[int]] = {}
        for index, unit in enumerate(units):
            by_session.setdefault(unit.session_id, []).append(index)
        for session_id, indexes in by_session.items():
            live: dict[tuple[Any, Any], bool] = {}
            kept: list[KeptRefresh] = []
            for index in indexes:
                unit = units[index]
                presented = (unit.params["token_digest"], unit.params["now"])
                if presented not in live:
                    found = conn.execute(statements.LIVE_REFRESH, unit.params).first()
                    live[presented] = found is not None
                outcomes[index] = RefreshOutcome.KEPT if live[presented] else RefreshOutcome.INVALID
                if live[presented]:
                    kept.append(unit)
            if not kept:
                continue  # nothing written
            insert_tokens(conn, [row for unit in kept for row in unit.token_rows])
            change = merged_update([unit.update for unit in kept])
            if conn.execute(*statements.update_session(session_id, change)).rowcount == 0:
                raise RollBack(RefreshOutcome.INVALID)
        return [outcomes[index] for index in range(len(units))]


def merged_update(updates: list[SessionUpdate]) -> SessionUpdate:
    """What the updates, made in turn, leave: each field as the last one that set it."""
    context: dict[str, str] = {}
    legal_entity_id = None
    for update in updates:
        context.update(
            {k: v for k, v in dataclasses.asdict(update.context).items() if v is not None}
        )
        if update.legal_entity_id is not None:
            legal_entity_id = update.legal_entity_id
    return SessionUpdate(
        updated_at=updates[-1].updated_at,
        context=SessionContext(**context),
        legal_entity_id=legal_entity_id,
    )
