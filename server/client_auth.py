"""Client authentication (RFC 6749 section 2.3), shared by the token, introspection and
revocation endpoints.

A service client is confidential: it proves itself with its secret, checked in constant time
against the stored keyed digest. A storefront client is public (RFC 6749 section 2.1): it names
itself with its client_id and must not send a secret. Every failure is the same `invalid_client`,
so a caller cannot tell an unknown client from a wrong secret.
"""

from __future__ import annotations

from server import validation
from server.core import Core
from server.errors import InvalidClient
from server.records import ClientCredentials, ClientKind, ClientRecord

FAILED = "client authentication failed"
NOT_AUTHENTICATED = (
    "client authentication is required: the client's secret, in HTTP Basic "
    "(client_secret_basic) or in the body (client_secret_post)"
)


async def authenticate(core: Core, credentials: ClientCredentials) -> ClientRecord:
    """The client these credentials prove, or InvalidClient."""
    validation.identifier(credentials.client_id, "client_id")
    if credentials.client_secret:
        validation.secret(credentials.client_secret)
    client = await core.store.get_client(credentials.client_id)
    if client is not None and client.kind is ClientKind.STOREFRONT:
        if credentials.client_secret:
            raise InvalidClient(FAILED)
        return client
    stored_digest = client.secret_digest if client is not None else None
    matches = core.digests.client_secret_matches(credentials.client_secret, stored_digest)
    if not matches or client is None:
        raise InvalidClient(FAILED)
    return client


async def authenticate_confidential(core: Core, credentials: ClientCredentials) -> ClientRecord:
    """The client these credentials prove with a secret, or InvalidClient.

    For a grant that only confidential clients may use (client_credentials, RFC 6749 section
    4.4), a client_id alone proves nothing: the request carries no client authentication,
    which section 5.2 names `invalid_client`. Decided before any lookup, so the answer is the
    same for a public client, a service client that forgot its secret and an unknown id.
    """
    if not credentials.client_secret:
        validation.identifier(credentials.client_id, "client_id")
        raise InvalidClient(NOT_AUTHENTICATED)
    return await authenticate(core, credentials)
