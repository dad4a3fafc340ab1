from google.api import annotations_pb2 as _annotations_pb2
from tokenservice.v1 import token_service_pb2 as _token_service_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ClientKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CLIENT_KIND_UNSPECIFIED: _ClassVar[ClientKind]
    CLIENT_KIND_STOREFRONT: _ClassVar[ClientKind]
    CLIENT_KIND_SERVICE: _ClassVar[ClientKind]
CLIENT_KIND_UNSPECIFIED: ClientKind
CLIENT_KIND_STOREFRONT: ClientKind
CLIENT_KIND_SERVICE: ClientKind

class Tenant(_message.Message):
    __slots__ = ("name", "created_at", "allowed_origins")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_ORIGINS_FIELD_NUMBER: _ClassVar[int]
    name: str
    created_at: int
    allowed_origins: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., created_at: _Optional[int] = ..., allowed_origins: _Optional[_Iterable[str]] = ...) -> None: ...

class CreateTenantRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListTenantsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetTenantRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class SetAllowedOriginsRequest(_message.Message):
    __slots__ = ("tenant", "allowed_origins")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_ORIGINS_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    allowed_origins: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tenant: _Optional[str] = ..., allowed_origins: _Optional[_Iterable[str]] = ...) -> None: ...

class ListTenantsResponse(_message.Message):
    __slots__ = ("tenants",)
    TENANTS_FIELD_NUMBER: _ClassVar[int]
    tenants: _containers.RepeatedCompositeFieldContainer[Tenant]
    def __init__(self, tenants: _Optional[_Iterable[_Union[Tenant, _Mapping]]] = ...) -> None: ...

class Client(_message.Message):
    __slots__ = ("client_id", "tenant", "kind", "name", "scopes", "access_token_ttl", "refresh_token_ttl", "refresh_rotation_disabled", "created_at")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    ACCESS_TOKEN_TTL_FIELD_NUMBER: _ClassVar[int]
    REFRESH_TOKEN_TTL_FIELD_NUMBER: _ClassVar[int]
    REFRESH_ROTATION_DISABLED_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    tenant: str
    kind: ClientKind
    name: str
    scopes: _containers.RepeatedScalarFieldContainer[str]
    access_token_ttl: int
    refresh_token_ttl: int
    refresh_rotation_disabled: bool
    created_at: int
    def __init__(self, client_id: _Optional[str] = ..., tenant: _Optional[str] = ..., kind: _Optional[_Union[ClientKind, str]] = ..., name: _Optional[str] = ..., scopes: _Optional[_Iterable[str]] = ..., access_token_ttl: _Optional[int] = ..., refresh_token_ttl: _Optional[int] = ..., refresh_rotation_disabled: _Optional[bool] = ..., created_at: _Optional[int] = ...) -> None: ...

class CreateClientRequest(_message.Message):
    __slots__ = ("tenant", "kind", "name", "scopes", "access_token_ttl", "refresh_token_ttl", "refresh_rotation_disabled")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    ACCESS_TOKEN_TTL_FIELD_NUMBER: _ClassVar[int]
    REFRESH_TOKEN_TTL_FIELD_NUMBER: _ClassVar[int]
    REFRESH_ROTATION_DISABLED_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    kind: ClientKind
    name: str
    scopes: _containers.RepeatedScalarFieldContainer[str]
    access_token_ttl: int
    refresh_token_ttl: int
    refresh_rotation_disabled: bool
    def __init__(self, tenant: _Optional[str] = ..., kind: _Optional[_Union[ClientKind, str]] = ..., name: _Optional[str] = ..., scopes: _Optional[_Iterable[str]] = ..., access_token_ttl: _Optional[int] = ..., refresh_token_ttl: _Optional[int] = ..., refresh_rotation_disabled: _Optional[bool] = ...) -> None: ...

