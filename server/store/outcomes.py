"""What both stores (sql.SqlStore, memory.MemoryStore) say and check, in one place, so that
they say the same thing: the messages of refused writes and the purge batch bound."""

from __future__ import annotations

from server.errors import InvalidRequest

UNAVAILABLE = "the token store is unavailable; retry later"
ACTIVE_KEY_RETIRE = "the active signing key cannot be retired; rotate first"
IDENTIFIER_EXISTS = "a token or session with this identifier already exists"
# purge_expired: at most this many sessions or tokens per transaction (and per IN list).
MAX_PURGE_BATCH = 10_000


def check_purge_batch(batch_size: int) -> None:
    if not 1 <= batch_size <= MAX_PURGE_BATCH:
        raise InvalidRequest(f"batch_size must be between 1 and {MAX_PURGE_BATCH}")


def tenant_exists(name: str) -> str:
    return f"tenant '{name}' already exists"


def tenant_missing(name: str) -> str:
    return f"tenant '{name}' does not exist"


def client_exists(client_id: str) -> str:
    return f"client '{client_id}' already exists"


def customer_exists(tenant: str) -> str:
    return f"customer with this email already exists in tenant '{tenant}'"


def key_exists(kid: str) -> str:
    return f"signing key '{kid}' already exists"
