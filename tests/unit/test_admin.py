"""Provisioning operations, their validation, and who may call the AdminService, against the
in-memory store with real tokens."""

from __future__ import annotations

import dataclasses
import json
import re
import time
from typing import Any

import pytest

from server import admin, revocation
from server.admin_auth import ADMIN_SCOPE, PLATFORM_ADMIN_SCOPE, authorize_admin
from server.admin_servicer import AdminServicer
from server.clock import ManualClock
from server.core import Core, build_core
from server.errors import (
    AccessDenied,
    AlreadyExists,
    InvalidRequest,
    InvalidToken,
    NotFound,
    TokenServiceError,
)
from server.grants import anonymous, client_credentials
from server.records import ClientKind, KeyStatus
from server.settings import Settings
from server.store.memory import MemoryStore
from tokenservice.v1 import admin_service_pb2 as apb

SETTINGS = Settings(argon2_time_cost=1, argon2_memory_kib=1024, argon2_parallelism=1)
PASSWORD = "a long customer password"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_800_000_000)


@pytest.fixture
async def core(clock: ManualClock) -> Core:
    core = build_core(SETTINGS, MemoryStore(), clock=clock, secret=b"x" * 32)
    await admin.create_tenant(core, "shop")
    return core


def stored_text(record: Any) -> str:
    """Every stored field of a record, as text, to look for leaked secrets."""
    return " ".join(str(value) for value in dataclasses.asdict(record).values())


# --- tenants --------------------------------------------------------------------------------


async def test_create_and_list_tenants(core: Core) -> None:
    created = await admin.create_tenant(core, "other2")
    assert created.name == "other2" and created.created_at == 1_800_000_000
    assert sorted(t.name for t in await admin.list_tenants(core)) == ["other2", "shop"]
    assert await core.store.get_tenant("other2") == created


async def test_duplicate_tenant_is_already_exists(core: Core) -> None:
    with pytest.raises(AlreadyExists, match="tenant 'shop' already exists"):
        await admin.create_tenant(core, "shop")


