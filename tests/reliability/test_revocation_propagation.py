"""Issue 17's measurements: how long a revocation on one replica takes to reach every other
replica's introspection cache on PostgreSQL (server/store/notices.py, server/store/listener.py),
under load, and what happens when the listening connections are cut (pg_terminate_backend) and
come back.

Two and then three real `tokenservice serve` replicas share one fresh PostgreSQL database. A set
of tokens is issued over gRPC (client_credentials service tokens, and one in SESSION_EVERY an
anonymous session, revoked by its refresh token so that the notice names the session and the
other replicas drop its access token through their session index), and every replica's cache is
warmed with each of them: a second pass must be answered wholly from the caches (/metrics), so
what the measurement sees is the cache dropped by a notice, not a cache bypassed. The cache
lifetime is CACHE_SECONDS (an hour, not the default 2 s), so that nothing but a notice (or the
suspension of a replica that is not listening) can make a replica answer a revoked token
inactive: a broken notice fails this test instead of hiding behind the entry ageing out.

Load: a process of its own (tests/reliability/introspection_load.py) runs LOAD_CLIENTS clients
per replica introspecting the shared set back to back, half of the calls on the tokens revoked
last (a quarter on the one being revoked now), and records every answer. It runs at a lower
priority (nice 10): a deployment's clients have machines of their own, while here they share 2
cores with the replicas, PostgreSQL and the pollers. The replicas are about as busy either way
(about 2,000 introspections/s in all when nothing else runs, near what these cores serve), but
at the same priority the load's own CPU time came before the notices and the pollers (a bounded
run at a load average of 4 measured a p99 of 165 ms that way, 10 ms with the load niced).

Revocations, one after another: each on a replica drawn at random (RevokeToken); t0 is when
that call returned; dedicated pollers (in this process, one channel per replica) then
introspect the token on every replica back to back until it answers inactive. The propagation
of a revocation is the longest, over the other replicas, of (that replica's first inactive
answer received - t0). Every answer, the load's and the pollers', is judged by when its call
was made, since an answer to a call made before the revocation may rightly say active. A
listener of the test's own (never cut) records when PostgreSQL delivered each notice, so that a
late one can be told apart from a replica slow to act on it, and a watch on this process's own
event loop records its stalls, so that a poller's answer received late because this process was
not running can be told apart from a replica's.

The replicas run with the default TOKENSERVICE_REVOCATION_MAX_LAG_SECONDS (80 ms): each answers
from its cache only while it has proven, within that lag, that it heard every revocation
committed until then (server/store/listener.py), so a late notice sends lookups to the database
rather than leaving the token active; the ledger counts those lookups (`unconfirmed`).

Mid-run, CUT_ROUNDS rounds cut the listening connections (found in pg_stat_activity by their
application_name), of every replica and of one in turn, and go on revoking during the outage and
after every listener is back; a revocation is counted as made while one was away when, after
it, pg_stat_activity shows fewer listening connections than replicas (so at least one replica
could not have been told). Rounds go on until CUT_ROUNDS are done and at least that many
revocations were made while a listener was away.

What is asserted where, and why:

- In both sizes, what the code guarantees whatever the machine's speed: the revoking replica
  never answers active to a call made after its own RevokeToken answered (it drops its entries
  before answering); no replica answers active to a call made after every replica has answered
  inactive (the entry was dropped by the notice or the cache was suspended; either way it does
  not come back); no token is answered inactive before its revocation, nor any token never
  revoked at all; no introspection fails; every replica comes to answer inactive; and every
  cut listener listens again.
- `make soak` (full size; `make soak` runs its tests one at a time, nothing beside this one):
  the issue's numbers, over REVOCATIONS = 1,000 revocations per replica count: p99 of the
  propagation under LIMIT_SECONDS (100 ms), and 0 answers active to a call made more than
  LIMIT_SECONDS after t0, through the cuts too (the issue's "0 revoked tokens accepted after
  the bound").
- `make test` (bounded): the same judgement of every answer against BOUNDED_LIMIT_SECONDS
  (2 s, the default TOKENSERVICE_TOKEN_CACHE_SECONDS: the staleness replicas have always
  accepted from each other); the percentiles are reported, not asserted. A notice is dropped
  when it arrives, and on a busy 2-core machine running the rest of the suite beside this test
  (pytest-xdist) it arrives late by more than 100 ms for reasons that are not the service's
  (a bounded run at a load average of 6 to 18 measured a p99 of 0.2 to 2.5 s, the pollers'
  own calls taking as long, yet no call made 2 s after t0 answered active); a notice 2 s late
  is not load, it is one that was lost.

Bounded: 150 revocations and 2 cut rounds per replica count, a few seconds each; soak: 1,000 and
6. The numbers go to the ledger with the machine's load average while measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import os
import random
import statistics
import time
from collections.abc import Awaitable, Iterable
from pathlib import Path
from typing import TypeVar

import asyncpg
import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from server.store.listener import asyncpg_dsn
from server.store.notices import CHANNEL, Notice
from server.tokens import KeyedDigest
from tests.reliability.support import (
    LEDGER,
    SOAK,
    TIMEOUT,
    Provisioned,
    Service,
    listening_pids,
    provision,
    reliability_env,
    size,
)
from tests.support import attack_process
from tests.support.defaults import TEST_SECRET
from tests.support.http_clients import async_http_client
from tests.support.waiting import WAIT_SECONDS, eventually
from tokenservice.v1 import token_service_pb2 as pb
from tokenservice.v1 import token_service_pb2_grpc as pb_grpc

REPLICA_COUNTS = (2, 3)
LOAD_CLIENTS = 8  # per replica
REVOCATIONS = size(150, 1_000)  # per replica count, outside the cut rounds; half before them
CUT_ROUNDS = size(2, 6)
MAX_CUT_ROUNDS = 4 * CUT_ROUNDS  # rounds until enough revocations landed while one was away
OUTAGE_REVOCATIONS = size(10, 20)  # at most, per round, before every listener is back
RECONNECTED_REVOCATIONS = size(5, 20)  # per round, once every listener is back
NEVER_REVOKED = size(20, 100)
SESSION_EVERY = 4  # one token in four is an anonymous session's access token
LIMIT_SECONDS = 0.1  # the issue's bound
TICK_SECONDS, STALL_SECONDS = 0.01, 0.05  # this process's own loop, watched
BOUNDED_LIMIT_SECONDS = 2.0
BOUND = LIMIT_SECONDS if SOAK else BOUNDED_LIMIT_SECONDS
CACHE_SECONDS = 3600
IN_FLIGHT = 16  # issuing and warming
CALL_TIMEOUT = 10.0
SETTINGS = {
    "TOKENSERVICE_TOKEN_CACHE_SECONDS": str(CACHE_SECONDS),
    # Three replicas and the rest of the suite's PostgreSQL tests stay far below
    # max_connections (100); cached introspections need no connection.
    "TOKENSERVICE_DB_POOL_SIZE": "4",
    "TOKENSERVICE_DB_MAX_OVERFLOW": "4",
}
LOAD_MODULE = "tests.reliability.introspection_load"

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(TIMEOUT)]

Answer = tuple[int, int, float, float, bool]  # token, replica, sent, received, active
T = TypeVar("T")
DIGESTS = KeyedDigest(TEST_SECRET)


@dataclasses.dataclass(frozen=True)
class Issued:
    access: str
    key: str  # what a notice of its revocation names: the token's digest, or the session id
    refresh: str = ""  # an anonymous session's: revoking it ends the session


@dataclasses.dataclass
class Revoked:
    index: int
    replica: int  # where it was revoked
    phase: str  # "steady", "outage" (before every listener was back) or "reconnected"
    asked: float  # when RevokeToken was called
    t0: float  # when it answered
    first_inactive: list[float]  # per replica, when its first inactive answer came
    away: bool = False  # made while a listener was away (pg_stat_activity said so after it)

    @property
    def propagation(self) -> float:
        others = (at for n, at in enumerate(self.first_inactive) if n != self.replica)
        return max(others) - self.t0

    @property
    def everywhere(self) -> float:
        return max(self.first_inactive)


def p99(values: list[float]) -> float:
    if len(values) < 2:
        return max(values, default=0.0)
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


async def bounded(calls: Iterable[Awaitable[T]]) -> list[T]:
    """Awaits `calls`, IN_FLIGHT at a time; their results in order."""
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(call: Awaitable[T]) -> T:
        async with gate:
            return await call

    return await asyncio.gather(*(one(call) for call in calls))


async def cache_counts(service: Service) -> dict[str, float]:
    """The replica's token-cache lookups by result, from its /metrics: hit, miss, and
    unconfirmed (the entry found, but the lookup sent to the database because the replica's
    last proof of hearing every revocation was too old: server/store/listener.py)."""
    async with async_http_client(base_url=service.http_base, timeout=10) as http:
        response = await http.get("/metrics")
    assert response.status_code == 200
    counts = {"hit": 0.0, "miss": 0.0, "unconfirmed": 0.0}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "tokenservice_introspection_cache_total":
                counts[sample.labels["result"]] = sample.value
    return counts


async def issue(stub: pb_grpc.TokenServiceStub, shop: Provisioned, count: int) -> list[Issued]:
    service = pb.ClientCredentialsGrant(
        client_id=shop.service_id, client_secret=shop.service_secret
    )
    anonymous = pb.AnonymousGrant(tenant=shop.tenant, client_id=shop.storefront_id)

    async def one(n: int) -> Issued:
        if n % SESSION_EVERY == 0:
            request = pb.IssueTokenRequest(anonymous=anonymous)
        else:
            request = pb.IssueTokenRequest(client_credentials=service)
        answer = await stub.IssueToken(request, timeout=CALL_TIMEOUT)
        LEDGER.secret(answer.access_token, answer.refresh_token)
        if answer.refresh_token:
            return Issued(answer.access_token, answer.session_id, answer.refresh_token)
        return Issued(answer.access_token, DIGESTS.token(answer.access_token))

    return await bounded(one(n) for n in range(count))


async def introspect(stub: pb_grpc.TokenServiceStub, token: str) -> bool:
    request = pb.IntrospectTokenRequest(token=token)
    return bool((await stub.IntrospectToken(request, timeout=CALL_TIMEOUT)).active)


async def warm(
    stubs: list[pb_grpc.TokenServiceStub], services: list[Service], tokens: list[Issued]
) -> None:
    """Every token introspected on every replica, then again: the second pass must find every
    token in the caches."""

    async def everywhere() -> list[bool]:
        return await bounded(introspect(stub, token.access) for stub in stubs for token in tokens)

    assert all(await everywhere()), "a fresh token is not active"
    before = [await cache_counts(service) for service in services]
    assert all(await everywhere())
    after = [await cache_counts(service) for service in services]
    for replica, (counts, counts_after) in enumerate(zip(before, after, strict=True)):
        found = sum(counts_after[key] - counts[key] for key in ("hit", "unconfirmed"))
        assert (found, counts_after["miss"] - counts["miss"]) == (len(tokens), 0), (
            f"replica {replica} did not find every token in its cache"
        )


class Run:
    """The revocations of one test, their pollers, and the cuts."""

    def __init__(
        self,
        stubs: list[pb_grpc.TokenServiceStub],
        tokens: list[Issued],
        shop: Provisioned,
        load: asyncio.subprocess.Process,
        admin: asyncpg.Connection,
        seed: int,
    ) -> None:
        self.stubs = stubs
        self.tokens = tokens
        self.load = load
        self.admin = admin
        self.admin_lock = asyncio.Lock()  # one query at a time on the connection
        self.rng = random.Random(seed)
        order = list(range(len(tokens)))
        self.rng.shuffle(order)
        self.order = iter(order[NEVER_REVOKED:])
        self.caller = pb.ClientAuthentication(
            client_id=shop.service_id, client_secret=shop.service_secret
        )
        self.revoked: list[Revoked] = []
        self.answers: list[Answer] = []  # the pollers'
        self.cut_rounds: list[str] = []
        self.back_seconds: list[float] = []  # per cut listener, until it listened again
        self.survivors: set[int] = set()  # the listeners a round does not cut
        self.listeners_cut = 0
        # When this process's own listener (never cut) heard each notice, by what it names: how
        # long PostgreSQL takes to deliver one, apart from what a replica then does with it.
        self.heard: dict[str, float] = {}
        # This process's own stalls (its event loop not running for a while: descheduled on a
        # busy machine, a garbage collection), as (start, end): a poller's answer received late
        # because of one says nothing about the replicas.
        self.stalls: list[tuple[float, float]] = []

    async def watch_own_loop(self) -> None:
        """Records every gap of more than STALL_SECONDS between this loop's ticks."""
        last = time.monotonic()
        while True:
            await asyncio.sleep(TICK_SECONDS)
            now = time.monotonic()
            if now - last > STALL_SECONDS:
                self.stalls.append((last, now))
            last = now

    def late_in_a_stall(self) -> int:
        """Revocations whose propagation exceeded the limit while this process stalled."""
        return sum(
            1
            for r in self.revoked
            if r.propagation > LIMIT_SECONDS
            and any(start < r.t0 + r.propagation and end > r.t0 for start, end in self.stalls)
        )

    def on_notice(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        at = time.monotonic()
        notice = Notice.parse(payload)
        for key in (*notice.tokens, *notice.sessions):
            self.heard.setdefault(key, at)

    def notice_delays(self) -> list[float]:
        """Per revocation, from t0 to this process hearing its notice (< 0: before t0)."""
        return [
            self.heard[self.tokens[r.index].key] - r.t0
            for r in self.revoked
            if self.tokens[r.index].key in self.heard
        ]

    async def revoke(self, phase: str, *, check_away: bool = False) -> Revoked:
        index = next(self.order, None)
        assert index is not None, "ran out of tokens to revoke"
        token = self.tokens[index]
        replica = self.rng.randrange(len(self.stubs))
        assert self.load.stdin is not None
        self.load.stdin.write(f"{index}\n".encode())  # the load's clients turn to it
        await self.load.stdin.drain()
        request = pb.RevokeTokenRequest(token=token.refresh or token.access, caller=self.caller)
        asked = time.monotonic()
        answer = await self.stubs[replica].RevokeToken(request, timeout=CALL_TIMEOUT)
        t0 = time.monotonic()
        assert answer.revoked, f"revocation {len(self.revoked)} revoked nothing"
        # A listener missing from pg_stat_activity after t0 was missing at the commit: one
        # that was there cannot have gone (the cuts are made before), so it was not told.
        listening = asyncio.create_task(self.listening()) if check_away else None
        firsts = await asyncio.gather(
            *(self.first_inactive(other, index, t0) for other in range(len(self.stubs)))
        )
        away = listening is not None and len(await listening) < len(self.stubs)
        revoked = Revoked(index, replica, phase, asked, t0, list(firsts), away)
        self.revoked.append(revoked)
        return revoked

    async def first_inactive(self, replica: int, index: int, t0: float) -> float:
        """Introspects token `index` on `replica` back to back until it is inactive; when that
        answer came."""
        stub, token = self.stubs[replica], self.tokens[index].access
        while True:
            sent = time.monotonic()
            active = await introspect(stub, token)
            received = time.monotonic()
            self.answers.append((index, replica, sent, received, active))
            if not active:
                return received
            assert received - t0 < WAIT_SECONDS, (
                f"replica {replica} still answers active {WAIT_SECONDS} s after revocation "
                f"{len(self.revoked)} on another"
            )

    async def steady(self, count: int) -> None:
        for _ in range(count):
            await self.revoke("steady")

    # --- cuts --------------------------------------------------------------------------------
    async def listening(self) -> set[int]:
        """The server pids of the listening connections (support.py listening_pids)."""
        async with self.admin_lock:
            return await listening_pids(self.admin)

    async def every_replica_listening(self) -> set[int]:
        pids: set[int] = set()

        async def counted() -> bool:
            pids.clear()
            pids.update(await self.listening())
            return len(pids) == len(self.stubs)

        await eventually(counted, "one listening connection per replica")
        return pids

    async def cut(self, victims: set[int]) -> float:
        """Ends the victims' connections at once, then waits until every one's server process
        is gone (so that nothing committed from then on reaches them); when they were ended."""
        async with self.admin_lock:
            cut_at = time.monotonic()
            signalled = await self.admin.fetchval(
                "SELECT bool_and(pg_terminate_backend(pid)) FROM unnest($1::int[]) pid",
                list(victims),
            )
        assert signalled, f"a listener's server process was gone before the cut: {victims}"

        async def gone() -> bool:
            async with self.admin_lock:
                left = await self.admin.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])",
                    list(victims),
                )
            return bool(left == 0)

        await eventually(gone, "the cut listeners' server processes end")
        return cut_at

    async def back(self, victims: set[int], cut_at: float) -> None:
        """Waits until as many connections listen as there are replicas, none of the victims;
        records when each new one was first seen listening."""
        seen: dict[int, float] = {}

        async def all_back() -> bool:
            pids = await self.listening()
            for pid in pids:
                seen.setdefault(pid, time.monotonic() - cut_at)
            return len(pids) == len(self.stubs) and not pids & victims

        await eventually(all_back, f"{len(victims)} cut listener(s) listen again")
        self.back_seconds.extend(seen[pid] for pid in seen if pid not in self.survivors)

    async def cut_round(self, kind: str) -> None:
        listening = await self.every_replica_listening()
        victims = listening if kind == "all" else {min(listening)}
        self.survivors = listening - victims
        self.listeners_cut += len(victims)
        cut_at = await self.cut(victims)
        returning = asyncio.create_task(self.back(victims, cut_at))
        try:
            made = 0
            while made == 0 or (not returning.done() and made < OUTAGE_REVOCATIONS):
                await self.revoke("outage", check_away=True)
                made += 1
            await returning
        finally:
            returning.cancel()
        for _ in range(RECONNECTED_REVOCATIONS):
            await self.revoke("reconnected")
        self.cut_rounds.append(kind)

    async def cuts(self) -> None:
        """Alternately every replica's listener and one; until CUT_ROUNDS rounds are done and
        at least as many revocations landed while a listener was away."""
        for round_number in itertools.count():
            away = sum(revoked.away for revoked in self.revoked)
            if round_number >= CUT_ROUNDS and away >= CUT_ROUNDS:
                return
            assert round_number < MAX_CUT_ROUNDS, (
                f"{away} revocations landed while a listener was away in {round_number} rounds"
            )
            await self.cut_round("all" if round_number % 2 == 0 else "one")

    # --- after -------------------------------------------------------------------------------
    async def final_sweep(self) -> None:
        """Every token on every replica once more, as an answer like the others."""
        revoked = {revoked.index for revoked in self.revoked}

        async def one(replica: int, index: int) -> None:
            sent = time.monotonic()
            active = await introspect(self.stubs[replica], self.tokens[index].access)
            self.answers.append((index, replica, sent, time.monotonic(), active))
            assert active is (index not in revoked), f"token {index} on replica {replica}"

        await bounded(
            one(replica, index)
            for replica in range(len(self.stubs))
            for index in range(len(self.tokens))
        )


