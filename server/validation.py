"""Field checks shared by every entry point. Each failure names the field and what is wrong,
and never echoes the value (it may be a secret)."""

from __future__ import annotations

import re

from server.errors import InvalidRequest
from server.records import SessionContext

TENANT_PATTERN = re.compile(r"^[a-z][a-z0-9]{2,15}$")
# RFC 6749 section 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
SCOPE_TOKEN_PATTERN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PRINTABLE_PATTERN = re.compile(r"^[^\x00-\x1f\x7f]*$")
# Client ids, legal entity ids, kids: URL-safe characters (the HTTP access log reuses this).
ID_CHARACTERS = r"[A-Za-z0-9._~:-]"
ID_PATTERN = re.compile(rf"^{ID_CHARACTERS}+$")

MAX_TOKEN = 512
MAX_ID = 128
MAX_SECRET = 512
MAX_EMAIL = 254
MAX_PASSWORD = 1024  # argon2 hashes anything, but unbounded input is a denial-of-service lever
MAX_SCOPE = 4096
MAX_CONTEXT_FIELD = 64
MAX_CURRENCY = 16  # ISO 4217 codes are 3 letters; the column holds 16


def tenant(value: str, field: str = "tenant") -> str:
    present(value, field)
    if not TENANT_PATTERN.fullmatch(value):
        raise InvalidRequest(
            f"{field} must be 3 to 16 lowercase letters or digits, starting with a letter",
            field=field,
        )
    return value


def present(value: str, field: str) -> str:
    if not value:
        raise InvalidRequest(f"{field} is required", field=field)
    return value


def bounded(value: str, field: str, max_length: int) -> str:
    if len(value) > max_length:
        raise InvalidRequest(f"{field} must be at most {max_length} characters", field=field)
    return value


def identifier(value: str, field: str, *, required: bool = True) -> str:
    """Client ids, legal entity ids and similar: short, URL-safe."""
    if not value:
        return present(value, field) if required else value
    bounded(value, field, MAX_ID)
    if not ID_PATTERN.fullmatch(value):
        raise InvalidRequest(f"{field} contains characters that are not allowed", field=field)
    return value


def token(value: str, field: str = "token", *, max_length: int = MAX_TOKEN) -> str:
    return bounded(present(value, field), field, max_length)


def secret(value: str, field: str = "client_secret") -> str:
    return bounded(present(value, field), field, MAX_SECRET)


def email(value: str, field: str = "email") -> str:
    present(value, field)
    bounded(value, field, MAX_EMAIL)
    if not EMAIL_PATTERN.fullmatch(value):
        raise InvalidRequest(f"{field} is not an email address", field=field)
    return value.strip().lower()


def password(value: str, field: str = "password") -> str:
    return bounded(present(value, field), field, MAX_PASSWORD)


def scopes(value: str, field: str = "scope") -> tuple[str, ...]:
    """A space-separated scope string as a tuple of scope tokens, order kept, duplicates dropped."""
    bounded(value, field, MAX_SCOPE)
    result: list[str] = []
    for item in value.split():
        if not SCOPE_TOKEN_PATTERN.fullmatch(item):
            raise InvalidRequest(f"{field} contains a malformed scope", field=field)
        if item not in result:
            result.append(item)
    return tuple(result)


def session_context(context: SessionContext | None) -> SessionContext:
    """Optional storefront fields (None: not given), each bounded and printable; an empty one
    counts as not given."""
    if context is None:
        return SessionContext()
    fields = {
        "currency": context.currency or "",
        "site_code": context.site_code or "",
        "language": context.language or "",
        "target_location": context.target_location or "",
    }
    for name, value in fields.items():
        bounded(value, name, MAX_CURRENCY if name == "currency" else MAX_CONTEXT_FIELD)
        if not PRINTABLE_PATTERN.fullmatch(value):
            raise InvalidRequest(f"{name} contains control characters", field=name)
    return SessionContext(**{name: value or None for name, value in fields.items()})
