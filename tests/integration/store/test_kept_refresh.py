"""Refreshes that keep their refresh token, run together (server/store/kept_refresh.py,
KeptRefresh.run_many), on a real SQLite file: each has the outcome it would have had alone,
run in turn, whichever sessions the run mixes; the session is left as the updates made in
turn leave it; only the refreshes kept insert their tokens; and a session no longer live
rolls the whole run back (RollBack), for the runner to run each alone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.engine import Engine

from server.records import RefreshOutcome, SessionContext, SessionUpdate
from server.store import rows
from server.store.kept_refresh import KeptRefresh, RollBack, merged_update
from server.store.schema import sessions, tokens
from server.store.sql import SqlStore
from tests.support.databases import copy_sqlite_template, sqlite_url
from tests.support.records import ACCESS, NOW, session, token


@pytest.fixture
async def database(tmp_path: Path, sqlite_template: Path) -> AsyncIterator[Engine]:
    db = tmp_path / "tokens.db"
    copy_sqlite_template(sqlite_template, db)
    store = await SqlStore.open(sqlite_url(db))
    await store.save_tokens([token("r1")], session("s1"))
    await store.save_tokens([token("r2", session="s2")], session("s2"))
    await store.close()
    engine = create_engine(f"sqlite:///{db}")
    yield engine
    engine.dispose()


def kept(sid: str, presented: str, new: str, update: SessionUpdate) -> KeptRefresh:
    return KeptRefresh(
        sid,
        {"token_digest": presented, "sid": sid, "now": NOW},
        update,
        [rows.token_row(token(new, use=ACCESS, session=sid))],
    )


def test_a_run_mixing_sessions_and_a_wrong_token_answers_each_as_alone(database: Engine) -> None:
    units = [
        kept("s1", "r1", "a1", SessionUpdate(updated_at=NOW + 1, context=SessionContext("EUR"))),
        kept("s2", "r1", "a2", SessionUpdate(updated_at=NOW + 1)),  # s1's token, not s2's
        kept("s2", "r2", "a3", SessionUpdate(updated_at=NOW + 2, legal_entity_id="le-1")),
        kept(
            "s1",
            "r1",
            "a4",
            SessionUpdate(updated_at=NOW + 3, context=SessionContext("CHF", language="fr")),
        ),
    ]
    with database.begin() as conn:
        outcomes = KeptRefresh.run_many(conn, units)
    assert outcomes == [
        RefreshOutcome.KEPT,
        RefreshOutcome.INVALID,
        RefreshOutcome.KEPT,
        RefreshOutcome.KEPT,
    ]
    with database.connect() as conn:
        stored = set(conn.execute(select(tokens.c.digest, tokens.c.session_id)).all())
        left = {
            row.session_id: row
            for row in conn.execute(
                select(
                    sessions.c.session_id,
                    sessions.c.updated_at,
                    sessions.c.currency,
                    sessions.c.language,
                    sessions.c.site_code,
                    sessions.c.legal_entity_id,
                )
            )
        }
    assert stored == {("r1", "s1"), ("r2", "s2"), ("a1", "s1"), ("a3", "s2"), ("a4", "s1")}
    assert (left["s1"].updated_at, left["s1"].currency, left["s1"].language) == (
        NOW + 3,
        "CHF",
        "fr",
    )
    assert left["s1"].site_code == "main"  # set by no update: as it was
    assert (left["s2"].updated_at, left["s2"].legal_entity_id) == (NOW + 2, "le-1")


def test_a_session_no_longer_live_rolls_the_run_back(database: Engine) -> None:
    with database.begin() as conn:
        conn.execute(sessions.update().where(sessions.c.session_id == "s2").values(revoked_at=NOW))
    units = [
        kept("s1", "r1", "a1", SessionUpdate(updated_at=NOW + 1)),
        kept("s2", "r2", "a2", SessionUpdate(updated_at=NOW + 1)),
    ]
    with pytest.raises(RollBack) as raised, database.begin() as conn:
        KeptRefresh.run_many(conn, units)
    assert raised.value.outcome is RefreshOutcome.INVALID
    with database.connect() as conn:
        assert {d for (d,) in conn.execute(select(tokens.c.digest))} == {"r1", "r2"}


def test_updates_merged_leave_each_field_as_the_last_that_set_it() -> None:
    merged = merged_update(
        [
            SessionUpdate(updated_at=5, context=SessionContext("EUR", "main"), legal_entity_id="a"),
            SessionUpdate(updated_at=7, context=SessionContext(None, "outlet")),
            SessionUpdate(updated_at=6, context=SessionContext(language="de")),
        ]
    )
    assert merged == SessionUpdate(
        updated_at=6,
        context=SessionContext("EUR", "outlet", "de"),
        legal_entity_id="a",
    )
