"""Item 3, refresh races: 16 and 100 simultaneous refreshes of one refresh token, round after
round, against a real `tokenservice serve` on SQLite and on PostgreSQL, then a replay of rotated
refresh tokens after a restart.

What the contract (and docs/clients.md, "Refresh-token rotation") defines, checked exactly every
round:

- every one of the N calls succeeds (the grace window: parallel tabs do not log each other
  out), none with INTERNAL or UNKNOWN or anything else;
- all N answers are one answer: field for field the same (the presented token's session, one
  new access token, one new refresh token, one SaaS token), but for the lifetimes, which are
  what remains at each answer: those differ by the same whole seconds, at most the round's
  duration (on a real clock, answers that straddle a second are a second apart);
- the store shows exactly one rotation (one conditional UPDATE won: the presented token is the
  only rotated refresh token of the session), exactly one live successor (the winner saved it;
  the N - 1 grace answers saved nothing), and the session is not revoked;
- the successor refreshes on: it rotates in turn (two rotations, still one live successor).

Rounds alternate anonymous and customer sessions. After the rounds the server is stopped and
started again with a 1 s grace window (TOKENSERVICE_REFRESH_GRACE_SECONDS=1); once that window
has passed, rotated refresh tokens of some sessions are presented again: each is rejected
(invalid_grant), and per the contract (reuse detection) its whole session is revoked: its newest
refresh token no longer refreshes, its access tokens are inactive, the session row is revoked;
the other sessions are untouched and refresh on.

Bounded: 8 rounds of 16 and 3 rounds of 100; soak: 200 rounds of each.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import time
from collections import Counter
from pathlib import Path

import grpc
import pytest

from tests.reliability.support import (
    LEDGER,
    TIMEOUT,
    Database,
    Provisioned,
    Service,
    database_env,
    grpc_code,
    provision,
    sign_in,
    size,
    tally,
)
from tests.support.harness import lifetimes_apart
from tokenservice.v1 import token_service_pb2 as pb
from tokenservice.v1 import token_service_pb2_grpc as pb_grpc

ROUNDS = {16: size(8, 200), 100: size(3, 200)}
CHANNELS = 4  # the calls of a round spread over several HTTP/2 connections
CALL_TIMEOUT = 30.0
REPLAY_GRACE_SECONDS = 1
REPLAYED_SESSIONS = 6

pytestmark = pytest.mark.timeout(TIMEOUT)


@dataclasses.dataclass
class Family:
    """One session after its round: the rotated tokens and the newest pair."""

    kind: str
    session_id: str
    rotated: list[str]  # refresh tokens that were rotated, oldest first
    refresh_token: str  # the newest
    access_tokens: list[str]
    rotated_at: float  # monotonic time of the last rotation


@dataclasses.dataclass
class Races:
    stubs: list[pb_grpc.TokenServiceStub]
    shop: Provisioned
    database: Database
    calls: int = 0
    outcomes: Counter[str] = dataclasses.field(default_factory=Counter)
    wrong: list[str] = dataclasses.field(default_factory=list)

    @property
    def stub(self) -> pb_grpc.TokenServiceStub:
        return self.stubs[0]

    async def session(self, kind: str) -> tuple[str, str, str]:
        """A new session of `kind`: (session id, refresh token, access token)."""
        answer = await sign_in(self.stub, self.shop, kind, deadline=CALL_TIMEOUT)
        self.calls += 1 + (kind == "customer")
        return answer.session_id, answer.refresh_token, answer.access_token

    def request(self, kind: str, refresh_token: str, bearer: str) -> pb.RefreshTokenRequest:
        """An anonymous refresh names its storefront client; a customer refresh carries an
        access token of the session (`bearer`)."""
        anonymous = kind == "anonymous"
        return pb.RefreshTokenRequest(
            tenant=self.shop.tenant,
            client_id=self.shop.storefront_id if anonymous else "",
            refresh_token=refresh_token,
            access_token="" if anonymous else bearer,
        )

    async def refresh(
        self, stub: pb_grpc.TokenServiceStub, request: pb.RefreshTokenRequest
    ) -> pb.TokenResponse | str:
        self.calls += 1
        try:
            answer = await stub.RefreshToken(request, timeout=CALL_TIMEOUT)
        except grpc.aio.AioRpcError as error:
            return grpc_code(error)
        LEDGER.secret(answer.access_token, answer.refresh_token, answer.saas_token)
        return answer

    async def round(self, fanout: int, kind: str) -> Family:
        session_id, presented, first_access = await self.session(kind)
        request = self.request(kind, presented, first_access)
        started = time.monotonic()
        results = await asyncio.gather(
            *(self.refresh(self.stubs[i % len(self.stubs)], request) for i in range(fanout))
        )
        answers = [r for r in results if isinstance(r, pb.TokenResponse)]
        self.outcomes.update("OK" if isinstance(r, pb.TokenResponse) else r for r in results)
        label = f"{kind} round of {fanout}"
        failures = [r for r in results if isinstance(r, str)]
        self.check(not failures, f"{label}: failures {tally(failures)}")
        self.check(
            {a.session_id for a in answers} <= {session_id}, f"{label}: another session answered"
        )
        self.check_one_answer(answers, presented, math.ceil(time.monotonic() - started), label)
        await self.check_store(session_id, kind, label, rotated=1, live=1)
        rotated_at = time.monotonic()
        if not answers:
            return Family(kind, session_id, [presented], presented, [first_access], rotated_at)

        # The successor is the family's one live member: it refreshes, and rotates in its turn.
        successor = answers[0]
        follow = await self.refresh(
            self.stub, self.request(kind, successor.refresh_token, successor.access_token)
        )
        self.outcomes["OK" if isinstance(follow, pb.TokenResponse) else follow] += 1
        if not isinstance(follow, pb.TokenResponse):
            self.check(False, f"{label}: the successor did not refresh: {follow}")
            return Family(kind, session_id, [presented], presented, [first_access], rotated_at)
        self.check(follow.session_id == session_id, f"{label}: the successor left the session")
        await self.check_store(session_id, kind, f"{label}, follow-up", rotated=2, live=1)
        return Family(
            kind=kind,
            session_id=session_id,
            rotated=[presented, successor.refresh_token],
            refresh_token=follow.refresh_token,
            access_tokens=[first_access, successor.access_token, follow.access_token],
            rotated_at=time.monotonic(),
        )

    def check_one_answer(
        self, answers: list[pb.TokenResponse], presented: str, seconds: int, label: str
    ) -> None:
        """All answers the same but for lifetimes at most `seconds` apart, with new tokens."""
        if not answers:
            return
        newest = min(answers, key=lambda a: a.expires_in)
        gaps = Counter(lifetimes_apart(a, newest) for a in answers)
        self.check(
            all(gap is not None and gap <= seconds for gap in gaps),
            f"{label}: the answers are not one answer (lifetime gaps {dict(gaps)}, None: "
            f"another answer; the round took at most {seconds} s)",
        )
        self.check(
            newest.refresh_token not in ("", presented) and newest.access_token,
            f"{label}: the answer's refresh token is not new",
        )

    async def check_store(
        self, session_id: str, kind: str, label: str, *, rotated: int, live: int
    ) -> None:
        """The family's refresh tokens (of `kind`: a customer session also keeps the anonymous
        refresh token it had before login)."""
        rows = await self.database.rows(
            "SELECT"
            " sum(CASE WHEN rotated_at IS NOT NULL THEN 1 ELSE 0 END),"
            " sum(CASE WHEN rotated_at IS NULL AND revoked_at IS NULL THEN 1 ELSE 0 END)"
            " FROM tokens WHERE session_id = :sid AND use = 'refresh' AND kind = :kind",
            sid=session_id,
            kind=kind,
        )
        [(rotated_rows, live_rows)] = rows
        self.check(
            (rotated_rows, live_rows) == (rotated, live),
            f"{label}: store has {rotated_rows} rotated and {live_rows} live refresh tokens, "
            f"the contract says {rotated} and {live}",
        )
        revoked = await self.database.session_revoked(session_id)
        self.check(not revoked, f"{label}: the session was revoked")

    def check(self, condition: bool, message: str) -> None:
        if not condition:
            self.wrong.append(message)


async def test_simultaneous_refreshes_rotate_once_and_replays_after_a_restart_are_refused(
    database_kind: str, database_url: str, tmp_path: Path
) -> None:
    env, url = database_env(database_kind, database_url, tmp_path)
    shop = await provision(env, "races")
    database = Database(url)
    service = Service(env, tmp_path / "logs")
    # The same database, restarted with a short grace window for the replays.
    restarted = Service(
        {**env, "TOKENSERVICE_REFRESH_GRACE_SECONDS": str(REPLAY_GRACE_SECONDS)},
        tmp_path / "logs-restarted",
    )
    started = time.monotonic()
    families: list[Family] = []
    try:
        await service.start()
        async with contextlib.AsyncExitStack() as stack:
            channels = [
                await stack.enter_async_context(grpc.aio.insecure_channel(service.grpc_target))
                for _ in range(CHANNELS)
            ]
            races = Races([pb_grpc.TokenServiceStub(c) for c in channels], shop, database)
            for fanout, rounds in ROUNDS.items():
                for number in range(rounds):
                    kind = "anonymous" if number % 2 == 0 else "customer"
                    families.append(await races.round(fanout, kind))
        race_seconds = time.monotonic() - started
        await service.stop()

        await restarted.start()
        async with grpc.aio.insecure_channel(restarted.grpc_target) as channel:
            stub = pb_grpc.TokenServiceStub(channel)
            replays = await _replay(stub, races, families)
        await restarted.stop()
    finally:
        await service.close()
        await restarted.close()
        await database.close()

    LEDGER.record(
        f"3 refresh races ({database_kind})",
        rounds={str(fanout): rounds for fanout, rounds in ROUNDS.items()},
        simultaneous_refreshes=sum(f * r for f, r in ROUNDS.items()),
        outcomes=dict(races.outcomes),
        requests_sent=races.calls,
        replays=replays,
        faults_injected=1,  # the restart
        race_seconds=round(race_seconds, 1),
        contract_violations=len(races.wrong),
    )
    assert not races.wrong, "\n".join(races.wrong[:20])
    assert set(races.outcomes) == {"OK"}, dict(races.outcomes)


async def _replay(
    stub: pb_grpc.TokenServiceStub, races: Races, families: list[Family]
) -> dict[str, int]:
    """Rotated tokens of the first sessions presented again after the grace window: refused,
    and their sessions revoked; the other sessions refresh on."""
    replayed, controls = families[:REPLAYED_SESSIONS], families[REPLAYED_SESSIONS:]
    wait = max(f.rotated_at for f in families) + REPLAY_GRACE_SECONDS + 1.1 - time.monotonic()
    await asyncio.sleep(max(wait, 0))
    refused = 0
    revoked_session = {
        "anonymous": "INVALID_ARGUMENT/invalid_grant",
        "customer": "UNAUTHENTICATED/invalid_token",
    }
    for family in replayed:
        label = f"replay of a rotated {family.kind} refresh token after the restart"
        # The first replay is detected as reuse and revokes the whole session, its newest
        # tokens too; what comes after is refused as the session's other tokens are (a
        # customer's bearer with them: refused as the bearer it no longer is).
        attempts = [
            (family.rotated[0], family.access_tokens[0], "INVALID_ARGUMENT/invalid_grant"),
            (family.rotated[-1], family.access_tokens[0], revoked_session[family.kind]),
            (family.refresh_token, family.access_tokens[-1], revoked_session[family.kind]),
        ]
        for token, bearer, expected in attempts:
            outcome = await races.refresh(stub, races.request(family.kind, token, bearer))
            races.check(outcome == expected, f"{label}: {outcome}")
            refused += outcome == expected and token != family.refresh_token
        for access in family.access_tokens:
            answer = await stub.IntrospectToken(
                pb.IntrospectTokenRequest(token=access), timeout=CALL_TIMEOUT
            )
            races.calls += 1
            races.check(not answer.active, f"{label}: an access token is still active")
        revoked = await races.database.session_revoked(family.session_id)
        races.check(revoked, f"{label}: the session row is not revoked")
    untouched = 0
    for family in controls[:REPLAYED_SESSIONS]:
        outcome = await races.refresh(
            stub, races.request(family.kind, family.refresh_token, family.access_tokens[-1])
        )
        races.check(isinstance(outcome, pb.TokenResponse), f"a session nobody replayed: {outcome}")
        untouched += isinstance(outcome, pb.TokenResponse)
    return {"replays_refused": refused, "sessions_revoked": len(replayed), "controls_ok": untouched}
