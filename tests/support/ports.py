"""A free loopback port, for the tests that start a process on a port of their own choosing."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nobody listens on right now (bind port 0, read it, let it go)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
