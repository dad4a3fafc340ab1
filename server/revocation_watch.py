"""WatchRevocations and `GET /oauth/revocations`: who may watch the revocation feed
(server/revocation_feed.py), and from which position.

The feed is for resource servers, back ends holding a service client: it authenticates with
its secret as at the token endpoint, and watches its own tenant's revocations (every tenant's
with the platform-admin scope, as its introspections see every tenant's tokens). A storefront
client runs in browsers and apps and has no business with other customers' sessions: refused
even with a secret. Everything is decided before the first message, so that a refusal is an
error status (or HTTP status), never a stream that ends at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from server import client_auth
from server.core import Core
from server.errors import AccessDenied, InvalidRequest
from server.records import ClientCredentials, ClientKind
from server.revocation_feed import FeedMessage
from server.scopes import PLATFORM_ADMIN_SCOPE

NOT_A_SERVICE_CLIENT = "only a service client may watch revocations"
MAX_POSITION_DIGITS = 19  # a BIGINT


async def watch(core: Core, caller: ClientCredentials, after: str) -> AsyncIterator[FeedMessage]:
    """The messages `caller` may see, after position `after` ("" for a fresh start)."""
    position = parse_position(after)
    client = await client_auth.authenticate_confidential(core, caller)
    if client.kind is not ClientKind.SERVICE:
        raise AccessDenied(NOT_A_SERVICE_CLIENT, field="client_id")
    tenant = None if PLATFORM_ADMIN_SCOPE in client.scopes else client.tenant
    return core.feed.watch(tenant, position)


def parse_position(after: str) -> int | None:
    """A position the feed gave (decimal digits), or None for none. Strict: a value that is not
    one would otherwise mean "start afresh" and hide a client's bug."""
    if not after:
        return None
    if len(after) > MAX_POSITION_DIGITS or not after.isascii() or not after.isdigit():
        raise InvalidRequest("after is not a position the revocation feed gave", field="after")
    return int(after)
