"""Configuring a tenant's identity providers (docs/identity-providers.md), shared by the
AdminService and the CLI: checks, OpenID discovery at configuration time, and the store.

A provider's URLs (JWKS URI, token endpoint, discovery document) are the only ones the service
ever requests for it (server/outbound_http.py); they must be https, or http to a loopback
address where TOKENSERVICE_IDP_ALLOW_HTTP_LOOPBACK allows it. Discovery is done once, here:
at run time only the URLs stored are requested.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from urllib.parse import urlsplit

from server import admin, validation
from server.core import Core
from server.errors import IdentityProviderUnavailable, InvalidRequest
from server.jwt_checks import ASYMMETRIC_ALGORITHMS
from server.records import IdentityProviderRecord

MAX_URL = 2048
MAX_NAME = 64
DEFAULT_ALGORITHMS = ("RS256", "ES256")
LOOPBACK_NAMES = frozenset({"localhost"})


async def put_identity_provider(
    core: Core, draft: IdentityProviderRecord, *, discovery_url: str = ""
) -> IdentityProviderRecord:
    """Stores the tenant's provider (replacing one of the same name) once every field is
    acceptable; with `discovery_url`, the issuer, JWKS URI and token endpoint left empty are
    taken from that discovery document first."""
    await admin.get_tenant(core, draft.tenant)  # NotFound for an unknown tenant
    name = draft.name or "default"
    validation.identifier(name, "name")
    validation.bounded(name, "name", MAX_NAME)
    draft = dataclasses.replace(draft, name=name, created_at=core.now())
    if discovery_url:
        check_url(core, discovery_url, "discovery_url")
        draft = await _discovered(core, draft, discovery_url)
    record = checked(core, draft)
    old = await core.store.get_identity_provider(record.tenant, record.name)
    await core.store.put_identity_provider(record)
    if old is not None:
        core.provider_keys.forget(old)
    return record


async def list_identity_providers(core: Core, tenant: str) -> list[IdentityProviderRecord]:
    await admin.get_tenant(core, tenant)
    return await core.store.list_identity_providers(tenant)


async def delete_identity_provider(core: Core, tenant: str, name: str) -> bool:
    await admin.get_tenant(core, tenant)
    old = await core.store.get_identity_provider(tenant, name or "default")
    if old is None:
        return False
    core.provider_keys.forget(old)
    return await core.store.delete_identity_provider(tenant, old.name)


def checked(core: Core, draft: IdentityProviderRecord) -> IdentityProviderRecord:
    """`draft` with its defaults filled in, or InvalidRequest naming the first bad field."""
    _text(draft.issuer, "issuer")
    _text(draft.audience, "audience")
    check_url(core, draft.jwks_uri, "jwks_uri")
    if draft.token_endpoint:
        check_url(core, draft.token_endpoint, "token_endpoint")
    claim = draft.customer_claim or "email"
    validation.identifier(claim, "customer_claim")
    validation.bounded(claim, "customer_claim", MAX_NAME)
    algorithms = tuple(dict.fromkeys(draft.algorithms)) or DEFAULT_ALGORITHMS
    if not ASYMMETRIC_ALGORITHMS.issuperset(algorithms):
        raise InvalidRequest(
            "algorithms must be asymmetric JWS algorithms (RS256, PS256, ES256, EdDSA, ...)",
            field="algorithms",
        )
    scopes = admin.customer_scopes(draft.customer_scopes, "customer_scopes")
    if draft.client_id:
        _text(draft.client_id, "client_id")
    if draft.client_secret:
        validation.secret(draft.client_secret)
        if not draft.client_id:
            raise InvalidRequest("client_secret needs a client_id", field="client_secret")
    return dataclasses.replace(
        draft, customer_claim=claim, algorithms=algorithms, customer_scopes=scopes
    )


def check_url(core: Core, url: str, field: str) -> str:
    """An absolute https URL (or http to a loopback address, where allowed), without
    credentials or fragment."""
    _text(url, field)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidRequest(f"{field} is not a URL", field=field) from None
    del port
    if not parts.hostname or parts.username is not None or parts.fragment:
        raise InvalidRequest(
            f"{field} must be an absolute URL without credentials or fragment", field=field
        )
    if parts.scheme == "https":
        return url
    loopback_allowed = core.settings.idp_allow_http_loopback and _loopback(parts.hostname)
    if parts.scheme == "http" and loopback_allowed:
        return url
    raise InvalidRequest(f"{field} must be an https URL", field=field)


async def _discovered(
    core: Core, draft: IdentityProviderRecord, url: str
) -> IdentityProviderRecord:
    status, document = await core.outbound.get_discovery(draft, url)
    if status != 200 or not isinstance(document, dict):
        raise IdentityProviderUnavailable("the discovery document could not be read")
    found = {name: document.get(name) for name in ("issuer", "jwks_uri", "token_endpoint")}
    if not all(isinstance(value, str) or value is None for value in found.values()):
        raise IdentityProviderUnavailable("the discovery document is malformed")
    if draft.issuer and found["issuer"] and found["issuer"] != draft.issuer:
        raise InvalidRequest("the discovery document names another issuer", field="issuer")
    return dataclasses.replace(
        draft,
        issuer=draft.issuer or found["issuer"] or "",
        jwks_uri=draft.jwks_uri or found["jwks_uri"] or "",
        token_endpoint=draft.token_endpoint or found["token_endpoint"] or "",
    )


def _text(value: str, field: str) -> None:
    validation.bounded(validation.present(value, field), field, MAX_URL)
    if not validation.PRINTABLE_PATTERN.fullmatch(value) or value != value.strip():
        raise InvalidRequest(f"{field} contains characters that are not allowed", field=field)


def _loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
