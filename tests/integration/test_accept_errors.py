"""At the file-descriptor limit, asyncio's accept errors become one line per interval
(server/process_limits.py): a real asyncio server in a subprocess whose open-file limit is
lowered until accept() fails with EMFILE, with 200 clients waiting to be accepted. Without
the handler CPython logs a traceback for every failed accept (the control run shows it does
here); with it, at most one summary line per interval, counting them."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = 200
SECONDS = 2.5
INTERVAL = 1.0
SERVER = f"""
import asyncio, logging, os, resource, sys
from server.process_limits import install_accept_error_handler

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")

async def main(handled):
    loop = asyncio.get_running_loop()
    if handled:
        install_accept_error_handler(loop, interval={INTERVAL})
    held = []

    class Hold(asyncio.Protocol):
        def connection_made(self, transport):
            held.append(transport)

    server = await loop.create_server(Hold, "127.0.0.1", 0, backlog=128)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 8, hard))
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.sleep({SECONDS})
    print("held", len(held), flush=True)

asyncio.run(main(sys.argv[1] == "handled"))
"""


async def run_at_the_limit(mode: str) -> str:
    """The server's stderr after CLIENTS connections wait on it for SECONDS."""
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SERVER, mode, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert server.stdout is not None
    async with asyncio.timeout(30):
        port = int(await server.stdout.readline())

    async def client() -> asyncio.StreamWriter | None:
        try:
            async with asyncio.timeout(1):
                return (await asyncio.open_connection("127.0.0.1", port))[1]
        except (TimeoutError, OSError):
            return None  # the accept queue is full: this one waits in SYN retries

    clients = await asyncio.gather(*(client() for _ in range(CLIENTS)))
    async with asyncio.timeout(30):
        out, err = await server.communicate()
    for writer in clients:
        if writer is not None:
            writer.close()
    assert server.returncode == 0, err.decode()[-3000:]
    assert out.decode().startswith("held "), out
    return err.decode()


async def test_accept_errors_at_the_fd_limit_are_one_line_per_interval() -> None:
    unhandled = await run_at_the_limit("unhandled")
    assert unhandled.count("socket.accept() out of system resource") > 10  # the flood is real

    handled = await run_at_the_limit("handled")
    assert "Traceback" not in handled
    assert "out of system resource" not in handled
    lines = [line for line in handled.splitlines() if "accept() failed" in line]
    assert 1 <= len(lines) <= SECONDS / INTERVAL + 1, lines
    print(unhandled.count("out of system resource"), "tracebacks unhandled; handled:", lines)
    counted = sum(int(n) for n in re.findall(r"(\d+) x EMFILE", "\n".join(lines)))
    assert counted >= 1, lines
