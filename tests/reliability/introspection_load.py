"""Introspection load beside a measurement (tests/reliability/test_revocation_propagation.py), as
a process of its own so that its calls do not queue in the measuring test's event loop: CLIENTS
clients per target, each on a channel of its own, introspecting tokens of a shared set back to
back over gRPC, and recording every answer.

    python -m tests.reliability.introspection_load RECORDS_PATH

Its stdin, a pipe from the test: first one JSON line, {"targets": [...], "clients": CLIENTS,
"tokens": [...]} (the tokens on a pipe, never on a command line); then one token index a line,
the token about to be revoked: NEWEST_SHARE of all calls ask about it, HOT_SHARE about one of
the HOT most recent, the rest about any token of the set. Its end, or SIGTERM, stops the load.
It runs at NICENESS.

Its stdout (tests/support/attack_process.py's protocol): `ready N` once each of its N clients has
had an answer, and last one JSON object, the calls made and failed. RECORDS_PATH gets one line
per answer: token index, target index, when the call was made and when it was answered
(time.monotonic(): CLOCK_MONOTONIC, the same clock in every process of the machine), 1 for
active or 0.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import random
import signal
import sys
import time
from pathlib import Path

import grpc

from tokenservice.v1 import token_service_pb2 as pb
from tokenservice.v1 import token_service_pb2_grpc as pb_grpc

HOT = 16
NEWEST_SHARE = 0.25  # of the calls, on the token being revoked now
HOT_SHARE = 0.25  # on one of the HOT most recent
# The clients of a real deployment run on machines of their own; on the test's machine the load
# yields the CPU to the replicas, PostgreSQL and the test's pollers whenever they want it
# (tests/reliability/test_revocation_propagation.py says what that changes).
NICENESS = 10
CALL_TIMEOUT = 10.0
PAUSE_AFTER_ERROR = 0.01  # so that a failing target does not spin the loop

Answer = tuple[int, int, float, float, bool]  # token, target, sent, received, active


class Load:
    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.hot: collections.deque[int] = collections.deque(maxlen=HOT)
        self.answers: list[Answer] = []
        self.errors: collections.Counter[str] = collections.Counter()
        self.stop = asyncio.Event()

    def pick(self, rng: random.Random) -> int:
        draw = rng.random()
        if self.hot and draw < NEWEST_SHARE:
            return self.hot[-1]
        if self.hot and draw < NEWEST_SHARE + HOT_SHARE:
            return rng.choice(self.hot)
        return rng.randrange(len(self.tokens))

    async def client(self, target: int, address: str, seed: int, answered: asyncio.Event) -> None:
        rng = random.Random(seed)
        async with grpc.aio.insecure_channel(address) as channel:
            stub = pb_grpc.TokenServiceStub(channel)
            while not self.stop.is_set():
                index = self.pick(rng)
                request = pb.IntrospectTokenRequest(token=self.tokens[index])
                sent = time.monotonic()
                try:
                    answer = await stub.IntrospectToken(request, timeout=CALL_TIMEOUT)
                except grpc.aio.AioRpcError as error:
                    self.errors[error.code().name] += 1
                    await asyncio.sleep(PAUSE_AFTER_ERROR)
                    continue
                self.answers.append((index, target, sent, time.monotonic(), answer.active))
                answered.set()

    async def follow(self, stdin: asyncio.StreamReader) -> None:
        """Token indices from the test, until its pipe ends."""
        while line := await stdin.readline():
            self.hot.append(int(line))
        self.stop.set()


async def main(records: Path) -> None:
    os.nice(NICENESS)
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader(limit=1 << 24)  # the first line holds every token
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    config = json.loads(await stdin.readline())
    load = Load(list(config["tokens"]))
    loop.add_signal_handler(signal.SIGTERM, load.stop.set)
    answered = [asyncio.Event() for _ in config["targets"] for _ in range(config["clients"])]
    clients = [
        asyncio.create_task(load.client(n // config["clients"], address, n, answered[n]))
        for n, address in enumerate(
            address for address in config["targets"] for _ in range(config["clients"])
        )
    ]
    following = asyncio.create_task(load.follow(stdin))
    await asyncio.gather(*(event.wait() for event in answered))
    print(f"ready {len(clients)}", flush=True)
    await load.stop.wait()
    await asyncio.gather(*clients)
    following.cancel()
    with records.open("w") as out:
        out.writelines(
            f"{index} {target} {sent:.6f} {received:.6f} {int(active)}\n"
            for index, target, sent, received, active in load.answers
        )
    outcomes = {"calls": len(load.answers) + load.errors.total()}
    outcomes.update({f"failed {code}": count for code, count in load.errors.items()})
    print(json.dumps(outcomes), flush=True)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
