"""The HTTP access log: one line per request with method, path, status and duration.

Query values are shown only for parameters that never carry a secret; every other value, and
the Authorization header's credentials, are masked, so no token, secret or password reaches a
log line however a client sends it. Bodies are never logged.
"""

from __future__ import annotations

import logging
import time
from urllib.parse import parse_qsl, quote

from starlette.types import ASGIApp, Receive, Scope, Send

from http_bridge.response_status import ResponseStatus

log = logging.getLogger("tokenservice.http.access")
MASK = "***"
SAFE_QUERY_PARAMETERS = frozenset(
    {
        "tenant",
        "client_id",
        "currency",
        "siteCode",
        "language",
        "targetLocation",
        "legalEntityId",
        "token_type_hint",
    }
)

# Documented parameters whose names may be shown (their values are masked); any other name is
# masked too, in case a client sends a token as a bare name.
KNOWN_QUERY_PARAMETERS = SAFE_QUERY_PARAMETERS | {
    "refresh_token",
    "anonymous_token",
    "refreshToken",
    "accessToken",
    "access_token",
    "token",
    "client_secret",
}


# Authorization schemes whose name may be shown; anything else may be a bare credential.
KNOWN_SCHEMES = frozenset({"basic", "bearer", "digest", "dpop", "negotiate"})
# RFC 3986 pchar and "/": what a logged path may hold unencoded (so that a decoded newline or
# quote cannot forge a log line).
PATH_SAFE = "/:@!$&'()*+,;=-._~"
# No path segment of a route is this long (the longest is 26, tenants at most 16 characters);
# a longer one is most likely a token a client put in the path by mistake (tokens are 43).
MAX_SHOWN_SEGMENT = 32


def masked_target(path: str, query_string: bytes) -> str:
    """The request target as it may be logged."""
    path = "/".join(
        MASK if len(segment) > MAX_SHOWN_SEGMENT else quote(segment, safe=PATH_SAFE)
        for segment in path.split("/")
    )
    if not query_string:
        return path
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    shown = "&".join(_masked_pair(name, value) for name, value in pairs)
    return f"{path}?{shown}"


def _masked_pair(name: str, value: str) -> str:
    if name in SAFE_QUERY_PARAMETERS:
        return f"{quote(name)}={quote(value)}"
    return f"{quote(name) if name in KNOWN_QUERY_PARAMETERS else MASK}={MASK}"


def masked_authorization(headers: list[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, space, _ = value.decode("latin-1").partition(" ")
            return f"{scheme} {MASK}" if space and scheme.lower() in KNOWN_SCHEMES else MASK
    return "-"


class AccessLog:
    """Pure ASGI middleware, so it sees every response, the bridge's own errors included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = ResponseStatus(send)
        try:
            await self.app(scope, receive, status)
        finally:
            client = scope.get("client")
            log.info(
                '%s "%s %s" %d auth="%s" ms=%.2f',
                client[0] if client else "-",
                scope["method"],
                masked_target(scope["path"], scope.get("query_string", b"")),
                status.code,
                masked_authorization(scope.get("headers", [])),
                (time.perf_counter() - started) * 1000,
            )
