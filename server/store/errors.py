"""The one place driver errors become service errors (`store_errors`), for the SQL store and
the migrations alike: duplicates, missing parents, conflicts to run again, refused values and
a database that cannot serve now."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Iterator

from sqlalchemy.exc import (
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from server.errors import AlreadyExists, InvalidRequest, NotFound, StoreUnavailable
from server.store.outcomes import UNAVAILABLE

log = logging.getLogger(__name__)

# SQLSTATEs after which the same transaction, run again, may well succeed.
_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected


# SQLSTATE class 22, data exception: a value too long, out of range, or badly encoded.
_DATA_EXCEPTION_CLASS = "22"
VALUE_REFUSED = "a value in the request is too long or not acceptable to the store"
# SQLSTATE classes of a database that cannot serve now but will again: connection exception
# (08), insufficient resources (53), and operator intervention (57P: shutting down, starting
# up, "cannot connect now").
_UNAVAILABLE_SQLSTATE_PREFIXES = ("08", "53", "57P")
# read_only_sql_transaction: a write reached a standby (a failover in progress) or a database
# made read-only; reads still work, so readiness probes a write (SqlStore.ping).
_UNAVAILABLE_SQLSTATES = frozenset({"25006"})


class Conflict(Exception):
    """A write transaction lost a serialization conflict or a deadlock: run it again."""


_UNAVAILABLE_ERRORS = (
    OperationalError,
    InterfaceError,
    PoolTimeoutError,
    sqlite3.OperationalError,
    ConnectionError,
    TimeoutError,
    OSError,
)


@contextlib.contextmanager
def store_errors(*, duplicate: str | None = None, missing: str | None = None) -> Iterator[None]:
    """Maps driver errors: a unique violation to AlreadyExists(duplicate), a foreign-key
    violation to NotFound(missing), a serialization conflict or deadlock to Conflict (run the
    transaction again), an unreachable or locked database to StoreUnavailable."""
    try:
        yield
    except IntegrityError as exc:
        if _is_unique_violation(exc):
            if duplicate is not None:
                raise AlreadyExists(duplicate) from None
        elif missing is not None:
            raise NotFound(missing) from None
        raise
    except DBAPIError as exc:
        state = _sqlstate(exc) or ""
        if state in _RETRYABLE_SQLSTATES:
            raise Conflict from None
        if state.startswith(_DATA_EXCEPTION_CLASS):
            # Input that validation let through but the database refuses (too long, bad
            # encoding): the caller's mistake, so a 400, never a 500. Validation should catch
            # it first; the warning says where it did not.
            log.warning("token store refused a value: SQLSTATE %s", state)
            raise InvalidRequest(VALUE_REFUSED) from None
        unavailable = (
            isinstance(exc, _UNAVAILABLE_ERRORS)
            or exc.connection_invalidated
            or state.startswith(_UNAVAILABLE_SQLSTATE_PREFIXES)
            or state in _UNAVAILABLE_SQLSTATES
        )
        if not unavailable:
            raise
        _log_unavailable(exc)
        raise StoreUnavailable(UNAVAILABLE) from exc
    except _UNAVAILABLE_ERRORS as exc:
        _log_unavailable(exc)
        raise StoreUnavailable(UNAVAILABLE) from exc


def _sqlstate(exc: DBAPIError) -> str | None:
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return str(code) if code else None


def _is_unique_violation(exc: IntegrityError) -> bool:
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    if code:
        return bool(code == "23505")
    text = str(exc.orig).lower()
    return "unique" in text or "duplicate" in text


def _log_unavailable(exc: BaseException) -> None:
    """Class names and the driver's own message only: engines hide SQL parameters."""
    orig = getattr(exc, "orig", None) or exc
    detail = str(orig).splitlines()[0][:200] if str(orig) else ""
    log.warning(
        "token store unavailable: %s (%s.%s: %s)",
        type(exc).__name__,
        type(orig).__module__,
        type(orig).__name__,
        detail,
    )