@pytest.mark.parametrize("name", ["", "ab", "Shop", "1shop", "sh-op", "a" * 17, "shop "])
async def test_tenant_name_is_validated(core: Core, name: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await admin.create_tenant(core, name)
    assert caught.value.field == "name"
    assert "name" in caught.value.description
    assert len(await admin.list_tenants(core)) == 1


# --- clients --------------------------------------------------------------------------------


async def test_storefront_client_has_no_secret_and_a_generated_id(core: Core) -> None:
    client, secret = await admin.create_client(core, "shop", ClientKind.STOREFRONT, ())
    other, _ = await admin.create_client(core, "shop", ClientKind.STOREFRONT, ())
    assert secret is None and client.secret_digest is None
    assert re.fullmatch(r"[A-Za-z0-9_-]{24}", client.client_id)
    assert client.client_id != other.client_id
    assert await core.store.get_client(client.client_id) == client


async def test_service_client_secret_is_returned_once_and_stored_as_digest(core: Core) -> None:
    client, secret = await admin.create_client(
        core, "shop", ClientKind.SERVICE, ("catalog.read", "catalog.write", "catalog.read")
    )
    assert secret is not None and len(secret) >= 43  # 256 bits, URL-safe base64
    stored = await core.store.get_client(client.client_id)
    assert stored is not None
    assert stored.secret_digest == core.digests.client_secret(secret)
    assert secret not in stored_text(stored)
    assert stored.scopes == ("catalog.read", "catalog.write")
    issued = await client_credentials.issue(core, client.client_id, secret)
    assert issued.scope == "catalog.read catalog.write tenant=shop"


async def test_client_options_are_kept(core: Core) -> None:
    client, _ = await admin.create_client(
        core,
        "shop",
        ClientKind.STOREFRONT,
        ("a.read",),
        name="Web shop",
        client_id="web-shop",
        access_token_ttl=600,
        refresh_token_ttl=7200,
        refresh_rotation_disabled=True,
    )
    assert await core.store.get_client("web-shop") == client
    assert (client.name, client.access_token_ttl, client.refresh_token_ttl) == (
        "Web shop",
        600,
        7200,
    )
    assert client.refresh_rotation_disabled
    issued = await anonymous.issue(core, "shop", "web-shop")
    assert (issued.expires_in, issued.refresh_token_expires_in) == (600, 7200)


async def test_duplicate_client_id_is_already_exists(core: Core) -> None:
    await admin.create_client(core, "shop", ClientKind.STOREFRONT, (), client_id="front")
    with pytest.raises(AlreadyExists, match="client_id 'front'"):
        await admin.create_client(core, "shop", ClientKind.SERVICE, (), client_id="front")


async def test_client_of_unknown_tenant_is_not_found(core: Core) -> None:
    with pytest.raises(NotFound, match="unknown tenant 'nowhere'"):
        await admin.create_client(core, "nowhere", ClientKind.SERVICE, ())
    with pytest.raises(NotFound):
        await admin.list_clients(core, "nowhere")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"tenant": "Bad Tenant"}, "tenant"),
        ({"kind": "admin"}, "kind"),
        ({"scopes": ("tenant=other",)}, "scopes"),
        ({"scopes": ('bad"scope',)}, "scopes"),
        ({"scopes": ("two words",)}, "scopes"),
        ({"scopes": ("",)}, "scopes"),
        ({"scopes": "a.read"}, "scopes"),
        ({"client_id": "no spaces"}, "client_id"),
        ({"client_id": "x" * 129}, "client_id"),
        ({"name": "bell\x07"}, "name"),
        ({"name": "n" * 256}, "name"),
        ({"access_token_ttl": 0}, "access_token_ttl"),
        ({"access_token_ttl": -1}, "access_token_ttl"),
        ({"access_token_ttl": 10**12}, "access_token_ttl"),
        ({"refresh_token_ttl": 0}, "refresh_token_ttl"),
        ({"kind": ClientKind.SERVICE, "refresh_token_ttl": 60}, "refresh_token_ttl"),
        ({"kind": ClientKind.SERVICE, "refresh_rotation_disabled": True}, "kind"),
    ],
)
async def test_client_input_is_validated(core: Core, kwargs: dict[str, Any], field: str) -> None:
    arguments: dict[str, Any] = {"tenant": "shop", "kind": ClientKind.STOREFRONT, "scopes": ()}
    arguments.update(kwargs)
    positional = (arguments.pop("tenant"), arguments.pop("kind"), arguments.pop("scopes"))
    with pytest.raises(InvalidRequest) as caught:
        await admin.create_client(core, *positional, **arguments)
    assert caught.value.field == field
    assert await core.store.list_clients("shop") == []


async def test_list_clients(core: Core) -> None:
    front, _ = await admin.create_client(core, "shop", ClientKind.STOREFRONT, ())
    back, _ = await admin.create_client(core, "shop", ClientKind.SERVICE, ("a",))
    await admin.create_tenant(core, "other")
    await admin.create_client(core, "other", ClientKind.STOREFRONT, ())
    listed = await admin.list_clients(core, "shop")
    assert {c.client_id for c in listed} == {front.client_id, back.client_id}


# --- customers ------------------------------------------------------------------------------


async def test_create_customer_hashes_the_password(core: Core) -> None:
    customer = await admin.create_customer(
        core,
        "shop",
        "Ann@Shop.Example",
        PASSWORD,
        ("customer.read", "customer.read"),
        ("le-1", "le-2", "le-1"),
    )
    assert re.fullmatch(r"[0-9a-f-]{36}", customer.id)
    assert customer.email == "ann@shop.example"
    assert customer.scopes == ("customer.read",)
    assert customer.legal_entity_ids == ("le-1", "le-2")
    assert customer.password_hash.startswith("$argon2id$")
    assert PASSWORD not in stored_text(customer)
    assert await core.passwords.verify(customer.password_hash, PASSWORD)
    assert await core.store.find_customer("shop", "ann@shop.example") == customer


