"""AdminService over gRPC: authorisation, then proto <-> domain conversion; the operations and
their validation live in `server.admin`, shared with the CLI.

Every call needs `authorization: Bearer <service access token>` metadata. Tenant operations
(a tenant's clients, customers, record and allowed origins) accept `tokenservice.admin` of that
tenant; tenants and signing keys need
`tokenservice.platform_admin`. Private keys, secret digests and password hashes never leave.
"""

from __future__ import annotations

from collections.abc import Collection

import grpc

from server import admin
from server.admin_auth import authorize_admin
from server.core import Core
from server.errors import InvalidRequest, InvalidToken
from server.records import (
    AccountPolicy,
    ClientKind,
    ClientRecord,
    CustomerRecord,
    SigningKeyRecord,
    TenantRecord,
)
from tokenservice.v1 import admin_service_pb2 as pb
from tokenservice.v1 import admin_service_pb2_grpc as pb_grpc

AUTHORIZATION = "authorization"
KIND_FROM_PROTO = {
    pb.CLIENT_KIND_STOREFRONT: ClientKind.STOREFRONT,
    pb.CLIENT_KIND_SERVICE: ClientKind.SERVICE,
}
KIND_TO_PROTO = {kind: value for value, kind in KIND_FROM_PROTO.items()}


