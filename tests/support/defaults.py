"""What every test core and test process shares: argon2 at its cheapest (the cost is tested in
tests/unit/test_passwords.py, not paid by every login), and a server secret."""

from __future__ import annotations

from typing import TypedDict


class Argon2Parameters(TypedDict):
    """Settings' argon2 fields, typed so that Settings(**parameters) type-checks."""

    argon2_time_cost: int
    argon2_memory_kib: int
    argon2_parallelism: int


FAST_ARGON2: Argon2Parameters = {
    "argon2_time_cost": 1,
    "argon2_memory_kib": 1024,
    "argon2_parallelism": 1,
}
FAST_ARGON2_ENV = {
    "TOKENSERVICE_ARGON2_TIME_COST": "1",
    "TOKENSERVICE_ARGON2_MEMORY_KIB": "1024",
    "TOKENSERVICE_ARGON2_PARALLELISM": "1",
}
TEST_SECRET = b"test-secret-key-of-at-least-32-bytes!!"