async def test_duplicate_customer_email_is_already_exists(core: Core) -> None:
    await admin.create_customer(core, "shop", "ann@shop.example", PASSWORD, (), ())
    with pytest.raises(AlreadyExists):
        await admin.create_customer(core, "shop", "ANN@shop.example", PASSWORD, (), ())
    await admin.create_tenant(core, "other")
    await admin.create_customer(core, "other", "ann@shop.example", PASSWORD, (), ())


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"tenant": "x"}, "tenant"),
        ({"email": ""}, "email"),
        ({"email": "not-an-email"}, "email"),
        ({"email": "a@" + "b" * 260 + ".com"}, "email"),
        ({"password": ""}, "password"),
        ({"password": "short7!"}, "password"),
        ({"password": "p" * 1025}, "password"),
        ({"scopes": ("tenant=shop",)}, "scopes"),
        ({"legal_entity_ids": ("le 1",)}, "legal_entity_ids"),
        ({"legal_entity_ids": ("",)}, "legal_entity_ids"),
        ({"legal_entity_ids": tuple(f"le-{i}" for i in range(101))}, "legal_entity_ids"),
    ],
)
async def test_customer_input_is_validated(core: Core, kwargs: dict[str, Any], field: str) -> None:
    arguments: dict[str, Any] = {
        "tenant": "shop",
        "email": "ann@shop.example",
        "password": PASSWORD,
        "scopes": (),
        "legal_entity_ids": (),
    }
    arguments.update(kwargs)
    with pytest.raises(InvalidRequest) as caught:
        await admin.create_customer(core, **arguments)
    assert caught.value.field == field
    if arguments["password"]:
        assert arguments["password"] not in caught.value.description
    assert await core.store.find_customer("shop", "ann@shop.example") is None


async def test_customer_of_unknown_tenant_is_not_found(core: Core) -> None:
    with pytest.raises(NotFound):
        await admin.create_customer(core, "nowhere", "ann@shop.example", PASSWORD, (), ())


# --- signing keys ---------------------------------------------------------------------------


async def test_rotate_list_and_retire_signing_keys(core: Core, clock: ManualClock) -> None:
    first = await admin.rotate_signing_key(core)
    await core.keys.jwks()  # the ring has now read the store once
    clock.advance(10)
    second = await admin.rotate_signing_key(core)
    # rotate reloads the ring: the new key is published at once, not after the refresh period
    assert {k["kid"] for k in (await core.keys.jwks())["keys"]} == {first.kid, second.kid}
    listed = await admin.list_signing_keys(core)
    assert [(k.kid, k.status) for k in listed] == [
        (second.kid, KeyStatus.ACTIVE),
        (first.kid, KeyStatus.VERIFYING),
    ]
    clock.advance(SETTINGS.signing_key_activation_seconds)  # the second key signs now
    retired = await admin.retire_signing_key(core, first.kid)
    assert retired.status is KeyStatus.RETIRED and retired.retired_at == core.now()
    assert [k["kid"] for k in (await core.keys.jwks())["keys"]] == [second.kid]


async def test_a_key_that_still_signs_cannot_be_retired_until_the_new_one_signs(
    core: Core, clock: ManualClock
) -> None:
    """Rotate, then retire the previous key at once: refused, since the new key is not yet
    published long enough to sign, and retiring the old one would make it sign at once."""
    await core.keys.ensure_active_key()
    clock.advance(SETTINGS.signing_key_activation_seconds)
    old = core.keys.signing_key()
    rotated_at = core.now()
    new = await admin.rotate_signing_key(core)

    with pytest.raises(InvalidRequest) as caught:
        await admin.retire_signing_key(core, old.kid)
    assert caught.value.field == "kid"
    ripe = SETTINGS.signing_key_activation_seconds
    message = caught.value.description
    assert "still signs" in message and f"in {ripe} s" in message, message
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(rotated_at + ripe))
    assert when in message, message
    stored = {k.kid: k.status for k in await admin.list_signing_keys(core)}
    assert stored[old.kid] is KeyStatus.VERIFYING  # nothing changed
    assert core.keys.signing_key().kid == old.kid  # and the old key keeps signing

    clock.advance(ripe - 1)
    with pytest.raises(InvalidRequest, match="in 1 s"):
        await admin.retire_signing_key(core, old.kid)
    clock.advance(1)
    assert core.keys.signing_key().kid == new.kid
    retired = await admin.retire_signing_key(core, old.kid)
    assert retired.status is KeyStatus.RETIRED
    assert core.keys.signing_key().kid == new.kid


