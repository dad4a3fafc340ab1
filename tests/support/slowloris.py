"""A slowloris, run as its own process so that its sockets do not slow the test's clients:
COUNT sockets to 127.0.0.1:PORT, each sending one header byte every half second and never
finishing its head; a socket the server answers or closes is reopened after a pause. Every
half second it prints how many connections it has made; on SIGTERM (or stdin's end) it
prints one JSON object with the outcomes (the status the server answered, "closed", "reset",
"connect failed") and exits.

    python -m tests.support.slowloris PORT COUNT
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter

from tests.support.attack_process import PAUSE, run_until_stopped

ENDLESS_HEAD = b"GET /healthz HTTP/1.1\r\nHost: test\r\nx-slow: " + b"s" * 100_000


class Slowloris:
    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.count = count
        self.stop = asyncio.Event()
        self.connected = 0
        self.outcomes: Counter[str] = Counter()

    async def run(self) -> None:
        await asyncio.gather(*(self._one() for _ in range(self.count)))

    async def _one(self) -> None:
        while not self.stop.is_set():
            try:
                async with asyncio.timeout(5):
                    reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except (OSError, TimeoutError):
                self.outcomes["connect failed"] += 1
                await asyncio.sleep(PAUSE)
                continue
            self.connected += 1
            self.outcomes[await self._trickle(reader, writer)] += 1
            writer.close()
            await asyncio.sleep(PAUSE)

    async def _trickle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
        try:
            for byte in ENDLESS_HEAD:
                if self.stop.is_set():
                    return "held to the end"
                writer.write(bytes([byte]))
                await writer.drain()
                try:
                    async with asyncio.timeout(PAUSE):
                        answer = await reader.read(1024)
                except TimeoutError:
                    continue
                return answer.split(b" ", 2)[1].decode() if answer else "closed"
        except OSError:
            return "reset"
        return "sent it all"


async def main(port: int, count: int) -> None:
    attack = Slowloris(port, count)
    await run_until_stopped(
        attack.run(),
        attack.stop,
        lambda: f"connected {attack.connected}",
        lambda: dict(attack.outcomes),
    )


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
