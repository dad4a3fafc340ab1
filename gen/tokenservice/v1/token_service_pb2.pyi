from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TokenKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TOKEN_KIND_UNSPECIFIED: _ClassVar[TokenKind]
    TOKEN_KIND_ANONYMOUS: _ClassVar[TokenKind]
    TOKEN_KIND_CUSTOMER: _ClassVar[TokenKind]
    TOKEN_KIND_SERVICE: _ClassVar[TokenKind]

class TokenUse(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TOKEN_USE_UNSPECIFIED: _ClassVar[TokenUse]
    TOKEN_USE_ACCESS: _ClassVar[TokenUse]
    TOKEN_USE_REFRESH: _ClassVar[TokenUse]
    TOKEN_USE_SAAS: _ClassVar[TokenUse]
TOKEN_KIND_UNSPECIFIED: TokenKind
TOKEN_KIND_ANONYMOUS: TokenKind
TOKEN_KIND_CUSTOMER: TokenKind
TOKEN_KIND_SERVICE: TokenKind
TOKEN_USE_UNSPECIFIED: TokenUse
TOKEN_USE_ACCESS: TokenUse
TOKEN_USE_REFRESH: TokenUse
TOKEN_USE_SAAS: TokenUse

class WatchRevocationsRequest(_message.Message):
    __slots__ = ("caller", "after")
    CALLER_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    caller: ClientAuthentication
    after: str
    def __init__(self, caller: _Optional[_Union[ClientAuthentication, _Mapping]] = ..., after: _Optional[str] = ...) -> None: ...

class RevocationEvent(_message.Message):
    __slots__ = ("position", "reset", "token_sha256", "session_ids", "revoked_at", "heartbeat")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    RESET_FIELD_NUMBER: _ClassVar[int]
    TOKEN_SHA256_FIELD_NUMBER: _ClassVar[int]
    SESSION_IDS_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    position: str
    reset: bool
    token_sha256: _containers.RepeatedScalarFieldContainer[str]
    session_ids: _containers.RepeatedScalarFieldContainer[str]
    revoked_at: int
    heartbeat: bool
    def __init__(self, position: _Optional[str] = ..., reset: _Optional[bool] = ..., token_sha256: _Optional[_Iterable[str]] = ..., session_ids: _Optional[_Iterable[str]] = ..., revoked_at: _Optional[int] = ..., heartbeat: _Optional[bool] = ...) -> None: ...

class CustomerSession(_message.Message):
    __slots__ = ("session_id", "created_at", "last_refreshed_at", "expires_at", "current", "client_id", "legal_entity_id")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_REFRESHED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    LEGAL_ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    created_at: int
    last_refreshed_at: int
    expires_at: int
    current: bool
    client_id: str
    legal_entity_id: str
    def __init__(self, session_id: _Optional[str] = ..., created_at: _Optional[int] = ..., last_refreshed_at: _Optional[int] = ..., expires_at: _Optional[int] = ..., current: _Optional[bool] = ..., client_id: _Optional[str] = ..., legal_entity_id: _Optional[str] = ...) -> None: ...

class ListOwnSessionsRequest(_message.Message):
    __slots__ = ("tenant", "bearer_token", "page_size", "page_token")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    BEARER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    bearer_token: str
    page_size: int
    page_token: str
    def __init__(self, tenant: _Optional[str] = ..., bearer_token: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSessionsResponse(_message.Message):
    __slots__ = ("sessions", "next_page_token")
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    sessions: _containers.RepeatedCompositeFieldContainer[CustomerSession]
    next_page_token: str
    def __init__(self, sessions: _Optional[_Iterable[_Union[CustomerSession, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class EndOwnSessionRequest(_message.Message):
    __slots__ = ("tenant", "bearer_token", "session_id")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    BEARER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    bearer_token: str
    session_id: str
    def __init__(self, tenant: _Optional[str] = ..., bearer_token: _Optional[str] = ..., session_id: _Optional[str] = ...) -> None: ...

class EndOwnSessionsRequest(_message.Message):
    __slots__ = ("tenant", "bearer_token", "keep_current")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    BEARER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    KEEP_CURRENT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    bearer_token: str
    keep_current: bool
    def __init__(self, tenant: _Optional[str] = ..., bearer_token: _Optional[str] = ..., keep_current: _Optional[bool] = ...) -> None: ...

class EndSessionsResponse(_message.Message):
    __slots__ = ("ended_count",)
    ENDED_COUNT_FIELD_NUMBER: _ClassVar[int]
    ended_count: int
    def __init__(self, ended_count: _Optional[int] = ...) -> None: ...

class ClientAuthentication(_message.Message):
    __slots__ = ("client_id", "client_secret")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_SECRET_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    client_secret: str
    def __init__(self, client_id: _Optional[str] = ..., client_secret: _Optional[str] = ...) -> None: ...

class IssueTokenRequest(_message.Message):
    __slots__ = ("client_credentials", "anonymous", "customer_password", "token_exchange", "social_login")
    CLIENT_CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    ANONYMOUS_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_PASSWORD_FIELD_NUMBER: _ClassVar[int]
    TOKEN_EXCHANGE_FIELD_NUMBER: _ClassVar[int]
    SOCIAL_LOGIN_FIELD_NUMBER: _ClassVar[int]
    client_credentials: ClientCredentialsGrant
    anonymous: AnonymousGrant
    customer_password: CustomerPasswordGrant
    token_exchange: TokenExchangeGrant
    social_login: SocialLoginGrant
    def __init__(self, client_credentials: _Optional[_Union[ClientCredentialsGrant, _Mapping]] = ..., anonymous: _Optional[_Union[AnonymousGrant, _Mapping]] = ..., customer_password: _Optional[_Union[CustomerPasswordGrant, _Mapping]] = ..., token_exchange: _Optional[_Union[TokenExchangeGrant, _Mapping]] = ..., social_login: _Optional[_Union[SocialLoginGrant, _Mapping]] = ...) -> None: ...

class TokenExchangeGrant(_message.Message):
    __slots__ = ("tenant", "subject_token", "subject_token_type", "anonymous_token", "config")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_TOKEN_TYPE_FIELD_NUMBER: _ClassVar[int]
    ANONYMOUS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    subject_token: str
    subject_token_type: str
    anonymous_token: str
    config: str
    def __init__(self, tenant: _Optional[str] = ..., subject_token: _Optional[str] = ..., subject_token_type: _Optional[str] = ..., anonymous_token: _Optional[str] = ..., config: _Optional[str] = ...) -> None: ...

class SocialLoginGrant(_message.Message):
    __slots__ = ("tenant", "code", "redirect_uri", "code_verifier", "nonce", "anonymous_token", "config")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    REDIRECT_URI_FIELD_NUMBER: _ClassVar[int]
    CODE_VERIFIER_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    ANONYMOUS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    code: str
    redirect_uri: str
    code_verifier: str
    nonce: str
    anonymous_token: str
    config: str
    def __init__(self, tenant: _Optional[str] = ..., code: _Optional[str] = ..., redirect_uri: _Optional[str] = ..., code_verifier: _Optional[str] = ..., nonce: _Optional[str] = ..., anonymous_token: _Optional[str] = ..., config: _Optional[str] = ...) -> None: ...

class ClientCredentialsGrant(_message.Message):
    __slots__ = ("client_id", "client_secret", "scope")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_SECRET_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    client_secret: str
    scope: str
    def __init__(self, client_id: _Optional[str] = ..., client_secret: _Optional[str] = ..., scope: _Optional[str] = ...) -> None: ...

class AnonymousGrant(_message.Message):
    __slots__ = ("tenant", "client_id", "context")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    client_id: str
    context: SessionContext
    def __init__(self, tenant: _Optional[str] = ..., client_id: _Optional[str] = ..., context: _Optional[_Union[SessionContext, _Mapping]] = ...) -> None: ...

class CustomerPasswordGrant(_message.Message):
    __slots__ = ("tenant", "email", "password", "anonymous_token")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    ANONYMOUS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    email: str
    password: str
    anonymous_token: str
    def __init__(self, tenant: _Optional[str] = ..., email: _Optional[str] = ..., password: _Optional[str] = ..., anonymous_token: _Optional[str] = ...) -> None: ...

class SessionContext(_message.Message):
    __slots__ = ("currency", "site_code", "language", "target_location")
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    SITE_CODE_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    TARGET_LOCATION_FIELD_NUMBER: _ClassVar[int]
    currency: str
    site_code: str
    language: str
    target_location: str
    def __init__(self, currency: _Optional[str] = ..., site_code: _Optional[str] = ..., language: _Optional[str] = ..., target_location: _Optional[str] = ...) -> None: ...

class RefreshTokenRequest(_message.Message):
    __slots__ = ("tenant", "client_id", "refresh_token", "legal_entity_id", "access_token", "context", "anonymous_token")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    REFRESH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    LEGAL_ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    ANONYMOUS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    client_id: str
    refresh_token: str
    legal_entity_id: str
    access_token: str
    context: SessionContext
    anonymous_token: str
    def __init__(self, tenant: _Optional[str] = ..., client_id: _Optional[str] = ..., refresh_token: _Optional[str] = ..., legal_entity_id: _Optional[str] = ..., access_token: _Optional[str] = ..., context: _Optional[_Union[SessionContext, _Mapping]] = ..., anonymous_token: _Optional[str] = ...) -> None: ...

class TokenResponse(_message.Message):
    __slots__ = ("access_token", "token_type", "expires_in", "refresh_token", "refresh_token_expires_in", "session_id", "scope", "saas_token", "session_idle_time", "kind", "external_access_token", "external_id_token")
    ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_TYPE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_FIELD_NUMBER: _ClassVar[int]
    REFRESH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REFRESH_TOKEN_EXPIRES_IN_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    SAAS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SESSION_IDLE_TIME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_ACCESS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_ID_TOKEN_FIELD_NUMBER: _ClassVar[int]
    access_token: str
    token_type: str
    expires_in: int
    refresh_token: str
    refresh_token_expires_in: int
    session_id: str
    scope: str
    saas_token: str
    session_idle_time: int
    kind: TokenKind
    external_access_token: str
    external_id_token: str
    def __init__(self, access_token: _Optional[str] = ..., token_type: _Optional[str] = ..., expires_in: _Optional[int] = ..., refresh_token: _Optional[str] = ..., refresh_token_expires_in: _Optional[int] = ..., session_id: _Optional[str] = ..., scope: _Optional[str] = ..., saas_token: _Optional[str] = ..., session_idle_time: _Optional[int] = ..., kind: _Optional[_Union[TokenKind, str]] = ..., external_access_token: _Optional[str] = ..., external_id_token: _Optional[str] = ...) -> None: ...

class IntrospectTokenRequest(_message.Message):
    __slots__ = ("token", "tenant", "token_type_hint", "caller", "as_bearer")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_TYPE_HINT_FIELD_NUMBER: _ClassVar[int]
    CALLER_FIELD_NUMBER: _ClassVar[int]
    AS_BEARER_FIELD_NUMBER: _ClassVar[int]
    token: str
    tenant: str
    token_type_hint: str
    caller: ClientAuthentication
    as_bearer: bool
    def __init__(self, token: _Optional[str] = ..., tenant: _Optional[str] = ..., token_type_hint: _Optional[str] = ..., caller: _Optional[_Union[ClientAuthentication, _Mapping]] = ..., as_bearer: _Optional[bool] = ...) -> None: ...

class IntrospectTokenResponse(_message.Message):
    __slots__ = ("active", "kind", "token_use", "tenant", "client_id", "scope", "expires_in", "exp", "iat", "session_id", "customer_id", "email", "legal_entity_id", "token_type", "cache_seconds")
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TOKEN_USE_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_FIELD_NUMBER: _ClassVar[int]
    EXP_FIELD_NUMBER: _ClassVar[int]
    IAT_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    LEGAL_ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_TYPE_FIELD_NUMBER: _ClassVar[int]
    CACHE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    active: bool
    kind: TokenKind
    token_use: TokenUse
    tenant: str
    client_id: str
    scope: str
    expires_in: int
    exp: int
    iat: int
    session_id: str
    customer_id: str
    email: str
    legal_entity_id: str
    token_type: str
    cache_seconds: int
    def __init__(self, active: _Optional[bool] = ..., kind: _Optional[_Union[TokenKind, str]] = ..., token_use: _Optional[_Union[TokenUse, str]] = ..., tenant: _Optional[str] = ..., client_id: _Optional[str] = ..., scope: _Optional[str] = ..., expires_in: _Optional[int] = ..., exp: _Optional[int] = ..., iat: _Optional[int] = ..., session_id: _Optional[str] = ..., customer_id: _Optional[str] = ..., email: _Optional[str] = ..., legal_entity_id: _Optional[str] = ..., token_type: _Optional[str] = ..., cache_seconds: _Optional[int] = ...) -> None: ...

class RevokeTokenRequest(_message.Message):
    __slots__ = ("token", "tenant", "token_type_hint", "end_session", "caller", "bearer_token")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_TYPE_HINT_FIELD_NUMBER: _ClassVar[int]
    END_SESSION_FIELD_NUMBER: _ClassVar[int]
    CALLER_FIELD_NUMBER: _ClassVar[int]
    BEARER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    token: str
    tenant: str
    token_type_hint: str
    end_session: bool
    caller: ClientAuthentication
    bearer_token: str
    def __init__(self, token: _Optional[str] = ..., tenant: _Optional[str] = ..., token_type_hint: _Optional[str] = ..., end_session: _Optional[bool] = ..., caller: _Optional[_Union[ClientAuthentication, _Mapping]] = ..., bearer_token: _Optional[str] = ...) -> None: ...

class GetJwksRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class JsonWebKey(_message.Message):
    __slots__ = ("kty", "crv", "x", "y", "kid", "use", "alg")
    KTY_FIELD_NUMBER: _ClassVar[int]
    CRV_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    KID_FIELD_NUMBER: _ClassVar[int]
    USE_FIELD_NUMBER: _ClassVar[int]
    ALG_FIELD_NUMBER: _ClassVar[int]
    kty: str
    crv: str
    x: str
    y: str
    kid: str
    use: str
    alg: str
    def __init__(self, kty: _Optional[str] = ..., crv: _Optional[str] = ..., x: _Optional[str] = ..., y: _Optional[str] = ..., kid: _Optional[str] = ..., use: _Optional[str] = ..., alg: _Optional[str] = ...) -> None: ...

class GetJwksResponse(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[JsonWebKey]
    def __init__(self, keys: _Optional[_Iterable[_Union[JsonWebKey, _Mapping]]] = ...) -> None: ...

class GetAllowedOriginsRequest(_message.Message):
    __slots__ = ("tenant",)
    TENANT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    def __init__(self, tenant: _Optional[str] = ...) -> None: ...

class GetAllowedOriginsResponse(_message.Message):
    __slots__ = ("allowed_origins",)
    ALLOWED_ORIGINS_FIELD_NUMBER: _ClassVar[int]
    allowed_origins: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, allowed_origins: _Optional[_Iterable[str]] = ...) -> None: ...

class RevokeTokenResponse(_message.Message):
    __slots__ = ("revoked", "revoked_count")
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    REVOKED_COUNT_FIELD_NUMBER: _ClassVar[int]
    revoked: bool
    revoked_count: int
    def __init__(self, revoked: _Optional[bool] = ..., revoked_count: _Optional[int] = ...) -> None: ...
