"""Shared fixtures: fast argon2 parameters and a secret for in-process cores."""

from __future__ import annotations

import pytest

from server.settings import Settings

FAST_ARGON2 = {"argon2_time_cost": 1, "argon2_memory_kib": 1024, "argon2_parallelism": 1}
FAST_ARGON2_ENV = {
    "TOKENSERVICE_ARGON2_TIME_COST": "1",
    "TOKENSERVICE_ARGON2_MEMORY_KIB": "1024",
    "TOKENSERVICE_ARGON2_PARALLELISM": "1",
}
TEST_SECRET = b"test-secret-key-of-at-least-32-bytes!!"


@pytest.fixture
def fast_settings() -> Settings:
    return Settings(**FAST_ARGON2)  # type: ignore[arg-type]
