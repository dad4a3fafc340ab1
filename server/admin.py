"""Provisioning: tenants, clients, customers and signing keys.

Shared by the `tokenservice` CLI and the AdminService, so that both validate the same way. Every
input is checked here; messages name the field and never echo a password or secret. A service
client's secret is generated here, returned once, and stored only as its keyed digest.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence

from server import origins, validation
from server.accounts import policy as account_policy
from server.core import Core
from server.errors import AlreadyExists, InvalidRequest, NotFound
from server.records import (
    AccountPolicy,
    ClientKind,
    ClientRecord,
    CustomerRecord,
    SigningKeyRecord,
    TenantRecord,
)
from server.scopes import ADMIN_SCOPE, PLATFORM_ADMIN_SCOPE
from server.signing import new_signing_key, refuse_retiring_the_signer
from server.tokens import new_client_secret

CLIENT_ID_BYTES = 18  # 24 URL-safe characters
MAX_NAME = 255
MAX_TTL = 10 * 365 * 86400  # ten years: fits the 32-bit ttl columns with room to spare
MIN_PASSWORD = 8
MAX_LEGAL_ENTITIES = 100
RESERVED_SCOPE_PREFIX = "tenant="  # the service appends `tenant={tenant}` itself
# The service's own admin scopes. They authorise AdminService calls, which accept service access
# tokens only: on a customer they would grant nothing here, and a downstream service that trusts
# the scopes of the tokens it sees would believe them.
SERVICE_CLIENT_ONLY_SCOPES = (ADMIN_SCOPE, PLATFORM_ADMIN_SCOPE)


async def create_tenant(core: Core, name: str) -> TenantRecord:
    """Creates tenant `name`; a tenant of that name already existing is AlreadyExists."""
    validation.tenant(name, "name")
    if await core.store.get_tenant(name) is not None:
        raise AlreadyExists(f"tenant '{name}' already exists", field="name")
    record = TenantRecord(name=name, created_at=core.now())
    await core.store.create_tenant(record)
    return record


async def list_tenants(core: Core) -> list[TenantRecord]:
    """Every tenant."""
    return await core.store.list_tenants()


async def get_tenant(core: Core, name: str) -> TenantRecord:
    """Tenant `name`, or NotFound."""
    validation.tenant(name, "name")
    record = await core.store.get_tenant(name)
    if record is None:
        raise NotFound(f"unknown tenant '{name}'", field="name")
    return record


async def set_allowed_origins(core: Core, tenant: str, allowed: Sequence[str]) -> TenantRecord:
    """Replaces the browser origins that may call the tenant's storefront endpoints (CORS);
    an empty list leaves only TOKENSERVICE_CORS_ALLOWED_ORIGINS. Bridges see the change once
    their cached copy ages out (TOKENSERVICE_CORS_TENANT_CACHE_SECONDS)."""
    validation.tenant(tenant)
    checked = origins.origins(allowed)
    record = await core.store.set_allowed_origins(tenant, checked)
    if record is None:
        raise NotFound(f"unknown tenant '{tenant}'", field="tenant")
    return record


async def get_account_policy(core: Core, tenant: str) -> AccountPolicy:
    """The tenant's account rules (its defaults when none were set)."""
    await get_tenant(core, tenant)
    return await account_policy.of_tenant(core, tenant)


async def set_account_policy(
    core: Core,
    tenant: str,
    *,
    double_opt_in: bool | None = None,
    password_min_length: int | None = None,
    reject_common_passwords: bool | None = None,
) -> AccountPolicy:
    """Changes the given rules of the tenant's account policy (None: keeps the current one).
    Takes effect at the next call: policies are not cached."""
    validation.tenant(tenant)
    current = await get_account_policy(core, tenant)
    changed = AccountPolicy(
        tenant=tenant,
        double_opt_in=current.double_opt_in if double_opt_in is None else double_opt_in,
        password_min_length=(
            current.password_min_length if password_min_length is None else password_min_length
        ),
        reject_common_passwords=(
            current.reject_common_passwords
            if reject_common_passwords is None
            else reject_common_passwords
        ),
    )
    return await account_policy.set_policy(core, changed)


async def create_client(
    core: Core,
    tenant: str,
    kind: ClientKind,
    scopes: Sequence[str],
    *,
    name: str = "",
    client_id: str = "",
    access_token_ttl: int | None = None,
    refresh_token_ttl: int | None = None,
    refresh_rotation_disabled: bool = False,
) -> tuple[ClientRecord, str | None]:
    """Creates a client; returns it and, for a service client, its secret (shown only once)."""
    kind = client_kind(kind)
    granted = client_scopes(scopes)
    _check_name(name)
    client_id = validation.identifier(client_id, "client_id", required=False) or _new_client_id()
    _check_ttl(access_token_ttl, "access_token_ttl")
    _check_ttl(refresh_token_ttl, "refresh_token_ttl")
    if kind is ClientKind.SERVICE and (refresh_token_ttl is not None or refresh_rotation_disabled):
        raise InvalidRequest(
            "refresh_token_ttl and refresh_rotation_disabled apply only to storefront clients "
            "(service tokens are never refreshed)",
            field="refresh_token_ttl" if refresh_token_ttl is not None else "kind",
        )
    await _existing_tenant(core, tenant)
    if await core.store.get_client(client_id) is not None:
        raise AlreadyExists(f"client_id '{client_id}' already exists", field="client_id")
    secret = new_client_secret() if kind is ClientKind.SERVICE else None
    record = ClientRecord(
        client_id=client_id,
        tenant=tenant,
        kind=kind,
        name=name,
        scopes=granted,
        secret_digest=core.digests.client_secret(secret) if secret is not None else None,
        created_at=core.now(),
        access_token_ttl=access_token_ttl,
        refresh_token_ttl=refresh_token_ttl,
        refresh_rotation_disabled=refresh_rotation_disabled,
    )
    await core.store.create_client(record)
    return record, secret


