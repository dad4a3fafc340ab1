"""OAuth 2.0 client_credentials grant (RFC 6749 section 4.4), `POST /oauth/token`.

Service access tokens for back ends: the client must authenticate with its secret (a client_id
alone, as a public storefront client sends, is `invalid_client`), checked against its keyed
digest in constant time; requested scopes must be a subset of the client's, omitted scope grants
all of them; no refresh token. Also served as `POST /oauth2/token`, the metadata's endpoint.
"""

from __future__ import annotations

from server import client_auth, validation
from server.core import Core
from server.errors import InvalidScope, UnauthorizedClient
from server.grants.common import minted, scope_string
from server.records import (
    ClientCredentials,
    ClientKind,
    ClientRecord,
    IssuedTokens,
    TokenKind,
    TokenUse,
)

TENANT_SCOPE_PREFIX = "tenant="


async def issue(core: Core, client_id: str, client_secret: str, scope: str = "") -> IssuedTokens:
    validation.identifier(client_id, "client_id")
    requested = validation.scopes(scope)
    credentials = ClientCredentials(client_id, client_secret)
    client = await client_auth.authenticate_confidential(core, credentials)
    if client.kind is not ClientKind.SERVICE:
        # An authenticated client this grant is not for (RFC 6749 section 5.2). Only service
        # clients hold secrets today, so a public storefront client never gets this far: it
        # has not authenticated, which is invalid_client (client_auth.authenticate_confidential).
        raise UnauthorizedClient("this client may not use the client_credentials grant")
    granted = granted_scopes(client, requested)
    now = core.now()
    ttl = client.access_token_ttl or core.settings.service_access_ttl
    access_token, record = minted(
        core,
        kind=TokenKind.SERVICE,
        use=TokenUse.ACCESS,
        client=client,
        scope=scope_string(granted, client.tenant),
        now=now,
        ttl=ttl,
    )
    await core.store.save_tokens([record])
    return IssuedTokens(
        kind=TokenKind.SERVICE,
        access_token=access_token,
        expires_in=ttl,
        scope=record.scope,
        session_idle_time=core.settings.session_idle_time,
    )


def granted_scopes(client: ClientRecord, requested: tuple[str, ...]) -> tuple[str, ...]:
    """The requested scopes (minus a `tenant=` entry naming the client's own tenant), which must
    all be the client's; none requested means all of the client's."""
    wanted = []
    for item in requested:
        if item.startswith(TENANT_SCOPE_PREFIX):
            if item != f"{TENANT_SCOPE_PREFIX}{client.tenant}":
                raise InvalidScope("scope names a tenant this client does not belong to")
            continue
        wanted.append(item)
    if not wanted:
        return client.scopes
    if not set(wanted) <= set(client.scopes):
        raise InvalidScope("scope asks for more than this client is granted")
    return tuple(wanted)
