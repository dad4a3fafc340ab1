"""Shared fixtures: fast argon2 parameters and a secret for in-process cores."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import outside_tools, postgres

FAST_ARGON2 = {"argon2_time_cost": 1, "argon2_memory_kib": 1024, "argon2_parallelism": 1}
FAST_ARGON2_ENV = {
    "TOKENSERVICE_ARGON2_TIME_COST": "1",
    "TOKENSERVICE_ARGON2_MEMORY_KIB": "1024",
    "TOKENSERVICE_ARGON2_PARALLELISM": "1",
}
TEST_SECRET = b"test-secret-key-of-at-least-32-bytes!!"


# --- PostgreSQL ----------------------------------------------------------------------------------
_POSTGRES_SKIPPED: list[str] = []


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[postgres.PostgresServer]:
    """The test PostgreSQL server, or a skip (a failure when CI requires it) saying why not."""
    reason = postgres.unreachable_reason()
    if reason is not None:
        if postgres.REQUIRED:
            pytest.fail(f"{reason}; TOKENSERVICE_TEST_REQUIRE_POSTGRES=1 requires it")
        _POSTGRES_SKIPPED.append(reason)
        pytest.skip(reason)
    server = postgres.start_server_session()
    try:
        yield server
    finally:
        postgres.end_server_session(server)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _POSTGRES_SKIPPED:
        terminalreporter.write_sep(
            "=", "PostgreSQL tests SKIPPED: " + _POSTGRES_SKIPPED[0], yellow=True, bold=True
        )
    for reason in outside_tools.SKIPPED:
        terminalreporter.write_sep("=", "tests SKIPPED: " + reason, yellow=True, bold=True)
