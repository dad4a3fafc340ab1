"""Attackers as processes of their own (tests/support/slowloris.py,
tests/reliability/hung_streams.py), so that their sockets do not slow the test's ordinary
clients: both ends of the small protocol between a test and such a process.

The attacker prints one progress line every PAUSE seconds while it runs (its clock for the
test: "connected 812", "open 400"), stops on SIGTERM or when its stdin (a pipe from the test)
ends, and prints one JSON object with its outcomes last.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import resource
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

PAUSE = 0.5
ROOT = Path(__file__).resolve().parents[2]


# --- the attacker's side -------------------------------------------------------------------------


async def run_until_stopped(
    attack: Coroutine[Any, Any, None],
    stop: asyncio.Event,
    progress: Callable[[], str],
    outcomes: Callable[[], dict[str, int]],
) -> None:
    """Runs `attack` until SIGTERM or stdin's end set `stop`, printing `progress()` every PAUSE
    seconds, then `outcomes()` as JSON."""
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_reader(sys.stdin.fileno(), stop.set)  # stdin closed: the test is gone
    running = asyncio.create_task(attack)
    while not stop.is_set():
        print(progress(), flush=True)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(PAUSE):
                await stop.wait()
    await running
    print(json.dumps(outcomes()), flush=True)


# --- the test's side -----------------------------------------------------------------------------


def own_open_files(needed: int) -> None:
    """Raises this process's open-file limit to `needed` (its attackers, children, inherit it),
    or skips the test when the hard limit does not allow it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"the test needs {needed} open files; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


async def start(module: str, *args: str) -> asyncio.subprocess.Process:
    """`python -m module args...`, its stdin a pipe from here and its stdout read by tick()."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, *args, cwd=ROOT,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def tick(process: asyncio.subprocess.Process) -> int:
    """The number on the attacker's next progress line (one every PAUSE seconds)."""
    assert process.stdout is not None
    async with asyncio.timeout(30):
        line = (await process.stdout.readline()).decode()
    assert line and not line.startswith("{"), f"the attacker ended early: {line!r}"
    return int(line.split()[-1])


@dataclasses.dataclass(frozen=True)
class Finished:
    outcomes: dict[str, int]  # the JSON object the attacker printed last
    progress: list[int]  # the numbers of the progress lines not read by tick()


async def finish(process: asyncio.subprocess.Process) -> Finished:
    """Stops the attacker and reads what it printed since the last tick()."""
    if process.returncode is None:
        process.terminate()
    stdout, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    lines = stdout.decode().splitlines()
    outcomes = dict(json.loads(lines.pop())) if lines and lines[-1].startswith("{") else {}
    return Finished(outcomes, [int(line.split()[-1]) for line in lines if line.strip()])
