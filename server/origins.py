"""Browser origins (RFC 6454) that may call the storefront endpoints from JavaScript (CORS).

One check for every place an origin is configured: a tenant's allowed origins (AdminService,
CLI) and TOKENSERVICE_CORS_ALLOWED_ORIGINS. An origin is exactly what a browser sends in its
`Origin` header: `scheme://host[:port]`, http or https, no path (not even `/`), no query,
fragment, user info or wildcard. Scheme and host are compared case-insensitively and a default
port means no port, so both are normalised to the browser's form; anything else is refused,
because an entry that can never match a browser's `Origin` is a mistake its author should hear
about, not a silent no-op. Failures name the entry by position and never echo it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from server import validation
from server.errors import InvalidRequest

if TYPE_CHECKING:
    from server.core import Core

MAX_ORIGINS = 100
MAX_ORIGIN = 255
SHAPE = "an origin is scheme://host[:port] (http or https), without path, query or wildcard"
DEFAULT_PORTS = {"http": 80, "https": 443}
ORIGIN_PATTERN = re.compile(
    r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<host>\[[0-9A-Fa-f:.]+\]|[^/:?#@\[\]\s]+)"
    r"(?::(?P<port>[0-9]{1,5}))?$"
)
HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


async def of_tenant(core: Core, tenant: str) -> tuple[str, ...]:
    """The tenant's allowed origins (TokenService.GetAllowedOrigins); none for a tenant that
    does not exist, so that the answer tells no more than a browser learns anyway."""
    validation.tenant(tenant)
    record = await core.store.get_tenant(tenant)
    return () if record is None else record.allowed_origins


def origin(value: str, field: str = "origin") -> str:
    """`value` in the form a browser sends it, or InvalidRequest saying what an origin is."""
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"{field} is empty; {SHAPE}", field=field)
    if len(value) > MAX_ORIGIN:
        raise InvalidRequest(f"{field} is longer than {MAX_ORIGIN} characters", field=field)
    if "*" in value:
        raise InvalidRequest(f"{field} must not contain a wildcard; {SHAPE}", field=field)
    rest = value.partition("://")[2]
    if "/" in rest:
        raise InvalidRequest(f"{field} must not have a path, not even '/'; {SHAPE}", field=field)
    if "?" in rest or "#" in rest:
        raise InvalidRequest(f"{field} must not have a query or fragment; {SHAPE}", field=field)
    match = ORIGIN_PATTERN.fullmatch(value)
    if match is None:
        raise InvalidRequest(f"{field} is not an origin; {SHAPE}", field=field)
    scheme = match["scheme"].lower()
    if scheme not in DEFAULT_PORTS:
        raise InvalidRequest(f"{field} must use http or https; {SHAPE}", field=field)
    host = _host(match["host"].lower(), field)
    port = match["port"]
    if port is None:
        return f"{scheme}://{host}"
    if port.startswith("0") or int(port) > 65535:
        raise InvalidRequest(f"{field} has a port outside 1-65535; {SHAPE}", field=field)
    if int(port) == DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def origins(values: Sequence[str], field: str = "allowed_origins") -> tuple[str, ...]:
    """Each checked and normalised, order kept, duplicates dropped, at most MAX_ORIGINS."""
    if isinstance(values, str):
        raise InvalidRequest(f"{field} must be a list of origins", field=field)
    result: list[str] = []
    for index, value in enumerate(values):
        checked = origin(value, f"{field}[{index}]")
        if checked not in result:
            result.append(checked)
    if len(result) > MAX_ORIGINS:
        raise InvalidRequest(f"{field} must list at most {MAX_ORIGINS} origins", field=field)
    return tuple(result)


def origin_list(text: str, field: str) -> tuple[str, ...]:
    """A comma-separated list (an environment variable); blanks between commas are ignored."""
    return origins([item.strip() for item in text.split(",") if item.strip()], field)


def _host(host: str, field: str) -> str:
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise InvalidRequest(f"{field} has a malformed IPv6 address", field=field) from None
        return host
    labels = host.split(".")
    if not all(HOST_LABEL.fullmatch(label) for label in labels):
        raise InvalidRequest(f"{field} has a malformed host name; {SHAPE}", field=field)
    return host
