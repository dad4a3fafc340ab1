"""Issue 17's resource-server measurement: resource servers that follow the revocation feed
(token_validator, the project's own library) beside two real `tokenservice serve` replicas on
one PostgreSQL database, revocations made on either replica, and the listening connections of
the replicas cut (pg_terminate_backend) and restored mid-run.

Each replica has VALIDATORS_PER_REPLICA validators watching it. Every validator first
introspects every token, so each is cached and kept (the server's hint is 0 here: only the
feed keeps an answer, so a feed that failed to drop one would be caught, not hidden by the
entry running out). Meanwhile each validator also validates tokens drawn at random, back to
back, as a resource server's requests would, and every answer is recorded with when its call
was made. Revocations come one after another, each on a replica drawn at random (RevokeToken);
t0 is when that call returned. The delivery of a revocation is the longest, over the
validators, of (the moment the validator applied the event naming the token - t0). Every
CUT_EVERY revocations the listening connections of both replicas are cut, and revoking goes
on at once: the replicas cannot hear each other's notices until they reconnect, and their
feeds read the database every 50 ms meanwhile (server/revocation_feed.py), so deliveries go on.
The feeds' own 1 s poll is set to 30 s, so it explains nothing.

What is asserted where, and why (as in test_revocation_propagation.py):

- In both sizes: every revocation reaches every validator; no validator answers active to a
  call made after it applied the revocation's event; no answer is wrong the other way (a token
  never revoked, or one answered before its RevokeToken was sent, inactive); every cut
  listener listens again.
- `make soak` (full size, nothing else running): the issue's numbers, p99 of the delivery
  under LIMIT_SECONDS (100 ms) over 1,000 revocations, and 0 answers active to a call made
  more than LIMIT_SECONDS after t0, through the cuts.
- `make test` (bounded, beside the rest of the suite under pytest-xdist on 2 busy cores): the
  same judgement against BOUNDED_LIMIT_SECONDS (2 s, the replicas' own cache lifetime); the
  percentiles are reported, not asserted. On a machine that busy a delivery can take longer
  than 100 ms for reasons that are not the service's; a delivery 2 s late is one that was lost.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg
import grpc
import pytest

from server.store.listener import APPLICATION_NAME, asyncpg_dsn
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
from tests.support.waiting import eventually
from token_validator import TokenValidator
from token_validator.validator import token_sha256
from tokenservice.v1 import token_service_pb2 as pb
from tokenservice.v1 import token_service_pb2_grpc as pb_grpc

pytestmark = pytest.mark.postgres

REPLICAS = 2
VALIDATORS_PER_REPLICA = 2
REVOCATIONS = size(100, 1_000)
NEVER_REVOKED = size(20, 100)
CUT_EVERY = size(25, 100)
LIMIT_SECONDS = 0.1  # the issue's bound
BOUNDED_LIMIT_SECONDS = 2.0
BOUND = LIMIT_SECONDS if SOAK else BOUNDED_LIMIT_SECONDS
CALL_TIMEOUT = 10.0
SETTINGS = {
    "TOKENSERVICE_INTROSPECTION_CACHE_HINT_SECONDS": "0",
    "TOKENSERVICE_REVOCATION_FEED_POLL_SECONDS": "30",
    "TOKENSERVICE_DB_POOL_SIZE": "4",
    "TOKENSERVICE_DB_MAX_OVERFLOW": "4",
}


@dataclasses.dataclass(frozen=True)
class Answer:
    called_at: float
    answered_at: float
    validator: int
    fingerprint: str
    active: bool


class Observer:
    """What the validators saw: when each applied the event naming each fingerprint."""

    def __init__(self, validators: int) -> None:
        self.validators = validators
        self.applied: dict[str, dict[int, float]] = {}
        self.complete: dict[str, asyncio.Event] = {}

    def expect(self, fingerprint: str) -> asyncio.Event:
        return self.complete.setdefault(fingerprint, asyncio.Event())

    def listener(self, index: int) -> Callable[[pb.RevocationEvent], None]:
        def seen(event: pb.RevocationEvent) -> None:
            now = time.monotonic()
            for fingerprint in event.token_sha256:
                by_validator = self.applied.setdefault(fingerprint, {})
                by_validator.setdefault(index, now)
                if len(by_validator) == self.validators:
                    self.expect(fingerprint).set()

        return seen


async def cut_listeners(database_url: str) -> int:
    """Cuts this test's listeners: only its own database's, since other tests' replicas run
    at the same time on theirs."""
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        cut = await connection.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = $1",
            APPLICATION_NAME,
        )
        return len(cut)
    finally:
        await connection.close()


async def listening(database_url: str) -> int:
    """How many of this test's replicas listen (tests/reliability/support.py listening_pids)."""
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        return len(await listening_pids(connection))
    finally:
        await connection.close()