async def test_retire_unknown_or_active_key(core: Core) -> None:
    active = await admin.rotate_signing_key(core)
    with pytest.raises(NotFound, match="no signing key"):
        await admin.retire_signing_key(core, "no-such-kid")
    with pytest.raises(InvalidRequest):
        await admin.retire_signing_key(core, active.kid)
    with pytest.raises(InvalidRequest) as caught:
        await admin.retire_signing_key(core, "")
    assert caught.value.field == "kid"


# --- authorize_admin ------------------------------------------------------------------------


async def service_token(core: Core, tenant: str, scopes: tuple[str, ...], scope: str = "") -> str:
    client, secret = await admin.create_client(core, tenant, ClientKind.SERVICE, scopes)
    assert secret is not None
    return (await client_credentials.issue(core, client.client_id, secret, scope)).access_token


@pytest.fixture
async def tokens(core: Core) -> dict[str, str]:
    await admin.create_tenant(core, "rival")
    await admin.create_client(core, "shop", ClientKind.STOREFRONT, (), client_id="front")
    return {
        "platform": await service_token(core, "rival", (PLATFORM_ADMIN_SCOPE,)),
        "admin": await service_token(core, "shop", (ADMIN_SCOPE, "catalog.read")),
        "admin_narrowed": await service_token(
            core, "shop", (ADMIN_SCOPE, "catalog.read"), "catalog.read"
        ),
        "plain": await service_token(core, "shop", ("catalog.read",)),
        "anonymous": (await anonymous.issue(core, "shop", "front")).access_token,
    }


ALLOWED = "allowed"
MATRIX = [
    # token, tenant, outcome
    ("platform", None, ALLOWED),
    ("platform", "shop", ALLOWED),
    ("platform", "rival", ALLOWED),
    ("admin", "shop", ALLOWED),
    ("admin", None, AccessDenied),
    ("admin", "rival", AccessDenied),
    ("admin", "", AccessDenied),
    ("admin_narrowed", "shop", AccessDenied),
    ("plain", "shop", AccessDenied),
    ("plain", None, AccessDenied),
    ("anonymous", "shop", AccessDenied),
]


@pytest.mark.parametrize(("name", "tenant", "outcome"), MATRIX)
async def test_authorize_admin_matrix(
    core: Core, tokens: dict[str, str], name: str, tenant: str | None, outcome: Any
) -> None:
    authorization = f"Bearer {tokens[name]}"
    if outcome is ALLOWED:
        await authorize_admin(core, authorization, tenant)
    else:
        with pytest.raises(outcome):
            await authorize_admin(core, authorization, tenant)


@pytest.mark.parametrize(
    "authorization",
    ["", "Bearer", "Bearer ", "Basic abc", "Token abc", "Bearer a b", "Bearer " + "t" * 513],
)
async def test_malformed_authorization_is_invalid_token(core: Core, authorization: str) -> None:
    with pytest.raises(InvalidToken):
        await authorize_admin(core, authorization, None)


