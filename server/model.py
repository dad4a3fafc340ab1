"""What the grants and handlers return, independent of any transport."""

from __future__ import annotations

import dataclasses

from server.records import TokenKind, TokenUse

TOKEN_TYPE = "Bearer"  # noqa: S105 - the OAuth token_type, not a secret


@dataclasses.dataclass(frozen=True, slots=True)
class ClientCredentials:
    """What a caller presents to authenticate as a client; the secret is empty for a public
    storefront client."""

    client_id: str
    client_secret: str = ""

    def __repr__(self) -> str:  # never show the secret, not even in a traceback
        return f"ClientCredentials(client_id={self.client_id!r})"


@dataclasses.dataclass(frozen=True, slots=True)
class IssuedTokens:
    kind: TokenKind
    access_token: str
    expires_in: int
    scope: str
    refresh_token: str = ""
    refresh_token_expires_in: int = 0
    session_id: str = ""
    saas_token: str = ""
    session_idle_time: int = 0
    token_type: str = TOKEN_TYPE


@dataclasses.dataclass(frozen=True, slots=True)
class Introspection:
    active: bool
    kind: TokenKind | None = None
    use: TokenUse | None = None
    tenant: str = ""
    client_id: str = ""
    scope: str = ""
    expires_in: int = 0
    exp: int = 0
    iat: int = 0
    session_id: str = ""
    customer_id: str = ""
    email: str = ""
    legal_entity_id: str = ""
    token_type: str = TOKEN_TYPE


INACTIVE = Introspection(active=False)


@dataclasses.dataclass(frozen=True, slots=True)
class Revocation:
    revoked_count: int

    @property
    def revoked(self) -> bool:
        return self.revoked_count > 0
