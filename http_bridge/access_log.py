"""The HTTP access log: one line per request with method, path, status and duration.

A query value is shown only for a parameter that never carries a secret, and only when it has
the shape of what that parameter holds: a token sent in the wrong parameter (`?tenant=<refresh
token>`) is masked like any other. Every other value, the names of unknown parameters, and the
Authorization header's credentials are masked, so no token, secret or password reaches a log
line however a client sends it. Bodies are never logged.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl, quote

from starlette.types import Scope

from http_bridge.response_status import ObservedRequests
from server.validation import ID_CHARACTERS, TENANT_PATTERN

log = logging.getLogger("tokenservice.http.access")
MASK = "***"
# No path segment of a route is this long (the longest is 26, tenants at most 16 characters),
# nor is a shown identifier: tokens and client secrets are 43 characters, SaaS tokens longer.
MAX_SHOWN_SEGMENT = 32
_SHORT_ID = re.compile(rf"{ID_CHARACTERS}{{1,{MAX_SHOWN_SEGMENT}}}")
# The parameters whose values may be shown, each with the shape its value must have (matched
# whole); anything else in them is masked. The service accepts more than some of these shapes
# (it stores any short printable currency): such values are served, just not logged.
SHOWN_QUERY_VALUES: dict[str, re.Pattern[str]] = {
    "tenant": TENANT_PATTERN,
    "client_id": _SHORT_ID,
    "legalEntityId": _SHORT_ID,
    "siteCode": _SHORT_ID,
    "targetLocation": _SHORT_ID,
    "currency": re.compile(r"[A-Za-z]{3}"),  # ISO 4217
    "language": re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8}){0,3}"),  # BCP 47, short
    "token_type_hint": re.compile(r"access_token|refresh_token"),  # RFC 7009 / RFC 7662
    "config": _SHORT_ID,  # an identity provider's name (exchangeauthtoken, socialLogin)
}

# Documented parameters whose names may be shown (their values are masked); any other name is
# masked too, in case a client sends a token as a bare name.
KNOWN_QUERY_PARAMETERS = SHOWN_QUERY_VALUES.keys() | {
    "refresh_token",
    "anonymous_token",
    "refreshToken",
    "accessToken",
    "access_token",
    "token",
    "client_secret",
    "subjectAccessToken",
    "code",
    "code_verifier",
    "redirect_uri",
    "nonce",
}


# Authorization schemes whose name may be shown; anything else may be a bare credential.
KNOWN_SCHEMES = frozenset({"basic", "bearer", "digest", "dpop", "negotiate"})
# RFC 3986 pchar and "/": what a logged path may hold unencoded (so that a decoded newline or
# quote cannot forge a log line).
PATH_SAFE = "/:@!$&'()*+,;=-._~"


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
    if name not in KNOWN_QUERY_PARAMETERS:
        return f"{MASK}={MASK}"
    return f"{name}={quote(value) if shown_value(name, value) else MASK}"


def shown_value(name: str, value: str) -> bool:
    """Whether the log may show `value` of parameter `name` (an empty value holds nothing)."""
    shape = SHOWN_QUERY_VALUES.get(name)
    return shape is not None and (not value or shape.fullmatch(value) is not None)


def masked_authorization(headers: list[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, space, _ = value.decode("latin-1").partition(" ")
            return f"{scheme} {MASK}" if space and scheme.lower() in KNOWN_SCHEMES else MASK
    return "-"


class AccessLog(ObservedRequests):
    """The outermost middleware, so it sees every response, the bridge's own errors included."""

    def observing(self) -> bool:
        return log.isEnabledFor(logging.INFO)

    def finished(self, scope: Scope, status: int, seconds: float) -> None:
        client = scope.get("client")
        log.info(
            '%s "%s %s" %d auth="%s" ms=%.2f',
            client[0] if client else "-",
            scope["method"],
            masked_target(scope["path"], scope.get("query_string", b"")),
            status,
            masked_authorization(scope.get("headers", [])),
            seconds * 1000,
        )