async def test_unknown_revoked_or_expired_token_is_invalid_token(
    core: Core, tokens: dict[str, str], clock: ManualClock
) -> None:
    with pytest.raises(InvalidToken):
        await authorize_admin(core, "Bearer not-a-token", None)
    await authorize_admin(core, f"bearer {tokens['platform']}", None)  # scheme is case-blind
    await revocation.revoke(core, tokens["platform"])
    with pytest.raises(InvalidToken):
        await authorize_admin(core, f"Bearer {tokens['platform']}", None)
    await authorize_admin(core, f"Bearer {tokens['admin']}", "shop")
    clock.advance(SETTINGS.service_access_ttl)
    with pytest.raises(InvalidToken):
        await authorize_admin(core, f"Bearer {tokens['admin']}", "shop")


async def test_only_a_platform_admin_grants_the_platform_scope(
    core: Core, tokens: dict[str, str]
) -> None:
    granting = (PLATFORM_ADMIN_SCOPE,)
    await authorize_admin(core, f"Bearer {tokens['admin']}", "shop", granting=("catalog.read",))
    with pytest.raises(AccessDenied, match="platform admin"):
        await authorize_admin(core, f"Bearer {tokens['admin']}", "shop", granting=granting)
    await authorize_admin(core, f"Bearer {tokens['platform']}", "shop", granting=granting)


# --- AdminServicer (conversion) -------------------------------------------------------------


class FakeContext:
    def __init__(self, *metadata: tuple[str, str]) -> None:
        self._metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata


async def test_servicer_converts_and_authorizes(core: Core, tokens: dict[str, str]) -> None:
    servicer = AdminServicer(core)
    platform = FakeContext(("authorization", f"Bearer {tokens['platform']}"))
    tenant = await servicer.CreateTenant(apb.CreateTenantRequest(name="newshop"), platform)
    assert tenant.name == "newshop" and tenant.created_at == core.now()
    created = await servicer.CreateClient(
        apb.CreateClientRequest(
            tenant="newshop", kind=apb.CLIENT_KIND_SERVICE, scopes=["a.read"], access_token_ttl=60
        ),
        platform,
    )
    assert created.client_secret and created.client.kind == apb.CLIENT_KIND_SERVICE
    assert created.client.access_token_ttl == 60 and created.client.refresh_token_ttl == 0
    stored = await core.store.get_client(created.client.client_id)
    assert stored is not None and stored.refresh_token_ttl is None
    customer = await servicer.CreateCustomer(
        apb.CreateCustomerRequest(
            tenant="newshop", email="A@B.example", password=PASSWORD, legal_entity_ids=["le-1"]
        ),
        platform,
    )
    assert customer.email == "a@b.example" and list(customer.legal_entity_ids) == ["le-1"]
    key = await servicer.RotateSigningKey(apb.RotateSigningKeyRequest(), platform)
    jwk = json.loads(key.public_jwk)
    assert key.status == "active" and jwk["kid"] == key.kid and "d" not in jwk  # public half
    listed = await servicer.ListSigningKeys(apb.ListSigningKeysRequest(), platform)
    assert [k.kid for k in listed.keys] == [key.kid]
    tenants = await servicer.ListTenants(apb.ListTenantsRequest(), platform)
    assert "newshop" in {t.name for t in tenants.tenants}


async def test_servicer_rejects_missing_duplicate_or_foreign_authorization(
    core: Core, tokens: dict[str, str]
) -> None:
    servicer = AdminServicer(core)
    request = apb.ListClientsRequest(tenant="shop")
    with pytest.raises(InvalidToken):
        await servicer.ListClients(request, FakeContext())
    header = ("authorization", f"Bearer {tokens['admin']}")
    with pytest.raises(InvalidToken):
        await servicer.ListClients(request, FakeContext(header, header))
    listed = await servicer.ListClients(request, FakeContext(header))
    assert {c.client_id for c in listed.clients} >= {"front"}
    with pytest.raises(AccessDenied):
        await servicer.ListClients(apb.ListClientsRequest(tenant="rival"), FakeContext(header))
    with pytest.raises(TokenServiceError) as caught:
        await servicer.CreateClient(
            apb.CreateClientRequest(tenant="shop", scopes=["a"]), FakeContext(header)
        )
    assert isinstance(caught.value, InvalidRequest) and caught.value.field == "kind"