@dataclasses.dataclass
class Judgement:
    """Every answer, judged by when its call was made against its token's revocation."""

    bound: float
    judged_after_bound: int = 0  # calls made more than `bound` after t0
    late: list[str] = dataclasses.field(default_factory=list)  # of those, answered active
    late_revocations: dict[int, int] = dataclasses.field(default_factory=dict)  # index: count
    judged_own: int = 0  # calls to the revoking replica made after t0
    own_active: list[str] = dataclasses.field(default_factory=list)
    judged_after_everywhere: int = 0  # calls made after every replica had answered inactive
    active_after_everywhere: list[str] = dataclasses.field(default_factory=list)
    never_revoked: int = 0  # answers about tokens never revoked
    wrongly_inactive: list[str] = dataclasses.field(default_factory=list)
    late_by_phase: dict[str, int] = dataclasses.field(default_factory=dict)
    judged_by_phase: dict[str, int] = dataclasses.field(default_factory=dict)

    def add(self, answers: Iterable[Answer], revoked: dict[int, Revoked]) -> None:
        for index, replica, sent, received, active in answers:
            revocation = revoked.get(index)
            if revocation is None or received < revocation.asked:
                self.never_revoked += revocation is None
                if not active:
                    self.wrongly_inactive.append(f"token {index} on replica {replica}")
                continue
            after = f"replica {replica}, {ms(sent - revocation.t0)} ms after t0 ({index})"
            if sent > revocation.t0 + self.bound:
                self.judged_after_bound += 1
                phase = revocation.phase
                self.judged_by_phase[phase] = self.judged_by_phase.get(phase, 0) + 1
                if active:
                    self.late.append(after)
                    self.late_revocations[index] = self.late_revocations.get(index, 0) + 1
                    self.late_by_phase[phase] = self.late_by_phase.get(phase, 0) + 1
            if replica == revocation.replica and sent > revocation.t0:
                self.judged_own += 1
                if active:
                    self.own_active.append(after)
            if sent > revocation.everywhere:
                self.judged_after_everywhere += 1
                if active:
                    self.active_after_everywhere.append(after)