async def list_clients(core: Core, tenant: str) -> list[ClientRecord]:
    """The clients of an existing tenant."""
    await _existing_tenant(core, tenant)
    return await core.store.list_clients(tenant)


async def create_customer(
    core: Core,
    tenant: str,
    email: str,
    password: str,
    scopes: Sequence[str] = (),
    legal_entity_ids: Sequence[str] = (),
) -> CustomerRecord:
    """Creates a customer of `tenant`; the password is kept only as an argon2id hash."""
    email = validation.email(email)
    validation.password(password)
    if len(password) < MIN_PASSWORD:
        raise InvalidRequest(
            f"password must be at least {MIN_PASSWORD} characters", field="password"
        )
    granted = customer_scopes(scopes)
    entities = _legal_entity_ids(legal_entity_ids)
    await _existing_tenant(core, tenant)
    if await core.store.find_customer(tenant, email) is not None:
        raise AlreadyExists(f"a customer with this email already exists in tenant '{tenant}'")
    record = CustomerRecord(
        id=str(uuid.uuid4()),
        tenant=tenant,
        email=email,
        password_hash=await core.passwords.hash(password),
        scopes=granted,
        legal_entity_ids=entities,
        created_at=core.now(),
    )
    await core.store.create_customer(record)
    return record


async def rotate_signing_key(core: Core) -> SigningKeyRecord:
    """Makes a fresh key the active one; the previous active key keeps verifying until retired."""
    record = new_signing_key(core.cipher, core.now())
    await core.store.rotate_signing_key(record)
    await core.keys.reload()
    return record


async def list_signing_keys(core: Core) -> list[SigningKeyRecord]:
    """Every signing key, newest first."""
    return await core.store.list_signing_keys()


async def retire_signing_key(core: Core, kid: str) -> SigningKeyRecord:
    """Retires a verifying key: SaaS tokens it signed stop verifying. Neither the active key
    nor a key that still signs (the newer key is not yet published long enough:
    signing.refuse_retiring_the_signer, decided inside the store's transaction) can be."""
    validation.identifier(kid, "kid")
    now = core.now()
    activation = core.settings.signing_key_activation_seconds

    def check(keys: Sequence[SigningKeyRecord]) -> None:
        refuse_retiring_the_signer(keys, kid, now, activation)

    record = await core.store.retire_signing_key(kid, now, check=check)
    if record is None:
        raise NotFound(f"no signing key with kid '{kid}'", field="kid")
    await core.keys.reload()
    return record


def client_kind(value: ClientKind | str) -> ClientKind:
    """`storefront` or `service`, or InvalidRequest."""
    try:
        return ClientKind(value)
    except ValueError:
        raise InvalidRequest("kind must be 'storefront' or 'service'", field="kind") from None


def client_scopes(items: Sequence[str], field: str = "scopes") -> tuple[str, ...]:
    """Scope tokens (RFC 6749 3.3), order kept, duplicates dropped; `tenant=` is reserved."""
    if isinstance(items, str):
        raise InvalidRequest(f"{field} must be a list of scopes", field=field)
    for item in items:
        if not item or any(char.isspace() for char in item):
            raise InvalidRequest(f"{field} contains a malformed scope", field=field)
        if item.startswith(RESERVED_SCOPE_PREFIX):
            raise InvalidRequest(
                f"{field} must not contain '{RESERVED_SCOPE_PREFIX}' scopes: the service adds "
                "the tenant itself",
                field=field,
            )
    return validation.scopes(" ".join(items), field)


def customer_scopes(items: Sequence[str], field: str = "scopes") -> tuple[str, ...]:
    """As client_scopes, without the service's admin scopes (service clients only)."""
    granted = client_scopes(items, field)
    for scope in SERVICE_CLIENT_ONLY_SCOPES:
        if scope in granted:
            raise InvalidRequest(
                f"{field} must not contain {scope}: the service's admin scopes are for service "
                "clients only",
                field=field,
            )
    return granted


async def _existing_tenant(core: Core, tenant: str) -> None:
    validation.tenant(tenant)
    if await core.store.get_tenant(tenant) is None:
        raise NotFound(f"unknown tenant '{tenant}'", field="tenant")


def _new_client_id() -> str:
    return secrets.token_urlsafe(CLIENT_ID_BYTES)


def _check_name(name: str) -> None:
    validation.bounded(name, "name", MAX_NAME)
    if not validation.PRINTABLE_PATTERN.fullmatch(name):
        raise InvalidRequest("name contains control characters", field="name")


def _check_ttl(value: int | None, field: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{field} must be a whole number of seconds", field=field)
    if not 0 < value <= MAX_TTL:
        raise InvalidRequest(f"{field} must be between 1 and {MAX_TTL} seconds", field=field)


def _legal_entity_ids(items: Sequence[str]) -> tuple[str, ...]:
    if isinstance(items, str):
        raise InvalidRequest("legal_entity_ids must be a list", field="legal_entity_ids")
    result: list[str] = []
    for item in items:
        validation.identifier(item, "legal_entity_ids")
        if item not in result:
            result.append(item)
    if len(result) > MAX_LEGAL_ENTITIES:
        raise InvalidRequest(
            f"legal_entity_ids must list at most {MAX_LEGAL_ENTITIES} ids",
            field="legal_entity_ids",
        )
    return tuple(result)
