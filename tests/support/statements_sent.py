"""What a test's code sent to the database, counted at the driver: how many rows each
statement starting with a given prefix carried (an executemany counts its rows), across every
engine while inside the block."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine


@contextlib.contextmanager
def rows_sent(prefix: str) -> Iterator[list[int]]:
    sent: list[int] = []

    def count(
        _conn: object, _cursor: object, statement: str, params: Any, _context: object, many: bool
    ) -> None:
        if statement.startswith(prefix):
            sent.append(len(params) if many else 1)

    event.listen(Engine, "before_cursor_execute", count)
    try:
        yield sent
    finally:
        event.remove(Engine, "before_cursor_execute", count)