async def issue(stub: pb_grpc.TokenServiceStub, shop: Provisioned) -> str:
    grant = pb.ClientCredentialsGrant(client_id=shop.service_id, client_secret=shop.service_secret)
    answer = await stub.IssueToken(
        pb.IssueTokenRequest(client_credentials=grant), timeout=CALL_TIMEOUT
    )
    LEDGER.secret(answer.access_token)
    return str(answer.access_token)


@pytest.mark.timeout(TIMEOUT)
async def test_resource_servers_on_the_feed_drop_revoked_tokens_within_the_bound(
    postgres_url: str, tmp_path: Path
) -> None:
    replicas = [
        Service(
            reliability_env(tmp_path / f"r{i}.db", postgres_url, **SETTINGS), tmp_path / f"r{i}"
        )
        for i in range(REPLICAS)
    ]
    shop = await provision(replicas[0].env, "feed")
    channels: list[grpc.aio.Channel] = []
    validators: list[TokenValidator] = []
    try:
        for replica in replicas:
            await replica.start()
        channels = [grpc.aio.insecure_channel(r.grpc_target) for r in replicas]
        stubs = [pb_grpc.TokenServiceStub(channel) for channel in channels]
        observer = Observer(REPLICAS * VALIDATORS_PER_REPLICA)
        for index in range(REPLICAS * VALIDATORS_PER_REPLICA):
            channel = channels[index % REPLICAS]
            validator = TokenValidator(
                channel, shop.service_id, shop.service_secret, on_event=observer.listener(index)
            )
            validators.append(validator)
            await validator.start()
        await eventually(lambda: all(v.following for v in validators), "every validator follows")
        await eventually(lambda: _listening_is(postgres_url, REPLICAS), "both replicas listen")
        tokens = [await issue(random.choice(stubs), shop) for _ in range(REVOCATIONS)]
        kept = [await issue(random.choice(stubs), shop) for _ in range(NEVER_REVOKED)]
        for validator in validators:
            for token in (*tokens, *kept):
                assert await validator.active(token)
        assert all(v.cached() == len(tokens) + len(kept) for v in validators)

        revoked_at: dict[str, float] = {}  # when RevokeToken returned
        asked_at: dict[str, float] = {}  # when it was sent
        answers: list[Answer] = []
        stop = asyncio.Event()

        async def load(index: int) -> None:
            validator = validators[index]
            everything = [*tokens, *kept]
            while not stop.is_set():
                token = random.choice(everything)
                called_at = time.monotonic()
                active = await validator.active(token)
                answered = Answer(called_at, time.monotonic(), index, token_sha256(token), active)
                answers.append(answered)
                await asyncio.sleep(0)

        loads = [asyncio.create_task(load(i)) for i in range(len(validators))]
        deliveries: list[float] = []
        cuts = 0
        try:
            for n, token in enumerate(tokens):
                if n % CUT_EVERY == CUT_EVERY // 2:
                    cuts += 1
                    assert await cut_listeners(postgres_url) >= 1
                fingerprint = token_sha256(token)
                done = observer.expect(fingerprint)
                caller = pb.ClientAuthentication(
                    client_id=shop.service_id, client_secret=shop.service_secret
                )
                asked_at[fingerprint] = time.monotonic()
                revoked = await random.choice(stubs).RevokeToken(
                    pb.RevokeTokenRequest(token=token, caller=caller), timeout=CALL_TIMEOUT
                )
                assert revoked.revoked
                t0 = time.monotonic()
                revoked_at[fingerprint] = t0
                await asyncio.wait_for(done.wait(), timeout=30)
                deliveries.append(max(observer.applied[fingerprint].values()) - t0)
        finally:
            stop.set()
            await asyncio.gather(*loads)
        await eventually(
            lambda: _listening_is(postgres_url, REPLICAS), "every listener listens again"
        )

        late = [
            a
            for a in answers
            if a.active
            and a.fingerprint in revoked_at
            and (
                a.called_at > revoked_at[a.fingerprint] + BOUND
                or a.called_at > observer.applied[a.fingerprint][a.validator]
            )
        ]
        wrong = [
            a
            for a in answers
            if not a.active
            and (a.fingerprint not in asked_at or a.answered_at < asked_at[a.fingerprint])
        ]
        ordered = sorted(deliveries)
        p50 = statistics.median(ordered) * 1000
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
        LEDGER.record(
            "17 revocation feed to resource servers",
            replicas=REPLICAS,
            validators=len(validators),
            revocations=len(deliveries),
            cuts=cuts,
            answers=len(answers),
            p50_ms=round(p50, 1),
            p99_ms=round(p99, 1),
            max_ms=round(ordered[-1] * 1000, 1),
            active_after_bound=len(late),
            wrong_inactive=len(wrong),
            bound_ms=BOUND * 1000,
        )
        assert late == []
        assert wrong == []
        if SOAK:
            assert p99 < LIMIT_SECONDS * 1000, f"p99 {p99:.1f} ms"
    finally:
        for validator in validators:
            await validator.close()
        for channel in channels:
            await channel.close()
        for replica in replicas:
            await replica.stop()
            await replica.close()


async def _listening_is(database_url: str, count: int) -> bool:
    return await listening(database_url) == count
