"""AdminService over gRPC: authorisation, then proto <-> domain conversion; the operations and
their validation live in `server.admin`, shared with the CLI.

Every call needs `authorization: Bearer <service access token>` metadata. Tenant operations
(a tenant's clients, customers and their sessions, legal entities' sessions, record, allowed
origins and identity providers) accept `tokenservice.admin` of that tenant; tenants and signing
keys need `tokenservice.platform_admin`. Private keys, secret digests, password hashes and
identity providers' client secrets never leave.
"""

from __future__ import annotations

from collections.abc import Collection

import grpc

from server import admin, customer_sessions, identity_provider_admin
from server.admin_auth import authorize_admin
from server.core import Core
from server.errors import InvalidRequest, InvalidToken
from server.records import (
    AccountPolicy,
    ClientKind,
    ClientRecord,
    CustomerRecord,
    IdentityProviderRecord,
    SigningKeyRecord,
    TenantRecord,
)
from server.servicer import sessions_response
from tokenservice.v1 import admin_service_pb2 as pb
from tokenservice.v1 import admin_service_pb2_grpc as pb_grpc
from tokenservice.v1 import token_service_pb2 as token_pb

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

    async def PutIdentityProvider(
        self, request: pb.PutIdentityProviderRequest, context: grpc.aio.ServicerContext
    ) -> pb.IdentityProvider:
        given = request.provider
        await self._authorize(context, given.tenant, granting=given.customer_scopes)
        record = await identity_provider_admin.put_identity_provider(
            self._core, identity_provider_record(given), discovery_url=given.discovery_url
        )
        return identity_provider_proto(record)

    async def ListIdentityProviders(
        self, request: pb.ListIdentityProvidersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListIdentityProvidersResponse:
        await self._authorize(context, request.tenant)
        found = await identity_provider_admin.list_identity_providers(self._core, request.tenant)
        return pb.ListIdentityProvidersResponse(
            providers=[identity_provider_proto(record) for record in found]
        )

    async def DeleteIdentityProvider(
        self, request: pb.DeleteIdentityProviderRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteIdentityProviderResponse:
        await self._authorize(context, request.tenant)
        deleted = await identity_provider_admin.delete_identity_provider(
            self._core, request.tenant, request.name
        )
        return pb.DeleteIdentityProviderResponse(deleted=deleted)

    async def ListCustomerSessions(
        self, request: pb.ListCustomerSessionsRequest, context: grpc.aio.ServicerContext
    ) -> token_pb.ListSessionsResponse:
        await self._authorize(context, request.tenant)
        page = await customer_sessions.list_of_customer(
            self._core,
            request.tenant,
            email=request.email,
            customer_id=request.customer_id,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return sessions_response(page)

    async def EndCustomerSession(
        self, request: pb.EndCustomerSessionRequest, context: grpc.aio.ServicerContext
    ) -> token_pb.EndSessionsResponse:
        await self._authorize(context, request.tenant)
        await customer_sessions.end_of_customer(
            self._core,
            request.tenant,
            request.session_id,
            email=request.email,
            customer_id=request.customer_id,
        )
        return token_pb.EndSessionsResponse(ended_count=1)

    async def EndCustomerSessions(
        self, request: pb.EndCustomerSessionsRequest, context: grpc.aio.ServicerContext
    ) -> token_pb.EndSessionsResponse:
        await self._authorize(context, request.tenant)
        ended = await customer_sessions.end_all_of_customer(
            self._core,
            request.tenant,
            email=request.email,
            customer_id=request.customer_id,
            except_session_id=request.except_session_id,
        )
        return token_pb.EndSessionsResponse(ended_count=ended)

    async def EndLegalEntitySessions(
        self, request: pb.EndLegalEntitySessionsRequest, context: grpc.aio.ServicerContext
    ) -> token_pb.EndSessionsResponse:
        await self._authorize(context, request.tenant)
        ended = await customer_sessions.end_all_of_legal_entity(
            self._core, request.tenant, request.legal_entity_id
        )
        return token_pb.EndSessionsResponse(ended_count=ended)

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


def identity_provider_record(message: pb.IdentityProvider) -> IdentityProviderRecord:
    """The provider as given; identity_provider_admin checks it and fills the defaults."""
    return IdentityProviderRecord(
        tenant=message.tenant,
        name=message.name,
        issuer=message.issuer,
        jwks_uri=message.jwks_uri,
        audience=message.audience,
        created_at=0,
        customer_claim=message.customer_claim,
        create_customers=message.create_customers,
        customer_scopes=tuple(message.customer_scopes),
        algorithms=tuple(message.algorithms),
        client_id=message.client_id,
        client_secret=message.client_secret,
        token_endpoint=message.token_endpoint,
    )


def identity_provider_proto(record: IdentityProviderRecord) -> pb.IdentityProvider:
    """Everything but the client secret, which is write only."""
    return pb.IdentityProvider(
        tenant=record.tenant,
        name=record.name,
        issuer=record.issuer,
        jwks_uri=record.jwks_uri,
        audience=record.audience,
        customer_claim=record.customer_claim,
        create_customers=record.create_customers,
        customer_scopes=record.customer_scopes,
        algorithms=record.algorithms,
        client_id=record.client_id,
        token_endpoint=record.token_endpoint,
        has_client_secret=bool(record.client_secret),
        created_at=record.created_at,
    )
