"""AdminService over gRPC: only a service token with an admin scope may provision."""

from __future__ import annotations

import grpc
import jwt
import pytest

from server import admin
from server.records import ClientKind
from tests.support.harness import Harness, error_field, error_reason
from tokenservice.v1 import admin_service_pb2 as apb
from tokenservice.v1 import token_service_pb2 as pb


async def admin_token(harness: Harness, tenant: str, scopes: tuple[str, ...]) -> str:
    client, secret = await admin.create_client(harness.core, tenant, ClientKind.SERVICE, scopes)
    assert secret is not None
    issued = await harness.stub.IssueToken(
        pb.IssueTokenRequest(
            client_credentials=pb.ClientCredentialsGrant(
                client_id=client.client_id, client_secret=secret
            )
        )
    )
    access_token: str = issued.access_token
    return access_token


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def test_tenant_admin_provisions_its_own_tenant_only(harness: Harness) -> None:
    shop = await harness.shop("acme")
    await harness.shop("globex")
    token = await admin_token(harness, "acme", ("tokenservice.admin",))
    created = await harness.admin_stub.CreateClient(
        apb.CreateClientRequest(
            tenant="acme", kind=apb.CLIENT_KIND_SERVICE, scopes=["catalog.read"]
        ),
        metadata=bearer(token),
    )
    assert created.client_secret and created.client.tenant == "acme"
    issued = await harness.stub.IssueToken(
        pb.IssueTokenRequest(
            client_credentials=pb.ClientCredentialsGrant(
                client_id=created.client.client_id, client_secret=created.client_secret
            )
        )
    )
    assert issued.scope == "catalog.read tenant=acme"
    customer = await harness.admin_stub.CreateCustomer(
        apb.CreateCustomerRequest(
            tenant="acme", email="New@Acme.example", password="long enough password"
        ),
        metadata=bearer(token),
    )
    assert customer.email == "new@acme.example"
    listed = await harness.admin_stub.ListClients(
        apb.ListClientsRequest(tenant="acme"), metadata=bearer(token)
    )
    assert shop.storefront_id in {c.client_id for c in listed.clients}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.admin_stub.ListClients(
            apb.ListClientsRequest(tenant="globex"), metadata=bearer(token)
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.admin_stub.CreateTenant(
            apb.CreateTenantRequest(name="newshop"), metadata=bearer(token)
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_platform_admin_creates_tenants_and_rotates_keys(harness: Harness) -> None:
    await harness.shop("acme")
    token = await admin_token(harness, "acme", ("tokenservice.platform_admin",))
    tenant = await harness.admin_stub.CreateTenant(
        apb.CreateTenantRequest(name="newshop"), metadata=bearer(token)
    )
    assert tenant.name == "newshop"
    before = await harness.admin_stub.ListSigningKeys(
        apb.ListSigningKeysRequest(), metadata=bearer(token)
    )
    rotated = await harness.admin_stub.RotateSigningKey(
        apb.RotateSigningKeyRequest(), metadata=bearer(token)
    )
    assert rotated.status == "active" and rotated.kid not in {k.kid for k in before.keys}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.admin_stub.CreateTenant(
            apb.CreateTenantRequest(name="newshop"), metadata=bearer(token)
        )
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS


async def test_retiring_the_key_that_still_signs_is_refused_until_the_new_one_signs(
    harness: Harness,
) -> None:
    """Rotate, then RetireSigningKey the previous key at once: refused (the new key is not yet
    published long enough to sign) and SaaS tokens keep the old kid; after the activation
    delay the same call retires it."""
    shop = await harness.shop("acme")
    token = await admin_token(harness, "acme", ("tokenservice.platform_admin",))
    old_kid = kid_of((await harness.customer(shop)).saas_token)
    rotated = await harness.admin_stub.RotateSigningKey(
        apb.RotateSigningKeyRequest(), metadata=bearer(token)
    )

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.admin_stub.RetireSigningKey(
            apb.RetireSigningKeyRequest(kid=old_kid), metadata=bearer(token)
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(caught.value) == "invalid_request"
    delay = harness.core.settings.signing_key_activation_seconds
    assert f"'{old_kid}' still signs" in (caught.value.details() or "")
    assert f"in {delay} s" in (caught.value.details() or "")
    assert kid_of((await harness.customer(shop)).saas_token) == old_kid

    harness.clock.advance(delay)
    assert kid_of((await harness.customer(shop)).saas_token) == rotated.kid
    retired = await harness.admin_stub.RetireSigningKey(
        apb.RetireSigningKeyRequest(kid=old_kid), metadata=bearer(token)
    )
    assert retired.status == "retired"
    assert kid_of((await harness.customer(shop)).saas_token) == rotated.kid


def kid_of(saas_token: str) -> str:
    return str(jwt.get_unverified_header(saas_token)["kid"])


async def test_admin_calls_need_an_admin_service_token(harness: Harness) -> None:
    shop = await harness.shop("acme")
    plain = await harness.service(shop)
    anonymous = await harness.anonymous(shop)
    request = apb.ListClientsRequest(tenant="acme")
    cases = [
        ((), grpc.StatusCode.UNAUTHENTICATED, "invalid_token"),
        (bearer("not-a-token"), grpc.StatusCode.UNAUTHENTICATED, "invalid_token"),
        ((("authorization", "Basic abc"),), grpc.StatusCode.UNAUTHENTICATED, "invalid_token"),
        (bearer(anonymous.access_token), grpc.StatusCode.PERMISSION_DENIED, "access_denied"),
        (bearer(plain.access_token), grpc.StatusCode.PERMISSION_DENIED, "access_denied"),
    ]
    for metadata, code, reason in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await harness.admin_stub.ListClients(request, metadata=metadata)
        assert (caught.value.code(), error_reason(caught.value)) == (code, reason)


@pytest.mark.parametrize("scope", ["tokenservice.admin", "tokenservice.platform_admin"])
@pytest.mark.parametrize("caller", ["tokenservice.admin", "tokenservice.platform_admin"])
async def test_customers_never_get_the_services_admin_scopes(
    harness: Harness, caller: str, scope: str
) -> None:
    await harness.shop("acme")
    token = await admin_token(harness, "acme", (caller,))
    request = apb.CreateCustomerRequest(
        tenant="acme",
        email="mallory@acme.example",
        password="long enough password",
        scopes=["customer.read", scope],
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.admin_stub.CreateCustomer(request, metadata=bearer(token))
    if caller == "tokenservice.admin" and scope == "tokenservice.platform_admin":
        # the escalation guard answers first, as for CreateClient
        expected = (grpc.StatusCode.PERMISSION_DENIED, "access_denied")
    else:
        expected = (grpc.StatusCode.INVALID_ARGUMENT, "invalid_request")
    assert (caught.value.code(), error_reason(caught.value)) == expected
    assert error_field(caught.value) == "scopes"
    assert await harness.core.store.find_customer("acme", "mallory@acme.example") is None
    # the same call without the admin scope succeeds
    del request.scopes[1]
    created = await harness.admin_stub.CreateCustomer(request, metadata=bearer(token))
    assert list(created.scopes) == ["customer.read"]


async def test_allowed_origins_are_set_by_the_tenants_admin_and_read_by_anyone(
    harness: Harness,
) -> None:
    await harness.shop("acme")
    await harness.shop("globex")
    token = await admin_token(harness, "acme", ("tokenservice.admin",))
    tenant = await harness.admin_stub.SetAllowedOrigins(
        apb.SetAllowedOriginsRequest(
            tenant="acme",
            allowed_origins=["https://Shop.Acme.example:443", "http://127.0.0.1:5173"],
        ),
        metadata=bearer(token),
    )
    normalised = ["https://shop.acme.example", "http://127.0.0.1:5173"]
    assert list(tenant.allowed_origins) == normalised
    got = await harness.admin_stub.GetTenant(
        apb.GetTenantRequest(name="acme"), metadata=bearer(token)
    )
    assert got.name == "acme" and list(got.allowed_origins) == normalised
    # The bridge's public, read-only view: no authorization, no other tenant's, none unknown.
    public = await harness.stub.GetAllowedOrigins(pb.GetAllowedOriginsRequest(tenant="acme"))
    assert list(public.allowed_origins) == normalised
    for other in ("globex", "nosuchshop"):
        empty = await harness.stub.GetAllowedOrigins(pb.GetAllowedOriginsRequest(tenant=other))
        assert list(empty.allowed_origins) == []
    with pytest.raises(grpc.aio.AioRpcError) as malformed_tenant:
        await harness.stub.GetAllowedOrigins(pb.GetAllowedOriginsRequest(tenant="No Such"))
    assert malformed_tenant.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # Another tenant's origins are not this admin's to change, nor to read.
    for call in (
        harness.admin_stub.SetAllowedOrigins(
            apb.SetAllowedOriginsRequest(tenant="globex", allowed_origins=["https://x.example"]),
            metadata=bearer(token),
        ),
        harness.admin_stub.GetTenant(apb.GetTenantRequest(name="globex"), metadata=bearer(token)),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await call
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # An empty list clears them.
    cleared = await harness.admin_stub.SetAllowedOrigins(
        apb.SetAllowedOriginsRequest(tenant="acme"), metadata=bearer(token)
    )
    assert list(cleared.allowed_origins) == []


@pytest.mark.parametrize(
    ("origin", "complaint"),
    [
        ("https://shop.example/", "path"),
        ("https://*.shop.example", "wildcard"),
        ("*", "wildcard"),
        ("shop.example", "scheme://host[:port]"),
    ],
)
async def test_a_malformed_origin_is_refused_and_changes_nothing(
    harness: Harness, origin: str, complaint: str
) -> None:
    await harness.shop("acme")
    await admin.set_allowed_origins(harness.core, "acme", ["https://kept.example"])
    token = await admin_token(harness, "acme", ("tokenservice.admin",))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await harness.admin_stub.SetAllowedOrigins(
            apb.SetAllowedOriginsRequest(
                tenant="acme", allowed_origins=["https://fine.example", origin]
            ),
            metadata=bearer(token),
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert complaint in (refused.value.details() or "")
    assert error_field(refused.value) == "allowed_origins[1]"
    kept = await admin.get_tenant(harness.core, "acme")
    assert kept.allowed_origins == ("https://kept.example",)


async def test_origins_of_an_unknown_tenant_cannot_be_set(harness: Harness) -> None:
    await harness.shop("acme")
    token = await admin_token(harness, "acme", ("tokenservice.platform_admin",))
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await harness.admin_stub.SetAllowedOrigins(
            apb.SetAllowedOriginsRequest(tenant="nosuch", allowed_origins=["https://a.example"]),
            metadata=bearer(token),
        )
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await harness.admin_stub.GetTenant(
            apb.GetTenantRequest(name="nosuch"), metadata=bearer(token)
        )
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