def read_answers(path: Path) -> list[Answer]:
    answers: list[Answer] = []
    for line in path.read_text().splitlines():
        index, replica, sent, received, active = line.split()
        answers.append((int(index), int(replica), float(sent), float(received), active == "1"))
    return answers


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": ms(statistics.median(values)) if values else 0.0,
        "p99_ms": ms(p99(values)),
        "max_ms": ms(max(values, default=0.0)),
    }


@pytest.mark.parametrize("replica_count", REPLICA_COUNTS)
async def test_a_revocation_reaches_every_replica_under_load(
    replica_count: int, postgres_url: str, tmp_path: Path
) -> None:
    envs = [
        reliability_env(tmp_path / "unused.db", postgres_url, **SETTINGS)
        for _ in range(replica_count)
    ]
    shop = await provision(envs[0], "propagation")
    services = [Service(env, tmp_path / f"replica-{n}") for n, env in enumerate(envs)]
    tokens_needed = (
        NEVER_REVOKED
        + REVOCATIONS
        + MAX_CUT_ROUNDS * (OUTAGE_REVOCATIONS + RECONNECTED_REVOCATIONS)
    )
    records = tmp_path / "load-answers.txt"
    load: asyncio.subprocess.Process | None = None
    admin = await asyncpg.connect(asyncpg_dsn(postgres_url))
    observer = await asyncpg.connect(asyncpg_dsn(postgres_url))
    try:
        await asyncio.gather(*(service.start() for service in services))
        async with contextlib.AsyncExitStack() as stack:
            stubs = [
                pb_grpc.TokenServiceStub(
                    await stack.enter_async_context(grpc.aio.insecure_channel(service.grpc_target))
                )
                for service in services
            ]
            tokens = await issue(stubs[0], shop, tokens_needed)
            await warm(stubs, services, tokens)

            load = await attack_process.start(LOAD_MODULE, str(records))
            assert load.stdin is not None
            config = {
                "targets": [service.grpc_target for service in services],
                "clients": LOAD_CLIENTS,
                "tokens": [token.access for token in tokens],
            }
            load.stdin.write(json.dumps(config).encode() + b"\n")
            await load.stdin.drain()
            assert await attack_process.tick(load) == LOAD_CLIENTS * replica_count
            counts_before = [await cache_counts(service) for service in services]
            load_before = os.getloadavg()[0]
            started = time.monotonic()

            run = Run(stubs, tokens, shop, load, admin, seed=replica_count)
            await observer.add_listener(CHANNEL, run.on_notice)
            watching = asyncio.create_task(run.watch_own_loop())
            await run.steady(REVOCATIONS // 2)
            await run.cuts()
            await run.steady(REVOCATIONS - REVOCATIONS // 2)

            seconds = time.monotonic() - started
            watching.cancel()
            load_after = os.getloadavg()[0]
            finished = await attack_process.finish(load)
            counts_after = [await cache_counts(service) for service in services]
            await run.final_sweep()
        for service in services:
            await service.stop()
    finally:
        if load is not None and load.returncode is None:
            load.kill()
            await load.wait()
        for service in services:
            await service.close()
        await admin.close()
        await observer.close()

    revoked = {revocation.index: revocation for revocation in run.revoked}
    judgement = Judgement(BOUND)
    load_answers = read_answers(records)
    judgement.add(load_answers, revoked)
    judgement.add(run.answers, revoked)
    steady = [r.propagation for r in run.revoked if r.phase == "steady"]
    cut = [r.propagation for r in run.revoked if r.phase != "steady"]
    cache = list(zip(counts_before, counts_after, strict=True))
    LEDGER.record(
        f"revocation propagation, {replica_count} replicas on PostgreSQL",
        replicas=replica_count,
        load_clients=LOAD_CLIENTS * replica_count,
        tokens=len(tokens),
        revocations=len(run.revoked),
        revocations_steady=len(steady),
        session_revocations=sum(bool(tokens[r.index].refresh) for r in run.revoked),
        propagation_steady=summary(steady),
        propagation_through_cuts=summary(cut),
        notice_heard_by_the_test=summary(run.notice_delays()),
        notices_heard_by_the_test=len(run.notice_delays()),
        test_process_stalls=summary([end - start for start, end in run.stalls]),
        test_process_stall_count=len(run.stalls),
        late_revocations_during_a_test_stall=run.late_in_a_stall(),
        late_revocations=sum(r.propagation > LIMIT_SECONDS for r in run.revoked),
        poll_round_trip=summary([received - sent for _, _, sent, received, _ in run.answers]),
        bound_ms=ms(BOUND),
        answers_judged_after_bound=judgement.judged_after_bound,
        answers_judged_by_phase=judgement.judged_by_phase,
        active_after_bound=len(judgement.late),
        active_after_bound_by_phase=judgement.late_by_phase,
        revocations_answered_active_after_bound=len(judgement.late_revocations),
        revoking_replica_answers_after_t0=judgement.judged_own,
        revoking_replica_active=len(judgement.own_active),
        answers_after_every_replica_inactive=judgement.judged_after_everywhere,
        active_after_every_replica_inactive=len(judgement.active_after_everywhere),
        never_revoked_answers=judgement.never_revoked,
        wrongly_inactive=len(judgement.wrongly_inactive),
        cut_rounds=run.cut_rounds,
        revocations_while_a_listener_was_away=sum(r.away for r in run.revoked),
        listener_back=summary(run.back_seconds),
        listeners_cut=run.listeners_cut,
        # Each loss is one log line; more than were cut would be probes that failed under load.
        listener_losses_logged=sum(
            service.stderr.count("not listening for other replicas' revocations")
            for service in services
        ),
        load=finished.outcomes,
        load_calls_per_second=round(len(load_answers) / seconds),
        cache_lookups={
            key: sum(after[key] - before[key] for before, after in cache)
            for key in ("hit", "miss", "unconfirmed")
        },
        seconds=round(seconds, 1),
        load_average_1min=[round(load_before, 2), round(load_after, 2)],
        cpus=os.cpu_count(),
    )

    assert not judgement.own_active, judgement.own_active[:5]
    assert not judgement.active_after_everywhere, judgement.active_after_everywhere[:5]
    assert not judgement.wrongly_inactive, judgement.wrongly_inactive[:5]
    assert finished.outcomes.get("calls", 0) == len(load_answers), finished.outcomes
    # Each check judged far more answers than there were revocations: none holds vacuously.
    assert judgement.judged_own > len(run.revoked), "the load hardly asked the revoking replica"
    assert judgement.judged_after_everywhere > len(run.revoked), "the load hardly asked after"
    assert not judgement.late, (
        f"{len(judgement.late)} answers active more than {ms(BOUND)} ms after t0, of "
        f"{len(judgement.late_revocations)} revocations: {judgement.late[:5]}; "
        + "; ".join(
            f"{count} of token {index} revoked on replica {revoked[index].replica} "
            f"({revoked[index].phase}), first inactive after "
            f"{[ms(at - revoked[index].t0) for at in revoked[index].first_inactive]} ms"
            for index, count in sorted(judgement.late_revocations.items())[:10]
        )
    )
    if SOAK:
        assert judgement.judged_after_bound > len(run.revoked), "the load hardly asked after t0"
        assert len(steady) >= 1_000
        assert p99(steady) < LIMIT_SECONDS, f"p99 {ms(p99(steady))} ms"
    assert len(run.back_seconds) >= run.listeners_cut
    for service in services:
        assert "Traceback" not in service.stderr, service.stderr[-4000:]