class AdminServicer(pb_grpc.AdminServiceServicer):
    def __init__(self, core: Core) -> None:
        self._core = core

    async def _authorize(
        self,
        context: grpc.aio.ServicerContext,
        tenant: str | None,
        granting: Collection[str] = (),
    ) -> None:
        await authorize_admin(self._core, authorization(context), tenant, granting=granting)

    async def CreateTenant(
        self, request: pb.CreateTenantRequest, context: grpc.aio.ServicerContext
    ) -> pb.Tenant:
        await self._authorize(context, None)
        return tenant_proto(await admin.create_tenant(self._core, request.name))

    async def ListTenants(
        self, request: pb.ListTenantsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListTenantsResponse:
        await self._authorize(context, None)
        tenants = await admin.list_tenants(self._core)
        return pb.ListTenantsResponse(tenants=[tenant_proto(tenant) for tenant in tenants])

    async def GetTenant(
        self, request: pb.GetTenantRequest, context: grpc.aio.ServicerContext
    ) -> pb.Tenant:
        await self._authorize(context, request.name)
        return tenant_proto(await admin.get_tenant(self._core, request.name))

    async def SetAllowedOrigins(
        self, request: pb.SetAllowedOriginsRequest, context: grpc.aio.ServicerContext
    ) -> pb.Tenant:
        await self._authorize(context, request.tenant)
        record = await admin.set_allowed_origins(
            self._core, request.tenant, tuple(request.allowed_origins)
        )
        return tenant_proto(record)

    async def GetAccountPolicy(
        self, request: pb.GetAccountPolicyRequest, context: grpc.aio.ServicerContext
    ) -> pb.AccountPolicy:
        await self._authorize(context, request.tenant)
        return account_policy_proto(await admin.get_account_policy(self._core, request.tenant))

    async def SetAccountPolicy(
        self, request: pb.AccountPolicy, context: grpc.aio.ServicerContext
    ) -> pb.AccountPolicy:
        await self._authorize(context, request.tenant)
        record = await admin.set_account_policy(
            self._core,
            request.tenant,
            double_opt_in=(request.double_opt_in if request.HasField("double_opt_in") else None),
            password_min_length=(
                request.password_min_length if request.HasField("password_min_length") else None
            ),
            reject_common_passwords=(
                request.reject_common_passwords
                if request.HasField("reject_common_passwords")
                else None
            ),
        )
        return account_policy_proto(record)

    async def CreateClient(
        self, request: pb.CreateClientRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateClientResponse:
        await self._authorize(context, request.tenant, granting=request.scopes)
        client, secret = await admin.create_client(
            self._core,
            request.tenant,
            client_kind(request.kind),
            tuple(request.scopes),
            name=request.name,
            access_token_ttl=request.access_token_ttl or None,
            refresh_token_ttl=request.refresh_token_ttl or None,
            refresh_rotation_disabled=request.refresh_rotation_disabled,
        )
        return pb.CreateClientResponse(client=client_proto(client), client_secret=secret or "")

    async def ListClients(
        self, request: pb.ListClientsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListClientsResponse:
        await self._authorize(context, request.tenant)
        clients = await admin.list_clients(self._core, request.tenant)
        return pb.ListClientsResponse(clients=[client_proto(client) for client in clients])

    async def CreateCustomer(
        self, request: pb.CreateCustomerRequest, context: grpc.aio.ServicerContext
    ) -> pb.Customer:
        await self._authorize(context, request.tenant, granting=request.scopes)
        customer = await admin.create_customer(
            self._core,
            request.tenant,
            request.email,
            request.password,
            tuple(request.scopes),
            tuple(request.legal_entity_ids),
        )
        return customer_proto(customer)

    async def RotateSigningKey(
        self, request: pb.RotateSigningKeyRequest, context: grpc.aio.ServicerContext
    ) -> pb.SigningKey:
        await self._authorize(context, None)
        return signing_key_proto(await admin.rotate_signing_key(self._core))

    async def ListSigningKeys(
        self, request: pb.ListSigningKeysRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListSigningKeysResponse:
        await self._authorize(context, None)
        keys = await admin.list_signing_keys(self._core)
        return pb.ListSigningKeysResponse(keys=[signing_key_proto(key) for key in keys])

    async def RetireSigningKey(
        self, request: pb.RetireSigningKeyRequest, context: grpc.aio.ServicerContext
    ) -> pb.SigningKey:
        await self._authorize(context, None)
        return signing_key_proto(await admin.retire_signing_key(self._core, request.kid))


def authorization(context: grpc.aio.ServicerContext) -> str:
    """The one `authorization` metadata value ("" when absent)."""
    values = [value for key, value in context.invocation_metadata() or () if key == AUTHORIZATION]
    if len(values) > 1:
        raise InvalidToken("authorization metadata must be sent once")
    value = values[0] if values else ""
    return value if isinstance(value, str) else ""


def client_kind(value: int) -> ClientKind:
    kind = KIND_FROM_PROTO.get(value)
    if kind is None:
        raise InvalidRequest(
            "kind must be CLIENT_KIND_STOREFRONT or CLIENT_KIND_SERVICE", field="kind"
        )
    return kind


def tenant_proto(record: TenantRecord) -> pb.Tenant:
    return pb.Tenant(
        name=record.name, created_at=record.created_at, allowed_origins=record.allowed_origins
    )


def account_policy_proto(record: AccountPolicy) -> pb.AccountPolicy:
    return pb.AccountPolicy(
        tenant=record.tenant,
        double_opt_in=record.double_opt_in,
        password_min_length=record.password_min_length,
        reject_common_passwords=record.reject_common_passwords,
    )


def client_proto(record: ClientRecord) -> pb.Client:
    return pb.Client(
        client_id=record.client_id,
        tenant=record.tenant,
        kind=KIND_TO_PROTO[record.kind],
        name=record.name,
        scopes=record.scopes,
        access_token_ttl=record.access_token_ttl or 0,
        refresh_token_ttl=record.refresh_token_ttl or 0,
        refresh_rotation_disabled=record.refresh_rotation_disabled,
        created_at=record.created_at,
    )


def customer_proto(record: CustomerRecord) -> pb.Customer:
    return pb.Customer(
        id=record.id,
        tenant=record.tenant,
        email=record.email,
        scopes=record.scopes,
        legal_entity_ids=record.legal_entity_ids,
        created_at=record.created_at,
    )


def signing_key_proto(record: SigningKeyRecord) -> pb.SigningKey:
    return pb.SigningKey(
        kid=record.kid,
        algorithm=record.algorithm,
        status=str(record.status),
        created_at=record.created_at,
        retired_at=record.retired_at or 0,
        public_jwk=record.public_jwk,
    )
