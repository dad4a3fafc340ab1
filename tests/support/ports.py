"""A free loopback port, for the tests that start a process on a port of their own choosing.

Not a port the kernel picks (bind to 0): those come from its ephemeral range, the same range
every outgoing connection takes its local port from, so between the probe releasing it and the
test's server binding it, any of the suite's thousands of client connections could take it
(seen under load: a server exiting with "Address already in use"). The ports handed out here
lie below the ephemeral range, where no connection is ever given a port, in a slice of their
own for each pytest-xdist worker, and are never handed out twice in a row by one process."""

from __future__ import annotations

import collections
import os
import random
import socket
from pathlib import Path

LOWEST = 10_000  # below: the well-known ports of the machine's own services
WORKER_SLICES = 8  # slices of the range, one per xdist worker (more workers share slices)
_given: collections.deque[int] = collections.deque(maxlen=512)


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


def _slice() -> range:
    """This process's part of the ports below the ephemeral range."""
    ports = range(LOWEST, max(_ephemeral_low(), LOWEST + WORKER_SLICES * 100))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    index = int(worker) % WORKER_SLICES if worker.isdigit() else 0
    size = len(ports) // WORKER_SLICES
    return range(ports.start + index * size, ports.start + (index + 1) * size)


def free_port() -> int:
    """A port nobody listens on right now (it binds), outside the kernel's ephemeral range."""
    candidates = _slice()
    for _ in range(1_000):
        port = random.choice(candidates)
        if port in _given:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue  # in use, or still in TIME_WAIT
        _given.append(port)
        return port
    raise RuntimeError(f"no free port in {candidates}")


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports."""
    return [free_port() for _ in range(count)]
