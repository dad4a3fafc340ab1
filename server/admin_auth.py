"""Who may call the AdminService: the bearer of an active service access token whose scope carries
`tokenservice.platform_admin` (every tenant, tenants and signing keys) or `tokenservice.admin`
(its own tenant only)."""

from __future__ import annotations

from collections.abc import Collection

from server import validation
from server.core import Core
from server.errors import AccessDenied, InvalidToken
from server.introspection import introspect
from server.records import TokenKind, TokenUse
from server.scopes import ADMIN_SCOPE, PLATFORM_ADMIN_SCOPE

__all__ = ["ADMIN_SCOPE", "PLATFORM_ADMIN_SCOPE", "authorize_admin"]
BEARER = "bearer"


async def authorize_admin(
    core: Core, authorization: str, tenant: str | None, *, granting: Collection[str] = ()
) -> None:
    """Allows the call or raises: InvalidToken when the bearer token is missing, malformed or
    inactive; AccessDenied when it is not a service access token, or its scope lacks the admin
    scope for `tenant` (None: a platform operation). `granting` lists the scopes the call would
    give a new client or customer: only a platform admin may hand out the platform admin scope
    (and customers get neither admin scope: server.admin.customer_scopes)."""
    token = bearer_token(authorization)
    info = await introspect(core, token)
    if not info.active:
        raise InvalidToken("the authorization token is invalid, expired or revoked")
    if info.kind is not TokenKind.SERVICE or info.use is not TokenUse.ACCESS:
        raise AccessDenied("the AdminService accepts only service access tokens")
    scopes = set(info.scope.split())
    if PLATFORM_ADMIN_SCOPE in scopes:
        return
    if PLATFORM_ADMIN_SCOPE in granting:
        raise AccessDenied(
            f"only a platform admin may grant the {PLATFORM_ADMIN_SCOPE} scope", field="scopes"
        )
    if ADMIN_SCOPE in scopes and tenant is not None and tenant == info.tenant:
        return
    if tenant is None:
        raise AccessDenied(f"this operation needs the {PLATFORM_ADMIN_SCOPE} scope")
    raise AccessDenied(
        f"this operation needs the {PLATFORM_ADMIN_SCOPE} scope, or {ADMIN_SCOPE} on a token "
        "of the same tenant"
    )


def bearer_token(authorization: str) -> str:
    """The token of an `authorization: Bearer <token>` value, or InvalidToken."""
    if not authorization:
        raise InvalidToken("authorization metadata is required: 'Bearer <service access token>'")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if (
        scheme.lower() != BEARER
        or not token
        or len(token) > validation.MAX_TOKEN
        or any(char.isspace() for char in token)
    ):
        raise InvalidToken("authorization metadata must be 'Bearer <service access token>'")
    return token
