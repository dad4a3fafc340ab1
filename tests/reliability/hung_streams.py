"""Header-only gRPC streams, run as a process of its own so that they do not slow the test's
ordinary clients: CONNECTIONS HTTP/2 connections to 127.0.0.1:PORT on which STREAMS streams in
all are opened with their headers and never sent a message, ignoring the server's
SETTINGS_MAX_CONCURRENT_STREAMS as a hostile client would. Whenever the server ends some (a
refused stream, a message deadline, an eviction) as many are opened again after a pause, and a
connection the server closes is opened again, so that the attack keeps asking for STREAMS open
streams for as long as it runs. Every half second it prints how many of its streams are open;
on SIGTERM (or stdin's end) it prints one JSON object with how the server ended them and exits.

    python -m tests.reliability.hung_streams PORT CONNECTIONS STREAMS
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections import Counter

from tests.support.attack_process import PAUSE, run_until_stopped
from tests.support.raw_grpc import RawGrpcClient, StreamOutcome

METHOD = "/tokenservice.v1.TokenService/IntrospectToken"


def ending(outcome: StreamOutcome) -> str:
    if outcome.reset_code is not None:
        return f"reset {outcome.reset_code}"
    if outcome.grpc_status is not None:
        return f"grpc-status {outcome.grpc_status}"
    return "connection closed"


class HungStreams:
    def __init__(self, port: int, connections: int, streams: int) -> None:
        self.port = port
        self.connections = connections
        self.per_connection = streams // connections
        self.stop = asyncio.Event()
        self.outcomes: Counter[str] = Counter()
        self.clients: list[RawGrpcClient] = []

    @property
    def open_streams(self) -> int:
        return sum(client.open_streams for client in self.clients)

    async def run(self) -> None:
        await asyncio.gather(*(self._connection() for _ in range(self.connections)))

    async def _connection(self) -> None:
        while not self.stop.is_set():
            try:
                client = await RawGrpcClient.connect(self.port)
            except OSError:
                self.outcomes["connect failed"] += 1
                await asyncio.sleep(PAUSE)
                continue
            self.clients.append(client)
            try:
                await self._hold(client)
            finally:
                self.clients.remove(client)
                self.outcomes.update(ending(outcome) for outcome in client.forget_ended())
                await client.close()

    async def _hold(self, client: RawGrpcClient) -> None:
        """Keeps `per_connection` streams asked for on `client` until stopped or closed."""
        while not self.stop.is_set() and not client.closed.is_set():
            self.outcomes.update(ending(outcome) for outcome in client.forget_ended())
            for _ in range(self.per_connection - client.open_streams):
                client.start_call(METHOD)
            with contextlib.suppress(ConnectionError):
                await client.flush()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(PAUSE):
                    await self.stop.wait()


async def main(port: int, connections: int, streams: int) -> None:
    attack = HungStreams(port, connections, streams)
    await run_until_stopped(
        attack.run(),
        attack.stop,
        lambda: f"open {attack.open_streams}",
        lambda: dict(attack.outcomes),
    )


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
