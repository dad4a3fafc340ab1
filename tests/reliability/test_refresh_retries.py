"""Item 10, refresh retries: a refresh whose answer is lost on the network, then retried with the
same refresh token, round after round, against a real `tokenservice serve` on SQLite and on
PostgreSQL.

The answer is really dropped, not read and ignored: the refresh goes over gRPC through a proxy
of this test's own (`AnswerDropper`) that passes the connection's setup both ways but keeps the
call's frames from the client, and once the server has finished its answer (END_STREAM, so the
exchange has committed) cuts both connections. The client's call fails UNAVAILABLE, as a lost
answer does; the test keeps the answer the server sent, and the client retries on its own
channel, within the grace window.

What the contract (docs/clients.md, "Refresh-token rotation") defines, checked every round:

- the retry succeeds and is the dropped answer: field for field the same (access, refresh and
  SaaS tokens, session id, scope), but for the lifetimes, which are what remains at each answer
  and so differ by the same whole seconds, at most the seconds the round took;
- the session family has exactly one live (not rotated, not revoked) refresh token of the
  session's kind, the successor, and no second member: one token more than before the round;
- the session is not revoked, and the next round refreshes the successor (a chain).

Rounds alternate an anonymous and a customer session (a customer's SaaS token is compared
too). Bounded: 100 rounds; soak: 1,000.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections import Counter
from pathlib import Path
from types import TracebackType

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
)
from tests.support.harness import lifetimes_apart
from tokenservice.v1 import token_service_pb2 as pb
from tokenservice.v1 import token_service_pb2_grpc as pb_grpc

ROUNDS = size(100, 1000)
CALL_TIMEOUT = 30.0

# HTTP/2 (RFC 9113 section 4.1, 6.1): frame types and flags the dropper reads.
DATA, HEADERS = 0x0, 0x1
END_STREAM, PADDED = 0x1, 0x8

pytestmark = pytest.mark.timeout(TIMEOUT)


class AnswerDropper:
    """A TCP proxy in front of the gRPC port for one connection and one call. Client to server
    it passes every byte; server to client only the connection's own frames (stream 0:
    SETTINGS, PING, WINDOW_UPDATE, GOAWAY). The call's frames it keeps, and once the server
    ends the stream it aborts both connections: what the client sees is a connection lost
    before any answer, and `answer` is what the server sent."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.data = b""
        self.ended = False
        self.finished = asyncio.Event()
        self.listener: asyncio.Server | None = None

    async def __aenter__(self) -> AnswerDropper:
        self.listener = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self.listener is not None
        self.listener.close()

    @property
    def target(self) -> str:
        assert self.listener is not None
        return f"127.0.0.1:{self.listener.sockets[0].getsockname()[1]}"

    def answer(self) -> pb.TokenResponse | None:
        """The answer the server sent (one uncompressed gRPC message), None if it sent none."""
        if not self.ended or len(self.data) < 5 or self.data[0] != 0:
            return None
        length = int.from_bytes(self.data[1:5], "big")
        return pb.TokenResponse.FromString(self.data[5 : 5 + length])

    async def _connection(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        assert self.listener is not None
        self.listener.close()  # one connection: a reconnecting client finds nobody here
        host, port = self.upstream.rsplit(":", 1)
        server_reader, server_writer = await asyncio.open_connection(host, int(port))
        upstream = asyncio.create_task(_pump(client_reader, server_writer))
        try:
            await self._frames(server_reader, client_writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the server went away first: no answer, which the round reports
        finally:
            upstream.cancel()
            client_writer.transport.abort()
            server_writer.transport.abort()
            self.finished.set()

    async def _frames(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readexactly(9)
            length, kind, flags = int.from_bytes(head[:3], "big"), head[3], head[4]
            stream = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
            payload = await reader.readexactly(length)
            if stream == 0:
                writer.write(head + payload)
                await writer.drain()
                continue
            if kind == DATA:
                self.data += payload[1 : length - payload[0]] if flags & PADDED else payload
            if kind in (DATA, HEADERS) and flags & END_STREAM:
                self.ended = True
                return


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while chunk := await reader.read(65536):
        writer.write(chunk)
        await writer.drain()


@dataclasses.dataclass
class Chain:
    """One session refreshed round after round: its kind, the refresh token it holds, the
    bearer a customer refresh sends, and how many refresh tokens of its kind it has had."""

    kind: str
    session_id: str
    refresh_token: str
    bearer: str
    tokens: int = 1


@dataclasses.dataclass
class Retries:
    stub: pb_grpc.TokenServiceStub
    service: Service
    shop: Provisioned
    database: Database
    calls: int = 0
    outcomes: Counter[str] = dataclasses.field(default_factory=Counter)
    wrong: list[str] = dataclasses.field(default_factory=list)

    async def chain(self, kind: str) -> Chain:
        answer = await sign_in(self.stub, self.shop, kind, deadline=CALL_TIMEOUT)
        self.calls += 1 + (kind == "customer")
        return Chain(kind, answer.session_id, answer.refresh_token, answer.access_token)

    def request(self, chain: Chain) -> pb.RefreshTokenRequest:
        anonymous = chain.kind == "anonymous"
        return pb.RefreshTokenRequest(
            tenant=self.shop.tenant,
            client_id=self.shop.storefront_id if anonymous else "",
            refresh_token=chain.refresh_token,
            access_token="" if anonymous else chain.bearer,
        )

    async def dropped(self, request: pb.RefreshTokenRequest) -> pb.TokenResponse | None:
        """The refresh through an AnswerDropper: the answer the server sent, which the client
        never received (its call must fail UNAVAILABLE)."""
        async with AnswerDropper(self.service.grpc_target) as dropper:
            async with grpc.aio.insecure_channel(dropper.target) as channel:
                self.calls += 1
                try:
                    lost = await pb_grpc.TokenServiceStub(channel).RefreshToken(
                        request, timeout=CALL_TIMEOUT
                    )
                    self.outcomes["answer not dropped"] += 1
                    LEDGER.secret(lost.access_token, lost.refresh_token, lost.saas_token)
                except grpc.aio.AioRpcError as error:
                    self.outcomes[f"dropped: {grpc_code(error)}"] += 1
            await asyncio.wait_for(dropper.finished.wait(), CALL_TIMEOUT)
        answer = dropper.answer()
        if answer is not None:
            LEDGER.secret(answer.access_token, answer.refresh_token, answer.saas_token)
        return answer

    async def round(self, chain: Chain, number: int) -> None:
        label = f"round {number} ({chain.kind})"
        request = self.request(chain)
        started = time.monotonic()
        dropped = await self.dropped(request)
        self.calls += 1
        try:
            retry = await self.stub.RefreshToken(request, timeout=CALL_TIMEOUT)
        except grpc.aio.AioRpcError as error:
            self.outcomes[f"retry: {grpc_code(error)}"] += 1
            self.check(False, f"{label}: the retry failed")
            return
        self.outcomes["retry: OK"] += 1
        LEDGER.secret(retry.access_token, retry.refresh_token, retry.saas_token)
        seconds = math.ceil(time.monotonic() - started)
        if dropped is None:
            self.check(False, f"{label}: the server sent no answer to the dropped call")
            return
        gap = lifetimes_apart(dropped, retry)
        self.check(
            gap is not None and 0 <= gap <= seconds,
            f"{label}: the retry is not the dropped answer (lifetime gap {gap}, {seconds} s)",
        )
        self.check(
            retry.refresh_token not in ("", chain.refresh_token)
            and retry.session_id == chain.session_id
            and bool(retry.saas_token) == (chain.kind == "customer"),
            f"{label}: the answer is not a new pair of the session",
        )
        chain.tokens += 1
        chain.refresh_token, chain.bearer = retry.refresh_token, retry.access_token
        await self.check_family(chain, label)

    async def check_family(self, chain: Chain, label: str) -> None:
        [(members, live)] = await self.database.rows(
            "SELECT count(*),"
            " sum(CASE WHEN rotated_at IS NULL AND revoked_at IS NULL THEN 1 ELSE 0 END)"
            " FROM tokens WHERE session_id = :sid AND use = 'refresh' AND kind = :kind",
            sid=chain.session_id,
            kind=chain.kind,
        )
        self.check(
            (members, live) == (chain.tokens, 1),
            f"{label}: the family has {members} refresh tokens, {live} live; the contract says "
            f"{chain.tokens} and 1",
        )
        revoked = await self.database.session_revoked(chain.session_id)
        self.check(not revoked, f"{label}: the session was revoked")

    def check(self, condition: bool, message: str) -> None:
        if not condition:
            self.wrong.append(message)


async def test_a_refresh_whose_answer_is_dropped_gets_it_again_on_the_retry(
    database_kind: str, database_url: str, tmp_path: Path
) -> None:
    env, url = database_env(database_kind, database_url, tmp_path)
    shop = await provision(env, "retries")
    database = Database(url)
    service = Service(env, tmp_path / "logs")
    started = time.monotonic()
    try:
        await service.start()
        async with grpc.aio.insecure_channel(service.grpc_target) as channel:
            retries = Retries(pb_grpc.TokenServiceStub(channel), service, shop, database)
            chains = [await retries.chain("anonymous"), await retries.chain("customer")]
            for number in range(ROUNDS):
                await retries.round(chains[number % 2], number)
        await service.stop()
    finally:
        await service.close()
        await database.close()

    LEDGER.record(
        f"10 refresh retries ({database_kind})",
        rounds=ROUNDS,
        outcomes=dict(retries.outcomes),
        requests_sent=retries.calls,
        faults_injected=ROUNDS,  # one dropped answer per round
        seconds=round(time.monotonic() - started, 1),
        contract_violations=len(retries.wrong),
    )
    assert not retries.wrong, "\n".join(retries.wrong[:20])
    assert set(retries.outcomes) == {"dropped: UNAVAILABLE", "retry: OK"}, dict(retries.outcomes)