class CreateClientResponse(_message.Message):
    __slots__ = ("client", "client_secret")
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_SECRET_FIELD_NUMBER: _ClassVar[int]
    client: Client
    client_secret: str
    def __init__(self, client: _Optional[_Union[Client, _Mapping]] = ..., client_secret: _Optional[str] = ...) -> None: ...

class ListClientsRequest(_message.Message):
    __slots__ = ("tenant",)
    TENANT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    def __init__(self, tenant: _Optional[str] = ...) -> None: ...

class ListClientsResponse(_message.Message):
    __slots__ = ("clients",)
    CLIENTS_FIELD_NUMBER: _ClassVar[int]
    clients: _containers.RepeatedCompositeFieldContainer[Client]
    def __init__(self, clients: _Optional[_Iterable[_Union[Client, _Mapping]]] = ...) -> None: ...

class Customer(_message.Message):
    __slots__ = ("id", "tenant", "email", "scopes", "legal_entity_ids", "created_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    LEGAL_ENTITY_IDS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    tenant: str
    email: str
    scopes: _containers.RepeatedScalarFieldContainer[str]
    legal_entity_ids: _containers.RepeatedScalarFieldContainer[str]
    created_at: int
    def __init__(self, id: _Optional[str] = ..., tenant: _Optional[str] = ..., email: _Optional[str] = ..., scopes: _Optional[_Iterable[str]] = ..., legal_entity_ids: _Optional[_Iterable[str]] = ..., created_at: _Optional[int] = ...) -> None: ...

class CreateCustomerRequest(_message.Message):
    __slots__ = ("tenant", "email", "password", "scopes", "legal_entity_ids")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    LEGAL_ENTITY_IDS_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    email: str
    password: str
    scopes: _containers.RepeatedScalarFieldContainer[str]
    legal_entity_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tenant: _Optional[str] = ..., email: _Optional[str] = ..., password: _Optional[str] = ..., scopes: _Optional[_Iterable[str]] = ..., legal_entity_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class SigningKey(_message.Message):
    __slots__ = ("kid", "algorithm", "status", "created_at", "retired_at", "public_jwk")
    KID_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    RETIRED_AT_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_JWK_FIELD_NUMBER: _ClassVar[int]
    kid: str
    algorithm: str
    status: str
    created_at: int
    retired_at: int
    public_jwk: str
    def __init__(self, kid: _Optional[str] = ..., algorithm: _Optional[str] = ..., status: _Optional[str] = ..., created_at: _Optional[int] = ..., retired_at: _Optional[int] = ..., public_jwk: _Optional[str] = ...) -> None: ...

class RotateSigningKeyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListSigningKeysRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListSigningKeysResponse(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[SigningKey]
    def __init__(self, keys: _Optional[_Iterable[_Union[SigningKey, _Mapping]]] = ...) -> None: ...

class RetireSigningKeyRequest(_message.Message):
    __slots__ = ("kid",)
    KID_FIELD_NUMBER: _ClassVar[int]
    kid: str
    def __init__(self, kid: _Optional[str] = ...) -> None: ...

class IdentityProvider(_message.Message):
    __slots__ = ("tenant", "name", "issuer", "jwks_uri", "audience", "customer_claim", "create_customers", "customer_scopes", "algorithms", "client_id", "client_secret", "token_endpoint", "has_client_secret", "created_at", "discovery_url")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    JWKS_URI_FIELD_NUMBER: _ClassVar[int]
    AUDIENCE_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_CLAIM_FIELD_NUMBER: _ClassVar[int]
    CREATE_CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_SCOPES_FIELD_NUMBER: _ClassVar[int]
    ALGORITHMS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_SECRET_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    HAS_CLIENT_SECRET_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    DISCOVERY_URL_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    name: str
    issuer: str
    jwks_uri: str
    audience: str
    customer_claim: str
    create_customers: bool
    customer_scopes: _containers.RepeatedScalarFieldContainer[str]
    algorithms: _containers.RepeatedScalarFieldContainer[str]
    client_id: str
    client_secret: str
    token_endpoint: str
    has_client_secret: bool
    created_at: int
    discovery_url: str
    def __init__(self, tenant: _Optional[str] = ..., name: _Optional[str] = ..., issuer: _Optional[str] = ..., jwks_uri: _Optional[str] = ..., audience: _Optional[str] = ..., customer_claim: _Optional[str] = ..., create_customers: _Optional[bool] = ..., customer_scopes: _Optional[_Iterable[str]] = ..., algorithms: _Optional[_Iterable[str]] = ..., client_id: _Optional[str] = ..., client_secret: _Optional[str] = ..., token_endpoint: _Optional[str] = ..., has_client_secret: _Optional[bool] = ..., created_at: _Optional[int] = ..., discovery_url: _Optional[str] = ...) -> None: ...

class PutIdentityProviderRequest(_message.Message):
    __slots__ = ("provider",)
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    provider: IdentityProvider
    def __init__(self, provider: _Optional[_Union[IdentityProvider, _Mapping]] = ...) -> None: ...

class ListIdentityProvidersRequest(_message.Message):
    __slots__ = ("tenant",)
    TENANT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    def __init__(self, tenant: _Optional[str] = ...) -> None: ...

class ListIdentityProvidersResponse(_message.Message):
    __slots__ = ("providers",)
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    providers: _containers.RepeatedCompositeFieldContainer[IdentityProvider]
    def __init__(self, providers: _Optional[_Iterable[_Union[IdentityProvider, _Mapping]]] = ...) -> None: ...

class DeleteIdentityProviderRequest(_message.Message):
    __slots__ = ("tenant", "name")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    name: str
    def __init__(self, tenant: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class DeleteIdentityProviderResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    def __init__(self, deleted: _Optional[bool] = ...) -> None: ...

class ListCustomerSessionsRequest(_message.Message):
    __slots__ = ("tenant", "email", "customer_id", "page_size", "page_token")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    email: str
    customer_id: str
    page_size: int
    page_token: str
    def __init__(self, tenant: _Optional[str] = ..., email: _Optional[str] = ..., customer_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class EndCustomerSessionRequest(_message.Message):
    __slots__ = ("tenant", "email", "customer_id", "session_id")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    email: str
    customer_id: str
    session_id: str
    def __init__(self, tenant: _Optional[str] = ..., email: _Optional[str] = ..., customer_id: _Optional[str] = ..., session_id: _Optional[str] = ...) -> None: ...

class EndCustomerSessionsRequest(_message.Message):
    __slots__ = ("tenant", "email", "customer_id", "except_session_id")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    EXCEPT_SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    email: str
    customer_id: str
    except_session_id: str
    def __init__(self, tenant: _Optional[str] = ..., email: _Optional[str] = ..., customer_id: _Optional[str] = ..., except_session_id: _Optional[str] = ...) -> None: ...

class EndLegalEntitySessionsRequest(_message.Message):
    __slots__ = ("tenant", "legal_entity_id")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    LEGAL_ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    legal_entity_id: str
    def __init__(self, tenant: _Optional[str] = ..., legal_entity_id: _Optional[str] = ...) -> None: ...

class GetAccountPolicyRequest(_message.Message):
    __slots__ = ("tenant",)
    TENANT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    def __init__(self, tenant: _Optional[str] = ...) -> None: ...

class AccountPolicy(_message.Message):
    __slots__ = ("tenant", "double_opt_in", "password_min_length", "reject_common_passwords")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    DOUBLE_OPT_IN_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_MIN_LENGTH_FIELD_NUMBER: _ClassVar[int]
    REJECT_COMMON_PASSWORDS_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    double_opt_in: bool
    password_min_length: int
    reject_common_passwords: bool
    def __init__(self, tenant: _Optional[str] = ..., double_opt_in: _Optional[bool] = ..., password_min_length: _Optional[int] = ..., reject_common_passwords: _Optional[bool] = ...) -> None: ...
