"""not_none(): a value the test's own steps guarantee, narrowed from `X | None` for mypy.

Store lookups answer `Record | None`; a test that has just saved the record reads it back
through not_none() instead of an attribute access on an Optional (a failing lookup is then an
AssertionError, not an AttributeError on None)."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


def not_none(value: T | None) -> T:
    assert value is not None, "expected a stored value, found None"
    return value
