"""Item 1, crash durability: tokens issued at 100 in flight against a real `tokenservice serve`,
SIGKILL in the middle (a crash: no drain, no cleanup), restart on the same database. Every token
whose issuing call answered success is still active after the restart, none is lost; on SQLite
`PRAGMA integrity_check` says ok right after the crash and again at the end.

Half the tokens are issued before the kill, the other half by the restarted server (so it also
proves the crashed database serves on normally). The mix: anonymous logins (a new session with an
access and a refresh token), client_credentials service tokens, and customer logins (each on an
anonymous session of its own, whose tokens the login supersedes and are not counted).

Bounded: 400 tokens; soak: 5,000. Also on PostgreSQL (the process is killed, not the database).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import sqlite3
import time
from pathlib import Path

import grpc
import pytest

from tests.reliability.support import (
    LEDGER,
    TIMEOUT,
    Provisioned,
    Service,
    grpc_code,
    provision,
    reliability_env,
    sign_in,
    size,
    tally,
)
from tokenservice.v1 import token_service_pb2 as pb
from tokenservice.v1 import token_service_pb2_grpc as pb_grpc

TOKENS = size(400, 5_000)  # successful issuing calls in all, half before the kill
IN_FLIGHT = 100
CALL_TIMEOUT = 30.0
# One call in ten is a customer login, three are service tokens, the rest anonymous logins.
MIX: tuple[str, ...] = ("anonymous", "service", "anonymous", "anonymous", "customer")
MIX = (*MIX, "anonymous", "service", "anonymous", "anonymous", "service")

pytestmark = pytest.mark.timeout(TIMEOUT)


@dataclasses.dataclass
class Issued:
    kind: str
    tokens: tuple[str, ...]  # every token the answer carried that must stay active


@dataclasses.dataclass
class Load:
    stub: pb_grpc.TokenServiceStub
    shop: Provisioned
    target: int  # successes to reach
    # Keep issuing past the target until `stop` (the kill must meet calls in flight); else the
    # workers end at the target.
    past_target: bool = False
    issued: list[Issued] = dataclasses.field(default_factory=list)
    failures: list[str] = dataclasses.field(default_factory=list)
    in_flight: int = 0
    sent: int = 0
    stop: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    reached: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    async def run(self, workers: int) -> None:
        kinds = itertools.cycle(MIX)
        await asyncio.gather(*(self._worker(kinds) for _ in range(workers)))

    async def _worker(self, kinds: itertools.cycle[str]) -> None:
        while not self.stop.is_set() and (self.past_target or len(self.issued) < self.target):
            kind = next(kinds)
            self.in_flight += 1
            self.sent += 1
            try:
                issued = await self._issue(kind)
            except grpc.aio.AioRpcError as error:
                self.failures.append(grpc_code(error))
                if self.stop.is_set():
                    return
                continue
            finally:
                self.in_flight -= 1
            LEDGER.secret(*issued.tokens)
            self.issued.append(issued)
            if len(self.issued) >= self.target:
                self.reached.set()

    async def _issue(self, kind: str) -> Issued:
        shop = self.shop
        if kind == "service":
            grant = pb.ClientCredentialsGrant(
                client_id=shop.service_id, client_secret=shop.service_secret
            )
            answer = await self.stub.IssueToken(
                pb.IssueTokenRequest(client_credentials=grant), timeout=CALL_TIMEOUT
            )
            return Issued(kind, (answer.access_token,))
        answer = await sign_in(self.stub, shop, kind, deadline=CALL_TIMEOUT)
        return Issued(kind, (answer.access_token, answer.refresh_token))


def integrity(db_path: Path) -> list[str]:
    """`PRAGMA integrity_check` and `foreign_key_check` of the SQLite file ("ok" when sound)."""
    with sqlite3.connect(db_path) as connection:
        checked = [row[0] for row in connection.execute("PRAGMA integrity_check")]
        foreign = connection.execute("PRAGMA foreign_key_check").fetchall()
    return checked + [f"foreign key: {row}" for row in foreign]


async def test_every_token_answered_before_a_sigkill_survives_it(
    database_kind: str, database_url: str, tmp_path: Path
) -> None:
    db_path = tmp_path / "tokens.db"
    env = reliability_env(
        db_path, "" if database_kind == "sqlite" else database_url, TOKENSERVICE_LOG_LEVEL="INFO"
    )
    shop = await provision(env, "crash")
    service = Service(env, tmp_path / "logs")
    started = time.monotonic()
    try:
        await service.start()
        async with grpc.aio.insecure_channel(service.grpc_target) as channel:
            before = Load(pb_grpc.TokenServiceStub(channel), shop, TOKENS // 2, past_target=True)
            running = asyncio.create_task(before.run(IN_FLIGHT))
            await asyncio.wait_for(before.reached.wait(), timeout=TIMEOUT / 2)
            in_flight_at_kill = before.in_flight
            await service.kill()
            before.stop.set()
            await asyncio.wait_for(running, timeout=CALL_TIMEOUT + 5)
        crash_check = integrity(db_path) if database_kind == "sqlite" else ["ok"]

        await service.start()  # the same database, after the crash
        async with grpc.aio.insecure_channel(service.grpc_target) as channel:
            stub = pb_grpc.TokenServiceStub(channel)
            after = Load(stub, shop, TOKENS - len(before.issued))
            await asyncio.wait_for(after.run(IN_FLIGHT), timeout=TIMEOUT / 2)
            issued = before.issued + after.issued
            lost = await _inactive(stub, issued)
        await service.stop()
    finally:
        await service.close()
    final_check = integrity(db_path) if database_kind == "sqlite" else ["ok"]

    tokens = sum(len(i.tokens) for i in issued)
    LEDGER.record(
        f"1 crash durability ({database_kind})",
        successful_calls=len(issued),
        tokens_checked=tokens,
        by_kind=tally(i.kind for i in issued),
        requests_sent=before.sent + after.sent + tokens,
        in_flight_at_sigkill=in_flight_at_kill,
        failed_at_sigkill=tally(before.failures),
        faults_injected=1,
        tokens_lost=len(lost),
        seconds=round(time.monotonic() - started, 1),
    )
    assert in_flight_at_kill >= IN_FLIGHT // 2, "too few calls in flight at the kill: inconclusive"
    assert not after.failures, tally(after.failures)
    # Calls cut off by the kill fail as "unavailable", never with an answer the client trusts.
    assert set(before.failures) <= {"UNAVAILABLE", "CANCELLED"}, tally(before.failures)
    assert crash_check == ["ok"], crash_check
    assert final_check == ["ok"], final_check
    assert len(issued) >= TOKENS
    assert not lost, f"{len(lost)} of {tokens} answered tokens are not active after the restart"
    assert "Traceback" not in service.stderr, service.stderr[-4000:]


async def _inactive(stub: pb_grpc.TokenServiceStub, issued: list[Issued]) -> list[str]:
    """The kinds of the answered tokens that do not introspect as active (100 in flight)."""
    pending = [(i.kind, token) for i in issued for token in i.tokens]
    lost: list[str] = []

    async def worker() -> None:
        while pending:
            kind, token = pending.pop()
            answer = await stub.IntrospectToken(
                pb.IntrospectTokenRequest(token=token), timeout=CALL_TIMEOUT
            )
            if not answer.active:
                lost.append(kind)

    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    return lost
